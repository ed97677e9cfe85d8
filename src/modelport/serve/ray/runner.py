"""Connect to (or start) Ray, deploy a repository as a Ray Serve application, update it in place,
serve until stopped."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import UsageError, require
from ..config import ModelConfig
from ..repository import ModelRepository
from .config import RayConfig

__all__ = [
    "app_builder",
    "build_app",
    "connect",
    "deploy",
    "replica_counts",
    "serve_on_ray",
    "undeploy",
]

log = logging.getLogger("modelport.serve")

INGRESS = "ingress"


def deployment_name(model: str) -> str:
    return f"model-{model}"


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def connect(config: RayConfig) -> bool:
    """Make sure this process is connected to Ray; True when it started a local Ray itself."""
    if config.address is None and "ray" not in sys.modules:
        # a private local Ray keeps all its processes on loopback (read when Ray is imported)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    require("ray.serve", "ray")
    import ray

    if ray.is_initialized():
        return False
    common = {"namespace": "modelport", "log_to_driver": False, "configure_logging": False}
    if config.address is not None:
        try:
            ray.init(address=config.address, **common)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UsageError(
                f"cannot connect to the Ray cluster at {config.address}: {exc}; start one with "
                "`ray start --head` (then --address auto), or leave --address out to run a "
                "local Ray"
            ) from exc
        return False
    mb = config.object_store_mb or 300
    ray.init(
        num_cpus=config.local_cpus,
        object_store_memory=mb * 1024 * 1024,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        **common,
    )
    return True


def build_app(
    repository: str | Path,
    config: RayConfig,
    defaults: ModelConfig | None = None,
    apis: tuple[str, ...] | None = None,
) -> tuple[Any, list[tuple[str, str]]]:
    """The Ray Serve application for ``repository`` (its packages put into the object store) and
    the package references it uses. Needs a connection to Ray (``connect``)."""
    from .deployments import Ingress, ModelDeployment
    from .packages import defaults_for_replica, pack_model, put

    defaults = defaults or ModelConfig()
    repo = ModelRepository(repository, defaults)
    names = sorted(repo.on_disk())
    if not names:
        raise UsageError(
            f"no models in {repository}: expected REPO/<model>/<version>/ packages or one package",
            path=str(repository),
        )
    replica_defaults = defaults_for_replica(defaults, config.threads)
    common = {
        "ray_actor_options": {"num_cpus": config.replica_cpus},
        "max_ongoing_requests": config.max_ongoing_requests,
        "graceful_shutdown_timeout_s": config.graceful_shutdown_s,
        "graceful_shutdown_wait_loop_s": 0.5,
        "max_surge_percent": 100,  # replacements start before the replicas they replace stop
        "max_constructor_retry_count": 2,
    }
    models, keys = {}, []
    for name in names:
        key = put(pack_model(repo, name), name)
        keys.append(key)
        models[name] = ModelDeployment.options(
            name=deployment_name(name), **common, **config.scaling()
        ).bind(name, key, replica_defaults)
    ingress = Ingress.options(
        name=INGRESS,
        **{**common, "ray_actor_options": {"num_cpus": min(config.replica_cpus, 0.5)}},
        **config.scaling(ingress=True),
    ).bind(models, config.max_request_bytes, apis)
    return ingress, keys


def deploy(
    repository: str | Path,
    config: RayConfig,
    defaults: ModelConfig | None = None,
    apis: tuple[str, ...] | None = None,
    timeout_s: float = 300.0,
) -> dict[str, Any]:
    """Deploy (or update in place: a rolling update) ``repository`` as the application
    ``config.app_name``; returns where it answers and its replicas. Needs ``connect``."""
    from ray import serve

    from .packages import retain

    port = config.http_port or _free_port(config.host)
    serve.start(proxy_location="HeadOnly", http_options={"host": config.host, "port": port})
    app, keys = build_app(repository, config, defaults, apis)
    try:
        serve.run(app, name=config.app_name, route_prefix="/", blocking=False)
        _wait_running(config.app_name, timeout_s)
    except Exception as exc:
        if isinstance(exc, UsageError):
            raise
        raise UsageError(
            f"Ray Serve could not deploy {repository}: {exc}; see the replica logs "
            "(ray logs / /tmp/ray/session_latest/logs/serve)"
        ) from exc
    retain(config.app_name, keys)
    return {
        "http_url": f"http://{config.host}:{port}",
        "app": config.app_name,
        "models": [k[0] for k in keys],
        "replicas": replica_counts(config.app_name),
    }


def _wait_running(app: str, timeout_s: float) -> None:
    import time

    from ray import serve

    deadline = time.monotonic() + timeout_s
    while True:
        status = serve.status().applications.get(app)
        state = str(getattr(status, "status", "")) if status else ""
        if state.endswith("RUNNING"):
            return
        if state.endswith(("DEPLOY_FAILED", "UNHEALTHY")):
            raise UsageError(f"application {app} is {state}: {status.message}")
        if time.monotonic() > deadline:
            raise UsageError(f"application {app} not running after {timeout_s:.0f} s ({state})")
        time.sleep(0.25)


def replica_counts(app: str) -> dict[str, int]:
    """Running replicas per deployment of ``app``."""
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None:
        return {}
    return {name: int(d.replica_states.get("RUNNING", 0)) for name, d in status.deployments.items()}


def undeploy(app: str) -> None:
    """Delete the application and release its packages."""
    from ray import serve

    from .packages import retain

    with contextlib.suppress(Exception):
        serve.delete(app)
    with contextlib.suppress(Exception):
        retain(app, [])


def serve_on_ray(
    repository: str | Path,
    config: RayConfig,
    defaults: ModelConfig | None = None,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
    detach: bool = False,
) -> None:
    """Deploy, then (unless ``detach``) serve until SIGINT/SIGTERM and delete the application.
    SIGHUP deploys the repository again: a rolling update to what is on disk now."""
    if detach and config.address is None:
        raise UsageError("--detach needs --address: a local Ray stops when this command exits")
    started = connect(config)
    try:
        info = deploy(repository, config, defaults)
        if on_ready is not None:
            on_ready({"event": "ready", **info})
        if detach:
            return
        stop, reload = threading.Event(), threading.Event()

        def on_signal(signum, frame) -> None:
            (reload if signum == getattr(signal, "SIGHUP", None) else stop).set()

        for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if sig is not None:
                with contextlib.suppress(ValueError):  # not the main thread
                    signal.signal(sig, on_signal)
        while not stop.wait(0.5):
            if reload.is_set():
                reload.clear()
                log.info("SIGHUP: deploying %s again (rolling update)", repository)
                try:
                    info = deploy(repository, config, defaults)
                    if on_ready is not None:
                        on_ready({"event": "updated", **info})
                except Exception as exc:  # keep serving what runs
                    log.error("update failed, still serving the previous deployment: %s", exc)
        if not detach:
            undeploy(config.app_name)
    finally:
        if started:
            import ray
            from ray import serve

            with contextlib.suppress(Exception):
                serve.shutdown()
            ray.shutdown()


def app_builder(args: dict[str, Any]) -> Any:
    """The application for a Ray Serve config file (``serve deploy``, KubeRay's RayService):

        import_path: modelport.serve.ray.runner:app_builder
        args: {repository: /models, replicas: 2, replica_cpus: 1, max_batch_size: 32, ...}

    ``repository`` is read where Serve builds the application; the replicas get the packages
    through the object store. Other keys are RayConfig fields (``autoscale`` as "MIN:MAX") or
    serving defaults (ModelConfig fields)."""
    import dataclasses

    from .config import parse_autoscale

    args = dict(args)
    repository = args.pop("repository", None)
    if not repository:
        raise UsageError("the Ray Serve config's args need 'repository: PATH'")
    ray_fields = {f.name for f in dataclasses.fields(RayConfig)} - {"address"}
    ray_args = {k: args.pop(k) for k in list(args) if k in ray_fields}
    if isinstance(ray_args.get("autoscale"), str):
        ray_args["autoscale"] = parse_autoscale(ray_args["autoscale"])
    config = RayConfig(**ray_args)
    defaults = ModelConfig().merged(args, source="the Ray Serve config's args")
    app, keys = build_app(repository, config, defaults)
    from .packages import retain

    retain(f"config:{config.app_name}", keys)  # replicas of the previous build have theirs
    return app
