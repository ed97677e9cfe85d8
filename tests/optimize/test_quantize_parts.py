"""The pieces of int8 quantization that quantize() and partial quantization share: the scheme
decision, ORT's dynamic and static quantizers behind one call each, calibration to a cache file,
and the MatMuls smoothing rescales. Public, named and tested here on tiny models."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelport.errors import UsageError
from modelport.optimize.quantize.core import (
    QuantizeConfig,
    QuantTypes,
    calibrate_to_file,
    is_static,
    quantize_dynamic_int8,
    quantize_static_int8,
)
from modelport.optimize.quantize.smoothing import smoothing_targets
from modelport.optimize.report import OptimizeReport
from modelport.package import ModelPackage

TYPES = QuantTypes(
    weight_type="int8",
    activation_type="uint8",
    per_channel=False,
    reduce_range=False,
    matmul_const_only=True,
)
FEED = {"x": np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)}


@pytest.mark.parametrize(
    "config, static",
    [
        (QuantizeConfig.dynamic(), False),
        (QuantizeConfig.static(FEED), True),
        (QuantizeConfig.partial(max_drop=0.01), False),
        (QuantizeConfig.partial(max_drop=0.01, calibration=FEED), True),
        (QuantizeConfig.partial(max_drop=0.01, calibration=FEED, partial_base="dynamic"), False),
        (QuantizeConfig.fp16(), False),
    ],
)
def test_is_static_follows_mode_base_and_calibration(config, static):
    assert is_static(config) is static


def _ops(path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _named(tiny_onnx, tmp_path):
    """tiny_onnx with node names (quantizers exclude nodes by name)."""
    model = onnx.load(str(tiny_onnx))
    for i, n in enumerate(model.graph.node):
        n.name = f"{n.op_type}_{i}"
    path = tmp_path / "named.onnx"
    onnx.save(model, path)
    return path


def test_dynamic_int8_quantizes_the_matmuls_but_not_the_excluded(tiny_onnx, tmp_path):
    pre = _named(tiny_onnx, tmp_path)
    all_int8 = quantize_dynamic_int8(pre, tmp_path / "all.onnx", TYPES, [])
    assert _ops(all_int8)["MatMulInteger"] == 2
    one_float = quantize_dynamic_int8(pre, tmp_path / "one.onnx", TYPES, ["MatMul_3"])
    assert _ops(one_float)["MatMulInteger"] == 1
    assert "MatMul_3" in {n.name for n in onnx.load(str(one_float)).graph.node}


def test_calibration_cache_then_static_int8_is_qdq(tiny_onnx, tmp_path):
    pre = _named(tiny_onnx, tmp_path)
    config = QuantizeConfig.static(FEED)
    report = OptimizeReport(step="quantize", config={})
    cache = calibrate_to_file(pre, tmp_path, config, ModelPackage.load(tiny_onnx), report)
    assert cache.exists()
    assert report.details["calibration"]["samples"] == 32
    out = quantize_static_int8(pre, tmp_path / "static.onnx", TYPES, config, cache, ["MatMul_3"])
    ops = _ops(out)
    assert ops["QuantizeLinear"] >= 1 and ops["DequantizeLinear"] >= 1
    # the excluded MatMul keeps its float weight; the other one reads a dequantized int8 weight
    nodes = {n.name: n for n in onnx.load(str(out)).graph.node}
    assert nodes["MatMul_3"].input[1] == "w2"
    assert nodes["MatMul_0"].input[1] == "w1_DequantizeLinear_Output"


def test_calibration_without_data_is_a_usage_error(tiny_onnx, tmp_path):
    report = OptimizeReport(step="quantize", config={})
    with pytest.raises(UsageError, match="needs calibration data"):
        calibrate_to_file(
            tiny_onnx, tmp_path, QuantizeConfig.dynamic(), ModelPackage.load(tiny_onnx), report
        )


def test_smoothing_targets_are_matmuls_with_a_constant_2d_weight():
    inits = [
        numpy_helper.from_array(np.ones((4, 4), np.float32), "w"),
        numpy_helper.from_array(np.ones((2, 4, 4), np.float32), "w3"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["a"], name="const2d"),
        helper.make_node("MatMul", ["x", "w"], ["b"], name="const2d_again"),
        helper.make_node("MatMul", ["a", "b"], ["c"], name="two_activations"),
        helper.make_node("MatMul", ["c", "w3"], ["d"], name="const3d"),
        helper.make_node("Gemm", ["d", "w"], ["y"], name="gemm"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])],
        inits,
    )
    model = helper.make_model(graph)
    targets = smoothing_targets(model, None)
    assert {t: [n.name for n in ns] for t, ns in targets.items()} == {
        "x": ["const2d", "const2d_again"]
    }
    assert smoothing_targets(model, ["const2d_again"])["x"][0].name == "const2d_again"
    assert smoothing_targets(model, ["gemm"]) == {}
