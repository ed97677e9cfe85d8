"""Quantizing models shaped like ones from other projects (issue 14): a recurrent step whose state
is not batched (silero VAD), a network that refuses tiny images (a YOLO detector at 8 x 8)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from modelport.optimize.quantize import QuantizeConfig, quantize
from modelport.optimize.report import EvalConfig


def _save(graph, path, inits, opset=17):
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in inits.items())
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return path


def _lstm_step(path):
    """x [seq, 1, 8] with states h, c [1, 1, 16] -> y_h, y_c: the states have no batch axis."""
    rng = np.random.default_rng(0)
    inits = {
        "W": rng.standard_normal((1, 64, 8)).astype(np.float32) * 0.3,
        "R": rng.standard_normal((1, 64, 16)).astype(np.float32) * 0.3,
        "B": np.zeros((1, 128), np.float32),
    }
    node = helper.make_node(
        "LSTM", ["x", "W", "R", "B", "", "h", "c"], ["", "hn", "cn"], hidden_size=16
    )
    graph = helper.make_graph(
        [node],
        "step",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["seq", 1, 8]),
            helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 1, 16]),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 1, 16]),
        ],
        [
            helper.make_tensor_value_info("hn", TensorProto.FLOAT, [1, 1, 16]),
            helper.make_tensor_value_info("cn", TensorProto.FLOAT, [1, 1, 16]),
        ],
    )
    return _save(graph, path, inits)


def _pooled_classifier(path):
    """x [N, 3, H, W] -> MaxPool 16x16 -> mean -> MatMul: an 8 x 8 image is too small to pool."""
    inits = {
        "w": np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32),
        "axes": np.array([2, 3], np.int64),
    }
    nodes = [
        helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[16, 16], strides=[16, 16]),
        helper.make_node("ReduceMean", ["p", "axes"], ["m"], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "pooled",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    return _save(graph, path, inits, opset=18)


def test_recurrent_state_is_quantized_and_only_batch_1_is_timed(tmp_path):
    ev = EvalConfig(repeats=2)
    pkg, report = quantize(
        _lstm_step(tmp_path / "lstm.onnx"), tmp_path / "q", QuantizeConfig.dynamic(evaluation=ev)
    )
    assert report.details["quantized_ops"] == {"DynamicQuantizeLSTM": 1}
    assert report.unchanged == "" and report.passed, report.warnings
    assert [r["batch_size"] for r in report.latency] == [1]
    assert any(
        c.startswith("latency at batch 8 not measured: input 'h' has no dynamic batch axis")
        for c in report.choices
    ), report.choices


def test_generated_evaluation_data_has_sizes_the_model_accepts(tmp_path):
    pkg, report = quantize(
        _pooled_classifier(tmp_path / "pool.onnx"),
        tmp_path / "q",
        QuantizeConfig.dynamic(evaluation=EvalConfig(repeats=2)),
    )
    assert report.eval_source == "generated random inputs" and report.eval_samples == 8
    assert report.details["quantized_ops"]  # the MatMul
    assert {tuple(r["input_shapes"]["x"][1:]) for r in report.latency} == {(3, 224, 224)}
    assert [r["batch_size"] for r in report.latency] == [1, 8]
