"""A real modelport server in a background thread (its own event loop, free ports on loopback),
for the TF Serving / TorchServe / management / auth / TLS tests."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
from pathlib import Path
from typing import Any

from modelport.serve.config import ServerConfig


@contextlib.contextmanager
def running_server(config: ServerConfig, timeout_s: float = 120.0):
    """Yield the server's ready info (ports, models); stop it and wait for it on exit."""
    from modelport.serve.server import serve_async

    ready = threading.Event()
    info: dict[str, Any] = {}
    failure: list[BaseException] = []
    holder: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        holder["loop"] = loop
        stop = asyncio.Event()
        holder["stop"] = stop

        def on_ready(data: dict) -> None:
            info.update(data)
            ready.set()

        try:
            loop.run_until_complete(serve_async(config, on_ready, stop))
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            failure.append(exc)
        finally:
            ready.set()
            loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        if not ready.wait(timeout_s):
            raise RuntimeError("the server did not become ready in time")
        if failure:
            raise failure[0]
        yield info
    finally:
        loop, stop = holder.get("loop"), holder.get("stop")
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        thread.join(60)
        assert not thread.is_alive(), "the server did not stop"


def server_config(repository: Path, **kwargs: Any) -> ServerConfig:
    """A ServerConfig on free loopback ports, gRPC off unless asked, quick shutdown."""
    kwargs.setdefault("grpc_port", None)
    return ServerConfig(
        repository=repository, host="127.0.0.1", http_port=0, shutdown_grace_s=2, **kwargs
    )


def self_signed_cert(directory: Path) -> tuple[Path, Path] | None:
    """(cert.pem, key.pem) for localhost / 127.0.0.1, made with openssl; None without it."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout", str(key), "-out", str(cert),
            ],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return cert, key
