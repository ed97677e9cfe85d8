"""Small ONNX graphs built with onnx.helper that behave like models written elsewhere: a detector
that needs sides that are multiples of 32, a classifier with unnamed dims, an embedding lookup, a
OneHot, and a model that only runs at one size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper, numpy_helper


def _save(graph, path: Path, opset: int = 17) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def detector(path: Path, dims=("N", "H", "W")) -> Path:
    """x[N,3,H,W] -> y[N,1,H,W]: a stride-32 conv, upsampled x32 and added to a 1x1 conv of x;
    the Add only broadcasts when H and W are multiples of 32 (as in real detectors)."""
    rng = np.random.default_rng(0)
    w32 = numpy_helper.from_array(
        rng.standard_normal((1, 3, 32, 32)).astype(np.float32) * 0.01, "w32"
    )
    w1 = numpy_helper.from_array(rng.standard_normal((1, 3, 1, 1)).astype(np.float32), "w1")
    scales = numpy_helper.from_array(np.array([1, 1, 32, 32], np.float32), "scales")
    nodes = [
        helper.make_node("Conv", ["x", "w32"], ["c32"], strides=[32, 32]),
        helper.make_node("Resize", ["c32", "", "scales"], ["up"], mode="nearest"),
        helper.make_node("Conv", ["x", "w1"], ["c1"]),
        helper.make_node("Add", ["up", "c1"], ["s"]),
        helper.make_node("Sigmoid", ["s"], ["y"]),
    ]
    n, h, w = dims
    graph = helper.make_graph(
        nodes,
        "detector",
        [helper.make_tensor_value_info("x", T.FLOAT, [n, 3, h, w])],
        [helper.make_tensor_value_info("y", T.FLOAT, [n, 1, h, w])],
        [w32, w1, scales],
    )
    return _save(graph, path)


def unnamed_classifier(path: Path) -> Path:
    """x[None, 8] -> probs[?, 4]: dims written as 'None' and '?' by some exporters."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w")
    x = helper.make_tensor_value_info("x", T.FLOAT, ["None", 8])
    y = helper.make_tensor_value_info("probs", T.FLOAT, ["?", 4])
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["l"]),
        helper.make_node("Softmax", ["l"], ["probs"]),
    ]
    return _save(helper.make_graph(nodes, "cls", [x], [y], [w]), path)


def lookup(path: Path, rows: int = 50, depth: int = 7) -> Path:
    """ids[batch, seq] int64 -> Gather(table[rows, 4]); cls[batch] int64 -> OneHot(depth)."""
    rng = np.random.default_rng(2)
    table = numpy_helper.from_array(rng.standard_normal((rows, 4)).astype(np.float32), "table")
    dep = numpy_helper.from_array(np.array(depth, np.int64), "depth")
    vals = numpy_helper.from_array(np.array([0.0, 1.0], np.float32), "vals")
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    nodes = [
        helper.make_node("Cast", ["ids"], ["ids32"], to=T.INT32),
        helper.make_node("Gather", ["table", "ids32"], ["emb"]),
        helper.make_node("ReduceSum", ["emb", "axes"], ["pooled"], keepdims=0),
        helper.make_node("OneHot", ["cls", "depth", "vals"], ["onehot"]),
    ]
    graph = helper.make_graph(
        nodes,
        "lookup",
        [
            helper.make_tensor_value_info("ids", T.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("cls", T.INT64, ["batch"]),
        ],
        [
            helper.make_tensor_value_info("pooled", T.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("onehot", T.FLOAT, ["batch", depth]),
        ],
        [table, dep, vals, axes],
    )
    return _save(graph, path, opset=13)


def one_size_only(path: Path) -> Path:
    """x[N,3,H,W] + a constant [1,3,8,8]: runs only at 8x8, which nothing tells."""
    c = numpy_helper.from_array(np.ones((1, 3, 8, 8), np.float32), "c")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "c"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", T.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", T.FLOAT, ["N", 3, "H", "W"])],
        [c],
    )
    return _save(graph, path)
