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

from ...package import ModelPackage
from ..report import OptimizeReport, eval_feed, load_labels, resolve_metric, run_batched
from .sensitivity import (
    eval_batch_rows,
    group_nodes,
    make_evaluator,
    node_scopes,
    prune_dead_qdq,
    revert_nodes,
    search_kept,
    simulate_dynamic,
)

__all__ = ["dynamic_candidates", "quantize_partial"]


COST_SAMPLE_BYTES = 24 << 20


def cost_sample_rows(feed: Any) -> int:
    """Samples on which each candidate is measured alone: all of them while they are small,
    else as many as fit ``COST_SAMPLE_BYTES`` of input (two 960x960 images), at least two."""
    n = max(1, max((len(v) for v in feed.values() if np.ndim(v)), default=1))
    per_row = sum(np.asarray(v).nbytes for v in feed.values()) / n
    return int(min(n, max(2, COST_SAMPLE_BYTES // max(per_row, 1))))


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


def smoothed_base(
    pre: Path,
    work: Path,
    types: Any,
    config: Any,
    pkg: ModelPackage,
    report: OptimizeReport,
    evaluate: Any = None,
    feed: Any = None,
) -> Path:
    """``pre`` smoothed per ``config.smoothing`` (alpha, or "auto": measured), saved beside it.

    Returns ``pre`` itself when smoothing is off, does not apply, or does not help.
    """
    import onnx

    from ...runtime import SessionConfig, make_session
    from ..calibration import take_feed
    from .smoothing import activation_maxima, choose_alpha, smooth, smoothing_targets

    if config.smoothing is None:
        return pre
    t0 = time.perf_counter()
    fp32 = onnx.load(str(pre))
    nodes, _ = dynamic_candidates(fp32, types.matmul_const_only)
    nodes = [n for n in nodes if n not in set(config.exclude)]
    tensors = list(smoothing_targets(fp32, nodes))
    if not tensors:
        report.choices.append("smoothing: no MatMul with a constant weight; not applied")
        return pre
    if config.calibration is not None:
        stats_feed, source = (
            take_feed(config.calibration, pkg.signature, config.calibration_samples),
            "calibration data",
        )
    else:
        if feed is None:
            feed, _ = eval_feed(config.evaluation, pkg.signature, pkg.samples())
        stats_feed, source = feed, "evaluation data"
    maxima = activation_maxima(fp32, stats_feed, tensors, threads=config.threads)
    info: dict[str, Any] = {"source": source, "tensors": len(tensors)}
    if config.smoothing == "auto":
        if evaluate is None:
            if feed is None:
                feed, _ = eval_feed(config.evaluation, pkg.signature, pkg.samples())
            labels = load_labels(config.evaluation.labels, len(next(iter(feed.values()))))
            session = make_session(pre, SessionConfig(intra_op_threads=config.threads))
            evaluate = make_evaluator(
                run_batched(session, feed),
                feed,
                resolve_metric(config.evaluation, labels),
                config.threads,
            )

        def loss(model: Any) -> float:
            return float(evaluate(_simulated(model, nodes, types)))

        alpha, losses = choose_alpha(fp32, maxima, loss, alphas=(0.5, 0.6, 0.7, 0.8), nodes=nodes)
        info["losses_by_alpha"] = {str(k): v for k, v in losses.items()}
    else:
        alpha = float(config.smoothing)
    info["alpha"] = alpha
    info["seconds"] = round(time.perf_counter() - t0, 2)
    report.details["smoothing"] = info
    if alpha is None:
        report.choices.append("smoothing: no alpha beat unsmoothed int8 on the metric; not applied")
        return pre
    smoothed, muls = smooth(fp32, maxima, alpha, nodes)
    info["inserted_muls"] = len(muls)
    out = work / "smoothed.onnx"
    onnx.save_model(smoothed, str(out))
    how = "chosen by measurement" if config.smoothing == "auto" else "given"
    extra = ""
    if "losses_by_alpha" in info:
        extra = f"; metric drop of int8 {info['losses_by_alpha']['0.0']:.4f} -> {losses[alpha]:.4f}"
    report.choices.append(
        f"smoothing: alpha {alpha} ({how}) on {len(tensors)} activation tensors, "
        f"statistics from the {source}{extra}"
    )
    return out


def _simulated(model: Any, nodes: list[str], types: Any) -> Any:
    """``model`` with ``nodes`` fake-quantized as dynamic int8 with the chosen types."""
    return simulate_dynamic(
        model,
        nodes,
        per_channel=types.per_channel,
        reduce_range=types.reduce_range,
        weight_type=types.weight_type,
    )


def quantize_partial(
    pre: Path, work: Path, types: Any, config: Any, pkg: ModelPackage, report: OptimizeReport
) -> Path:
    import onnx

    from ...runtime import SessionConfig, make_session
    from .core import calibrate_to_file, is_static, quantize_dynamic_int8, quantize_static_int8

    t0 = time.perf_counter()
    fp32 = onnx.load(str(pre))
    ev = config.evaluation
    feed, source = eval_feed(ev, pkg.signature, pkg.samples())
    n_eval = len(next(iter(feed.values())))
    labels = load_labels(ev.labels, n_eval)
    metric = resolve_metric(ev, labels)
    if ev.metric is None and labels is not None:
        report.choices.append("partial: the budget applies to the accuracy drop (labels given)")
    budget = getattr(config, "time_budget_s", None)
    deadline = None if budget is None else time.monotonic() + float(budget)
    session = make_session(pre, SessionConfig(intra_op_threads=config.threads))
    reference = run_batched(session, feed, batch_size=eval_batch_rows(feed))
    del session
    evaluate = make_evaluator(reference, feed, metric, threads=config.threads)
    # each node alone is measured on a few samples when they are large (ranking only)
    cost_rows = cost_sample_rows(feed) if labels is None and ev.metric is None else n_eval
    cost_evaluate = evaluate
    if cost_rows < n_eval:
        cost_evaluate = make_evaluator(
            {k: v[:cost_rows] for k, v in reference.items()},
            {k: v[:cost_rows] for k, v in feed.items()},
            metric,
            threads=config.threads,
        )
    static = is_static(config)
    exclude = list(config.exclude)
    if static and config.smoothing is not None:
        report.choices.append("smoothing is implemented for dynamic int8 only; not used for static")
    if not static and config.smoothing is not None:
        pre = smoothed_base(pre, work, types, config, pkg, report, evaluate, feed)
        fp32 = onnx.load(str(pre))
    if static:
        cache = calibrate_to_file(pre, work, config, pkg, report)
        full = quantize_static_int8(pre, work / "partial-full.onnx", types, config, cache, exclude)
        quantized = onnx.load(str(full))
        candidates, sizes = _static_candidates(quantized, fp32)
    else:
        candidates, sizes = dynamic_candidates(fp32, types.matmul_const_only)
        candidates = [c for c in candidates if c not in set(exclude)]
        quantized = _simulated(fp32, candidates, types)
    scopes = node_scopes(fp32)
    groups = group_nodes(candidates, config.granularity, scopes)
    res = search_kept(
        fp32,
        quantized,
        groups,
        evaluate,
        config.max_drop,
        rank_by=config.rank_by,
        weight_sizes=sizes,
        deadline=deadline,
        cost_evaluate=cost_evaluate,
    )
    kept_groups = list(res.kept)

    def build(keep_groups: list[str], i: int) -> Path:
        kept_nodes = [n for g in keep_groups for n in groups[g]]
        keep = exclude + kept_nodes
        out = work / f"partial-{i}.onnx"
        if not static:
            return quantize_dynamic_int8(pre, out, types, keep)
        quantize_static_int8(pre, out, types, config, cache, keep)
        if kept_nodes:
            # ORT's QDQ quantizer feeds an excluded node the dequantized tensor whenever another
            # reader of that tensor (or its producer) is quantized: the node stays float but its
            # inputs do not. Point kept nodes at their float inputs, as the search measured them
            # (measured on the PP-OCRv4 detector: without this, 44 more nodes kept float one by
            # one did not bring the real drop to what the search measured)
            model = prune_dead_qdq(revert_nodes(onnx.load(str(out)), fp32, kept_nodes))
            onnx.save_model(model, str(out))
        return out

    from ...progress import progress

    real_trace = []
    i = 0
    with progress("partial: quantizing for real and measuring") as bar:
        result = build(kept_groups, i)
        drop = evaluate(onnx.load(str(result)))
        real_trace.append((len(kept_groups), drop))
        bar.advance()
        out_of_time = res.timed_out
        while drop > config.max_drop and len(kept_groups) < len(res.ranking):
            if deadline is not None and time.monotonic() > deadline:
                out_of_time = True
                break
            i += 1
            more = [g for g in res.ranking if g not in kept_groups][: 2 ** (i - 1)]
            kept_groups = [*kept_groups, *more]  # 1, 2, 4, ... more: at most log2(n) builds
            result = build(kept_groups, i)
            drop = evaluate(onnx.load(str(result)))
            real_trace.append((len(kept_groups), drop))
            bar.advance()
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
            {
                "name": g,
                "scope": scopes.get(g, ""),
                "cost": res.costs.get(g),
                "weights": res.weights.get(g),
            }
            for g in kept_groups
        ],
        "costs": dict(sorted(res.costs.items(), key=lambda kv: -kv[1])),
        "simulated_trace": res.trace,
        "real_trace": real_trace,
        "final_drop": drop,
        "evaluations": res.evaluations + len(real_trace),
        "cost_samples": cost_rows,
        "cost_method": res.cost_method,
        "cost_blocks": res.blocks,
        "measured_candidates": len(res.costs),
        "time_budget_s": budget,
        "timed_out": out_of_time,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if out_of_time:
        report.warnings.append(
            f"partial: the time budget ({budget:g} s) ended the search after "
            f"{res.evaluations + len(real_trace)} evaluations ({len(res.costs)} of {len(groups)} "
            f"candidates measured alone); kept the best result found by then (drop {drop:.4f}, "
            f"{len(kept_groups)} kept float). A larger --time-budget may quantize more"
        )
    report.choices.append(
        f"partial ({scheme}): all {len(groups)} candidates quantized drop the metric by "
        f"{res.full_drop:.4f}; kept {len(kept_groups)} float to meet max_drop={config.max_drop:g} "
        f"(drop now {drop:.4f})"
    )
    if drop > config.max_drop and not out_of_time:
        report.warnings.append(
            f"partial: even with every candidate float the drop is {drop:.4f} > {config.max_drop:g}"
        )
    return result
