"""A model with processing (images in) gets the request limits a bare graph gets: texts or
images per request (max_request_rows) and bytes per item (max_tensor_elements), refused with 413
naming the limit and the flag, before any decoding; over HTTP V2 and TF Serving REST."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelport.processing.image import encode_png
from modelport.serve.http.app import HttpSettings, build_app
from modelport.serve.http.codec import decode_response, encode_request

from .conftest import running
from .models import _model

pytestmark = pytest.mark.anyio


def image_package(out: Path) -> Path:
    """image (PNG, BYTES [batch]) -> decoded to x FP32 [batch, 1, 4, 4] -> y FP32 [batch, 3]."""
    from onnx import TensorProto, helper, numpy_helper

    from modelport.package import base_manifest, opset_of, write_package
    from modelport.signature import Signature

    w = numpy_helper.from_array(np.ones((16, 3), np.float32), "w")
    model = _model(
        [helper.make_node("Flatten", ["x"], ["f"], axis=1), helper.make_node("MatMul", ["f", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [w],
    )  # fmt: skip
    manifest = base_manifest(
        "img", Signature.from_onnx(model), opset_of(model), {"source_kind": "onnx"}
    )
    manifest["processing"] = {
        "pre": [{"kind": "image", "size": [4, 4], "output": "x", "mode": "L", "scale": 1.0}],
        "post": [],
        "outputs": [],
    }
    write_package(model, manifest, out, force=True)
    return out


def png(side: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_png(rng.integers(0, 256, (side, side), dtype=np.uint8))


def _v2(files: list[bytes]) -> tuple[bytes, dict]:
    """A V2 request with the images as a binary tensor (as tritonclient sends them)."""
    arr = np.empty(len(files), dtype=object)
    arr[:] = files
    return encode_request({"image": arr})


def _tfs(files: list[bytes]) -> dict:
    return {"instances": [{"b64": base64.b64encode(f).decode()} for f in files]}


@pytest.fixture
def spied(monkeypatch):
    """Counts the images the pipeline decodes."""
    from modelport.processing.pipeline import Pipeline

    decoded = []
    real = Pipeline.prepare

    def prepare(self, inputs):
        decoded.append(len(np.asarray(inputs["image"], dtype=object).ravel()))
        return real(self, inputs)

    monkeypatch.setattr(Pipeline, "prepare", prepare)
    return decoded


# V2 answers 413; TF Serving REST maps the status to its gRPC code's HTTP one (429 for
# RESOURCE_EXHAUSTED), as it does for a bare graph's limits
@pytest.mark.parametrize(("api", "status"), [("v2", 413), ("tfserving", 429)])
async def test_images_per_request_and_bytes_per_image_are_limited(tmp_path, spied, api, status):
    pkg = image_package(tmp_path / "img")
    small, big = png(4), png(64)
    assert len(small) < 300 < len(big)
    async with running(pkg, max_request_rows=4, max_tensor_elements=300) as plane:
        model = plane.served_model("img")
        assert (model.row_limit, model.element_limits) == (4, {"image": 300})
        app = build_app(plane, HttpSettings())
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:

            async def post(files):
                if api == "v2":
                    body, headers = _v2(files)
                    return await c.post("/v2/models/img/infer", content=body, headers=headers)
                return await c.post("/v1/models/img:predict", json=_tfs(files))

            r = await post([small] * 4)
            assert r.status_code == 200, r.text
            assert spied == [4]

            r = await post([small] * 5)
            assert r.status_code == status, r.text
            error = r.json()["error"]
            assert "input 'image' has 5 rows" in error and "at most 4 rows per request" in error
            assert "max_request_rows" in error and "--max-request-rows" in error

            r = await post([small, big])
            assert r.status_code == status, r.text
            error = r.json()["error"]
            assert (
                f"item 1 has {len(big)} bytes" in error and "at most 300 per text or image" in error
            )
            assert "max_tensor_elements" in error and "--max-tensor-elements" in error
            assert spied == [4]  # the refused requests were never decoded

            # the bare graph keeps its own limits (4 rows)
            x = np.zeros((5, 1, 4, 4), np.float32)
            raw = {
                "inputs": [
                    {
                        "name": "x",
                        "datatype": "FP32",
                        "shape": list(x.shape),
                        "data": x.ravel().tolist(),
                    }
                ]
            }
            r = await c.post("/v2/models/img_raw/infer", json=raw)
            assert r.status_code == 413 and "--max-request-rows" in r.json()["error"]
        assert plane.metrics.requests[("img", "1", "too_large")] == 2


async def test_default_limits_take_a_normal_request(tmp_path):
    pkg = image_package(tmp_path / "img")
    async with running(pkg) as plane:
        model = plane.served_model("img")
        assert model.row_limit == 1024 and model.element_limits == {"image": 1 << 24}
        app = build_app(plane, HttpSettings())
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            body, headers = _v2([png(64, s) for s in range(8)])
            r = await c.post("/v2/models/img/infer", content=body, headers=headers)
            assert r.status_code == 200, r.text
            hl = r.headers.get("inference-header-content-length")
            assert decode_response(r.content, int(hl) if hl else None)["y"].shape == (8, 3)
