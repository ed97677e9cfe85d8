"""serve runs the engine a package's serving section names (what plan writes), batched, and
answers as that engine does in-process."""

import asyncio
import json
import shutil

import numpy as np
import pytest

from modelport.runtime import EngineConfig, load_engine, native_precisions

from .conftest import running
from .models import mlp_model, write
from .test_http import client, infer

pytest.importorskip("openvino")
pytestmark = pytest.mark.anyio


async def test_openvino_engine_from_the_serving_section(tmp_path):
    repo = tmp_path / "repo"
    pkg = write(mlp_model()[0], repo / "mlp" / "1", "mlp", serving={"engine": "openvino"})
    xs = [np.random.default_rng(i).standard_normal((i + 1, 4)).astype(np.float32) for i in range(6)]
    ref = load_engine(pkg / "model.onnx", EngineConfig(engine="openvino", cache_dir=""))
    async with running(repo, max_queue_delay_ms=20.0) as plane, client(plane) as c:
        cfg = (await c.get("/v2/models/mlp/config")).json()
        assert cfg["parameters"]["engine"]["engine"] == "openvino"
        assert cfg["parameters"]["engine"]["precision"] == "fp32"
        # concurrent requests: merged by the dynamic batcher into one OpenVINO call
        outs = await asyncio.gather(*(infer(c, "mlp", {"x": x}, binary=True) for x in xs))
        for x, out in zip(xs, outs, strict=True):
            np.testing.assert_allclose(out["y"], ref.run({"x": x})["y"], rtol=1e-5, atol=1e-5)
        out = await infer(c, "mlp", {"x": xs[0]}, binary=False)
        np.testing.assert_allclose(out["y"], ref.run({"x": xs[0]})["y"], rtol=1e-5, atol=1e-5)


async def test_unknown_engine_in_the_serving_section_is_a_clear_error(tmp_path):
    from modelport.errors import UsageError
    from modelport.serve.config import ModelConfig

    with pytest.raises(UsageError, match="engine 'tensorrt' is not one of"):
        ModelConfig().merged({"engine": "tensorrt"})
    with pytest.raises(UsageError, match="no bf16 kernels"):
        ModelConfig().merged({"engine": "ort", "precision": "bf16"})


async def test_minilm_served_by_openvino_equals_in_process(minilm_package, tmp_path):
    precision = "bf16" if "bf16" in native_precisions("openvino") else "fp32"
    repo = tmp_path / "repo"
    dest = repo / "minilm" / "1"
    shutil.copytree(minilm_package.path, dest)
    manifest = json.loads((dest / "modelport.json").read_text())
    manifest["serving"] = {"engine": "openvino", "precision": precision, "intra_op_threads": 2}
    (dest / "modelport.json").write_text(json.dumps(manifest))
    ref = load_engine(
        dest / "model.onnx",
        EngineConfig(engine="openvino", precision=precision, threads=2, cache_dir=""),
    )
    rng = np.random.default_rng(0)
    feeds = []
    for _ in range(4):
        ids = rng.integers(1000, 5000, (1, 24)).astype(np.int64)
        feeds.append(
            {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": 0 * ids}
        )
    async with running(repo, max_queue_delay_ms=20.0) as plane, client(plane) as c:
        cfg = (await c.get("/v2/models/minilm/config")).json()
        assert cfg["parameters"]["engine"]["precision"] == precision
        assert cfg["parameters"]["intra_op_threads"] == 2
        # the package has text processing: token ids go to its bare graph, minilm_raw
        outs = await asyncio.gather(*(infer(c, "minilm_raw", f, binary=True) for f in feeds))
    tol = 2e-2 if precision == "bf16" else 1e-4  # a merged batch may take other bf16 kernels
    for f, out in zip(feeds, outs, strict=True):
        want = ref.run(f)["last_hidden_state"]
        np.testing.assert_allclose(out["last_hidden_state"], want, rtol=tol, atol=tol)
