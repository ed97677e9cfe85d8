"""The ``--ray`` options of ``modelport serve``: their declarations, the check that refuses the
options the chosen mode would ignore, and the hand-over to ``modelport.serve.ray`` (which knows
no click: ``RayConfig``, ``serve_on_ray`` and the table of serve options Ray cannot honour)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from .params import REPLICA_CPUS

__all__ = ["RAY_OPTIONS", "check_options", "ray_options", "serve_with_ray"]

RAY_OPTIONS = (
    "ray",
    "address",
    "replicas",
    "autoscale",
    "target_ongoing_requests",
    "replica_cpus",
    "detach",
    "deploy_timeout",
    "no_cpu_check",
)

# read from the environment, these still matter: a token the user believes protects inference
_ENV_MATTERS = {"auth_token"}


def _flag(ctx: click.Context, name: str) -> str:
    for param in ctx.command.params:
        if param.name == name:
            return param.opts[0] if isinstance(param, click.Option) else name
    return "--" + name.replace("_", "-")


def check_options(ctx: click.Context) -> None:
    """UsageError for options given that the mode does not use: single-process options under
    --ray (``NOT_WITH_RAY``), and the --ray options without --ray. Given means on the command
    line (or, for ``_ENV_MATTERS``, from the environment); defaults are fine."""
    from ..errors import UsageError
    from ..serve.ray.config import NOT_WITH_RAY  # imported on use: --help stays fast

    def given(name: str) -> ParameterSource | None:
        source = ctx.get_parameter_source(name)
        if source == ParameterSource.COMMANDLINE:
            return source
        if source == ParameterSource.ENVIRONMENT and name in _ENV_MATTERS:
            return source
        return None

    if ctx.params.get("ray"):
        problems = []
        for name, why in NOT_WITH_RAY.items():
            source = given(name)
            if source is None:
                continue
            flag = _flag(ctx, name)
            if source == ParameterSource.ENVIRONMENT:
                envvar = next(p.envvar for p in ctx.command.params if p.name == name)
                flag = f"{flag} (set by ${envvar})"
            problems.append(f"{flag} cannot be used with --ray ({why})")
        if problems:
            raise UsageError("; ".join(problems))
        return
    ray_only = [_flag(ctx, n) for n in RAY_OPTIONS if n != "ray" and given(n)]
    if ray_only:
        raise UsageError(
            f"{', '.join(ray_only)} only {'applies' if len(ray_only) == 1 else 'apply'} with "
            "--ray (Ray Serve deployments, docs/ray.md); "
            "the single-process server runs one copy of each model: add --ray, or leave "
            f"{'it' if len(ray_only) == 1 else 'them'} out"
        )


def ray_options(command: Callable) -> Callable:
    """Add the --ray options to a click command, and refuse the options that the chosen mode
    would ignore (``check_options``) before the command runs."""
    options = [
        click.option(
            "--ray",
            is_flag=True,
            help="Deploy on Ray Serve instead: one deployment per model, replicas across the "
            "cluster, the same HTTP APIs behind Ray Serve's proxy on --host/--http-port "
            "(docs/ray.md). Needs modelport[ray].",
        ),
        click.option(
            "--address",
            default=None,
            help="With --ray: the cluster (auto, HOST:PORT or ray://HOST:10001). Default: start "
            "a local Ray for this command.",
        ),
        click.option(
            "--replicas", type=int, default=1, show_default=True, help="With --ray: per model."
        ),
        click.option(
            "--autoscale",
            default=None,
            metavar="MIN:MAX",
            help="With --ray: autoscale each model between MIN and MAX replicas.",
        ),
        click.option(
            "--target-ongoing-requests",
            type=float,
            default=2.0,
            show_default=True,
            help="With --autoscale: requests in flight per replica the autoscaler aims for.",
        ),
        click.option(
            "--replica-cpus",
            type=REPLICA_CPUS,
            default="1",
            show_default=True,
            help="With --ray: CPUs each replica reserves (fractions allowed); ONNX Runtime "
            "threads per replica default to this. auto: share the cluster's available CPUs "
            "among all replicas (docs/ray.md).",
        ),
        click.option(
            "--detach",
            is_flag=True,
            help="With --ray --address: deploy (or update) and exit, leaving it running.",
        ),
        click.option(
            "--deploy-timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=300,
            show_default=True,
            metavar="SECONDS",
            help="With --ray: give up when the replicas are not all running after this long.",
        ),
        click.option(
            "--no-cpu-check",
            is_flag=True,
            help="With --ray: deploy even when the replicas need more CPUs than the cluster has "
            "free (for clusters whose autoscaler adds nodes).",
        ),
    ]

    @functools.wraps(command)
    def checked(*args: Any, **kwargs: Any) -> Any:
        check_options(click.get_current_context())
        return command(*args, **kwargs)

    for option in reversed(options):
        checked = option(checked)
    return checked


def serve_with_ray(
    repository: str,
    settings: dict[str, Any],
    defaults: Any,
    http: dict[str, Any],
    refused: dict[str, Any],
    engine: dict[str, str] | None = None,
) -> int:
    """Run ``modelport serve --ray``. ``http``: host, http_port, max_request_bytes and
    shutdown_grace; ``refused``: single-process-only options that were given (an error; the
    options given on the command line were already refused by ``check_options``); ``engine``:
    ``--engine`` for every replica (``{}``: each package's serving section)."""
    import json

    from ..errors import UsageError
    from ..serve.ray.config import RayConfig, parse_autoscale
    from ..serve.ray.runner import serve_on_ray

    given = sorted(k for k, v in refused.items() if v)
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise UsageError(
            f"{flags} cannot be used with --ray: Ray Serve's proxy serves HTTP only, without "
            "TLS, auth or the management API (docs/ray.md says how to add them in front)"
        )
    config = RayConfig(
        address=settings["address"],
        replicas=settings["replicas"],
        autoscale=parse_autoscale(settings["autoscale"]) if settings["autoscale"] else None,
        target_ongoing_requests=settings["target_ongoing_requests"],
        replica_cpus=settings["replica_cpus"],
        host=http["host"],
        http_port=http["http_port"],
        max_request_bytes=http["max_request_bytes"],
        graceful_shutdown_s=http["shutdown_grace"],
        deploy_timeout_s=settings["deploy_timeout"],
        check_cpus=not settings["no_cpu_check"],
        # the proxy's own timeout: after the data plane's (so its 504s win), never unbounded
        request_timeout_s=max(60.0, defaults.timeout_ms / 1000 + 10),
        strict_readiness=click.get_current_context().params.get("strict_readiness", True),
    )

    def on_ready(info: dict) -> None:
        click.echo(json.dumps(info), nl=True)
        for name, why in info.get("failed", {}).items():
            click.echo(f"warning: model '{name}' is not served: {why}", err=True)

    def progress(message: str) -> None:
        click.echo(message, err=True)

    serve_on_ray(
        repository,
        config,
        defaults,
        on_ready,
        detach=settings["detach"],
        progress=progress,
        engine=engine,
    )
    return 0
