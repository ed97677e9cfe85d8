"""``modelport serve``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from ..serve.config import GRPC_LIMIT_RANGES, GrpcLimits
from .options import engine_option
from .serve_ray import RAY_OPTIONS, ray_options

LAYOUT = (
    "REPO/<model>/<version>/ (e.g. models/digits/1/model.onnx), one model's folder "
    "(models/digits, served as model 'digits' with its versions), or one package directory"
)


def refuse_empty_repository(repository: str) -> None:
    """Refuse (exit 2) a repository in which no model would be found, saying what was found
    instead and what to do: serving zero models is never what was meant."""
    from pathlib import Path

    from ..errors import UsageError
    from ..serve.repository import ModelRepository

    root = Path(repository)
    if ModelRepository(root).on_disk():
        return
    why = f"no model found in '{root}': serve expects {LAYOUT}"
    later = ". To start with no model and add models while it runs, give --poll SECONDS"
    if root.is_file():
        raise UsageError(f"'{root}' is not an .onnx file or package: serve expects {LAYOUT}")
    children = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    packages = [p for p in children if (p / "model.onnx").is_file()]
    onnx_files = [p for p in children if p.suffix == ".onnx" and p.is_file()]
    if packages:
        names = ", ".join(p.name for p in packages[:3]) + (", ..." if len(packages) > 3 else "")
        first = packages[0]
        raise UsageError(
            f"{why}. '{root}' holds packages ({names}), not model folders with numbered "
            f"versions. Serve one with: modelport serve {first}; or build a repository with: "
            f"modelport package {first} --target repo -o models (then modelport serve models)"
        )
    if onnx_files:
        raise UsageError(
            f"{why}. '{root}' holds .onnx files ({onnx_files[0].name}, ...). Serve one with: "
            f"modelport serve {onnx_files[0]}; or put each in <model>/1/model.onnx"
        )
    dirs = [p for p in children if p.is_dir()]
    if dirs:
        raise UsageError(
            f"{why}. '{dirs[0]}' has no numbered version folder: move its package into "
            f"{dirs[0]}/1/{later}"
        )
    raise UsageError(f"{why}. '{root}' is empty{later}")


# GrpcLimits field -> (flag, help): the gRPC ports' counterparts of the HTTP connection flags
# (seconds for times, as --header-timeout); the parameter is "grpc_" + the field
GRPC_LIMIT_FLAGS: dict[str, tuple[str, str]] = {
    "max_concurrent_rpcs": (
        "--grpc-max-concurrent-rpcs",
        "gRPC calls in progress per gRPC port; a call beyond it is refused at once "
        "(RESOURCE_EXHAUSTED).",
    ),
    "max_streams_per_connection": (
        "--grpc-max-streams-per-connection",
        "Calls one gRPC connection may have open at once (HTTP/2 max concurrent streams); a "
        "client's further calls wait on its side.",
    ),
    "handshake_timeout_s": (
        "--grpc-handshake-timeout",
        "Seconds a new gRPC connection has to finish its (TLS and) HTTP/2 handshake.",
    ),
    "idle_timeout_s": (
        "--grpc-idle-timeout",
        "Seconds a gRPC connection without calls stays open (then GOAWAY; clients reconnect).",
    ),
    "max_connection_age_s": (
        "--grpc-max-connection-age",
        "Seconds after which a gRPC connection is asked to reconnect (0 = never).",
    ),
    "age_grace_s": (
        "--grpc-max-connection-age-grace",
        "Seconds the calls in flight get when a connection reaches --grpc-max-connection-age.",
    ),
    "keepalive_time_s": (
        "--grpc-keepalive-time",
        "Seconds of quiet after which the server pings a gRPC connection.",
    ),
    "keepalive_timeout_s": (
        "--grpc-keepalive-timeout",
        "Seconds a ping has to be answered before the gRPC connection is closed.",
    ),
}


class _Count(click.IntRange):
    name = "integer"  # click's IntRange says "'1.5' is not a valid integer range"


class _Seconds(click.FloatRange):
    """click.FloatRange that also refuses nan (which compares false with both bounds)."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return number


def grpc_limit_options(command: Callable) -> Callable:
    """The --grpc-* limit options (``GRPC_LIMIT_FLAGS``): defaults and ranges from GrpcLimits
    (out of range: exit 2 naming the flag, the value and the range)."""
    for field, (flag, help) in reversed(GRPC_LIMIT_FLAGS.items()):
        kind, low, high = GRPC_LIMIT_RANGES[field]
        command = click.option(
            flag,
            "grpc_" + field,
            type=_Count(int(low), int(high)) if kind == "int" else _Seconds(low, high),
            metavar="INTEGER" if kind == "int" else "SECONDS",
            default=getattr(GrpcLimits, field),
            show_default=True,
            help=help,
        )(command)
    return command


def grpc_limits(
    ctx: click.Context, values: dict[str, Any], no_grpc: bool, tfserving_grpc_port: int | None
) -> GrpcLimits:
    """GrpcLimits from the --grpc-* values; UsageError for limits given with no gRPC port."""
    from ..errors import UsageError

    given = [
        GRPC_LIMIT_FLAGS[f][0]
        for f in GRPC_LIMIT_FLAGS
        if ctx.get_parameter_source("grpc_" + f) is ParameterSource.COMMANDLINE
    ]
    if given and no_grpc and tfserving_grpc_port is None:
        raise UsageError(
            f"{', '.join(given)} {'sets a limit' if len(given) == 1 else 'set limits'} of the "
            "gRPC ports, and --no-grpc turns gRPC off (there is no --tfserving-grpc-port "
            "either): leave out --no-grpc, or the gRPC limits"
        )
    return GrpcLimits(**values)


@click.command()
@ray_options
@click.argument("repository", type=click.Path(exists=True))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0 for all interfaces). Management calls are "
    "accepted from loopback peers only.",
)
@click.option(
    "--http-port", type=int, default=8000, show_default=True, help="HTTP port (0 = any free port)."
)
@click.option(
    "--grpc-port", type=int, default=8001, show_default=True, help="gRPC port (0 = any free port)."
)
@click.option("--no-grpc", is_flag=True, help="Serve HTTP only.")
@click.option(
    "--poll",
    "poll_s",
    type=float,
    default=None,
    help="Re-scan the repository every SECONDS: new versions are loaded, warmed up and "
    "swapped in; removed ones drained.",
)
@click.option(
    "--max-batch-size",
    type=int,
    default=None,
    help="Dynamic batching: most rows per call (1 = off). Default 32.",
)
@click.option(
    "--max-queue-delay-ms",
    type=float,
    default=None,
    help="How long a request may wait to fill a batch. Default 0.",
)
@click.option(
    "--max-queue-size",
    type=int,
    default=None,
    help="Requests that may wait per model before 503. Default 512.",
)
@click.option(
    "--instances",
    type=int,
    default=None,
    help="Concurrent ONNX Runtime calls per model. Default 1.",
)
@click.option(
    "--threads",
    "intra_op_threads",
    type=int,
    default=None,
    help="ONNX Runtime threads per call (default: cores / instances).",
)
@click.option(
    "--execution",
    type=click.Choice(["auto", "inline", "thread"]),
    default=None,
    help="Run calls on the event loop (inline), in threads, or decide by a warm-up timing (auto, default).",
)
@click.option("--timeout-ms", type=float, default=None, help="Per-request timeout. Default 30000.")
@click.option(
    "--max-request-rows",
    type=click.IntRange(min=0),
    default=None,
    help="Most rows one request may send (413 above). Default 0 = max(1024, max batch size).",
)
@click.option(
    "--max-tensor-elements",
    type=click.IntRange(min=0),
    default=None,
    help="Most elements in one input tensor (413 above). Default 0 = max(2**24, rows x "
    "elements per row).",
)
@click.option(
    "--version-policy",
    default=None,
    help="latest, latest:N, all or specific:1,3. Default latest:1.",
)
@engine_option(
    "The engine every model runs on, over the packages' serving sections (a model's config.json "
    "still wins); /v2/models/NAME/config shows what ran. Default: each package's serving "
    "section (ONNX Runtime fp32 when it names none).",
    single=True,
)
@click.option("--no-warmup", is_flag=True, help="Mark models ready without a warm-up run.")
@click.option(
    "--max-request-mb",
    type=float,
    default=256,
    show_default=True,
    help="Largest HTTP body / gRPC message accepted.",
)
@click.option(
    "--header-timeout",
    "header_timeout_s",
    type=float,
    default=30,
    show_default=True,
    help="Seconds an HTTP connection has to send a request's complete headers.",
)
@click.option(
    "--body-timeout",
    "body_timeout_s",
    type=float,
    default=60,
    show_default=True,
    help="Longest pause (seconds) between chunks of an HTTP request body.",
)
@click.option(
    "--keep-alive-timeout",
    "keep_alive_timeout_s",
    type=float,
    default=5,
    show_default=True,
    help="Seconds an idle keep-alive HTTP connection stays open.",
)
@click.option(
    "--max-connections",
    type=int,
    default=2048,
    show_default=True,
    help="Open HTTP connections per port; beyond it the longest-idle one is closed.",
)
@grpc_limit_options
@click.option(
    "--strict-readiness/--no-strict-readiness",
    default=True,
    show_default=True,
    help="Ready only when every model that should be loaded is (and at least one is).",
)
@click.option(
    "--shutdown-grace",
    type=float,
    default=30,
    show_default=True,
    help="Seconds SIGTERM waits for requests in flight.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option("--log-json", is_flag=True, help="Log one JSON object per line.")
@click.option(
    "--tfserving-grpc-port",
    type=int,
    default=None,
    help="Serve TF Serving's gRPC API (PredictionService, ModelService) on this port; "
    "TF Serving uses 8500. Off by default: it needs tensorflow-serving-api (imports tensorflow).",
)
@click.option(
    "--management-port",
    type=int,
    default=8081,
    show_default=True,
    help="Port of the management API (TorchServe-compatible + V2 repository).",
)
@click.option(
    "--management-host",
    default="127.0.0.1",
    show_default=True,
    help="Address of the management API (keep it on loopback unless TLS is on).",
)
@click.option("--no-management", is_flag=True, help="Do not start the management API.")
@click.option(
    "--trust",
    is_flag=True,
    help="Run custom processing handlers shipped in packages (Python code; packages whose "
    "handler changed since packaging are refused even so).",
)
@click.option(
    "--management-token",
    envvar="MODELPORT_MANAGEMENT_TOKEN",
    default=None,
    help="Bearer token for the management API (or $MODELPORT_MANAGEMENT_TOKEN). Default: "
    "generate one at start and write it to --management-token-file.",
)
@click.option(
    "--management-token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where a generated management token is written, mode 0600 "
    "[default: ~/.modelport/management-PORT.token].",
)
@click.option(
    "--allow-url-host",
    "allow_url_hosts",
    multiple=True,
    help="A host that models may be registered from by URL (repeatable). Default: none, so "
    "registering from URLs is off.",
)
@click.option(
    "--auth-token",
    envvar="MODELPORT_AUTH_TOKEN",
    default=None,
    help="Require 'Authorization: Bearer TOKEN' on inference calls, HTTP and gRPC (or "
    "$MODELPORT_AUTH_TOKEN). Health checks stay open. Default: no auth.",
)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM certificate: serve HTTP, gRPC and management over TLS.")  # fmt: skip
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM private key of --tls-cert.")  # fmt: skip
def serve(
    repository: str,
    host: str,
    http_port: int,
    grpc_port: int,
    no_grpc: bool,
    poll_s: float | None,
    no_warmup: bool,
    max_request_mb: float,
    shutdown_grace: float,
    log_level: str,
    log_json: bool,
    tfserving_grpc_port: int | None,
    management_port: int,
    management_host: str,
    no_management: bool,
    management_token: str | None,
    management_token_file: str | None,
    allow_url_hosts: tuple[str, ...],
    auth_token: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    trust: bool,
    header_timeout_s: float,
    body_timeout_s: float,
    keep_alive_timeout_s: float,
    max_connections: int,
    strict_readiness: bool,
    **model_options,
) -> int:
    """Serve REPOSITORY (REPO/<model>/<version>/ packages, one model's folder REPO/<model> as
    that model with its versions, or one package) over KServe V2 HTTP
    and gRPC, tritonclient-compatible, plus TF Serving REST and TorchServe's inference API on the
    HTTP port and a management API on its own port (docs/serve-compat.md). Per-model settings in REPO/<model>/config.json or the
    manifest's "serving" section win over these defaults. Prints one JSON line when ready."""
    from ..errors import UsageError
    from ..serve.config import ManagementConfig, ModelConfig, ServerConfig, TLSConfig
    from ..serve.server import serve as run_server
    from ..serve.server import setup_logging

    if not (math.isfinite(max_request_mb) and 0 < max_request_mb <= 1 << 20):
        raise UsageError(f"--max-request-mb must be a positive number of MB, got {max_request_mb}")
    if poll_s is None:
        refuse_empty_repository(repository)
    ray_settings = {k: model_options.pop(k) for k in RAY_OPTIONS}
    grpc_values = {f: model_options.pop("grpc_" + f) for f in GRPC_LIMIT_FLAGS}
    engines = model_options.pop("engines") or ()
    engine: dict[str, str] = {}
    if engines and engines[0] != "package":  # package: each serving section, the default
        name, _, precision = engines[0].partition(":")
        engine = {"engine": name, "precision": precision or "fp32"}
    overrides = {k: v for k, v in model_options.items() if v is not None}
    if no_warmup:
        overrides["warmup"] = False
    defaults = ModelConfig().merged(overrides, source="the command line")
    if ray_settings["ray"]:  # Ray Serve deployments instead of this process (docs/ray.md)
        from .serve_ray import serve_with_ray

        setup_logging(log_level, log_json)
        http = {"host": host, "http_port": http_port, "shutdown_grace": shutdown_grace}
        http["max_request_bytes"] = int(max_request_mb * 1024 * 1024)
        refused = {"tls_cert": tls_cert, "auth_token": auth_token, "poll": poll_s}
        refused["tfserving_grpc_port"] = tfserving_grpc_port
        return serve_with_ray(repository, ray_settings, defaults, http, refused, engine)
    limits = grpc_limits(click.get_current_context(), grpc_values, no_grpc, tfserving_grpc_port)
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("give both --tls-cert and --tls-key, or neither")
    management = None
    if not no_management:
        management = ManagementConfig(
            host=management_host,
            port=management_port,
            token=management_token,
            token_file=management_token_file,
            allow_url_hosts=allow_url_hosts,
        )
    config = ServerConfig(
        repository=repository,
        host=host,
        http_port=http_port,
        grpc_port=None if no_grpc else grpc_port,
        poll_s=poll_s,
        model_defaults=defaults,
        max_request_bytes=int(max_request_mb * 1024 * 1024),
        shutdown_grace_s=shutdown_grace,
        log_json=log_json,
        auth_token=auth_token,
        tls=TLSConfig(tls_cert, tls_key) if tls_cert else None,
        tfserving_grpc_port=tfserving_grpc_port,
        management=management,
        trust=trust,
        header_timeout_s=header_timeout_s,
        body_timeout_s=body_timeout_s,
        keep_alive_timeout_s=keep_alive_timeout_s,
        max_connections=max_connections,
        strict_readiness=strict_readiness,
        grpc_limits=limits,
        engine=engine,
    )
    setup_logging(log_level, log_json)

    def on_ready(info: dict) -> None:
        import json

        click.echo(json.dumps({"event": "ready", **info}), nl=True)

    run_server(config, on_ready)
    return 0
