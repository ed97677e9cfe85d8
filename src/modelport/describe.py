"""Describe a model package or a bare .onnx file: signature, opset, size, ops, provenance, history."""

from __future__ import annotations

import collections
from typing import Any

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
    n_params = 0
    for init in model.graph.initializer:
        size = 1
        for d in init.dims:
            size *= d
        n_params += size
    m = pkg.manifest
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
        "provenance": m.get("provenance", {}),
        "verification": _verification_summary(m.get("verification")),
        "history": m.get("history", []),
        "serving": m.get("serving", {}),
    }


def _verification_summary(v: Any) -> Any:
    if not isinstance(v, dict):
        return v
    worst: dict[str, float] = {}
    for case in v.get("cases", []):
        for o in case.get("outputs", []):
            worst[o["name"]] = max(worst.get(o["name"], 0.0), float(o["max_abs_diff"]))
    return {
        "passed": v.get("passed"),
        "cases": len(v.get("cases", [])),
        "atol": v.get("atol"),
        "rtol": v.get("rtol"),
        "max_abs_diff": worst,
    }
