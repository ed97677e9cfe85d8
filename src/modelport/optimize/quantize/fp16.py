"""float16 conversion for CPU/GPU inference: weights and compute in fp16, float32 inputs and
outputs kept by default, and ops this ONNX Runtime build has no fp16 kernel for left in fp32.

ONNX Runtime's converter (``onnxruntime.transformers.float16``) does the rewriting; which ops to
block is found by loading the result and reading the missing-kernel error, so the list fits the
ONNX Runtime actually installed rather than a hard-coded table. The converter appends the Cast
nodes it adds for float32 inputs/outputs at the end of the graph, after their consumers, which
onnx.checker rejects: the result is sorted topologically before it is saved.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ...errors import OptimizationError
from ..report import OptimizeReport

__all__ = ["convert_fp16", "topological_sort"]

_FP16_BLOCK = [
    "Range",
    "TopK",
    "NonMaxSuppression",
    "RoiAlign",
    "Resize",
    "Upsample",
    "CumSum",
    "Mod",
    "RandomNormalLike",
    "RandomUniformLike",
]


def convert_fp16(src: Path, work: Path, config: Any, report: OptimizeReport) -> Path:
    """float16 conversion; ops this build of ONNX Runtime cannot run in fp16 are found by trying
    and left in float32."""
    import re

    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from ...runtime import make_session

    model = onnx.load(str(src))
    block = list(_FP16_BLOCK)
    out = work / "fp16.onnx"
    found: list[str] = []
    for _ in range(20):
        try:
            half = convert_float_to_float16(
                copy.deepcopy(model),
                keep_io_types=config.keep_io_types,
                op_block_list=block,
                node_block_list=list(config.exclude),
            )
        except Exception as exc:
            raise OptimizationError(f"float16 conversion failed: {exc}") from exc
        topological_sort(half.graph)
        save_model(half, out)
        try:
            make_session(out)
            break
        except Exception as exc:
            m = re.search(r"implementation for (\w+)\(", str(exc))
            if not m or m.group(1) in block:
                raise OptimizationError(
                    f"the float16 model does not load in ONNX Runtime: {exc}"
                ) from exc
            block.append(m.group(1))
            found.append(m.group(1))
    report.choices.append(
        "fp16: float16 weights and compute"
        + ("; float32 inputs/outputs kept" if config.keep_io_types else "")
    )
    if found:
        report.choices.append(
            f"no float16 kernel in this ONNX Runtime for {found}: kept in float32"
        )
    report.details["fp16_kept_float32_ops"] = sorted(set(found))
    report.float_ops = {
        op: n for op, n in _op_counts(onnx.load(str(out))).items() if op in set(block)
    }
    return out


def outer_refs(node: Any) -> set[str]:
    """The names a node's subgraphs (If branches, Loop/Scan bodies) read from the outer scope."""
    refs: set[str] = set()

    def walk(g: Any, local: set[str]) -> None:
        local = local | {i.name for i in g.input} | {i.name for i in g.initializer}
        for n in g.node:
            refs.update(x for x in n.input if x and x not in local)
            for a in n.attribute:
                for sub in [a.g] if a.HasField("g") else list(a.graphs):
                    walk(sub, local)
            local |= set(n.output)
        refs.update(o.name for o in g.output if o.name not in local)

    for a in node.attribute:
        for sub in [a.g] if a.HasField("g") else list(a.graphs):
            walk(sub, set())
    return refs


def topological_order(graph: Any) -> list[int] | None:
    """Indices of ``graph.node`` such that every node comes after the producers of what it reads
    (its inputs and the outer-scope names its subgraphs read), the given order kept otherwise;
    None when the graph has a cycle."""
    import heapq

    nodes = list(graph.node)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    deps = [
        {producer[x] for x in {*n.input, *outer_refs(n)} if x in producer and producer[x] != i}
        for i, n in enumerate(nodes)
    ]
    users: list[list[int]] = [[] for _ in nodes]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    waiting = [len(d) for d in deps]
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    return order if len(order) == len(nodes) else None


def reorder_nodes(graph: Any, order: list[int]) -> None:
    """Put ``graph.node`` in ``order`` (indices), in place."""
    copies = [type(graph.node[i])() for i in order]
    for c, i in zip(copies, order, strict=True):
        c.CopyFrom(graph.node[i])
    del graph.node[:]
    graph.node.extend(copies)


def topological_sort(graph: Any) -> None:
    """Reorder ``graph.node`` in place so every node comes after the producers of its inputs
    (including the outer-scope names its subgraphs read); the order is otherwise kept."""
    order = topological_order(graph)
    if order is None:
        raise OptimizationError("the float16 graph has a cycle; it cannot be sorted")
    reorder_nodes(graph, order)


def save_model(model: Any, path: Path) -> None:
    import onnx

    if model.ByteSize() > 1_800_000_000:
        onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data")
    else:
        onnx.save_model(model, str(path))


def _op_counts(model: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in model.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts
