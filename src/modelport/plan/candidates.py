"""Which candidates make sense for this model, this hardware and the inputs given.

The model's op histogram says what it is (MatMul-heavy transformer, Conv CNN, MLP); the target
and the CPU say what can pay off (int8 needs integer kernels, fp16 a GPU); the inputs say what
can be built at all (static int8 needs calibration data, partial int8 a budget and eval data,
structured pruning a PyTorch source and a fine-tune hook). Every candidate that is *not* built is
listed with the reason, so the report shows what was considered.

Candidates come out in the order the search runs them: cheap and promising first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Candidate",
    "ModelProfile",
    "SessionSetting",
    "generate_candidates",
    "profile_model",
    "session_settings",
]

KINDS = ("fp32", "graph", "quantize", "prune")


@dataclass(frozen=True)
class Candidate:
    """A model variant to build and measure.

    name: short unique name ("int8-dynamic", "pruned-50+int8-static").
    kind: which builder makes it: "fp32" (the input itself), "graph", "quantize", "prune".
    options: the builder's options (e.g. {"mode": "static", "per_channel": False}).
    base: build on the result of this other candidate instead of the fp32 model.
    cost: build time relative to measuring the fp32 model (for the time budget's estimate).
    why: why this candidate makes sense here.
    """

    name: str
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)
    base: str | None = None
    cost: float = 1.0
    why: str = ""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "options": dict(self.options),
            "base": self.base,
            "why": self.why,
        }


@dataclass(frozen=True)
class SessionSetting:
    """ONNX Runtime settings a model is measured with: intra-op threads (0 = all cores) and
    sequential or parallel (inter-op) execution."""

    threads: int = 0
    parallel: bool = False

    def label(self, cores: int | None = None) -> str:
        t = "1 thread" if self.threads == 1 else f"{self.threads} threads"
        if self.threads == 0:
            t = f"all cores ({cores})" if cores else "all cores"
        return f"{t}, {'parallel' if self.parallel else 'sequential'}"

    def short(self) -> str:
        return f"t{self.threads or 'all'}-{'par' if self.parallel else 'seq'}"


def session_settings(target: str, cores: int) -> list[SessionSetting]:
    """The settings to measure every model with: on CPU 1 thread vs all cores, sequential vs
    parallel execution (one thread count when there is one core); on CUDA the default only
    (the GPU does the work, CPU threads only feed it)."""
    if target == "cuda":
        return [SessionSetting()]
    threads = (0, 1) if cores > 1 else (0,)
    return [SessionSetting(t, p) for p in (False, True) for t in threads]


@dataclass(frozen=True)
class ModelProfile:
    """What the graph is made of.

    ops: op type -> count.
    matmul_weights: weight elements in MatMul/Gemm with a constant weight (MACs per row).
    conv_macs: multiply-accumulates per sample in Conv (weights x output positions).
    attention: Softmax fed by a MatMul of two activations (self-attention).
    recurrent: LSTM/GRU/RNN present.
    kind: "transformer", "cnn", "mlp" or "other".
    """

    ops: Mapping[str, int]
    matmul_weights: int
    conv_macs: int
    attention: bool
    recurrent: bool
    kind: str

    def summary(self) -> str:
        top = ", ".join(f"{k} x{v}" for k, v in sorted(self.ops.items(), key=lambda kv: -kv[1])[:6])
        return (
            f"{self.kind}: {self.matmul_weights:,} MatMul/Gemm weights, "
            f"{self.conv_macs:,} Conv MACs per sample; ops {top}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ops": dict(self.ops),
            "matmul_weights": self.matmul_weights,
            "conv_macs": self.conv_macs,
            "attention": self.attention,
            "recurrent": self.recurrent,
        }


def profile_model(model: Any) -> ModelProfile:
    """The op histogram and where the compute is, from an ONNX ModelProto (weights need not be
    loaded: only their shapes are read).

    Compute, not weight count, decides CNN vs MLP: a Conv weight is applied at every output
    position, so per sample it costs weight elements x output height x width (from ONNX shape
    inference; 1 where a size is unknown).
    """
    import numpy as np

    inits = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    spatial = _spatial_sizes(model)
    ops: dict[str, int] = {}
    mm = conv = 0
    act_matmul_outputs: set[str] = set()
    for n in model.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
        if n.op_type in ("MatMul", "Gemm"):
            w = [inits[i] for i in n.input[:2] if i in inits]
            if w:
                mm += w[0]
            else:
                act_matmul_outputs.update(n.output)
        elif n.op_type in ("Conv", "ConvTranspose") and len(n.input) > 1:
            conv += inits.get(n.input[1], 0) * spatial.get(n.output[0], 1)
    attention = (
        "Attention" in ops
        or "MultiHeadAttention" in ops
        or _softmax_after_matmul(model, act_matmul_outputs)
    )
    recurrent = any(op in ops for op in ("LSTM", "GRU", "RNN"))
    if attention and mm >= conv:
        kind = "transformer"
    elif conv > mm:
        kind = "cnn"
    elif mm > 0 or recurrent:
        kind = "mlp"
    else:
        kind = "other"
    return ModelProfile(ops, mm, conv, attention, recurrent, kind)


def _spatial_sizes(model: Any) -> dict[str, int]:
    """Output name -> product of the dims after (batch, channels), where shape inference knows
    them."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is a hint here; without it Conv counts its weights only
        return {}
    out = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) > 2:
            size = 1
            for d in dims[2:]:
                size *= d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
            out[vi.name] = size
    return out


def _softmax_after_matmul(model: Any, act_outputs: set[str]) -> bool:
    """A Softmax within a few element-wise ops of an activation x activation MatMul."""
    if not act_outputs:
        return False
    producer = {o: n for n in model.graph.node for o in n.output}
    for n in model.graph.node:
        if n.op_type != "Softmax":
            continue
        frontier, depth = list(n.input[:1]), 0
        while frontier and depth < 4:
            nxt = []
            for t in frontier:
                if t in act_outputs:
                    return True
                p = producer.get(t)
                if p is not None and p.op_type in ("Add", "Mul", "Div", "Where", "Sub", "Cast"):
                    nxt.extend(p.input)
            frontier, depth = nxt, depth + 1
    return False


def generate_candidates(
    profile: ModelProfile,
    *,
    target: str = "cpu",
    calibration: bool = False,
    eval_data: bool = False,
    max_drop: float | None = None,
    torch_source: bool = False,
    finetune: bool = False,
    int8_kernels: bool = True,
) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """(candidates in search order, [(name, reason not generated)]).

    calibration: calibration data is available (static int8).
    eval_data: real evaluation data was given (partial int8 searches on it).
    max_drop: the drop budget (partial int8 needs one).
    torch_source / finetune: the model came from PyTorch and a fine-tune hook was given
        (structured pruning).
    int8_kernels: the CPU has int8 dot-product instructions (VNNI / ARM dotprod); without them
        int8 is still tried (measurement decides) but said to be unlikely to pay off.
    """
    cands: list[Candidate] = [
        Candidate(
            "fp32", "fp32", why="the baseline: the model as given, ORT's online optimizations"
        )
    ]
    skipped: list[tuple[str, str]] = []
    kind = profile.kind
    int8_note = "" if int8_kernels else " (no int8 dot-product instructions: may not pay off)"
    has_mm, has_conv = profile.matmul_weights > 0, profile.conv_macs > 0
    graph = Candidate(
        "fp32-graph",
        "graph",
        {"level": "extended"},
        cost=1.0,
        why="ONNX Runtime's extended graph optimizations saved offline (fusions, folding)",
    )
    fused = Candidate(
        "fp32-fused",
        "graph",
        {"level": None, "transformers": True},
        cost=1.5,
        why="the ORT transformers optimizer's fusions (Attention, SkipLayerNorm, BiasGelu)",
    )
    dyn = Candidate(
        "int8-dynamic",
        "quantize",
        {"mode": "dynamic", "per_channel": True},
        cost=2.0,
        why="int8 MatMul weights, activations quantized at run time: the mode for transformers "
        "and MLPs" + int8_note,
    )
    dyn_smooth = Candidate(
        "int8-dynamic-smooth",
        "quantize",
        {"mode": "dynamic", "per_channel": True, "smoothing": "auto"},
        cost=4.0,
        why="dynamic int8 after SmoothQuant-style activation smoothing (alpha chosen by "
        "measurement): activation outliers cost less fidelity, every MatMul stays int8",
    )
    dyn_pt = Candidate(
        "int8-dynamic-per-tensor",
        "quantize",
        {"mode": "dynamic", "per_channel": False},
        cost=2.0,
        why="dynamic int8 with one scale per weight tensor (the ORT default)",
    )
    st = Candidate(
        "int8-static",
        "quantize",
        {"mode": "static", "per_channel": True},
        cost=3.0,
        why="int8 weights and activations (QDQ, calibrated), per-channel weights: the mode for "
        "CNNs" + int8_note,
    )
    st_pt = Candidate(
        "int8-static-per-tensor",
        "quantize",
        {"mode": "static", "per_channel": False},
        cost=3.0,
        why="static int8 with per-tensor weights: fewer scales, sometimes faster",
    )
    st_ent = Candidate(
        "int8-static-entropy",
        "quantize",
        {"mode": "static", "per_channel": True, "calibration_method": "entropy"},
        cost=4.0,
        why="static int8 calibrated by entropy (KL) instead of min/max: robust to outliers",
    )
    partial = Candidate(
        "int8-partial",
        "quantize",
        {"mode": "partial", "partial_base": "static" if kind == "cnn" else "dynamic"},
        cost=15.0,
        why="int8 with the nodes that hurt most kept float until the drop fits the budget",
    )
    if target == "cuda":
        cands.append(graph)
        cands.append(
            Candidate(
                "fp16",
                "quantize",
                {"mode": "fp16"},
                cost=2.0,
                why="float16 weights and compute: Tensor Cores on the GPU",
            )
        )
        skipped.append(
            (
                "int8-*",
                "int8 on the CUDA execution provider has few kernels (QDQ runs as float); "
                "int8 on a GPU needs TensorRT",
            )
        )
    else:
        skipped.append(
            (
                "fp16",
                "CPU target: ONNX Runtime's CPU kernels run most fp16 ops through casts to "
                "fp32, so fp16 is slower there; it is a candidate with --target cuda",
            )
        )
        if kind == "cnn":
            if calibration:
                cands.append(st)
            cands.append(graph)
        elif kind == "transformer":
            if has_mm:
                cands += [dyn, dyn_smooth]
            cands.append(graph)
            cands.append(fused)
            if has_mm:
                cands.append(dyn_pt)
        else:
            if has_mm:
                cands.append(dyn)
            if calibration and (has_mm or has_conv):
                cands.append(st)
            cands.append(graph)
            if has_mm:
                cands.append(dyn_pt)
    prune_cands: list[Candidate] = []
    if torch_source and finetune and (has_conv or has_mm):
        for s in (50, 25):
            prune_cands.append(
                Candidate(
                    f"pruned-{s}",
                    "prune",
                    {"sparsity": s / 100},
                    cost=10.0,
                    why=f"structured pruning: {s}% of each layer's channels removed, then the "
                    "fine-tune hook recovers accuracy; a smaller dense model is faster everywhere",
                )
            )
            if target == "cpu":
                q = st if kind == "cnn" and calibration else dyn if has_mm else None
                if q is not None:
                    prune_cands.append(
                        Candidate(
                            f"pruned-{s}+{q.name}",
                            "quantize",
                            dict(q.options),
                            base=f"pruned-{s}",
                            cost=q.cost,
                            why=f"pruning and {q.name} stacked: the gains multiply",
                        )
                    )
    elif torch_source and not finetune:
        skipped.append(
            (
                "pruned-*",
                "structured pruning needs a fine-tune hook (--finetune MODULE:FUNCTION) to "
                "recover accuracy after channels are removed",
            )
        )
    elif finetune and not torch_source:
        skipped.append(("pruned-*", "structured pruning needs the PyTorch source (--torch ...)"))
    else:
        skipped.append(
            (
                "pruned-*",
                "structured pruning needs the PyTorch source (--torch ...) and a fine-tune hook "
                "(--finetune)",
            )
        )
    cands.extend(prune_cands)
    if target == "cpu":
        if kind == "cnn" and calibration:
            cands += [st_pt, st_ent]
        elif kind == "transformer" and calibration and has_mm:
            cands.append(
                Candidate(
                    "int8-static",
                    "quantize",
                    {"mode": "static", "per_channel": True},
                    cost=5.0,
                    why="static int8 on a transformer: often loses accuracy (activations with "
                    "outliers), measured anyway" + int8_note,
                )
            )
        if kind == "cnn" and not calibration:
            skipped.append(
                (
                    "int8-static",
                    "static int8 needs calibration data (--calibration, or --eval which is then "
                    "used for calibration too)",
                )
            )
            skipped.append(
                (
                    "int8-dynamic",
                    "dynamic int8 turns Conv into ConvInteger, slow or unsupported on CPU; "
                    "static int8 is the mode for CNNs",
                )
            )
        if max_drop is None:
            skipped.append(("int8-partial", "partial int8 needs a drop budget (--max-drop)"))
        elif not eval_data:
            skipped.append(
                ("int8-partial", "partial int8 searches on real data: give --eval (and --labels)")
            )
        elif partial.options["partial_base"] == "static" and not calibration:
            skipped.append(("int8-partial", "static-based partial int8 needs calibration data"))
        elif has_mm or (kind == "cnn" and has_conv):
            cands.append(partial)
    return cands, skipped
