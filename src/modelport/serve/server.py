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
from dataclasses import dataclass
from pathlib import Path
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


class _TextFormatter(logging.Formatter):
    """One line per record: control characters in the message (client strings such as request
    ids or paths) are escaped so that no client can forge a log line; tracebacks stay as is."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        from .auth import log_safe

        record.message = log_safe(record.message, limit=4000)
        return super().formatMessage(record)


def setup_logging(level: str = "info", json_logs: bool = False) -> None:
    """Log modelport.serve (and uvicorn's errors) to stderr, as text or one JSON object a line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _JsonFormatter() if json_logs else _TextFormatter("%(asctime)s %(levelname)s %(message)s")
    )
    for name in ("modelport.serve", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


def _bind(host: str, port: int, flag: str = "--http-port") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        from ..errors import UsageError

        raise UsageError(
            f"cannot listen for HTTP on {host}:{port}: {exc}; pick another {flag}"
        ) from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _uvicorn(app: Any, config: ServerConfig) -> Any:
    """A uvicorn server for ``app`` (started on our sockets and loop, TLS when configured)."""
    import uvicorn

    from .http.protocol import ConnectionLimits, guarded_protocol

    limits = ConnectionLimits(
        header_timeout_s=config.header_timeout_s,
        body_timeout_s=config.body_timeout_s,
        max_connections=_connection_cap(config.max_connections),
    )
    tls = config.tls
    uv_config = uvicorn.Config(
        app,
        lifespan="off",
        http=guarded_protocol(limits),
        timeout_keep_alive=config.keep_alive_timeout_s,
        ws="none",  # no WebSocket API: upgrade requests are plain HTTP requests (404)
        loop="none",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,  # client addresses are the peers' (management is loopback-only)
        timeout_graceful_shutdown=config.shutdown_grace_s,
        ssl_certfile=str(tls.certfile) if tls else None,
        ssl_keyfile=str(tls.keyfile) if tls else None,
    )
    uv_config.load()
    server = uvicorn.Server(uv_config)
    server.lifespan = uv_config.lifespan_class(uv_config)
    return server


def _connection_cap(wanted: int) -> int:
    """``wanted``, after raising the open-file limit towards it; kept below that limit (with
    room for model files, gRPC and the management port) when it cannot be raised."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + 256
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft - 256 < wanted:
        cap = max(16, soft - 256)
        log.warning(
            "max_connections %d is above what the open-file limit (%d) allows; using %d "
            "(raise it with ulimit -n)",
            wanted,
            soft,
            cap,
        )
        return cap
    return wanted


def _grpc_security(config: ServerConfig, control_token: str | None = None) -> tuple[Any, tuple]:
    """(grpc server credentials or None, interceptors) from the TLS and auth settings."""
    credentials = None
    if config.tls is not None:
        import grpc

        credentials = grpc.ssl_server_credentials(
            [(config.tls.keyfile.read_bytes(), config.tls.certfile.read_bytes())]
        )
    interceptors: tuple = ()
    if config.auth_token:
        from .auth import GRPC_CONTROL_PREFIX, grpc_token_interceptor

        alternates = {GRPC_CONTROL_PREFIX: control_token} if control_token else None
        interceptors = (grpc_token_interceptor(config.auth_token, alternates=alternates),)
    return credentials, interceptors


async def serve_async(
    config: ServerConfig,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT), then shut down gracefully."""
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
    repository = ModelRepository(
        config.repository, config.model_defaults, metrics, trust=config.trust, engine=config.engine
    )
    if repository.model_folder:  # REPO/<model> given: one model, its versions (TF Serving's way)
        log.info(
            "serving %s as one model, '%s', with its numbered versions (a model folder); give "
            "the directory above it to serve a repository of models",
            config.repository,
            next(iter(repository.on_disk()), config.repository.name),
        )
    plane = DataPlane(repository, metrics)
    plane.strict_readiness = config.strict_readiness

    mgmt = _management(plane, config) if config.management is not None else None
    sock = _bind(config.host, config.http_port)
    http_port = sock.getsockname()[1]
    # The V2 repository routes on this port (load/unload) need the management token too.
    app = build_app(
        plane,
        HttpSettings(
            max_request_bytes=config.max_request_bytes,
            control_token=mgmt.token if mgmt is not None else None,
        ),
    )
    if config.auth_token:
        from .auth import HTTP_CONTROL_PREFIX, require_token

        app = require_token(
            app,
            config.auth_token,
            what="inference",
            alternates={HTTP_CONTROL_PREFIX: mgmt.token} if mgmt is not None else None,
        )
    http_server = _uvicorn(app, config)
    credentials, interceptors = _grpc_security(config, mgmt.token if mgmt is not None else None)

    grpc_server, grpc_port = None, None
    if config.grpc_port is not None:
        from .grpc.server import build_grpc_server

        grpc_server, grpc_port = build_grpc_server(
            plane,
            config.host,
            config.grpc_port,
            config.max_request_bytes,
            credentials,
            interceptors,
            control_token=mgmt.token if mgmt is not None else None,
            limits=config.grpc_limits,
        )

    await http_server.startup(sockets=[sock])
    ticker = loop.create_task(http_server.main_loop())
    tf_server, tf_port = None, None
    if config.tfserving_grpc_port is not None:  # after HTTP: its stubs import tensorflow (~7 s)
        from .grpc.tfserving import build_tfserving_server

        tf_server, tf_port = await build_tfserving_server(
            plane,
            config.host,
            config.tfserving_grpc_port,
            config.max_request_bytes,
            credentials,
            interceptors,
            limits=config.grpc_limits,
        )
    for server in (grpc_server, tf_server):
        if server is not None:
            await server.start()
    if mgmt is not None:
        await mgmt.server.startup(sockets=[mgmt.sock])
        mgmt.ticker = loop.create_task(mgmt.server.main_loop())
    log.info(
        "listening: HTTP %s:%s, gRPC %s, TF Serving gRPC %s, management %s%s%s; loading models "
        "from %s",
        config.host,
        http_port,
        f"{config.host}:{grpc_port}" if grpc_port else "off",
        f"{config.host}:{tf_port}" if tf_port else "off",
        f"{config.management.host}:{mgmt.port}" if mgmt else "off",
        f" (token in {mgmt.token_file})" if mgmt and mgmt.token_file else "",
        " over TLS" if config.tls else "",
        config.repository,
    )
    poller = None
    try:
        await repository.sync()
        plane.started = True
        index = repository.index()
        log.info("ready: %s", ", ".join(f"{r['name']}/{r['version']} {r['state']}" for r in index))
        if on_ready is not None:
            on_ready(
                {
                    "http_port": http_port,
                    "grpc_port": grpc_port,
                    "tfserving_grpc_port": tf_port,
                    "management_port": mgmt.port if mgmt else None,
                    "management_token_file": str(mgmt.token_file or "") if mgmt else None,
                    "models": index,
                }
            )
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
        for server in (grpc_server, tf_server):
            if server is not None:
                stops.append(server.stop(config.shutdown_grace_s))
        if mgmt is not None and mgmt.ticker is not None:
            mgmt.server.should_exit = True
            await mgmt.ticker
            stops.append(mgmt.server.shutdown(sockets=[mgmt.sock]))
        await asyncio.gather(*stops, return_exceptions=True)
        if mgmt is not None and mgmt.token_file is not None:
            with contextlib.suppress(OSError):
                mgmt.token_file.unlink()  # the token dies with the server
        await repository.close()
        from .offload import shutdown as stop_decoders

        stop_decoders()
        log.info("stopped")


@dataclass
class _Management:
    """The management API's listening socket, uvicorn server and token file (None when the
    token was given by config)."""

    sock: socket.socket
    port: int
    token_file: Path | None
    server: Any
    token: str = ""
    ticker: asyncio.Task | None = None


def _management(plane: Any, config: ServerConfig) -> _Management:
    """The management API, bound and with its token written, not started yet."""
    import ipaddress

    from .management import build_management_app, management_token

    mc = config.management
    sock = _bind(mc.host, mc.port, "--management-port")
    port = sock.getsockname()[1]
    try:
        token, token_file = management_token(mc, port)
    except Exception:
        sock.close()
        raise
    with contextlib.suppress(ValueError):
        if not ipaddress.ip_address(mc.host).is_loopback and config.tls is None:
            log.warning(
                "the management API listens on %s without TLS: its token crosses the network "
                "in clear text; give --tls-cert/--tls-key or keep it on 127.0.0.1",
                mc.host,
            )
    app = build_management_app(plane, mc, token, config.max_request_bytes)
    server = _uvicorn(app, config)
    return _Management(sock, port, token_file, server, token)


def serve(config: ServerConfig, on_ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Run the server in this thread until SIGTERM/SIGINT (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the serve extra on Linux/macOS
        asyncio.run(serve_async(config, on_ready))
    else:
        uvloop.run(serve_async(config, on_ready))
