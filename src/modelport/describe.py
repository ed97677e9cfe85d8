"""Describe a model package or a bare .onnx file: signature, opset, size, ops, provenance, history."""

from __future__ import annotations

import collections
from typing import Any

from .manifest import Verification
from .package import ModelPackage, opset_of

__all__ = ["describe"]


def describe(path: str) -> dict[str, Any]:
    """A JSON-able description of the package or .onnx file at ``path``."""
    pkg = ModelPackage.load(path)
    model = pkg.load_onnx(load_external_data=False)
    ops = collections.Counter(
        (f"{n.domain}::{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type)
        for n in model.graph.node
    )
    n_params = _parameters(model.graph)
    spec = pkg.spec
    return {
        "path": str(pkg.path),
        "name": pkg.name,
        "model_file": str(pkg.model_path),
        "size_bytes": pkg.size_bytes(),
        "opset": opset_of(model),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "signature": pkg.signature.to_dict(),
        "parameters": n_params,
        "nodes": len(model.graph.node),
        "ops": dict(ops.most_common()),
        "metadata": {p.key: p.value for p in model.metadata_props},
        "provenance": spec.provenance.to_dict() if spec.provenance else {},
        "verification": _verification_summary(spec.verification),
        "history": [h.to_dict() for h in spec.history],
        "serving": dict(spec.serving),
    }


def _parameters(graph: Any) -> int:
    """Elements of the constant tensors: initializers and Constant nodes (paddle2onnx writes
    every weight as one), in the graph and in its If/Loop/Scan subgraphs (Silero VAD keeps all
    its weights in If branches)."""
    tensors = list(graph.initializer)
    total = 0
    for node in graph.node:
        for a in node.attribute:
            if node.op_type == "Constant" and a.name == "value" and a.HasField("t"):
                tensors.append(a.t)
            for sub in [a.g] if a.HasField("g") else list(a.graphs):
                total += _parameters(sub)
    for t in tensors:
        size = 1
        for d in t.dims:
            size *= d
        total += size
    return total


def _verification_summary(v: Verification | None) -> dict[str, Any] | None:
    if v is None:
        return None
    worst: dict[str, float] = {}
    for case in v.cases:
        for o in case.get("outputs", []):
            worst[o["name"]] = max(worst.get(o["name"], 0.0), float(o["max_abs_diff"]))
    return {
        "passed": v.passed,
        "cases": len(v.cases),
        "atol": v.atol,
        "rtol": v.rtol,
        "max_abs_diff": worst,
    }
