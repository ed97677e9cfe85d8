"""Static int8 with per-channel weights on an opset-12 model (issue 14): ONNX Runtime's
quantizer writes DequantizeLinear(axis) for per-channel weights, which opset 12 lacks, so the
model is converted to opset 13 first (onnx.version_converter) and the report says so."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from modelport.optimize.quantize import QuantizeConfig, quantize
from modelport.optimize.report import EvalConfig


def _conv12(path):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"], name="relu"),
        ],
        "conv12",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, 16, 16])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def test_per_channel_static_on_opset_12_upgrades_to_13(tmp_path):
    src = _conv12(tmp_path / "conv12.onnx")
    x = np.random.default_rng(1).standard_normal((16, 3, 16, 16)).astype(np.float32)
    cfg = QuantizeConfig.static(
        {"x": x}, per_channel=True, evaluation=EvalConfig(data={"x": x}, measure_latency=False)
    )
    pkg, report = quantize(src, tmp_path / "q", cfg)
    assert report.details["opset_upgrade"] == {"from": 12, "to": 13}
    assert any("opset 12 -> 13" in c for c in report.choices)
    model = pkg.load_onnx()
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {13}
    axes = [
        a.i
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
        for a in n.attribute
        if a.name == "axis"
    ]
    assert axes and set(axes) == {0}  # the weight and bias, per output channel
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    got, want = sess.run(None, {"x": x[:2]})[0], ref.run(None, {"x": x[:2]})[0]
    cos = float(np.sum(got * want) / (np.linalg.norm(got) * np.linalg.norm(want)))
    assert cos > 0.99 and report.metric["drop"] < 0.01


def test_per_tensor_static_keeps_opset_12(tmp_path):
    src = _conv12(tmp_path / "conv12.onnx")
    x = np.random.default_rng(1).standard_normal((8, 3, 16, 16)).astype(np.float32)
    cfg = QuantizeConfig.static(
        {"x": x}, per_channel=False, evaluation=EvalConfig(data={"x": x}, measure_latency=False)
    )
    pkg, report = quantize(src, tmp_path / "q", cfg)
    assert "opset_upgrade" not in report.details
    assert {o.version for o in pkg.load_onnx().opset_import if o.domain in ("", "ai.onnx")} == {12}
