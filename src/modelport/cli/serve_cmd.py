"""``modelport serve``."""

from __future__ import annotations

import json

import click


@click.command()
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
    "--version-policy",
    default=None,
    help="latest, latest:N, all or specific:1,3. Default latest:1.",
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
    **model_options,
) -> int:
    """Serve REPOSITORY (REPO/<model>/<version>/ packages, or one package) over KServe V2 HTTP
    and gRPC, tritonclient-compatible. Per-model settings in REPO/<model>/config.json or the
    manifest's "serving" section win over these defaults. Prints one JSON line when ready."""
    from ..serve.config import ModelConfig, ServerConfig
    from ..serve.server import serve as run_server
    from ..serve.server import setup_logging

    overrides = {k: v for k, v in model_options.items() if v is not None}
    if no_warmup:
        overrides["warmup"] = False
    defaults = ModelConfig().merged(overrides, source="the command line")
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
    )
    setup_logging(log_level, log_json)

    def on_ready(info: dict) -> None:
        click.echo(json.dumps({"event": "ready", **info}), nl=True)

    run_server(config, on_ready)
    return 0
