"""Tiny ONNX models for the serving tests, built with onnx.helper, and a repository of them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _model(nodes, inputs, outputs, inits=()):
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def mlp_model(seed: int = 0, scale: float = 1.0):
    """x FP32 [batch, 4] -> y FP32 [batch, 3]: MatMul, Add, Relu, MatMul (times ``scale``); the
    docs' example repository (examples/serve_repo.py) is built from the same function."""
    import onnx
    from onnx import numpy_helper

    from examples.serve_repo import mlp

    model = mlp(scale=scale, seed=seed)
    onnx.checker.check_model(model)
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return model, lambda x: np.maximum(x @ w["w1"] + w["b1"], 0) @ w["w2"]


def int64_model():
    """ids INT64 [batch, 3] -> doubled INT64 [batch, 3] and total INT64 [batch, 1] (the docs'
    example repository's ``ints``)."""
    import onnx

    from examples.serve_repo import ints

    model = ints()
    onnx.checker.check_model(model)
    return model


def bool_model():
    """flags BOOL [batch, 4] -> negated BOOL [batch, 4]."""
    from onnx import TensorProto, helper

    return _model(
        [helper.make_node("Not", ["flags"], ["negated"])],
        [helper.make_tensor_value_info("flags", TensorProto.BOOL, ["batch", 4])],
        [helper.make_tensor_value_info("negated", TensorProto.BOOL, ["batch", 4])],
    )


def string_model():
    """text STRING [batch, 2] -> same STRING [batch, 2] (Identity)."""
    from onnx import TensorProto, helper

    return _model(
        [helper.make_node("Identity", ["text"], ["same"])],
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch", 2])],
        [helper.make_tensor_value_info("same", TensorProto.STRING, ["batch", 2])],
    )


def fixed_model():
    """x FP32 [2, 2] (no batch axis) -> y = x + 1."""
    from onnx import TensorProto, helper, numpy_helper

    one = numpy_helper.from_array(np.ones((2, 2), dtype=np.float32), "one")
    return _model(
        [helper.make_node("Add", ["x", "one"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
        [one],
    )


def scaled_model():
    """ids INT64 [batch, seq] and scale FP32 [batch, 1] -> out FP32 [batch, seq] = ids * scale.

    Two inputs that share the batch axis: the model of issue 13's cross-request attack."""
    from onnx import TensorProto, helper

    return _model(
        [
            helper.make_node("Cast", ["ids"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["f", "scale"], ["out"]),
        ],
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("scale", TensorProto.FLOAT, ["batch", 1]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "seq"])],
    )


def param_model():
    """x FP32 [batch, 3] and gain FP32 [1] (a per-call parameter, no batch axis) -> y = x * gain.

    Merging two requests would apply one request's gain to both: batching must be off."""
    from onnx import TensorProto, helper

    return _model(
        [helper.make_node("Mul", ["x", "gain"], ["y"])],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("gain", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
    )


def write(model, out: Path, name: str, serving: dict | None = None) -> Path:
    from modelport.package import base_manifest, opset_of, write_package
    from modelport.signature import Signature

    manifest = base_manifest(
        name, Signature.from_onnx(model), opset_of(model), {"source_kind": "onnx"}
    )
    if serving:
        manifest["serving"] = serving
    write_package(model, manifest, out, force=True)
    return out


def make_repo(root: Path) -> Path:
    """REPO with mlp (versions 1 and 2, scaled so answers differ), ints, flags, text, fixed."""
    root.mkdir(parents=True, exist_ok=True)
    write(mlp_model(scale=1.0)[0], root / "mlp" / "1", "mlp")
    write(mlp_model(scale=2.0)[0], root / "mlp" / "2", "mlp")
    (root / "mlp" / "config.json").write_text(json.dumps({"version_policy": "all"}))
    write(int64_model(), root / "ints" / "1", "ints")
    write(bool_model(), root / "flags" / "1", "flags")
    write(string_model(), root / "text" / "1", "text")
    write(fixed_model(), root / "fixed" / "1", "fixed")
    return root


LABELS = ("cat", "dog", "bird")


def labelled_mlp(out: Path, top_k: int = 2) -> Path:
    """The mlp as a package with class labels (processing: softmax + top-k): its answer is
    ``label``/``score`` [batch, top_k]; the bare graph is served as NAME_raw."""
    import tempfile

    import onnx

    from modelport.convert import ConvertConfig, Source, convert
    from modelport.processing.config import ProcessingConfig

    cfg = ConvertConfig(processing=ProcessingConfig(labels=LABELS, top_k=top_k))
    with tempfile.TemporaryDirectory() as d:
        onnx.save(mlp_model()[0], Path(d) / "mlp.onnx")
        convert(Source.onnx(str(Path(d) / "mlp.onnx")), out, cfg)
    return out
