"""Small KServe V2 servers of our own, for the load generator's tests (not modelport's server).

HTTP: a starlette app under uvicorn in a thread on 127.0.0.1 (port 0). gRPC: a grpc server with
tritonclient's generated servicer base on 127.0.0.1 (port 0). Both compute y = x @ W with numpy,
answer "mlp" (every 5th inference request with 503 / UNAVAILABLE when the model is "flaky") and
record what they received. Both are stopped when their test module ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field

import numpy as np

W = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
METADATA = {
    "name": "mlp",
    "versions": ["1"],
    "platform": "numpy",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
}
FAIL_EVERY = 5  # the "flaky" model answers every 5th request with 503 / UNAVAILABLE


@dataclass
class Seen:
    """What a test server received: one (wire format, input shape, x) per inference request."""

    requests: list[tuple[str, list[int], np.ndarray]] = field(default_factory=list)
    counters: dict[str, itertools.count] = field(default_factory=dict)

    def count(self, model: str) -> int:
        return next(self.counters.setdefault(model, itertools.count()))


@dataclass
class Server:
    url: str
    seen: Seen


def _http_app(seen: Seen):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    async def ready(request: Request) -> Response:
        return Response(status_code=200)

    async def metadata(request: Request) -> Response:
        if request.path_params["model"] not in ("mlp", "flaky", "slow", "chunked"):
            return JSONResponse({"error": "unknown model"}, status_code=404)
        return JSONResponse(METADATA)

    async def infer(request: Request) -> Response:
        model = request.path_params["model"]
        n = seen.count(model)
        if model == "slow":
            await asyncio.sleep(3)
        if model == "flaky" and n % FAIL_EVERY == FAIL_EVERY - 1:
            return JSONResponse({"error": "busy, try again"}, status_code=503)
        body = await request.body()
        hlen = request.headers.get("inference-header-content-length")
        doc = json.loads(body[: int(hlen)] if hlen else body)
        inp = doc["inputs"][0]
        if hlen:
            raw = body[int(hlen) : int(hlen) + inp["parameters"]["binary_data_size"]]
            x = np.frombuffer(raw, dtype="<f4").reshape(inp["shape"])
        else:
            x = np.asarray(inp["data"], dtype=np.float32).reshape(inp["shape"])
        seen.requests.append(("binary" if hlen else "json", inp["shape"], x))
        y = (x @ W).astype(np.float32)
        out = {"name": "y", "datatype": "FP32", "shape": list(y.shape)}
        if (doc.get("parameters") or {}).get("binary_data_output"):
            out["parameters"] = {"binary_data_size": y.nbytes}
            header = json.dumps({"model_name": model, "outputs": [out]}).encode()
            return Response(
                header + y.tobytes(),
                media_type="application/octet-stream",
                headers={"Inference-Header-Content-Length": str(len(header))},
            )
        out["data"] = y.reshape(-1).tolist()
        if model == "chunked":  # Transfer-Encoding: chunked, in two pieces
            data = json.dumps({"model_name": model, "outputs": [out]}).encode()
            return StreamingResponse(iter([data[:10], data[10:]]), media_type="application/json")
        return JSONResponse({"model_name": model, "outputs": [out]})

    return Starlette(
        routes=[
            Route("/v2/health/ready", ready),
            Route("/v2/models/{model}", metadata),
            Route("/v2/models/{model}/infer", infer, methods=["POST"]),
        ]
    )


@contextlib.contextmanager
def running_http_server():
    import uvicorn

    seen = Seen()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(_http_app(seen), log_level="warning", lifespan="off",
                            timeout_graceful_shutdown=1)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the test HTTP server did not start")
            time.sleep(0.02)
        yield Server(f"http://127.0.0.1:{port}", seen)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextlib.contextmanager
def running_grpc_server():
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    seen = Seen()

    class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
        def ServerReady(self, request, context):  # noqa: N802
            return service_pb2.ServerReadyResponse(ready=True)

        def ModelMetadata(self, request, context):  # noqa: N802
            resp = service_pb2.ModelMetadataResponse(name="mlp", platform="numpy")
            for t, dst in (
                (METADATA["inputs"][0], resp.inputs),
                (METADATA["outputs"][0], resp.outputs),
            ):
                m = dst.add()
                m.name, m.datatype = t["name"], t["datatype"]
                m.shape.extend(t["shape"])
            return resp

        def ModelInfer(self, request, context):  # noqa: N802
            n = seen.count(request.model_name)
            if request.model_name == "flaky" and n % FAIL_EVERY == FAIL_EVERY - 1:
                context.abort(grpc.StatusCode.UNAVAILABLE, "busy, try again")
            inp = request.inputs[0]
            x = np.frombuffer(request.raw_input_contents[0], "<f4").reshape(list(inp.shape))
            seen.requests.append(("grpc", list(inp.shape), x))
            y = (x @ W).astype(np.float32)
            resp = service_pb2.ModelInferResponse(model_name=request.model_name)
            out = resp.outputs.add()
            out.name, out.datatype = "y", "FP32"
            out.shape.extend(y.shape)
            resp.raw_output_contents.append(y.tobytes())
            return resp

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield Server(f"grpc://127.0.0.1:{port}", seen)
    finally:
        server.stop(0).wait(5)
