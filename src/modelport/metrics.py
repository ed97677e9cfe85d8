"""Fidelity and accuracy of a model's outputs against a reference (usually the fp32 source).

Every optimization reports these, so that "how much did it cost" is measured the same way
everywhere: cosine similarity per row, top-1 agreement for classifier-like outputs, max error,
and accuracy when labels are given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["accuracy", "cosine_rows", "fidelity", "is_classifier_like", "mean_cosine", "mean_pool"]


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row (leading axis) of ``a`` and ``b``, flattened per row."""
    a2 = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b2 = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    num = (a2 * b2).sum(1)
    den = np.linalg.norm(a2, axis=1) * np.linalg.norm(b2, axis=1)
    return np.where(den > 0, num / np.maximum(den, 1e-300), np.where(num == 0, 1.0, 0.0))


def is_classifier_like(x: np.ndarray) -> bool:
    """2-D float output with 2..10000 columns: logits or probabilities."""
    return x.ndim == 2 and x.dtype.kind == "f" and 2 <= x.shape[1] <= 10000


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Sentence embeddings: masked mean over the sequence axis, L2-normalized."""
    m = mask[..., None].astype(np.float64)
    emb = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    normalized: np.ndarray = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return normalized


def fidelity(reference: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Per-output fidelity of ``got`` against ``reference`` (same names, same shapes)."""
    out: dict[str, Any] = {}
    for name, r in reference.items():
        g = got.get(name)
        if g is None:
            out[name] = {"error": "missing"}
            continue
        r, g = np.asarray(r), np.asarray(g)
        if r.shape != g.shape:
            out[name] = {"error": f"shape {list(g.shape)} != {list(r.shape)}"}
            continue
        if r.dtype.kind not in "fc":
            out[name] = {"exact_match": float(np.mean(r == g))}
            continue
        d: dict[str, Any] = {
            "max_abs_err": float(np.max(np.abs(g.astype(np.float64) - r))) if r.size else 0.0
        }
        if r.ndim >= 2:
            cos = cosine_rows(r, g)
            d.update(cos_mean=float(cos.mean()), cos_min=float(cos.min()))
        if is_classifier_like(r):
            d["top1_agreement"] = float(np.mean(r.argmax(1) == g.argmax(1)))
        out[name] = d
    return out


def mean_cosine(
    reference: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray],
    feed: Mapping[str, np.ndarray] | None = None,
) -> float:
    """Mean row cosine of the outputs against the reference; the worst over float outputs
    (exact agreement for integer outputs). 1.0 for identical outputs. ``feed`` is not used; it
    is there so that the function can serve as a plan/quantize metric ``(reference, outputs, feed)``."""
    vals = []
    for d in fidelity(reference, outputs).values():
        if "error" in d:
            return 0.0
        v = d.get("cos_mean", d.get("exact_match", d.get("top1_agreement")))
        if v is not None:
            vals.append(float(v))
    return min(vals) if vals else 1.0


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of 2-D scores (or 1-D predicted labels) against integer labels."""
    logits = np.asarray(logits)
    pred = logits.argmax(1) if logits.ndim == 2 else logits
    return float(np.mean(pred.reshape(-1) == np.asarray(labels).reshape(-1)))
