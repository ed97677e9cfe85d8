"""The data plane on its own: timeouts, backpressure, and the layering rule for adapters."""

import asyncio
import subprocess
import sys

import numpy as np
import pytest

from modelport.serve.errors import QueueFullError, RequestTimeoutError
from modelport.serve.types import InferenceRequest, Tensor

from .conftest import running
from .models import _model, write

pytestmark = pytest.mark.anyio


def slow_model(width: int = 512, depth: int = 8):
    """x FP32 [batch, width] through ``depth`` MatMuls: tens of ms at batch 64."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.eye(width, dtype=np.float32), "w")
    names = ["x"] + [f"h{i}" for i in range(depth - 1)] + ["y"]
    nodes = [
        helper.make_node("MatMul", [a, "w"], [b]) for a, b in zip(names, names[1:], strict=False)
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        [w],
    )


def request(rows=64, **params):
    x = np.ones((rows, 512), np.float32)
    return InferenceRequest("slow", [Tensor("x", "FP32", [rows, 512], x)], parameters=params)


async def test_timeout_and_full_queue(tmp_path):
    write(slow_model(), tmp_path / "slow" / "1", "slow")
    async with running(tmp_path, execution="thread", max_batch_size=1, max_queue_size=1) as plane:
        ok = await plane.infer(request())
        np.testing.assert_array_equal(ok.outputs[0].data, np.ones((64, 512)))
        with pytest.raises(RequestTimeoutError, match="timeout"):
            await plane.infer(request(timeout=1000))  # tritonclient's timeout, in microseconds
        results = await asyncio.gather(
            *[plane.infer(request()) for _ in range(3)], return_exceptions=True
        )
        assert any(isinstance(r, QueueFullError) for r in results)
        assert any(not isinstance(r, Exception) for r in results)
        counts = plane.metrics.requests
        assert counts[("slow", "1", "deadline_exceeded")] == 1
        assert counts[("slow", "1", "unavailable")] >= 1


def test_adapters_never_import_onnxruntime():
    code = (
        "import sys\n"
        "import modelport.serve.http.app, modelport.serve.http.v2, modelport.serve.http.codec\n"
        "import modelport.serve.grpc.server, modelport.serve.grpc.codec, modelport.serve.dataplane\n"
        "assert 'onnxruntime' not in sys.modules, 'an adapter imported onnxruntime'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
