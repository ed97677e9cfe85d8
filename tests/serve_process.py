"""A real ``modelport serve`` process for tests: start it with this checkout's source, wait until
a probe says it is up, and always stop it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_MAIN = "import sys; from modelport.cli import main; sys.exit(main(sys.argv[1:]))"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_ready(port: int) -> Callable[[], bool]:
    """A probe: GET /v2/health/ready answers 200."""

    def probe() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready") as r:
            return r.status == 200

    return probe


@contextlib.contextmanager
def serve_process(
    args: list[str],
    probe: Callable[[], Any],
    timeout_s: float = 120.0,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen]:
    """``modelport serve ARGS`` (in ``cwd``, with ``env`` added to the environment) until
    ``probe()`` returns a true value (OSError = not yet)."""
    env = {
        **os.environ,
        **(env or {}),
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", _MAIN, "serve", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if probe():
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "modelport serve did not come up"
            time.sleep(0.3)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
