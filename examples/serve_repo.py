"""A small model repository for the serving docs (docs/serve-compat.md, docs/serve.md):

    python -m examples.serve_repo repo

writes ``repo/mlp/1`` and ``repo/mlp/2`` (x FP32 [batch, 4] -> y FP32 [batch, 3]; version 2
answers twice version 1) with labels ``stable`` -> 1 and ``canary`` -> 2, and ``repo/ints/1``
(ids INT64 [batch, 3] -> doubled [batch, 3] and total [batch, 1]) with label ``stable``. Each
model is built with onnx.helper and converted with ``modelport.convert`` (checked, verified)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


def mlp(scale: float = 1.0, seed: int = 0):
    """x -> relu(x @ w1 + b1) @ (w2 * scale), seeded weights."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((4, 8)).astype(np.float32)
    b1 = rng.standard_normal(8).astype(np.float32)
    w2 = (rng.standard_normal((8, 3)) * scale).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["y"]),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"))]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        inits,
    )


def ints():
    """ids INT64 [batch, 3] -> doubled = ids + ids, total = sum over axis 1."""
    from onnx import TensorProto, helper, numpy_helper

    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    nodes = [
        helper.make_node("Add", ["ids", "ids"], ["doubled"]),
        helper.make_node("ReduceSum", ["ids", "axes"], ["total"], keepdims=1),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 3])],
        [
            helper.make_tensor_value_info("doubled", TensorProto.INT64, ["batch", 3]),
            helper.make_tensor_value_info("total", TensorProto.INT64, ["batch", 1]),
        ],
        [axes],
    )


def _model(nodes, inputs, outputs, inits):
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def build(repo: Path) -> Path:
    import onnx

    from modelport.convert import ConvertConfig, Source, convert

    models = {
        ("mlp", 1): mlp(1.0),
        ("mlp", 2): mlp(2.0),
        ("ints", 1): ints(),
    }
    configs = {
        "mlp": {"version_policy": "all", "version_labels": {"stable": 1, "canary": 2}},
        "ints": {"version_labels": {"stable": 1}},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for (name, version), model in models.items():
            path = Path(tmp) / f"{name}-{version}.onnx"
            onnx.save(model, path)
            convert(Source.onnx(str(path)), repo / name / str(version), ConvertConfig(name=name))
    for name, config in configs.items():
        (repo / name / "config.json").write_text(json.dumps(config) + "\n")
    return repo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="the repository to write (REPO/<model>/<version>/)")
    args = parser.parse_args(argv)
    build(args.repo)
    print(f"wrote {args.repo}: mlp (versions 1, 2), ints (version 1)")


if __name__ == "__main__":
    main()
