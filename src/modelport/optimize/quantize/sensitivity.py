"""Which nodes hurt the outputs when quantized, and how many must stay float to meet a budget.

The search works on a *simulated* quantized model in which every candidate node reads
fake-quantized inputs: for dynamic int8, ``DynamicQuantizeLinear -> DequantizeLinear`` on the
activation (exactly what ``MatMulInteger`` sees) and int8-rounded weights; for static int8, the
QDQ model ONNX Runtime produced. Reverting a node to float is then a cheap graph edit (point its
inputs back at the float tensors), so measuring each node alone and any set of kept nodes costs
one session and one pass over the evaluation data, not one quantization each.

    costs   = per-node loss when only that node is quantized (one at a time)
    ranking = by loss, or by loss per weight element (keeps cheap nodes float first)
    search  = smallest k such that keeping the k top-ranked nodes float meets the budget
              (doubling, then bisection); then each kept node is tried quantized again
              (cheapest first) and left quantized when the budget still holds; the caller
              confirms the result on the real quantized model.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...data import Feed
from ..report import eval_batch_rows

__all__ = [
    "SearchResult",
    "eval_batch_rows",
    "group_nodes",
    "node_scopes",
    "prune_dead_qdq",
    "revert_nodes",
    "search_kept",
    "simulate_dynamic",
]

Evaluate = Callable[[Any], float]  # ModelProto -> metric drop (>= 0 is worse)


def _fake_quant(
    w: np.ndarray, per_channel: bool, reduce_range: bool, signed: bool, axis: int = -1
) -> np.ndarray:
    """Round ``w`` to 8-bit (symmetric signed, or asymmetric unsigned) and back to float."""
    qmax = 63 if reduce_range else 127
    w64 = w.astype(np.float64)
    if signed:
        if per_channel and w.ndim >= 2:
            red = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
            amax = np.abs(w64).max(axis=red, keepdims=True)
        else:
            amax = np.abs(w64).max()
        scale: np.ndarray | float = np.where(amax > 0, amax / qmax, 1.0)
        return (np.clip(np.round(w64 / scale), -qmax, qmax) * scale).astype(w.dtype)
    lo, hi = min(float(w64.min()), 0.0), max(float(w64.max()), 0.0)
    levels = 127 if reduce_range else 255
    scale = (hi - lo) / levels or 1.0
    zp = np.round(-lo / scale)
    fake: np.ndarray = ((np.clip(np.round(w64 / scale) + zp, 0, levels) - zp) * scale).astype(
        w.dtype
    )
    return fake


def simulate_dynamic(
    model: Any,
    nodes: Iterable[str],
    *,
    per_channel: bool,
    reduce_range: bool,
    weight_type: str = "int8",
) -> Any:
    """A float copy of ``model`` whose ``nodes`` compute as ORT's dynamic int8 kernels would.

    MatMul: uint8 dynamic activations (``DynamicQuantizeLinear`` + ``DequantizeLinear``) and
    weights rounded to int8 (per output column when ``per_channel``). Gather: its table rounded.
    """
    from onnx import helper, numpy_helper

    m = copy.deepcopy(model)
    inits = {t.name: t for t in m.graph.initializer}
    wanted = set(nodes)
    new_nodes = []
    done_w: dict[str, str] = {}
    signed = weight_type == "int8"
    for node in m.graph.node:
        if node.name in wanted and node.op_type in ("MatMul", "Gather", "Gemm"):
            data_idx = [0] if node.op_type == "Gather" else [0, 1]
            for i in data_idx:
                name = node.input[i]
                if name in inits:
                    if name not in done_w:
                        w = numpy_helper.to_array(inits[name])
                        axis = 0 if node.op_type == "Gemm" and _attr(node, "transB") else -1
                        fq = _fake_quant(
                            w, per_channel and node.op_type != "Gather", reduce_range, signed, axis
                        )
                        new = f"{name}__fq"
                        m.graph.initializer.append(numpy_helper.from_array(fq, new))
                        done_w[name] = new
                    node.input[i] = done_w[name]
                elif node.op_type != "Gather":
                    q, s, z, dq = (f"{node.name}__in{i}_{x}" for x in ("q", "s", "z", "dq"))
                    new_nodes.append(
                        helper.make_node(
                            "DynamicQuantizeLinear", [name], [q, s, z], name=f"{node.name}__dql{i}"
                        )
                    )
                    new_nodes.append(
                        helper.make_node(
                            "DequantizeLinear", [q, s, z], [dq], name=f"{node.name}__dq{i}"
                        )
                    )
                    node.input[i] = dq
        new_nodes.append(node)
    del m.graph.node[:]
    m.graph.node.extend(new_nodes)
    return m


def _attr(node: Any, name: str) -> Any:
    for a in node.attribute:
        if a.name == name:
            from onnx import helper

            return helper.get_attribute_value(a)
    return None


class _FloatSources:
    """Where the float value of each of ``fp32``'s tensors can be read in ``quantized``.

    Most float tensors still exist upstream of their QuantizeLinear. Two exceptions:
    weights the quantizer removed (copied back from ``fp32``), and activations the quantizer
    folded into the quantization range: ONNX Runtime's QDQ quantizer drops a Relu/Clip that
    follows a quantized node and gives its output name to that node, so the tensor named
    ``relu.out`` in the QDQ model holds the values *before* the Relu. Those are recomputed
    by a copy of the dropped node (``<tensor>__float``), placed right after the producer.
    """

    def __init__(self, model: Any, fp32: Any) -> None:
        self.model = model
        self.fp_inits = {t.name: t for t in fp32.graph.initializer}
        self.fp_prod = {o: n for n in fp32.graph.node for o in n.output}
        self.q_prod = {o: n for n in model.graph.node for o in n.output}
        self.q_names = {n.name for n in model.graph.node}
        self.have = {t.name for t in model.graph.initializer} | {i.name for i in model.graph.input}
        self.have |= set(self.q_prod)
        self.after: dict[str, list[Any]] = {}  # quantized node name -> nodes to add after it
        self.resolved: dict[str, str | None] = {}

    def tensor(self, name: str) -> str | None:
        """A tensor of the model holding ``name``'s float value (None: not recoverable)."""
        if not name:
            return name
        if name not in self.resolved:
            self.resolved[name] = self._resolve(name)
        return self.resolved[name]

    def _resolve(self, name: str) -> str | None:
        src, got = self.fp_prod.get(name), self.q_prod.get(name)
        if src is None:  # a graph input or an initializer
            if name in self.have:
                return name
            if name in self.fp_inits:
                self.model.graph.initializer.append(self.fp_inits[name])
                self.have.add(name)
                return name
            return None
        if got is not None and got.name == src.name:
            return name
        if got is None or src.name in self.q_names or not src.input:
            return None
        # ``src`` was dropped and its output name given to ``got``, which computes src's input
        before = self.fp_prod.get(src.input[0])
        if before is None or before.name != got.name:
            return None
        rest = [self.tensor(i) for i in src.input[1:]]
        if any(r is None for r in rest):
            return None
        node = copy.deepcopy(src)
        node.name = f"{src.name}__float"
        del node.input[:], node.output[:]
        node.input.extend([name, *[str(r) for r in rest]])
        new = f"{name}__float"
        node.output.append(new)
        self.after.setdefault(got.name, []).append(node)
        self.have.add(new)
        return new

    def inputs(self, node: Any) -> list[str] | None:
        """``node``'s (an fp32 node) inputs as float tensors of the model, or None."""
        out = [self.tensor(i) for i in node.input]
        return None if any(o is None for o in out) else [str(o) for o in out]

    def finish(self) -> None:
        """Insert the recomputing nodes right after their producer (the graph stays sorted)."""
        if not self.after:
            return
        nodes = [x for n in self.model.graph.node for x in (n, *self.after.get(n.name, ()))]
        del self.model.graph.node[:]
        self.model.graph.node.extend(nodes)


def revert_nodes(quantized: Any, fp32: Any, names: Iterable[str]) -> Any:
    """A copy of ``quantized`` in which ``names`` read their original float inputs again.

    Works for simulated models and for ONNX Runtime's QDQ models: the node keeps its name, and
    reads the float tensors its quantized inputs were made from (see ``_FloatSources``: weights
    are copied back from ``fp32``, activations folded into a quantization range recomputed).
    A node whose float inputs cannot be recovered stays quantized.
    """
    names = set(names)
    m = copy.deepcopy(quantized)
    if not names:
        return m
    orig = {n.name: n for n in fp32.graph.node if n.name in names}
    sources = _FloatSources(m, fp32)
    for node in m.graph.node:
        src = orig.get(node.name)
        if src is None or node.op_type != src.op_type:
            continue
        inputs = sources.inputs(src)
        if inputs is None:
            continue
        del node.input[:]
        node.input.extend(inputs)
    sources.finish()
    return m


def prune_dead_qdq(model: Any) -> Any:
    """Remove (in place) QuantizeLinear/DequantizeLinear nodes nothing reads any more (after
    ``revert_nodes``) and the initializers only they used; returns ``model``."""
    graph_outputs = {o.name for o in model.graph.output}
    while True:
        used = {i for n in model.graph.node for i in n.input} | graph_outputs
        dead = [
            n
            for n in model.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear")
            and not any(o in used for o in n.output)
        ]
        if not dead:
            break
        for n in dead:
            model.graph.node.remove(n)
    used = {i for n in model.graph.node for i in n.input} | graph_outputs
    keep = [t for t in model.graph.initializer if t.name in used]
    if len(keep) != len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
    return model


_LAYER = re.compile(r"(.*?(?:layer|layers|block|blocks|h)[._/]?\d+)")


def node_scopes(model: Any) -> dict[str, str]:
    """Node name -> the module path it came from (``encoder.layer.0.output.dense``), when the
    exporter recorded it (torch.onnx's dynamo exporter does, in the node's metadata)."""
    import ast

    out = {}
    for n in model.graph.node:
        props = {p.key: p.value for p in n.metadata_props}
        scopes = props.get("pkg.torch.onnx.name_scopes")
        if scopes:
            try:
                chain = ast.literal_eval(scopes)
            except (ValueError, SyntaxError):
                continue
            modules = [str(c) for c in chain[:-1] if c]  # the last entry is the op itself
            if modules:
                out[n.name] = re.sub(r"^(inner\.)+", "", modules[-1])
    return out


def group_nodes(
    names: Sequence[str], granularity: str, scopes: Mapping[str, str] | None = None
) -> dict[str, list[str]]:
    """Candidates grouped per node, or per layer (by a ``layer.N``/``block_N`` prefix of the
    node's module scope or name)."""
    groups: dict[str, list[str]] = {}
    for n in names:
        key = n
        if granularity == "layer":
            label = (scopes or {}).get(n, n)
            match = _LAYER.match(label)
            key = match.group(1) if match else n
        groups.setdefault(key, []).append(n)
    return groups


@dataclass
class SearchResult:
    """costs: loss (metric drop) per group quantized alone; kept: groups kept float, in rank
    order; trace: (number kept, simulated drop) for every evaluation of the search.
    timed_out: the time budget ended the search; ``kept`` is then the best set found by then
    (the fewest groups kept float within ``max_drop``; else every group)."""

    full_drop: float
    costs: dict[str, float] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)
    ranking: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    trace: list[tuple[int, float]] = field(default_factory=list)
    final_drop: float = 0.0
    timed_out: bool = False
    evaluations: int = 0
    cost_method: str = "each"
    blocks: list[dict[str, Any]] = field(default_factory=list)


class _OutOfTime(Exception):
    pass


# up to this many groups, each is measured alone; above it, contiguous blocks are measured and
# the costly ones split (``_block_costs``)
EACH_MAX = 48
FIRST_BLOCKS = 8
BLOCK_MEASUREMENTS = 24  # measurements after the first blocks (two per split)
REFINE_MAX = 8
REFINE_MISSES = 2  # the refinement stops after this many groups in a row could not go back


def _block_costs(
    order: list[str], cost: Callable[[list[str]], float], full_drop: float
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Costs of ``order``'s groups (in graph order) from a few measurements of blocks.

    Quantization error is not additive: on a deep CNN an early node's small error is amplified
    by everything after it (the PP-OCRv4 detector: a first-layer node alone costs 0.16 of
    cosine while its own output error is 0.08 %, and mid-network nodes alone cost 1e-4), so
    a node's cost must be measured at the model's output. Contiguous blocks of the graph are
    measured quantized alone (the rest float); the costliest block is split in two and both
    halves measured, until single groups are resolved, the costliest block is cheap (below
    1 % of the full drop) or ``BLOCK_MEASUREMENTS`` is reached. Each group gets its block's
    cost divided by the block's size, so that single groups measured costly rank first and
    blocks rank by cost per group; graph order breaks ties.
    """
    from ...progress import progress

    n = len(order)
    size = max(1, -(-n // FIRST_BLOCKS))
    todo = [order[i : i + size] for i in range(0, n, size)]
    measured: list[tuple[list[str], float]] = []
    with progress("partial: blocks of nodes quantized alone") as bar:
        for block in todo:
            measured.append((block, cost(block)))
            bar.advance()
        extra = 0
        while extra + 2 <= BLOCK_MEASUREMENTS:
            open_blocks = [(b, c) for b, c in measured if len(b) > 1]
            if not open_blocks:
                break
            block, c = max(open_blocks, key=lambda bc: bc[1])
            if c <= 0.01 * max(full_drop, 0.0):
                break
            measured.remove((block, c))
            half = len(block) // 2
            for part in (block[:half], block[half:]):
                measured.append((part, cost(part)))
                bar.advance()
            extra += 2
    costs: dict[str, float] = {}
    blocks: list[dict[str, Any]] = []
    for block, c in measured:
        for key in block:
            costs[key] = c / len(block)
        blocks.append({"first": block[0], "last": block[-1], "groups": len(block), "cost": c})
    blocks.sort(key=lambda b: order.index(b["first"]))
    return {k: costs[k] for k in order}, blocks


def search_kept(
    fp32: Any,
    quantized: Any,
    groups: Mapping[str, Sequence[str]],
    evaluate: Evaluate,
    max_drop: float,
    *,
    rank_by: str = "loss",
    weight_sizes: Mapping[str, int] | None = None,
    deadline: float | None = None,
    cost_evaluate: Evaluate | None = None,
) -> SearchResult:
    """Keep the fewest top-ranked groups float so that ``evaluate(model) <= max_drop``.

    ``cost_evaluate`` (default ``evaluate``) measures each group quantized alone, for the
    ranking only: a cheaper one (fewer samples) keeps the search short on large inputs. It also
    finds first how many to keep (doubling, then bisection), and ``evaluate`` takes over from
    that answer; every drop the result is judged by comes from ``evaluate``. ``deadline`` (a
    ``time.monotonic()`` value): no evaluation starts after it; the best set found so far is
    returned with ``timed_out``. Progress is shown on a terminal.
    """
    from ...progress import progress

    seen: list[tuple[list[str], float]] = []  # (kept groups, drop) of every evaluation

    def measure(kept: list[str], model: Any = None, how: Evaluate | None = None) -> float:
        if deadline is not None and time.monotonic() > deadline:
            raise _OutOfTime
        if model is None:
            model = revert_nodes(quantized, fp32, [n for k in kept for n in groups[k]])
        drop = (how or evaluate)(model)
        if how is None or how is evaluate:  # only drops on the full data judge a result
            seen.append((list(kept), drop))
        res.evaluations += 1
        return drop

    res = SearchResult(full_drop=float("nan"))
    try:
        full = measure([], quantized)
    except _OutOfTime:
        res.timed_out, res.kept = True, list(groups)
        return res
    res.full_drop = full
    res.trace.append((0, full))
    if full <= max_drop:
        res.final_drop = full
        return res
    try:
        for key, members in groups.items():
            res.weights[key] = int(sum((weight_sizes or {}).get(n, 1) for n in members))
        if len(groups) <= EACH_MAX:
            res.cost_method = "each"
            with progress("partial: each node quantized alone", total=len(groups)) as bar:
                for key in groups:
                    res.costs[key] = measure([k for k in groups if k != key], how=cost_evaluate)
                    bar.advance()
        else:
            res.cost_method = "blocks"
            res.costs, res.blocks = _block_costs(
                list(groups),
                lambda block: measure(
                    [k for k in groups if k not in set(block)], how=cost_evaluate
                ),
                full,
            )
        if rank_by == "loss_per_weight":
            res.ranking = sorted(res.costs, key=lambda k: -res.costs[k] / max(res.weights[k], 1))
        else:
            res.ranking = sorted(res.costs, key=lambda k: -res.costs[k])
        drops: dict[int, float] = {0: full}

        with progress("partial: searching how many to keep float") as bar:

            def at(k: int) -> float:
                if k not in drops:
                    drops[k] = measure(res.ranking[:k])
                    res.trace.append((k, drops[k]))
                    bar.advance()
                return drops[k]

            n = len(res.ranking)

            def fewest(fits: Callable[[int], bool], lo: int, hi: int) -> int:
                """The smallest k in (lo, n] that fits: doubling from ``hi``, then halving."""
                while hi < n and not fits(hi):
                    lo, hi = hi, min(2 * hi, n)
                hi = min(hi, n)
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if fits(mid):
                        hi = mid
                    else:
                        lo = mid
                return hi

            lo, hi = 0, 1
            if cost_evaluate is not None and cost_evaluate is not evaluate:
                # the search on the cost samples first (PP-OCRv4 detector: 2 images instead of
                # 8 for 14 steps), then the full data from its answer: growing if it does not
                # fit there, the refinement below if it does
                def cheap_fits(k: int) -> bool:
                    bar.advance()
                    return measure(res.ranking[:k], how=cost_evaluate) <= max_drop

                k = fewest(cheap_fits, 0, 1)
                lo, hi = (k, k + max(1, k // 8)) if at(k) > max_drop else (k - 1, k)
            hi = fewest(lambda k: at(k) <= max_drop, lo, hi)
            res.kept = res.ranking[:hi]
            res.final_drop = at(hi) if hi < len(res.ranking) or hi in drops else 0.0
            # refine: quantize back any kept group the budget can afford (cheapest loss first),
            # so the result keeps no group float that it does not need
            refine = sorted(res.kept, key=lambda k: res.costs[k])
            if res.cost_method == "blocks":
                refine = refine[:REFINE_MAX]
            misses = 0
            for key in refine:
                trial = [k for k in res.kept if k != key]
                drop = measure(trial)
                res.trace.append((len(trial), drop))
                bar.advance()
                if drop <= max_drop:
                    res.kept, res.final_drop, misses = trial, drop, 0
                elif (misses := misses + 1) >= REFINE_MISSES and res.cost_method == "blocks":
                    break  # the cheapest groups left cost too much: so will the rest
    except _OutOfTime:
        res.timed_out = True
        res.kept, res.final_drop = _best_so_far(seen, max_drop, list(groups))
        for key in groups:  # rank what was not measured after what was
            if key not in res.ranking:
                res.ranking.append(key)
        res.ranking = [*res.kept, *[k for k in res.ranking if k not in res.kept]]
    return res


def _best_so_far(
    seen: Sequence[tuple[list[str], float]], max_drop: float, everything: list[str]
) -> tuple[list[str], float]:
    """The evaluated set with the fewest groups kept float within ``max_drop``; when none is
    within it, every group kept float (the float model is always within the budget)."""
    ok = [(kept, drop) for kept, drop in seen if drop <= max_drop]
    if ok:
        return min(ok, key=lambda kd: (len(kd[0]), kd[1]))
    return list(everything), 0.0


def make_evaluator(
    reference: Mapping[str, np.ndarray],
    feed: Feed,
    metric: Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray], Feed], float],
    threads: int = 0,
) -> Evaluate:
    """``evaluate(model) -> metric(ref, ref) - metric(ref, model's outputs)`` on ``feed``."""
    from ...runtime import SessionConfig, make_session
    from ..report import eval_batch_rows, run_batched

    base = float(metric(reference, reference, feed))
    rows = eval_batch_rows(feed)
    n = max(1, max((len(v) for v in feed.values() if np.ndim(v)), default=1))
    batch_bytes = rows * sum(np.asarray(v).nbytes for v in feed.values()) / n
    # large inputs: no memory arena, whose peak would outlive each run (measured: the 4.7 MB
    # OCR detector at 960x960 holds ~1.8 GB less without it)
    sconf = SessionConfig(intra_op_threads=threads, memory_arena=batch_bytes < (1 << 20))

    def evaluate(model: Any) -> float:
        session = make_session(model, sconf)
        try:
            outputs = run_batched(session, feed, batch_size=rows)
        finally:
            del session
            release_memory()
        return base - float(metric(reference, outputs, feed))

    return evaluate


def release_memory() -> None:
    """Hand freed heap memory back to the OS (glibc keeps it otherwise, and every session of
    the search frees its activations at a different place)."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
