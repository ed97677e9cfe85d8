"""``modelport serve --engine``: one engine for every model over the packages' serving sections
(a model's config.json still wins), shown by /config, answering as that engine does in-process."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest

from modelport.cli import main
from modelport.runtime import EngineConfig, load_engine, native_precisions
from tests.serve.models import mlp_model, write
from tests.serve_process import free_port, http_ready, serve_process

pytest.importorskip("openvino")  # part of modelport[all]


def _get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as r:
        return json.loads(r.read())


def _infer(port: int, model: str, x: np.ndarray) -> np.ndarray:
    body = {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                        "data": x.ravel().tolist()}]}  # fmt: skip
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/models/{model}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req) as r:
        out = json.loads(r.read())["outputs"][0]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


@pytest.mark.slow
def test_a_real_server_runs_the_engine_given_over_the_serving_section(tmp_path):
    precision = "bf16" if "bf16" in native_precisions("openvino") else "fp32"
    spec = "openvino" if precision == "fp32" else "openvino:bf16"
    repo = tmp_path / "repo"
    # "a": its serving section names ONNX Runtime; "pinned": so does its config.json, which wins
    write(mlp_model()[0], repo / "a" / "1", "a", serving={"engine": "ort", "intra_op_threads": 1})
    write(mlp_model(scale=2.0)[0], repo / "pinned" / "1", "pinned")
    (repo / "pinned" / "config.json").write_text(json.dumps({"engine": "ort"}))
    http = free_port()
    args = [str(repo), "--http-port", str(http), "--no-grpc", "--no-management", "--engine", spec]
    xs = [np.random.default_rng(i).standard_normal((i + 1, 4)).astype(np.float32) for i in range(3)]
    with serve_process(args, http_ready(http)):
        config = _get(http, "/v2/models/a/config")
        assert config["backend"] == "openvino"
        ran = config["parameters"]["engine"]
        assert ran["engine"] == "openvino" and ran["precision"] == precision
        assert ran["threads"] == 1  # the serving section's threads still apply
        pinned = _get(http, "/v2/models/pinned/config")["parameters"]["engine"]
        assert pinned["engine"] == "ort"
        got = [_infer(http, "a", x) for x in xs]
        got_pinned = _infer(http, "pinned", xs[0])
    engine = EngineConfig(engine="openvino", precision=precision, threads=1, cache_dir="")
    ref = load_engine(repo / "a" / "1" / "model.onnx", engine)
    for x, g in zip(xs, got, strict=True):
        np.testing.assert_allclose(g, ref.run({"x": x})["y"], rtol=1e-6, atol=1e-6)
    ort = load_engine(repo / "pinned" / "1" / "model.onnx")
    np.testing.assert_allclose(got_pinned, ort.run({"x": xs[0]})["y"], rtol=1e-6, atol=1e-6)


@pytest.mark.anyio
async def test_the_repository_puts_the_engine_between_serving_section_and_config_file(tmp_path):
    from modelport.serve.repository import ModelRepository

    repo = tmp_path / "repo"
    write(mlp_model()[0], repo / "a" / "1", "a", serving={"engine": "ort", "intra_op_threads": 1})
    write(mlp_model()[0], repo / "b" / "1", "b")
    (repo / "b" / "config.json").write_text(json.dumps({"engine": "ort"}))
    r = ModelRepository(repo, engine={"engine": "openvino", "precision": "fp32"})
    await r.sync()
    try:
        a, b = r.models["a"].versions[1].model, r.models["b"].versions[1].model
        assert a.session.info.engine == "openvino" and a.config.threads == 1
        assert b.session.info.engine == "ort"
    finally:
        await r.close()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--engine", "ort:bf16", "--ray"], "ONNX Runtime's CPU provider has no bf16"),
        (["--engine", "ort:bf16"], "ONNX Runtime's CPU provider has no bf16"),
        (["--engine", "ort,openvino"], "this command runs one engine"),
        (["--engine", "tpu"], "engine 'tpu' is not one of"),
    ],
)
def test_serve_refuses_engines_it_cannot_run_with_exit_2(tmp_path, args, words, capsys):
    write(mlp_model()[0], tmp_path / "repo" / "a" / "1", "a")
    assert main(["serve", str(tmp_path / "repo"), *args]) == 2
    assert words in capsys.readouterr().err


def test_server_config_checks_the_engine():
    from modelport.errors import UsageError
    from modelport.serve.config import ServerConfig

    with pytest.raises(UsageError, match="engine 'tpu' is not one of"):
        ServerConfig(repository=".", engine={"engine": "tpu", "precision": "fp32"})
    with pytest.raises(UsageError, match="not \\['threads'\\]"):
        ServerConfig(repository=".", engine={"engine": "ort", "threads": "2"})
