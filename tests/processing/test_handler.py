"""Custom handlers: shipped with their sha256, run only with trust, refused once changed."""

from __future__ import annotations

import hashlib
import textwrap

import httpx
import numpy as np
import pytest

import modelport
from modelport.convert import ConvertConfig, Source, convert
from modelport.errors import PackageError
from modelport.processing.config import ProcessingConfig
from modelport.serve.http.app import HttpSettings, build_app

HANDLER = textwrap.dedent(
    """
    import numpy as np

    class Handler:
        inputs = {"numbers": ("BYTES", [-1])}
        outputs = {"total": ("FP32", [-1])}

        def preprocess(self, inputs):
            # BYTES elements are bytes over every protocol (V2 JSON strings too)
            rows = [[float(v) for v in s.decode().split(",")] for s in inputs["numbers"]]
            return {"x": np.asarray(rows, np.float32)}

        def postprocess(self, outputs):
            return {"total": outputs["y"].sum(axis=1)}
    """
)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def handler_package(tmp_path, tiny_onnx):
    (tmp_path / "sum_handler.py").write_text(HANDLER)
    cfg = ConvertConfig(processing=ProcessingConfig(handler=f"{tmp_path}/sum_handler.py:Handler"))
    res = convert(Source.onnx(str(tiny_onnx)), tmp_path / "pkg", cfg)
    return res.package


def test_handler_is_shipped_with_its_sha256(handler_package):
    ref = handler_package.manifest["processing"]["handler"]
    assert ref["target"] == "sum_handler:Handler" and ref["file"] == "processing/sum_handler.py"
    data = (handler_package.path / ref["file"]).read_bytes()
    assert ref["sha256"] == hashlib.sha256(data).hexdigest()


def test_handler_runs_only_with_trust(handler_package, tiny_onnx):
    from modelport.runtime import make_session

    with pytest.raises(PackageError, match="carries custom code.*--trust"):
        modelport.load(handler_package.path)
    run = modelport.load(handler_package.path, trust=True)
    assert run.signature.input_names == ["numbers"]
    out = run(numbers=["1,2,3,4", "0,0,0,1"])["total"]
    x = np.array([[1, 2, 3, 4], [0, 0, 0, 1]], np.float32)
    y = make_session(tiny_onnx).run(None, {"x": x})[0]
    np.testing.assert_allclose(out, y.sum(axis=1), rtol=1e-5)


def test_a_changed_handler_is_refused_even_with_trust(handler_package):
    f = handler_package.path / "processing" / "sum_handler.py"
    f.write_text(f.read_text() + "\nimport os  # injected\n")
    with pytest.raises(PackageError, match="changed since the package was written"):
        modelport.load(handler_package.path, trust=True)


@pytest.mark.anyio
@pytest.mark.parametrize("trust", [False, True])
async def test_serve_loads_a_handler_only_with_trust(handler_package, trust):
    from modelport.serve.config import ModelConfig
    from modelport.serve.dataplane import DataPlane
    from modelport.serve.repository import ModelRepository

    repo = ModelRepository(handler_package.path, ModelConfig(), trust=trust)
    plane = DataPlane(repo)
    await repo.sync()
    plane.started = True
    try:
        (row,) = repo.index()
        if not trust:
            assert row["state"] == "FAILED" and "--trust" in row["reason"]
            return
        assert row["state"] == "READY"
        app = build_app(plane, HttpSettings())
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            body = {
                "inputs": [
                    {"name": "numbers", "datatype": "BYTES", "shape": [1], "data": ["1,2,3,4"]}
                ]
            }
            r = await c.post("/v2/models/pkg/infer", json=body)
            assert r.status_code == 200, r.text
            (out,) = r.json()["outputs"]
            assert out["name"] == "total"
            want = modelport.load(handler_package.path, trust=True)(numbers=[b"1,2,3,4"])
            np.testing.assert_allclose(out["data"], want["total"], rtol=1e-5)
    finally:
        await repo.close()


def test_serve_cli_passes_trust(monkeypatch, handler_package):
    """``modelport serve --trust`` reaches the repository (the only way to grant it)."""
    from modelport.cli import main
    from modelport.serve import server

    seen = {}

    def fake_serve(config, on_ready=None):
        seen["trust"] = config.trust

    monkeypatch.setattr(server, "serve", fake_serve)
    assert main(["serve", str(handler_package.path), "--trust", "--no-management"]) == 0
    assert seen == {"trust": True}
    assert main(["serve", str(handler_package.path), "--no-management"]) == 0
    assert seen == {"trust": False}
