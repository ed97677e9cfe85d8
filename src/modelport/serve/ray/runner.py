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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ...errors import ModelportError, UsageError, require
from ..config import ModelConfig, check_engine, engine_override
from ..repository import ModelRepository
from .capacity import demand
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


def local_cpus() -> int:
    """The CPUs a local Ray started here has: what Ray itself counts (cgroup limits included)."""
    try:
        from ray._private.utils import get_num_cpus

        return max(1, int(get_num_cpus()))
    except Exception:  # noqa: BLE001 - a private helper; the plain count will do
        return os.cpu_count() or 1


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
        address="local",  # a new private Ray, even when another one runs on this machine
        num_cpus=config.local_cpus or local_cpus(),
        object_store_memory=mb * 1024 * 1024,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        **common,
    )
    return True


def _model_names(repository: str | Path, defaults: ModelConfig | None) -> list[str]:
    names = sorted(ModelRepository(repository, defaults or ModelConfig()).on_disk())
    if not names:
        raise UsageError(
            f"no models in {repository}: expected REPO/<model>/<version>/ packages or one package",
            path=str(repository),
        )
    return names


def build_app(
    repository: str | Path,
    config: RayConfig,
    defaults: ModelConfig | None = None,
    apis: tuple[str, ...] | None = None,
    strict: frozenset[str] | set[str] = frozenset(),
    engine: Mapping[str, str] | None = None,
) -> tuple[Any, list[tuple[str, str]], dict[str, str]]:
    """The Ray Serve application for ``repository`` (its packages put into the object store),
    the package references it uses, and the models that could not be packed (name -> why; the
    ingress lists them as not ready, the others deploy). ``strict``: models whose replicas must
    load or fail to start (a rolling update of a model that works). ``engine``: the engine every
    replica loads its model with (``serve --engine``: ``{"engine": ..., "precision": ...}``),
    over the serving sections; a model's config.json naming engine or precision keeps its own.
    Needs ``connect``."""
    from .deployments import Ingress, ModelDeployment
    from .packages import defaults_for_replica, pack_model, put

    defaults = defaults or ModelConfig()
    engine = dict(engine or {})
    if engine:
        check_engine(engine)
    repo = ModelRepository(repository, defaults)
    names = _model_names(repository, defaults)
    disk = repo.on_disk()
    replica_defaults = defaults_for_replica(defaults, config.threads)
    common = {
        "ray_actor_options": {"num_cpus": config.cpus},
        "max_ongoing_requests": config.max_ongoing_requests,
        "graceful_shutdown_timeout_s": config.graceful_shutdown_s,
        "graceful_shutdown_wait_loop_s": 0.5,
        "max_surge_percent": 100,  # replacements start before the replicas they replace stop
        "max_constructor_retry_count": 2,
    }
    models, keys, failed = {}, [], {}
    for name in names:
        try:
            key = put(pack_model(repo, name), name)
        except ModelportError as exc:  # e.g. a bad config.json: this model only
            failed[name] = exc.message
            log.error("model %s cannot be deployed: %s", name, exc.message)
            continue
        keys.append(key)
        path = disk[name]  # as packed: <name>/<version>/, one package as <name>/1/
        origin = (f"{name}/1" if repo.single else name, str(path))
        models[name] = ModelDeployment.options(
            name=deployment_name(name),
            user_config={"strict": name in strict, "origin": origin},
            **common,
            **config.scaling(),
        ).bind(name, key, replica_defaults, engine or None)
    ingress = Ingress.options(
        name=INGRESS,
        **{**common, "ray_actor_options": {"num_cpus": config.ingress_cpus}},
        **config.scaling(ingress=True),
    ).bind(
        models,
        config.max_request_bytes,
        apis,
        failed=failed,
        strict_readiness=config.strict_readiness,
    )
    return ingress, keys, failed


def cluster_cpus() -> tuple[float, float]:
    """(available, total) CPUs of the Ray cluster this process is connected to."""
    import ray

    return (
        float(ray.available_resources().get("CPU", 0.0)),
        float(ray.cluster_resources().get("CPU", 0.0)),
    )


def fit(
    config: RayConfig,
    models: int,
    updating: bool = False,
    progress: Callable[[str], None] | None = None,
) -> RayConfig:
    """``config`` with ``--replica-cpus auto`` resolved, after checking that its replicas fit
    the cluster's CPUs (UsageError naming the numbers and the options that fit, otherwise).
    A first deploy must fit the available CPUs; an update (``updating``) replaces the
    application's own replicas, so it is held against the cluster's total."""
    from .capacity import check_fits, resolve_cpus

    available, total = cluster_cpus()
    room = total if updating else available
    config = resolve_cpus(config, models, room)
    if config.check_cpus:
        warning = check_fits(config, models, room, total)
        if warning and progress is not None:
            progress(warning)
    return config


def _describe(app: str, names: list[str], timeout_s: float = 30.0) -> dict[str, dict | None]:
    """What each model deployment of ``app`` says of its model (None: it did not answer)."""
    from ray import serve

    docs: dict[str, dict | None] = {}
    for name in names:
        try:
            handle = serve.get_deployment_handle(deployment_name(name), app_name=app)
            docs[name] = handle.options(method_name="describe").remote().result(timeout_s=timeout_s)
        except Exception as exc:  # noqa: BLE001 - reported as not answering
            log.warning("model deployment %s did not describe itself: %s", name, exc)
            docs[name] = None
    return docs


def _why_failed(doc: dict | None) -> str:
    if doc is None:
        return "its deployment did not answer"
    if doc.get("default") is not None:
        return ""
    return (
        doc.get("reason")
        or "; ".join(
            f"version {row['version']} {row['state']}"
            + (f": {row['reason']}" if row["reason"] else "")
            for row in doc.get("versions", [])
        )
        or "no ready version"
    )


def _app_models(app: str) -> list[str]:
    """The models ``app`` runs now (none when it is not deployed)."""
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None:
        return []
    prefix = deployment_name("")
    return [d[len(prefix) :] for d in status.deployments if d.startswith(prefix)]


def deploy(
    repository: str | Path,
    config: RayConfig,
    defaults: ModelConfig | None = None,
    apis: tuple[str, ...] | None = None,
    timeout_s: float | None = None,
    progress: Callable[[str], None] | None = None,
    cleanup: bool = True,
    engine: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Deploy (or update in place: a rolling update) ``repository`` as the application
    ``config.app_name``; returns where it answers, its replicas and the models that failed to
    load (name -> why; the others serve). Needs ``connect``.

    Before deploying, the CPUs the replicas reserve are checked against the cluster's (``fit``);
    while waiting for the replicas, ``progress`` is told which deployments are not running yet
    every few seconds; after ``timeout_s`` (default ``config.deploy_timeout_s``) it gives up
    (UsageError), deleting the application if this call created it (unless not ``cleanup``:
    the caller stops the whole Ray). ``engine``: as ``build_app``'s (``serve --engine``)."""
    from ray import serve

    from .packages import retain

    timeout_s = timeout_s or config.deploy_timeout_s
    if engine:  # before anything is started or deployed
        check_engine(engine)
    names = _model_names(repository, defaults)
    running = _app_models(config.app_name)  # serve.status() starts nothing
    config = fit(config, len(names), updating=bool(running), progress=progress)
    port = config.http_port or _free_port(config.host)
    serve.start(
        proxy_location="HeadOnly",
        http_options={
            "host": config.host,
            "port": port,
            "request_timeout_s": config.request_timeout_s,
        },
    )
    strict = set()
    if running:  # a rolling update: a broken package must not replace a model that works
        docs = _describe(config.app_name, [n for n in running if n in names])
        strict = {n for n, doc in docs.items() if doc is not None and not _why_failed(doc)}
    app, keys, failed = build_app(repository, config, defaults, apis, strict, engine)
    hint = f"{demand(config, len(names))} requested, {cluster_cpus()[0]:g} CPUs were free"
    try:
        _submit(app, config.app_name)
        _wait_running(config.app_name, timeout_s, progress, hint)
    except Exception as exc:
        if not running and cleanup:  # nothing served before: leave nothing half-deployed
            undeploy(config.app_name, wait=False)
        if isinstance(exc, UsageError):
            raise
        raise UsageError(
            f"Ray Serve could not deploy {repository}: {exc}; see the replica logs "
            "(ray logs / /tmp/ray/session_latest/logs/serve)"
        ) from exc
    retain(config.app_name, keys)
    deployed = [k[0] for k in keys]
    for name, doc in _describe(config.app_name, deployed).items():
        if why := _why_failed(doc):
            failed[name] = why
    return {
        "http_url": f"http://{config.host}:{port}",
        "app": config.app_name,
        "models": names,
        "replicas": replica_counts(config.app_name),
        "failed": dict(sorted(failed.items())),
        "replica_cpus": config.cpus,
    }


def _submit(app: Any, name: str) -> None:
    """Hand the application to Serve without waiting (``serve.run`` waits until it runs, which
    is forever when its replicas cannot be scheduled); ``_wait_running`` waits, boundedly."""
    from ray import serve

    if hasattr(serve, "run_many"):  # Ray >= 2.44
        serve.run_many(
            [serve.RunTarget(app, name=name, route_prefix="/")],
            wait_for_ingress_deployment_creation=False,
            wait_for_applications_running=False,
        )
    else:
        serve._run(app, name=name, route_prefix="/", _blocking=False)


def _waiting_for(status: Any) -> str:
    """Which deployments are not running yet, their replicas' states and Ray's words."""
    parts = []
    for name, d in sorted(status.deployments.items()):
        if str(d.status).rsplit(".", 1)[-1] == "HEALTHY":
            continue
        states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(d.replica_states.items()))
        part = f"{name} ({states or 'no replicas yet'})"
        if d.message:  # Ray's first sentence ("... taken more than 30s to be scheduled.")
            part += ": " + d.message.split(". ", 1)[0].rstrip(".")
        parts.append(part)
    return "; ".join(parts) or str(status.message or "starting")


def _failures(status: Any) -> str:
    """Why the deployments that failed failed: the error line of each one's message (Ray puts
    the replica constructor's traceback there)."""
    parts = []
    for name, d in sorted(status.deployments.items()):
        if str(d.status).rsplit(".", 1)[-1] not in ("DEPLOY_FAILED", "UNHEALTHY"):
            continue
        lines = [line.strip() for line in str(d.message or "").splitlines() if line.strip()]
        if not lines:
            continue
        why = next((ln for ln in reversed(lines) if "failed to load" in ln), lines[-1])
        kind, sep, rest = why.partition(": ")
        if sep and " " not in kind:  # "modelport.errors.ModelportError: model 'x' failed ..."
            why = rest
        parts.append(f"{name}: {why}")
    return "; ".join(parts) or str(status.message)


def _wait_running(
    app: str,
    timeout_s: float,
    progress: Callable[[str], None] | None = None,
    hint: str = "",
    every_s: float = 10.0,
) -> None:
    import time

    from ray import serve

    start = time.monotonic()
    report = start + every_s
    while True:
        status = serve.status().applications.get(app)
        state = str(getattr(status, "status", "")) if status else ""
        if state.endswith("RUNNING"):
            return
        if state.endswith(("DEPLOY_FAILED", "UNHEALTHY")):
            state = state.rsplit(".", 1)[-1]
            raise UsageError(f"application {app} is {state}: {_failures(status)}")
        now = time.monotonic()
        if now - start > timeout_s:
            waiting = _waiting_for(status) if status else "the application never appeared"
            raise UsageError(
                f"gave up after {timeout_s:.0f} s waiting for Ray Serve to run application "
                f"{app}: {waiting}" + (f" ({hint})" if hint else "") + ". Replicas that wait "
                "to be scheduled need CPUs (--replica-cpus, "
                "--replicas); slow ones need a longer --deploy-timeout; see the replica logs "
                "(/tmp/ray/session_latest/logs/serve)"
            )
        if progress is not None and now >= report:
            waiting = _waiting_for(status) if status else "the application"
            progress(f"waiting for Ray Serve ({now - start:.0f} s of {timeout_s:.0f} s): {waiting}")
            report = now + every_s
        time.sleep(0.25)


def replica_counts(app: str) -> dict[str, int]:
    """Running replicas per deployment of ``app``."""
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None:
        return {}
    return {name: int(d.replica_states.get("RUNNING", 0)) for name, d in status.deployments.items()}


def undeploy(app: str, wait: bool = True) -> None:
    """Delete the application and release its packages (``wait``: until its replicas have
    finished their requests and stopped)."""
    from ray import serve

    from .packages import retain

    with contextlib.suppress(Exception):
        serve.delete(app, _blocking=wait)
    with contextlib.suppress(Exception):
        retain(app, [])


def serve_on_ray(
    repository: str | Path,
    config: RayConfig,
    defaults: ModelConfig | None = None,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
    detach: bool = False,
    progress: Callable[[str], None] | None = None,
    engine: Mapping[str, str] | None = None,
) -> None:
    """Deploy, then (unless ``detach``) serve until SIGINT/SIGTERM and delete the application.
    SIGHUP deploys the repository again: a rolling update to what is on disk now. ``progress``
    hears what a deploy waits for (and warnings). ``engine``: ``serve --engine`` for every
    replica (``build_app``)."""
    if detach and config.address is None:
        raise UsageError("--detach needs --address: a local Ray stops when this command exits")
    if engine:
        check_engine(engine)
    if config.address is None:  # check before starting Ray: its start takes a while
        from .capacity import check_fits, resolve_cpus

        cpus = float(config.local_cpus or local_cpus())
        models = len(_model_names(repository, defaults))
        if config.check_cpus:
            check_fits(resolve_cpus(config, models, cpus), models, cpus, cpus)
    started = connect(config)
    try:
        # a local Ray of ours is stopped as a whole when the deploy fails (faster than deleting)
        info = deploy(
            repository, config, defaults, progress=progress, cleanup=not started, engine=engine
        )
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
                    info = deploy(repository, config, defaults, progress=progress, engine=engine)
                    if on_ready is not None:
                        on_ready({"event": "updated", **info})
                except Exception as exc:  # keep serving what runs
                    log.error("update failed, still serving the previous deployment: %s", exc)
        if not detach:
            undeploy(config.app_name)
    finally:
        if started:  # our own local Ray: stopping it stops Serve (the app was drained above)
            import ray

            ray.shutdown()


def app_builder(args: dict[str, Any]) -> Any:
    """The application for a Ray Serve config file (``serve deploy``, KubeRay's RayService):

        import_path: modelport.serve.ray.runner:app_builder
        args: {repository: /models, replicas: 2, replica_cpus: 1, max_batch_size: 32, ...}

    ``repository`` is read where Serve builds the application; the replicas get the packages
    through the object store. ``engine``: one spec as ``serve --engine`` takes it (``ort``,
    ``openvino``, ``openvino:bf16``, ``package``) for every model over the serving sections. Other
    keys are RayConfig fields (``autoscale`` as "MIN:MAX") or serving defaults (ModelConfig
    fields)."""
    import dataclasses

    from .config import parse_autoscale

    args = dict(args)
    repository = args.pop("repository", None)
    if not repository:
        raise UsageError("the Ray Serve config's args need 'repository: PATH'")
    engine = engine_override(str(args.pop("engine", None) or "package"))
    ray_fields = {f.name for f in dataclasses.fields(RayConfig)} - {"address"}
    ray_args = {k: args.pop(k) for k in list(args) if k in ray_fields}
    if isinstance(ray_args.get("autoscale"), str):
        ray_args["autoscale"] = parse_autoscale(ray_args["autoscale"])
    config = RayConfig(**ray_args)
    defaults = ModelConfig().merged(args, source="the Ray Serve config's args")
    if config.replica_cpus == "auto":  # shares the whole cluster (its replicas get replaced)
        from .capacity import resolve_cpus

        config = resolve_cpus(config, len(_model_names(repository, defaults)), cluster_cpus()[1])
    app, keys, _ = build_app(repository, config, defaults, engine=engine)
    from .packages import retain

    retain(f"config:{config.app_name}", keys)  # replicas of the previous build have theirs
    return app
