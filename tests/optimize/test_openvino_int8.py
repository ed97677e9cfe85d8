"""NNCF int8 for OpenVINO: a QDQ model.onnx, the serving section, and the partial search."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("nncf")


@pytest.fixture
def tiny_package(tiny_onnx, tmp_path):
    from modelport.convert import Source, convert

    return convert(Source.onnx(str(tiny_onnx)), tmp_path / "tiny").package


def _feed(n, seed=0):
    return {"x": np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)}


def test_int8_package_is_qdq_onnx_served_by_openvino(tiny_package, tmp_path):
    from modelport.optimize.quantize.openvino_int8 import OpenVINOInt8Config, quantize_openvino
    from modelport.runtime import EngineConfig, load_engine

    res = quantize_openvino(tiny_package, tmp_path / "q", _feed(64), OpenVINOInt8Config())
    pkg = res.package
    ops = {n.op_type for n in pkg.load_onnx().graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # still ONNX, int8 as QDQ
    assert pkg.serving["engine"] == "openvino" and pkg.serving["precision"] == "fp32"
    step = pkg.history[-1]
    assert step["mode"] == "openvino-int8" and step["engine_versions"]["nncf"]
    assert pkg.manifest["files"]["model.onnx"]["sha256"]
    s = load_engine(pkg.model_path, EngineConfig(engine="openvino", cache_dir=""))
    assert s.info.precision.startswith("int8")
    x = {"x": _feed(64)["x"][:8]}  # inside the calibrated ranges
    got, ref = s.run(x)["y"], load_engine(tiny_package.model_path).run(x)["y"]
    # int8 (NNCF clips rare activation outliers): most outputs close, not all
    assert np.median(np.abs(got - ref)) < 0.05 * np.abs(ref).max()


def test_revert_nodes_bypasses_activation_qdq(tiny_package, tmp_path):
    from modelport.optimize.quantize.openvino_int8 import (
        OpenVINOInt8Config,
        _quantized_nodes,
        quantize_openvino,
        revert_nodes,
    )

    q = quantize_openvino(tiny_package, tmp_path / "q", _feed(64), OpenVINOInt8Config())
    model = q.package.load_onnx()
    nodes = _quantized_nodes(model)
    assert nodes  # NNCF quantized the MatMuls' activations
    first = next(iter(nodes))
    reverted = revert_nodes(model, {first})
    assert (
        first not in _quantized_nodes(reverted)
        and len(_quantized_nodes(reverted)) == len(nodes) - 1
    )
    n_q = sum(n.op_type == "QuantizeLinear" for n in model.graph.node)
    assert sum(n.op_type == "QuantizeLinear" for n in reverted.graph.node) < n_q


def test_partial_holds_the_budget_on_the_eval_data(tiny_package, tmp_path):
    from modelport.optimize.quantize.openvino_int8 import OpenVINOInt8Config, quantize_openvino

    full = quantize_openvino(
        tiny_package, tmp_path / "full", _feed(64), OpenVINOInt8Config(), eval_feed=_feed(32, 2)
    )
    assert full.drop is not None and full.kept_float == []
    budget = full.drop / 2
    part = quantize_openvino(
        tiny_package,
        tmp_path / "part",
        _feed(64),
        OpenVINOInt8Config(max_drop=budget),
        eval_feed=_feed(32, 2),
    )
    assert part.kept_float  # something had to stay float
    assert len(part.ranking) == 2  # every quantized MatMul ranked
    if part.drop <= budget:  # reachable: the fewest nodes kept
        assert part.package.history[-1]["kept_float"] == part.kept_float


def test_partial_needs_eval_data(tiny_package, tmp_path):
    from modelport.errors import UsageError
    from modelport.optimize.quantize.openvino_int8 import OpenVINOInt8Config, quantize_openvino

    with pytest.raises(UsageError, match="needs eval data"):
        quantize_openvino(tiny_package, tmp_path / "q", _feed(8), OpenVINOInt8Config(max_drop=0.01))
