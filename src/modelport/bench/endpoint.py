"""A trivial V2 endpoint: answers every request with a canned response, to measure the client.

``python -m modelport.bench.endpoint http|grpc`` listens on 127.0.0.1 (a free port), prints the
port on its first line and serves until stdin closes or it is terminated. ``running_endpoint``
starts one in a child process, so that the endpoint and the load generator do not share a GIL.
The HTTP endpoint is a bare asyncio protocol (it parses only Content-Length); the gRPC endpoint
is a grpc.aio server with tritonclient's generated servicer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator

from ..errors import ModelportError

__all__ = ["running_endpoint", "serve_http", "serve_grpc"]

_RESPONSE = json.dumps(
    {
        "model_name": "trivial",
        "outputs": [{"name": "y", "shape": [1, 1], "datatype": "FP32", "data": [0.0]}],
    }  # fmt: skip
).encode()
_HTTP_OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(_RESPONSE)).encode()
    + b"\r\n\r\n"
    + _RESPONSE
)


class _CannedHttp(asyncio.Protocol):
    """Answers each complete HTTP/1.1 request (headers + Content-Length body) with _HTTP_OK."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            length = 0
            for line in buf[:end].split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            total = end + 4 + length
            if len(buf) < total:
                break
            buf = buf[total:]
            self.transport.write(_HTTP_OK)  # type: ignore[attr-defined]
        self.buffer = buf


async def serve_http() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_CannedHttp, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await _until_stdin_closes()


async def serve_grpc() -> None:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    response = service_pb2.ModelInferResponse(model_name="trivial")
    out = response.outputs.add()
    out.name, out.datatype = "y", "FP32"
    out.shape.extend([1, 1])
    response.raw_output_contents.append(b"\0\0\0\0")

    class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
        async def ServerReady(self, request, context):  # noqa: N802
            return service_pb2.ServerReadyResponse(ready=True)

        async def ModelInfer(self, request, context):  # noqa: N802
            return response

    server = grpc.aio.server()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    try:
        await _until_stdin_closes()
    finally:
        await server.stop(0)


async def _until_stdin_closes() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


@contextlib.contextmanager
def running_endpoint(protocol: str, start_timeout_s: float = 30.0) -> Iterator[int]:
    """Start the trivial endpoint ("http" or "grpc") in a child process; yield its port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelport.bench.endpoint", protocol],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(start_timeout_s)
        if not line or not line[0].strip().isdigit():
            err = proc.stderr.read() if proc.poll() is not None else ""  # type: ignore[union-attr]
            raise ModelportError(f"the trivial {protocol} endpoint did not start: {err[-500:]}")
        yield int(line[0])
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()  # type: ignore[union-attr]
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def main(argv: list[str] | None = None) -> int:
    protocol = (argv if argv is not None else sys.argv[1:] or ["http"])[0]
    if protocol == "grpc":
        asyncio.run(serve_grpc())
    else:
        try:
            import uvloop
        except ImportError:
            uvloop = None
        (uvloop.run if hasattr(uvloop, "run") else asyncio.run)(serve_http())  # type: ignore[union-attr]
    return 0


if __name__ == "__main__":
    sys.exit(main())
