"""What a pruning step bought and cost: parameters, sparsity, size on disk (raw and gzip),
interleaved latency at a few batch sizes, fidelity against the original and accuracy with labels.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...data import Feed, feed_batch_size, split_batches
from ...errors import InputError
from ..report import OptimizeReport

__all__ = ["count_params", "measure", "model_sizes", "onnx_layer_rows"]

_FLOAT_TYPES = (1, 10, 11, 16)  # float, float16, double, bfloat16


def count_params(model: Any) -> tuple[int, int]:
    """(parameters, nonzero parameters) over the floating-point initializers of an ONNX model."""
    from onnx import numpy_helper

    total = nonzero = 0
    for init in model.graph.initializer:
        if init.data_type in _FLOAT_TYPES:
            a = numpy_helper.to_array(init)
            total += a.size
            nonzero += int(np.count_nonzero(a))
    return total, nonzero


def model_sizes(model: Any) -> dict[str, int]:
    """Bytes of the serialized model, raw and gzip-compressed (level 6)."""
    raw = model.SerializeToString()
    return {"raw": len(raw), "gzip": len(gzip.compress(raw, compresslevel=6, mtime=0))}


def onnx_layer_rows(before: Any, after: Any, pruned: Sequence[str]) -> list[dict[str, Any]]:
    """Per-layer rows (name, shapes, params, nonzero, sparsity) matched by layer name."""
    from onnx import numpy_helper

    from .onnx import find_layers

    arrays_b = {i.name: i for i in before.graph.initializer}
    arrays_a = {i.name: i for i in after.graph.initializer}
    after_layers = {layer.index: layer for layer in find_layers(after)}
    rows = []
    for layer in find_layers(before):
        wb = numpy_helper.to_array(arrays_b[layer.weight])
        la = after_layers.get(layer.index)
        wa = numpy_helper.to_array(arrays_a[la.weight]) if la is not None else None
        nonzero = int(np.count_nonzero(wa)) if wa is not None else 0
        rows.append(
            {
                "name": layer.name,
                "pruned": layer.name in pruned,
                "shape_before": list(wb.shape),
                "shape_after": list(wa.shape) if wa is not None else None,
                "params_before": int(wb.size),
                "params_after": int(wa.size) if wa is not None else 0,
                "nonzero": nonzero,
                "sparsity": 1.0 - nonzero / max(int(wb.size), 1),
            }
        )
    return rows


def global_sparsity(rows: Sequence[Mapping[str, Any]]) -> float:
    """Fraction of the pruned layers' original weights that are gone or zero."""
    pruned = [r for r in rows if r["pruned"]]
    total = sum(r["params_before"] for r in pruned)
    return 1.0 - sum(r["nonzero"] for r in pruned) / total if total else 0.0


def _run_all(session: Any, feed: Feed, batch: int) -> dict[str, np.ndarray]:
    from ...runtime import run_session

    parts = [run_session(session, b) for b in split_batches(feed, batch)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _rows(feed: Feed, n: int) -> Feed:
    have = feed_batch_size(feed)
    reps = -(-n // have)
    return {k: np.concatenate([v] * reps)[:n] if np.ndim(v) else v for k, v in feed.items()}


def measure(
    before: Any,
    after: Any,
    feed: Feed,
    labels: np.ndarray | None,
    batch_sizes: Sequence[int],
    repeats: int,
    report: OptimizeReport,
) -> OptimizeReport:
    """Compare two ONNX models (original, pruned) on ``feed`` into ``report``: sizes (raw; gzip and
    parameters in ``details``), latency (interleaved with compare_latency), fidelity of the pruned
    outputs to the original's, the metric (accuracy with labels, else the fidelity score)."""
    from ...metrics import accuracy, fidelity
    from ...runtime import make_session
    from ...runtime.latency import LatencyConfig, compare_latency
    from ...signature import Signature
    from ..report import fidelity_score

    sig = Signature.from_onnx(before)
    first = sig.inputs[0].shape[0] if sig.inputs and sig.inputs[0].shape else 1
    fixed_batch = first if isinstance(first, int) else None
    s_before, s_after = make_session(before), make_session(after)
    run_batch = fixed_batch or 64
    n = feed_batch_size(feed)
    usable = (n // fixed_batch) * fixed_batch if fixed_batch else n
    eval_feed = {k: v[:usable] for k, v in feed.items()}
    ref = _run_all(s_before, eval_feed, run_batch)
    got = _run_all(s_after, eval_feed, run_batch)
    p_before, nz_before = count_params(before)
    p_after, nz_after = count_params(after)
    size_b, size_a = model_sizes(before), model_sizes(after)
    report.details["params"] = {
        "before": p_before,
        "after": p_after,
        "ratio": p_before / max(p_after, 1),
        "nonzero_before": nz_before,
        "nonzero_after": nz_after,
    }
    report.details["size_bytes"] = {
        "raw_before": size_b["raw"],
        "raw_after": size_a["raw"],
        "gzip_before": size_b["gzip"],
        "gzip_after": size_a["gzip"],
    }
    report.size_before, report.size_after = size_b["raw"], size_a["raw"]
    report.eval_samples = usable
    report.fidelity = fidelity(ref, got)
    if labels is not None:
        name = next(iter(ref))
        y = np.asarray(labels).reshape(-1)
        if len(y) != n:
            raise InputError(
                f"{len(y)} labels for {n} eval rows: give one label per row of the eval data",
                expected=n,
                got=len(y),
            )
        y = y[:usable]
        acc_b, acc_a = accuracy(ref[name], y), accuracy(got[name], y)
        report.accuracy = {"output": name, "before": acc_b, "after": acc_a, "drop": acc_b - acc_a}
        report.metric = {"name": "accuracy", "before": acc_b, "after": acc_a, "drop": acc_b - acc_a}
    else:
        after_score = fidelity_score(ref, got, eval_feed)
        report.metric = {
            "name": "fidelity_score",
            "before": 1.0,
            "after": after_score,
            "drop": 1.0 - after_score,
        }
    for b in batch_sizes:
        if fixed_batch and b != fixed_batch:
            continue
        stats = compare_latency(
            {"before": s_before, "after": s_after},
            _rows(feed, b),
            LatencyConfig(warmup=5, repeats=repeats),
        )
        sb, sa = stats
        report.latency.append(
            {
                "batch_size": b,
                "before_ms": sb.p50,
                "after_ms": sa.p50,
                "speedup": sb.p50 / sa.p50 if sa.p50 > 0 else float("inf"),
                "runs": repeats,
            }
        )
    return report
