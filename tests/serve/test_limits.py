"""Memory bounds (issue 13, item 2): rows and elements per request, checked before the run."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.serve.config import ModelConfig
from modelport.serve.errors import RequestTooLargeError
from modelport.serve.model import request_limits
from modelport.serve.types import InferenceRequest, Tensor
from modelport.signature import Signature, TensorSpec

from .conftest import running

pytestmark = pytest.mark.anyio


def _sig(*inputs):
    return Signature(inputs=[TensorSpec(n, "float32", s) for n, s in inputs], outputs=[])


def test_limits_are_derived_from_the_model_and_overridable():
    sig = _sig(("x", ("batch", 64)), ("p", (3, 4)), ("t", ("batch", "seq")))
    rows, elements = request_limits(sig, ModelConfig())
    assert rows == 1024
    assert elements == {"x": 1 << 24, "p": 1 << 24, "t": 1 << 24}
    rows, elements = request_limits(_sig(("img", ("batch", 3, 224, 224))), ModelConfig())
    assert elements["img"] == 1024 * 3 * 224 * 224  # a full allowed batch of this input
    rows, elements = request_limits(
        sig, ModelConfig(max_request_rows=10, max_tensor_elements=500, max_batch_size=4)
    )
    assert rows == 10 and set(elements.values()) == {500}
    assert request_limits(sig, ModelConfig(max_batch_size=4096))[0] == 4096


@pytest.mark.parametrize("bad", [{"max_request_rows": -1}, {"max_tensor_elements": -5}])
def test_negative_limits_are_refused(bad):
    from modelport.errors import UsageError

    with pytest.raises(UsageError, match=next(iter(bad))):
        ModelConfig(**bad)


async def test_requests_over_the_limits_are_refused_before_they_run(repo):
    async with running(repo, max_request_rows=16, max_tensor_elements=40) as plane:
        vs = plane.repository.get("mlp")
        calls = []
        real = vs.batcher._run
        vs.batcher._run = lambda feed: calls.append(1) or real(feed)

        def req(rows):
            x = np.zeros((rows, 4), np.float32)
            return InferenceRequest("mlp", [Tensor("x", "FP32", list(x.shape), x)])

        out = await plane.infer(req(10))  # 40 elements, 10 rows: allowed
        assert out.outputs[0].data.shape == (10, 3)
        with pytest.raises(RequestTooLargeError, match="17 rows.*at most 16 rows"):
            await plane.infer(req(17))
        with pytest.raises(RequestTooLargeError, match="44 elements.*at most 40"):
            await plane.infer(req(11))
        assert len(calls) == 1  # the refused requests never reached ONNX Runtime
