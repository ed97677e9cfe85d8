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
    engine / precision: the engine that runs it and its float precision ("ort"/"fp32", or
        "openvino" with "fp32" or "bf16").
    """

    name: str
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)
    base: str | None = None
    cost: float = 1.0
    why: str = ""
    engine: str = "ort"
    precision: str = "fp32"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "options": dict(self.options),
            "base": self.base,
            "why": self.why,
            "engine": self.engine,
            "precision": self.precision,
        }


@dataclass(frozen=True)
class SessionSetting:
    """How a model is run when measured: the engine and its float precision, threads per
    inference (0 = all cores) and, on ONNX Runtime, sequential or parallel (inter-op) execution.
    The chosen row's setting is what the package's serving section records."""

    threads: int = 0
    parallel: bool = False
    engine: str = "ort"
    precision: str = "fp32"

    def label(self, cores: int | None = None) -> str:
        t = "1 thread" if self.threads == 1 else f"{self.threads} threads"
        if self.threads == 0:
            t = f"all cores ({cores})" if cores else "all cores"
        if self.engine != "ort":
            return f"{self.engine} {self.precision}, {t}"
        return f"{t}, {'parallel' if self.parallel else 'sequential'}"

    def short(self) -> str:
        if self.engine != "ort":
            return f"ov-{self.precision}-t{self.threads or 'all'}"
        return f"t{self.threads or 'all'}-{'par' if self.parallel else 'seq'}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "parallel": self.parallel,
            "engine": self.engine,
            "precision": self.precision,
        }


def settings_for(
    cand: Candidate, ort_settings: list[SessionSetting], cores: int
) -> list[SessionSetting]:
    """The settings a candidate is measured with: ORT's for ORT candidates; for another engine,
    its precision at 1 thread and all cores (OpenVINO has no parallel mode to choose)."""
    if cand.engine == "ort":
        return ort_settings
    threads = (0, 1) if cores > 1 else (0,)
    return [SessionSetting(t, False, cand.engine, cand.precision) for t in threads]


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
    openvino: tuple[str, ...] | None = None,
) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """(candidates in search order, [(name, reason not generated)]).

    calibration: calibration data is available (static int8).
    eval_data: real evaluation data was given (partial int8 searches on it).
    max_drop: the drop budget (partial int8 needs one).
    torch_source / finetune: the model came from PyTorch and a fine-tune hook was given
        (structured pruning).
    int8_kernels: the CPU has int8 dot-product instructions (VNNI / ARM dotprod); without them
        int8 is still tried (measurement decides) but said to be unlikely to pay off.
    openvino: the float precisions OpenVINO runs natively here (``runtime.native_precisions``),
        or None when OpenVINO is not installed: then no OpenVINO candidate. bf16 candidates
        exist only when "bf16" is in it.
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
        ov_c, ov_skip = _openvino_candidates(
            profile, openvino, calibration or eval_data, eval_data, max_drop
        )
        cands += ov_c
        skipped += ov_skip
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


def _openvino_candidates(
    profile: ModelProfile,
    precisions: tuple[str, ...] | None,
    calibration: bool,
    eval_data: bool,
    max_drop: float | None,
) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """OpenVINO reading the same model.onnx: fp32, bf16 where native, NNCF int8 (with bf16 for
    the float rest where native) and NNCF int8 held to the drop budget."""
    if precisions is None:
        return [], [
            ("ov-*", "OpenVINO is not installed: pip install 'modelport[openvino]' to plan with it")
        ]
    skipped: list[tuple[str, str]] = []
    cands = [
        Candidate(
            "ov-fp32",
            "fp32",
            engine="openvino",
            precision="fp32",
            cost=1.5,
            why="the same model.onnx on OpenVINO's CPU plugin (its own fusions and kernels)",
        )
    ]
    bf16 = "bf16" in precisions
    if bf16:
        cands.append(
            Candidate(
                "ov-bf16",
                "fp32",
                engine="openvino",
                precision="bf16",
                cost=1.5,
                why="bf16 math on the CPU's matrix units (AMX / AVX512-BF16), weights as given",
            )
        )
    else:
        skipped.append(
            (
                "ov-bf16",
                "this CPU has no native bf16 (AMX-BF16 or AVX512-BF16), or it is disabled "
                "with MODELPORT_DISABLE_PRECISIONS; emulated bf16 is slower than fp32",
            )
        )
    rest = "bf16" if bf16 else "fp32"
    if profile.matmul_weights == 0 and profile.conv_macs == 0:
        return cands, [*skipped, ("ov-int8*", "no MatMul/Gemm/Conv with weights to quantize")]
    if not calibration:
        return cands, [
            *skipped,
            ("ov-int8*", "NNCF int8 needs calibration data: give --calibration or --eval"),
        ]
    model_type = "transformer" if profile.kind == "transformer" else None
    cands.append(
        Candidate(
            f"ov-int8-{rest}",
            "nncf",
            {"precision": rest, "model_type": model_type},
            engine="openvino",
            precision=rest,
            cost=8.0,
            why=f"NNCF static int8 (QDQ in model.onnx) run by OpenVINO in int8, {rest} for the "
            "rest" + (" (transformer preset)" if model_type else ""),
        )
    )
    if max_drop is not None and eval_data:
        cands.append(
            Candidate(
                f"ov-int8-{rest}-partial",
                "nncf",
                {"precision": rest, "model_type": model_type, "partial": True},
                engine="openvino",
                precision=rest,
                cost=25.0,
                why="NNCF int8 with the most sensitive MatMuls/Convs kept float "
                f"({rest}) until the drop fits the budget",
            )
        )
    elif max_drop is not None:
        skipped.append(("ov-int8-partial", "partial int8 searches on real data: give --eval"))
    return cands, skipped
