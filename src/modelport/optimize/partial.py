"""Partial quantization: int8 everywhere except the nodes that hurt the outputs most.

1. quantize everything (simulated for dynamic, ONNX Runtime's QDQ model for static) and measure
   the metric drop on the evaluation data;
2. measure each node (or layer) quantized alone: its cost;
3. find the fewest top-ranked nodes to keep float so the simulated drop is within ``max_drop``;
4. quantize for real with those nodes excluded, measure again, and keep more nodes float while
   the real drop is still over the budget.

The report lists every kept node with its cost and the trace of the search.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..package import ModelPackage
from .report import OptimizeReport, eval_feed, load_labels, resolve_metric, run_batched
from .sensitivity import group_nodes, make_evaluator, search_kept, simulate_dynamic

__all__ = ["dynamic_candidates", "quantize_partial"]


def dynamic_candidates(model: Any, const_only: bool = True) -> tuple[list[str], dict[str, int]]:
    """MatMul/Gemm nodes (with a constant weight when ``const_only``) and Gathers of a constant
    table: what ``quantize_dynamic`` quantizes. Returns (names, weight elements per name)."""
    inits = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    names, sizes = [], {}
    for n in model.graph.node:
        if n.op_type in ("MatMul", "Gemm"):
            w = [inits[i] for i in n.input[:2] if i in inits]
            if w or not const_only:
                names.append(n.name)
                sizes[n.name] = w[0] if w else 1
        elif n.op_type == "Gather" and n.input and n.input[0] in inits and inits[n.input[0]] > 1024:
            names.append(n.name)
            sizes[n.name] = 1  # a lookup: keeping it float costs size, not time
    return names, sizes


def _static_candidates(qdq: Any, fp32: Any) -> tuple[list[str], dict[str, int]]:
    """Nodes of the QDQ model that read a DequantizeLinear output (the quantized ones)."""
    dq_out = {o for n in qdq.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    fp_names = {n.name for n in fp32.graph.node}
    inits = {t.name: int(np.prod(t.dims)) for t in fp32.graph.initializer}
    fp_nodes = {n.name: n for n in fp32.graph.node}
    names, sizes = [], {}
    for n in qdq.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") or n.name not in fp_names:
            continue
        if any(i in dq_out for i in n.input):
            names.append(n.name)
            sizes[n.name] = max([inits.get(i, 1) for i in fp_nodes[n.name].input] or [1])
    return names, sizes


def quantize_partial(
    pre: Path, work: Path, types: Any, config: Any, pkg: ModelPackage, report: OptimizeReport
) -> Path:
    import onnx

    from ..runtime import SessionConfig, make_session
    from .quantize import _calibrate, _dynamic, _is_static, _static

    t0 = time.perf_counter()
    fp32 = onnx.load(str(pre))
    ev = config.evaluation
    feed, source = eval_feed(ev, pkg.signature, pkg.samples())
    n_eval = len(next(iter(feed.values())))
    labels = load_labels(ev.labels, n_eval)
    metric = resolve_metric(ev, labels)
    if ev.metric is None and labels is not None:
        report.choices.append("partial: the budget applies to the accuracy drop (labels given)")
    session = make_session(pre, SessionConfig(intra_op_threads=config.threads))
    reference = run_batched(session, feed)
    del session
    evaluate = make_evaluator(reference, feed, metric, threads=config.threads)
    static = _is_static(config)
    exclude = list(config.exclude)
    if static:
        cache = _calibrate(pre, work, config, pkg, report)
        full = _static(pre, work / "partial-full.onnx", types, config, cache, exclude)
        quantized = onnx.load(str(full))
        candidates, sizes = _static_candidates(quantized, fp32)
    else:
        candidates, sizes = dynamic_candidates(fp32, types.matmul_const_only)
        candidates = [c for c in candidates if c not in set(exclude)]
        quantized = simulate_dynamic(
            fp32,
            candidates,
            per_channel=types.per_channel,
            reduce_range=types.reduce_range,
            weight_type=types.weight_type,
        )
    groups = group_nodes(candidates, config.granularity)
    res = search_kept(
        fp32,
        quantized,
        groups,
        evaluate,
        config.max_drop,
        rank_by=config.rank_by,
        weight_sizes=sizes,
    )
    kept_groups = list(res.kept)

    def build(keep_groups: list[str], i: int) -> Path:
        keep = exclude + [n for g in keep_groups for n in groups[g]]
        out = work / f"partial-{i}.onnx"
        return (
            _static(pre, out, types, config, cache, keep)
            if static
            else _dynamic(pre, out, types, keep)
        )

    real_trace = []
    i = 0
    result = build(kept_groups, i)
    drop = evaluate(onnx.load(str(result)))
    real_trace.append((len(kept_groups), drop))
    while drop > config.max_drop and len(kept_groups) < len(res.ranking):
        i += 1
        kept_groups = res.ranking[: len(kept_groups) + 1]
        result = build(kept_groups, i)
        drop = evaluate(onnx.load(str(result)))
        real_trace.append((len(kept_groups), drop))
    scheme = "static QDQ" if static else "dynamic"
    report.details["partial"] = {
        "scheme": scheme,
        "granularity": config.granularity,
        "rank_by": config.rank_by,
        "eval_source": source,
        "eval_samples": n_eval,
        "metric": getattr(metric, "__name__", "metric"),
        "candidates": len(groups),
        "drop_all_quantized": res.full_drop,
        "kept": [
            {"name": g, "cost": res.costs.get(g), "weights": res.weights.get(g)}
            for g in kept_groups
        ],
        "costs": dict(sorted(res.costs.items(), key=lambda kv: -kv[1])),
        "simulated_trace": res.trace,
        "real_trace": real_trace,
        "final_drop": drop,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    report.choices.append(
        f"partial ({scheme}): all {len(groups)} candidates quantized drop the metric by "
        f"{res.full_drop:.4f}; kept {len(kept_groups)} float to meet max_drop={config.max_drop:g} "
        f"(drop now {drop:.4f})"
    )
    if drop > config.max_drop:
        report.warnings.append(
            f"partial: even with every candidate float the drop is {drop:.4f} > {config.max_drop:g}"
        )
    return result
