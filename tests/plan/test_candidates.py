"""Which candidates make sense: the model's profile, the target and the inputs given."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelport.plan.candidates import (
    SessionSetting,
    generate_candidates,
    profile_model,
    session_settings,
)


def _model(nodes, inputs, outputs, inits):
    g = helper.make_graph(nodes, "m", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _w(name, *shape):
    return numpy_helper.from_array(np.ones(shape, np.float32), name)


def attention_model():
    """x[b,s,16] -> q,k projections -> softmax(q k^T) v: a one-head self-attention."""
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("MatMul", ["x", "wk"], ["k"]),
        helper.make_node("MatMul", ["x", "wv"], ["v"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"]),
        helper.make_node("Div", ["s", "scale"], ["s2"]),
        helper.make_node("Softmax", ["s2"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["y"]),
    ]
    scale = numpy_helper.from_array(np.array(4.0, np.float32), "scale")
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", f, ["b", "s", 16])],
        [helper.make_tensor_value_info("y", f, ["b", "s", 16])],
        [_w("wq", 16, 16), _w("wk", 16, 16), _w("wv", 16, 16), scale],
    )


def cnn_model():
    """x[b,1,16,16] -> Conv 8x5x5 -> Flatten -> Gemm(2048 -> 10): more Gemm weights than Conv
    weights, but most of the compute in the Conv."""
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("Conv", ["x", "cw"], ["c"], pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["fl"]),
        helper.make_node("Gemm", ["fl", "gw"], ["y"]),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", f, ["b", 1, 16, 16])],
        [helper.make_tensor_value_info("y", f, ["b", 10])],
        [_w("cw", 8, 1, 5, 5), _w("gw", 2048, 10)],
    )


def test_profiles_tell_transformer_cnn_and_mlp_apart(tiny_onnx):
    t = profile_model(attention_model())
    assert t.kind == "transformer" and t.attention and t.matmul_weights == 3 * 256
    c = profile_model(cnn_model())
    assert c.kind == "cnn" and not c.attention
    assert c.conv_macs == 200 * 256 and c.matmul_weights == 20480
    m = profile_model(onnx.load(tiny_onnx))
    assert m.kind == "mlp" and m.ops == {"MatMul": 2, "Add": 1, "Relu": 1}
    assert "MatMul x2" in m.summary()


def names(cands):
    return [c.name for c in cands]


def test_transformer_gets_dynamic_int8_first_and_no_fp16_on_cpu():
    cands, skipped = generate_candidates(profile_model(attention_model()))
    assert names(cands)[:2] == ["fp32", "int8-dynamic"]
    assert names(cands)[2] == "int8-dynamic-smooth"
    assert "fp32-fused" in names(cands) and "int8-dynamic-per-tensor" in names(cands)
    assert "int8-static" not in names(cands)  # no calibration data
    reasons = dict(skipped)
    assert "slower" in reasons["fp16"]
    assert "--max-drop" in reasons["int8-partial"]
    assert "PyTorch source" in reasons["pruned-*"]


def test_cnn_gets_static_int8_with_calibration_and_a_reason_without():
    p = profile_model(cnn_model())
    cands, _ = generate_candidates(p, calibration=True, eval_data=True, max_drop=0.01)
    n = names(cands)
    assert n[:2] == ["fp32", "int8-static"]
    assert {"int8-static-per-tensor", "int8-static-entropy", "int8-partial"} <= set(n)
    assert "int8-dynamic" not in n
    partial = next(c for c in cands if c.name == "int8-partial")
    assert partial.options["partial_base"] == "static" and partial.cost > 5
    cands, skipped = generate_candidates(p)
    assert names(cands) == ["fp32", "fp32-graph"]
    reasons = dict(skipped)
    assert "calibration data" in reasons["int8-static"]
    assert "ConvInteger" in reasons["int8-dynamic"]


def test_pruning_needs_a_torch_source_and_a_finetune_hook():
    p = profile_model(cnn_model())
    cands, _ = generate_candidates(p, calibration=True, torch_source=True, finetune=True)
    n = names(cands)
    assert {"pruned-50", "pruned-25", "pruned-50+int8-static"} <= set(n)
    stacked = next(c for c in cands if c.name == "pruned-50+int8-static")
    assert stacked.base == "pruned-50" and stacked.options["mode"] == "static"
    assert n.index("pruned-50") < n.index("pruned-50+int8-static")
    _, skipped = generate_candidates(p, calibration=True, torch_source=True)
    assert "fine-tune hook" in dict(skipped)["pruned-*"]


def test_cuda_target_gets_fp16_and_no_int8():
    cands, skipped = generate_candidates(profile_model(attention_model()), target="cuda")
    assert names(cands) == ["fp32", "fp32-graph", "fp16"]
    assert "TensorRT" in dict(skipped)["int8-*"]


def test_partial_needs_eval_data():
    p = profile_model(attention_model())
    cands, skipped = generate_candidates(p, max_drop=0.005)
    assert "int8-partial" not in names(cands) and "--eval" in dict(skipped)["int8-partial"]
    cands, _ = generate_candidates(p, max_drop=0.005, eval_data=True)
    assert names(cands)[-1] == "int8-partial"


@pytest.mark.parametrize(
    ("target", "cores", "expected"),
    [
        ("cpu", 4, [(0, False), (1, False), (0, True), (1, True)]),
        ("cpu", 1, [(0, False), (0, True)]),
        ("cuda", 8, [(0, False)]),
    ],
)
def test_session_settings(target, cores, expected):
    got = session_settings(target, cores)
    assert [(s.threads, s.parallel) for s in got] == expected
    assert SessionSetting(1, True).label() == "1 thread, parallel"
    assert SessionSetting().label(4) == "all cores (4), sequential"
