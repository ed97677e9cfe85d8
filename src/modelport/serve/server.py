"""Run the server: HTTP (uvicorn + the V2 app), gRPC (grpc.aio) and the repository poller in one
event loop, sharing one data plane, so requests from both protocols meet in the same batches.

Lifecycle: listen (live, not ready) -> load and warm up every model -> ready -> serve ->
SIGTERM/SIGINT -> not ready, stop accepting, finish requests in flight (up to the grace period),
drain the models -> exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from .config import ServerConfig

__all__ = ["serve", "serve_async", "setup_logging"]

log = logging.getLogger("modelport.serve")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(level: str = "info", json_logs: bool = False) -> None:
    """Log modelport.serve (and uvicorn's errors) to stderr, as text or one JSON object a line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _JsonFormatter()
        if json_logs
        else logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    )
    for name in ("modelport.serve", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        from ..errors import UsageError

        raise UsageError(
            f"cannot listen for HTTP on {host}:{port}: {exc}; pick another --http-port"
        ) from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve_async(
    config: ServerConfig,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT), then shut down gracefully."""
    import uvicorn

    from .dataplane import DataPlane
    from .http.app import HttpSettings, build_app
    from .metrics import Metrics
    from .repository import ModelRepository

    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)  # fails off the main thread: fine in tests

    metrics = Metrics()
    repository = ModelRepository(config.repository, config.model_defaults, metrics)
    plane = DataPlane(repository, metrics)

    sock = _bind(config.host, config.http_port)
    http_port = sock.getsockname()[1]
    app = build_app(plane, HttpSettings(max_request_bytes=config.max_request_bytes))
    uv_config = uvicorn.Config(
        app,
        lifespan="off",
        http="httptools",
        loop="none",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=config.shutdown_grace_s,
    )
    uv_config.load()
    http_server = uvicorn.Server(uv_config)
    http_server.lifespan = uv_config.lifespan_class(uv_config)

    grpc_server, grpc_port = None, None
    if config.grpc_port is not None:
        from .grpc.server import build_grpc_server

        grpc_server, grpc_port = build_grpc_server(
            plane, config.host, config.grpc_port, config.max_request_bytes
        )

    await http_server.startup(sockets=[sock])
    ticker = loop.create_task(http_server.main_loop())
    if grpc_server is not None:
        await grpc_server.start()
    log.info(
        "listening: HTTP %s:%s, gRPC %s; loading models from %s",
        config.host,
        http_port,
        f"{config.host}:{grpc_port}" if grpc_port else "off",
        config.repository,
    )
    poller = None
    try:
        await repository.sync()
        plane.started = True
        index = repository.index()
        log.info("ready: %s", ", ".join(f"{r['name']}/{r['version']} {r['state']}" for r in index))
        if on_ready is not None:
            on_ready({"http_port": http_port, "grpc_port": grpc_port, "models": index})
        if config.poll_s:
            poller = loop.create_task(repository.poll_forever(config.poll_s))
        await stop.wait()
    finally:
        log.info("shutting down: finishing requests in flight")
        plane.draining = True
        if poller is not None:
            poller.cancel()
        http_server.should_exit = True
        await ticker
        stops = [http_server.shutdown(sockets=[sock])]
        if grpc_server is not None:
            stops.append(grpc_server.stop(config.shutdown_grace_s))
        await asyncio.gather(*stops, return_exceptions=True)
        await repository.close()
        log.info("stopped")


def serve(config: ServerConfig, on_ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Run the server in this thread until SIGTERM/SIGINT (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the serve extra on Linux/macOS
        asyncio.run(serve_async(config, on_ready))
    else:
        uvloop.run(serve_async(config, on_ready))
