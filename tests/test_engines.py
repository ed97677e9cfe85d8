"""The engine layer: both engines behind one interface, answering alike and saying what ran."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.errors import InputError, MissingDependencyError, UsageError
from modelport.runtime import (
    EngineConfig,
    EngineSession,
    load_engine,
    native_precisions,
    run_session,
)

ov = pytest.importorskip("openvino")  # part of modelport[all]; the missing-extra path is tested


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "ov-cache")


@pytest.mark.parametrize("engine", ["ort", "openvino"])
def test_protocol_conformance_on_a_tiny_model(tiny_onnx, engine, cache):
    s = load_engine(tiny_onnx, EngineConfig(engine=engine, threads=1, cache_dir=cache))
    assert isinstance(s, EngineSession)
    assert s.input_names == ["x"] and s.output_names == ["y"]
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    got = s.run({"x": x})
    ref = load_engine(tiny_onnx).run({"x": x})  # ORT fp32
    assert set(got) == {"y"} and got["y"].shape == (5, 3)
    np.testing.assert_allclose(got["y"], ref["y"], rtol=1e-5, atol=1e-5)
    # run_session (what the rest of modelport calls) accepts engine sessions too
    np.testing.assert_allclose(run_session(s, {"x": x})["y"], got["y"])
    info = s.info.to_dict()
    assert info["engine"] == engine and info["device"] == "cpu"
    assert info["precision"] == "fp32" and info["threads"] == 1 and info["version"]


@pytest.mark.parametrize("engine", ["ort", "openvino"])
def test_bad_inputs_are_input_errors(tiny_onnx, engine, cache):
    s = load_engine(tiny_onnx, EngineConfig(engine=engine, cache_dir=cache))
    with pytest.raises(InputError):
        s.run({"nope": np.zeros((1, 4), np.float32)})
    with pytest.raises(InputError):
        s.run({"x": np.zeros((1, 4, 2), np.float32)})


def test_openvino_is_thread_safe(tiny_onnx, cache):
    from concurrent.futures import ThreadPoolExecutor

    s = load_engine(tiny_onnx, EngineConfig(engine="openvino", cache_dir=cache))
    xs = [np.full((i + 1, 4), float(i), np.float32) for i in range(16)]
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda x: s.run({"x": x})["y"], xs))
    ref = load_engine(tiny_onnx)
    for x, y in zip(xs, outs, strict=True):
        np.testing.assert_allclose(y, ref.run({"x": x})["y"], rtol=1e-5, atol=1e-5)


def test_a_run_openvino_refused_recompiles_before_the_next_answer(tiny_onnx, cache):
    """OpenVINO 2026.4's CPU plugin can be left broken by a refused run (PaddleOCR's recognizer:
    NaN for valid inputs afterwards, a fresh infer request too): the session recompiles, and
    every thread's next run uses the new compiled model."""
    from concurrent.futures import ThreadPoolExecutor

    s = load_engine(tiny_onnx, EngineConfig(engine="openvino", cache_dir=cache))
    x = np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32)
    ref = load_engine(tiny_onnx).run({"x": x})["y"]
    with ThreadPoolExecutor(1) as pool:  # a request made by another thread before the failure
        pool.submit(s.run, {"x": x}).result()
        before = s.compiled
        with pytest.raises(InputError, match="rejected"):
            s.run({"x": np.zeros((2, 5), np.float32)})  # rank right, size wrong: OpenVINO refuses
        assert s.compiled is not before
        old_request = pool.submit(lambda: s._local.request).result()
        np.testing.assert_allclose(pool.submit(s.run, {"x": x}).result()["y"], ref, atol=1e-5)
        assert pool.submit(lambda: s._local.request).result() is not old_request
    np.testing.assert_allclose(s.run({"x": x})["y"], ref, rtol=1e-5, atol=1e-5)


def test_openvino_cache_dir_is_filled(tiny_onnx, cache):
    from pathlib import Path

    load_engine(tiny_onnx, EngineConfig(engine="openvino", cache_dir=cache))
    assert any(Path(cache).iterdir())  # the compiled blob a later load takes


def test_configs_refuse_what_cannot_run():
    with pytest.raises(UsageError, match="no bf16 kernels"):
        EngineConfig(engine="ort", precision="bf16")
    with pytest.raises(UsageError, match="not one of"):
        EngineConfig(engine="tensorflow")
    assert EngineConfig(engine="OV").engine == "openvino"


def test_bf16_only_where_native(monkeypatch):
    assert native_precisions("ort") == ("fp32",)
    # a CPU without AMX / AVX512-BF16 flags: no bf16, whatever OpenVINO could emulate
    assert "bf16" not in native_precisions("openvino", cpu_flags=frozenset({"avx2", "avx512f"}))
    amx = frozenset({"avx512f", "amx_bf16", "amx_int8"})
    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        assert "bf16" in native_precisions("openvino", cpu_flags=amx)
    monkeypatch.setenv("MODELPORT_DISABLE_PRECISIONS", "bf16")
    assert native_precisions("openvino", cpu_flags=amx) == ("fp32",)


def test_bf16_refused_when_not_native(tiny_onnx, monkeypatch, cache):
    monkeypatch.setenv("MODELPORT_DISABLE_PRECISIONS", "bf16")
    with pytest.raises(UsageError, match="does not run natively"):
        load_engine(tiny_onnx, EngineConfig(engine="openvino", precision="bf16", cache_dir=cache))


def test_missing_openvino_names_the_extra(tiny_onnx, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'modelport\[openvino\]'"):
        load_engine(tiny_onnx, EngineConfig(engine="openvino", cache_dir=""))


def test_minilm_on_both_engines(minilm_package, tmp_path):
    """fp32 OpenVINO equals ORT within float tolerance; bf16 (where native) stays close and says
    so; both report what ran. fp32 and bf16 share one cache directory: OpenVINO 2026.4 keys its
    blobs without the precision, and bf16 then imported the fp32 blob and failed at run time."""
    ids = np.random.default_rng(3).integers(1000, 20000, (2, 16)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 12:] = 0  # a padded row
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    ref = load_engine(minilm_package.model_path, EngineConfig(threads=2)).run(feed)
    ovs = load_engine(
        minilm_package.model_path,
        EngineConfig(engine="openvino", threads=2, cache_dir=str(tmp_path)),
    )
    got = ovs.run(feed)
    assert ovs.info.precision == "fp32"
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-3, atol=1e-3)
    if "bf16" in native_precisions("openvino"):
        b = load_engine(
            minilm_package.model_path,
            EngineConfig(engine="openvino", precision="bf16", threads=2, cache_dir=str(tmp_path)),
        )
        assert b.info.precision == "bf16"
        out = b.run(feed)["last_hidden_state"].reshape(-1, 384)
        r = ref["last_hidden_state"].reshape(-1, 384)
        cos = (out * r).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(r, axis=1)
        assert cos.min() > 0.99


def test_openvino_keeps_the_onnx_input_names_of_an_fp16_model(tmp_path):
    """An fp16 model that keeps float32 inputs starts with a Cast: OpenVINO merges the Cast's
    output name into the input port, and its "any" name was that one ('x' was refused)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((4, 3)).astype(np.float16), "w"
    )
    nodes = [
        helper.make_node("Cast", ["x"], ["graph_input_cast_0"], to=TensorProto.FLOAT16),
        helper.make_node("MatMul", ["graph_input_cast_0", "w"], ["h"]),
        helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes,
        "fp16",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [w],
    )
    path = tmp_path / "fp16.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    s = load_engine(path, EngineConfig(engine="openvino", cache_dir=""))
    assert s.input_names == ["x"] and s.output_names == ["y"]
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(
        s.run({"x": x})["y"], load_engine(path).run({"x": x})["y"], atol=1e-2
    )
