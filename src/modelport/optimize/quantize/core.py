"""Quantization of a model package: dynamic int8, static int8 (QDQ), partial and fp16.

    from modelport.optimize.quantize import QuantizeConfig, quantize
    package, report = quantize(pkg, "out/q", QuantizeConfig.dynamic())

ONNX Runtime's quantizers do the rewriting (``quantize_dynamic``, ``quantize_static``, and the
fp16 converter); modelport adds what they leave to the user: types chosen for this CPU, shape
pre-processing that also works on fused graphs, bounded-memory calibration, a sensitivity search
that keeps the harmful nodes float until a budget is met, and a measured report of every result.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...data import recorded_dims
from ...errors import OptimizationError, UsageError, output_exists
from ...package import ModelPackage, derive_package
from ..calibration import CALIBRATION_METHODS, DataSource, check_data
from ..report import EvalConfig, OptimizeReport

__all__ = [
    "MODES",
    "QUANTIZED_OPS",
    "QuantTypes",
    "QuantizeConfig",
    "calibrate_to_file",
    "is_static",
    "quantize",
    "quantize_dynamic_int8",
    "quantize_static_int8",
]

MODES = ("dynamic", "static", "partial", "fp16")
# config field -> the modes it applies to (fields not listed apply to all). describe() leaves the
# others out, so a package's history records only what was used; the CLI refuses them.
FIELD_MODES: dict[str, tuple[str, ...]] = {
    "calibration": ("static", "partial"),
    "calibration_method": ("static", "partial"),
    "calibration_samples": ("static", "partial"),
    "weight_type": ("dynamic", "static", "partial"),
    "activation_type": ("static", "partial"),
    "per_channel": ("dynamic", "static", "partial"),
    "reduce_range": ("dynamic", "static", "partial"),
    "partial_base": ("partial",),
    "granularity": ("partial",),
    "rank_by": ("partial",),
    "smoothing": ("dynamic", "partial"),
    "keep_io_types": ("fp16",),
    # partial's search measures every candidate on ONNX Runtime: its budget holds there only
    "engine": ("dynamic", "static", "fp16"),
}
WEIGHT_TYPES = ("int8", "uint8")

# ops that only appear in an already-quantized (or fp16-converted) model
QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "ConvInteger",
        "QLinearConv",
        "QLinearMatMul",
        "QLinearAdd",
        "QLinearMul",
        "QAttention",
        "QGemm",
        "MatMulIntegerToFloat",
        "DynamicQuantizeMatMul",
        "DynamicQuantizeLSTM",
        "QEmbedLayerNormalization",
        "QLinearGlobalAveragePool",
        "QLinearSoftmax",
        "MatMulNBits",
        "GatherBlockQuantized",
        "QLinearSigmoid",
        "QLinearLeakyRelu",
        "QLinearConcat",
        "QLinearAveragePool",
    }
)
# ops that ORT's dynamic quantizer handles well on CPU (Conv would become the slow ConvInteger)
DYNAMIC_OPS = ("MatMul", "Attention", "LSTM", "Gather", "EmbedLayerNormalization")
# ops that have no int8 kernel and are always left float; listed in the report
_SHAPE_OPS = frozenset(
    {
        "Shape",
        "Gather",
        "Unsqueeze",
        "Squeeze",
        "Concat",
        "Reshape",
        "Slice",
        "Cast",
        "Constant",
        "ConstantOfShape",
        "Transpose",
        "Identity",
        "Expand",
        "Range",
        "Equal",
        "Where",
        "Flatten",
    }
)


@dataclass(frozen=True)
class QuantizeConfig:
    """How to quantize. Build it with a preset: ``QuantizeConfig.dynamic()``, ``.static(data)``,
    ``.partial(eval_data, max_drop=...)``, ``.fp16()``; ``dataclasses.replace`` to adjust.

    mode: "dynamic" (int8 weights, activations quantized at run time), "static" (int8 weights and
        activations, QDQ, calibrated), "partial" (int8 with the most harmful nodes kept float
        until the metric drop is within ``max_drop``), "fp16".
    calibration: calibration data for static (and static-based partial): path, feed or iterable.
    calibration_method: "minmax", "entropy" or "percentile".
    calibration_samples: use at most this many calibration samples (None: all).
    weight_type / activation_type / per_channel / reduce_range: None chooses for this CPU
        (see ``optimize.hardware``); set them to override.
    exclude: node names to keep float in any mode.
    max_drop: allowed drop of the metric (see ``EvalConfig.metric``): partial's target; for the
        other modes the budget beyond which the report fails (loud warning, CLI exit code 1).
        None: ``report.DEFAULT_MAX_DROP`` (0.01) for the other modes; partial needs one.
    partial_base: the int8 scheme partial starts from: "dynamic" or "static" (None: static when
        calibration data is given, else dynamic).
    granularity: partial keeps float whole "node"s or whole "layer"s.
    rank_by: partial ranks by "loss_per_weight" (loss of the node quantized alone per weight
        element: keeps float first the nodes that cost little time; embedding lookups are free)
        or by "loss" alone.
    matmul_const_only: dynamic/partial quantize only MatMuls with a constant weight (the
        activation x activation MatMuls of attention stay float). None: True.
    smoothing: SmoothQuant-style activation smoothing before dynamic int8 (``optimize.quantize.smoothing``):
        an alpha in (0, 1), "auto" (alpha chosen by measuring the metric; none if no alpha
        helps) or None. Statistics come from the calibration data, else the evaluation data.
        Partial uses "auto" by default.
    keep_io_types: fp16 keeps float32 inputs and outputs.
    allow_mismatch: write the result even when it fails onnx.checker (the report records it);
        without it such a result is refused (VerificationError) and nothing is written.
    evaluation: how results are measured (eval data, labels, metric, latency batch sizes).
    threads: threads for measurement (0: the engine's default, or the serving section's).
    engine: the engine the result is measured on and will be served with: "ort", "openvino",
        "openvino:bf16" (then written into the new package's serving section), or "package"/None:
        the input package's serving section (ONNX Runtime when it names none). Not for partial,
        whose search runs on ONNX Runtime.
    time_budget_s: partial: seconds for the search; no evaluation starts after it and the best
        result found by then is kept (None: no limit).
    """

    mode: str = "dynamic"
    calibration: DataSource | None = None
    calibration_method: str = "minmax"
    calibration_samples: int | None = 256
    weight_type: str | None = None
    activation_type: str | None = None
    per_channel: bool | None = None
    reduce_range: bool | None = None
    exclude: tuple[str, ...] = ()
    max_drop: float | None = None
    partial_base: str | None = None
    granularity: str = "node"
    rank_by: str = "loss_per_weight"
    matmul_const_only: bool | None = None
    smoothing: float | str | None = None
    keep_io_types: bool = True
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    threads: int = 0
    time_budget_s: float | None = None
    allow_mismatch: bool = False
    engine: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"mode '{self.mode}' is not one of {list(MODES)}")
        if self.engine is not None:
            from ...runtime import PACKAGE_SPEC, engine_config

            if self.mode not in FIELD_MODES["engine"]:
                raise UsageError(
                    "engine applies to dynamic, static and fp16: partial's search measures its "
                    "candidates on ONNX Runtime (for an OpenVINO int8 model within a budget, "
                    "modelport plan measures ov-int8-*-partial)"
                )
            if self.engine != PACKAGE_SPEC:
                chosen = engine_config(self.engine)  # unknown engine / precision: UsageError
                if self.mode == "dynamic" and chosen.engine == "openvino":
                    raise UsageError(
                        f"engine '{self.engine}' with mode dynamic: OpenVINO runs ONNX Runtime's "
                        "dynamic int8 ops (DynamicQuantizeLinear, MatMulInteger) in float (read "
                        "back: fp32), so the int8 would be lost; use mode static (QDQ, which "
                        "OpenVINO runs in int8) or modelport plan's ov-int8 candidates"
                    )
        if self.calibration_method not in CALIBRATION_METHODS:
            raise UsageError(
                f"calibration_method '{self.calibration_method}' is not one of "
                f"{list(CALIBRATION_METHODS)}"
            )
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise UsageError(f"time budget must be > 0 (got {self.time_budget_s:g} s)")
        if self.time_budget_s is not None and self.mode != "partial":
            raise UsageError("a time budget applies to --mode partial only")
        for name in ("weight_type", "activation_type"):
            v = getattr(self, name)
            if v is not None and v not in WEIGHT_TYPES:
                raise UsageError(f"{name}={v!r} is not one of {list(WEIGHT_TYPES)}")
        if self.mode == "static" and self.calibration is None:
            raise UsageError(
                "static quantization needs calibration data: --calibration DATA on the command "
                "line (QuantizeConfig.static(DATA) in Python), e.g. a few hundred "
                "representative inputs in an .npz by input name or a directory of .npz files"
            )
        if self.mode == "partial" and self.max_drop is None:
            raise UsageError(
                "partial quantization needs a budget: max_drop=... (--max-drop X), "
                "the allowed drop of the metric, e.g. 0.002 for cosine 0.998"
            )
        if self.max_drop is not None and self.max_drop < 0:
            raise UsageError(f"max_drop must be >= 0 (got {self.max_drop})")
        if self.partial_base not in (None, "dynamic", "static"):
            raise UsageError(f"partial_base={self.partial_base!r} is not 'dynamic' or 'static'")
        if self.partial_base == "static" and self.calibration is None:
            raise UsageError("partial_base='static' needs calibration data (calibration=...)")
        if self.granularity not in ("node", "layer"):
            raise UsageError(f"granularity={self.granularity!r} is not 'node' or 'layer'")
        if self.rank_by not in ("loss", "loss_per_weight"):
            raise UsageError(f"rank_by={self.rank_by!r} is not 'loss' or 'loss_per_weight'")
        if self.mode == "dynamic" and self.activation_type not in (None, "uint8"):
            raise UsageError(
                "dynamic quantization always uses uint8 activations "
                "(ONNX Runtime's DynamicQuantizeLinear); leave activation_type unset"
            )
        if (
            self.smoothing is not None
            and self.smoothing != "auto"
            and (isinstance(self.smoothing, str) or not 0 < float(self.smoothing) < 1)
        ):
            raise UsageError(
                f"smoothing={self.smoothing!r}: give an alpha in (0, 1), 'auto' or None"
            )
        if self.calibration_samples is not None and self.calibration_samples < 1:
            raise UsageError("calibration_samples must be >= 1 or None (all)")

    @classmethod
    def dynamic(cls, **overrides: Any) -> QuantizeConfig:
        """int8 weights, activations at run time: transformers, RNNs, MLPs."""
        return cls(mode="dynamic", **overrides)

    @classmethod
    def static(
        cls, calibration: DataSource, method: str = "minmax", **overrides: Any
    ) -> QuantizeConfig:
        """int8 weights and activations (QDQ), calibrated on ``calibration``: CNNs."""
        return cls(mode="static", calibration=calibration, calibration_method=method, **overrides)

    @classmethod
    def partial(
        cls, eval_data: DataSource | None = None, max_drop: float = 0.002, **overrides: Any
    ) -> QuantizeConfig:
        """int8 with the most harmful nodes kept float until the metric drop <= ``max_drop``."""
        evaluation = overrides.pop("evaluation", EvalConfig())
        if eval_data is not None:
            evaluation = dataclasses.replace(evaluation, data=eval_data)
        overrides.setdefault("smoothing", "auto")
        return cls(mode="partial", max_drop=max_drop, evaluation=evaluation, **overrides)

    @classmethod
    def fp16(cls, **overrides: Any) -> QuantizeConfig:
        """float16 weights and compute; float32 inputs/outputs; unsupported ops stay fp32."""
        return cls(mode="fp16", **overrides)

    def describe(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d = {k: v for k, v in d.items() if self.mode in FIELD_MODES.get(k, (self.mode,))}
        if "calibration" in d:
            d["calibration"] = _describe_data(self.calibration)
        ev = self.evaluation
        d["evaluation"] = {
            "data": _describe_data(ev.data),
            "labels": _describe_data(ev.labels),
            "metric": ev.metric
            if isinstance(ev.metric, str | None)
            else getattr(ev.metric, "__name__", "callable"),
            "batch_sizes": list(ev.batch_sizes),
            "latency_dims": ev.latency_dims,
        }
        d["exclude"] = list(self.exclude)
        return d


def _describe_data(data: Any) -> Any:
    if data is None or isinstance(data, str | int | float):
        return data
    if isinstance(data, os.PathLike):
        return str(data)
    return f"<{type(data).__name__}>"


# --- the public function -----------------------------------------------------------------------


def quantize(
    package: ModelPackage | str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: QuantizeConfig | None = None,
    *,
    force: bool = False,
) -> tuple[ModelPackage, OptimizeReport]:
    """Quantize ``package`` into a new package at ``out``; measure it; return (package, report).

    The input package, its files and ``config`` are not modified. The report (also saved in the
    new package's manifest history) holds the types chosen and why, the size, latency at batch 1
    and at a larger batch, output fidelity, the metric drop, accuracy when labels are given, the
    ops left float, and loud warnings when the result is slower or outside the budget.
    """
    from ..hardware import choose_types, detect_cpu
    from ..report import check_result, measure

    t0 = time.perf_counter()
    config = config or QuantizeConfig()
    pkg = package if isinstance(package, ModelPackage) else ModelPackage.load(package)
    if Path(out).exists() and not force:
        raise output_exists(out)
    model = pkg.load_onnx()
    refuse_quantized(model, config.mode, derived=pkg.spec.parent is not None)
    # bad data fails now, not after pre-processing and quantization
    check_data(config.calibration, pkg.signature)
    check_data(config.evaluation.data, pkg.signature)
    cpu = detect_cpu()
    report = OptimizeReport(step="quantize", config=config.describe())
    report.details["cpu"] = cpu.to_dict()
    report.choices.append(f"CPU: {cpu.summary()}")
    with tempfile.TemporaryDirectory(prefix="modelport-quantize-") as tmp:
        work = Path(tmp)
        src = work / "input.onnx"
        _save(model, src)
        if config.mode == "fp16":
            from .fp16 import convert_fp16

            result = convert_fp16(src, work, config, report)
        else:
            types = choose_types(cpu, "static" if is_static(config) else "dynamic")
            opts = _resolve_types(config, types, report)
            base = src
            if is_static(config) and opts.per_channel:
                base = upgrade_opset(src, work, PER_CHANNEL_OPSET, report)
            pre = preprocess(base, work, report)
            if config.mode == "dynamic":
                if config.smoothing is not None:
                    from .partial import smoothed_base

                    pre = smoothed_base(pre, work, opts, config, pkg, report)
                result = quantize_dynamic_int8(
                    pre, work / "dynamic.onnx", opts, list(config.exclude)
                )
                convs = sum(n.op_type in ("Conv", "ConvTranspose") for n in model.graph.node)
                if convs:
                    report.choices.append(
                        f"{convs} convolution(s) stay float: dynamic int8 does not quantize Conv "
                        "(ConvInteger is slow on CPU); --mode static --calibration DATA quantizes them"
                    )
            elif config.mode == "static":
                if config.smoothing is not None:
                    report.choices.append(
                        "smoothing is implemented for dynamic int8 only; not used"
                    )
                cache = calibrate_to_file(pre, work, config, pkg, report)
                result = quantize_static_int8(
                    pre, work / "static.onnx", opts, config, cache, list(config.exclude)
                )
            else:
                from .partial import quantize_partial

                result = quantize_partial(pre, work, opts, config, pkg, report)
            _list_float_ops(result, report, config)
        import onnx

        qmodel = onnx.load(str(result))
        if _toposort(qmodel.graph):
            _save(qmodel, result)
            report.choices.append(
                "ONNX Runtime's quantizer left the nodes out of topological order (a graph with "
                "If/Loop nodes); they were re-sorted"
            )
        check_result(qmodel, report, config.allow_mismatch)
        engine = _measurement_engine(config, pkg, report)
        measure(
            src,
            result,
            pkg.signature,
            config.evaluation,
            report,
            samples=pkg.samples(),
            budget=config.max_drop,
            threads=config.threads,
            engine=engine,
            dims=recorded_dims(pkg),
        )
        _warn_float_int8(config, report)
        report.seconds = time.perf_counter() - t0
        parent = pkg
        if config.engine not in (None, "package") and engine is not None:
            # the engine it was measured on is the one it will be served with
            serving = {**pkg.serving, "engine": engine.engine, "precision": engine.precision}
            parent = dataclasses.replace(pkg, manifest={**pkg.manifest, "serving": serving})
        new_pkg = derive_package(
            parent,
            qmodel,
            out,
            {"step": "quantize", "mode": config.mode, "report": report.to_dict()},
            force=force,
        )
    return new_pkg, report


def _measurement_engine(config: QuantizeConfig, pkg: ModelPackage, report: OptimizeReport) -> Any:
    """The EngineConfig the input and the result are measured on (None: ONNX Runtime, partial)."""
    from ...runtime import engine_config

    serving = pkg.serving
    if config.mode == "partial":
        named = serving.get("engine", "ort")
        if named != "ort":
            report.warnings.append(
                f"measured on ONNX Runtime (partial's search runs there), but the package's "
                f"serving section names {named} {serving.get('precision', 'fp32')}: check the "
                "result there with modelport verify/bench --engine package"
            )
        return None
    return engine_config(config.engine or "package", serving)


def _warn_float_int8(config: QuantizeConfig, report: OptimizeReport) -> None:
    """An int8 result that the engine ran without int8 kernels gains nothing from int8."""
    after = (report.details.get("engine") or {}).get("after") or {}
    if config.mode != "fp16" and after and "int8" not in str(after.get("precision")):
        report.warnings.append(
            f"{after.get('engine')} ran the int8 model in {after.get('precision')} (read back from "
            "the engine: no int8 kernels for these ops), so int8 brings no speed here"
        )


def is_static(config: QuantizeConfig) -> bool:
    """True when ``config`` quantizes activations from calibrated ranges (static int8, QDQ): mode
    "static", or "partial" on a static base (given, or chosen because calibration data is given)."""
    return config.mode == "static" or (
        config.mode == "partial"
        and (
            config.partial_base == "static"
            or (config.partial_base is None and config.calibration is not None)
        )
    )


def _save(model: Any, path: Path) -> None:
    import onnx

    if model.ByteSize() > 1_800_000_000:
        onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data")
    else:
        onnx.save_model(model, str(path))


def refuse_quantized(model: Any, mode: str, derived: bool = True) -> None:
    """Raise OptimizationError when ``model`` is already quantized (or already fp16).

    ``derived``: the package was made from another one (its parent is the float model); False
    for a model imported already quantized, whose float model only its authors have.
    """
    from onnx import TensorProto

    ops = sorted({n.op_type for n in model.graph.node} & QUANTIZED_OPS)
    if ops:
        where = (
            "quantize the float model it came from instead (its package is named in this "
            "package's history/parent)"
            if derived
            else "it was imported already quantized, so there is nothing to quantize: serve and "
            "bench it as it is, or convert the float model it was made from, if you have it"
        )
        raise OptimizationError(
            f"the model is already quantized (it contains {', '.join(ops)}); {where}", ops=ops
        )
    if mode == "fp16":
        half = [t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT16]
        if half and len(half) > len(model.graph.initializer) // 2:
            raise OptimizationError(
                "the model's weights are already float16; convert the "
                "float32 model it came from instead"
            )


@dataclass(frozen=True)
class QuantTypes:
    """The int8 scheme actually used: the config's choices, else what suits this CPU
    (``hardware.choose_types``). ``matmul_const_only``: quantize only MatMuls with a constant
    weight."""

    weight_type: str
    activation_type: str
    per_channel: bool
    reduce_range: bool
    matmul_const_only: bool


def _resolve_types(config: QuantizeConfig, choice: Any, report: OptimizeReport) -> QuantTypes:
    report.choices.extend(choice.reasons)
    t = QuantTypes(
        weight_type=config.weight_type or choice.weight_type,
        activation_type=config.activation_type or choice.activation_type,
        per_channel=choice.per_channel if config.per_channel is None else config.per_channel,
        reduce_range=choice.reduce_range if config.reduce_range is None else config.reduce_range,
        matmul_const_only=True if config.matmul_const_only is None else config.matmul_const_only,
    )
    for name in ("weight_type", "activation_type", "per_channel", "reduce_range"):
        if getattr(config, name) is not None:
            report.choices.append(f"{name}={getattr(config, name)} (given)")
    if t.matmul_const_only and config.mode != "static":
        report.choices.append(
            "MatMuls between two activations (attention scores) stay float: "
            "quantizing them costs fidelity for little speed"
        )
    report.details["types"] = dataclasses.asdict(t)
    return t


# DequantizeLinear has the ``axis`` of per-channel weights from opset 13 on
PER_CHANNEL_OPSET = 13


def upgrade_opset(src: Path, work: Path, opset: int, report: OptimizeReport) -> Path:
    """``src`` converted to ``opset`` with ``onnx.version_converter`` when it is older (saved
    beside it), else ``src``. ONNX Runtime's static quantizer writes per-channel weights as
    ``DequantizeLinear(axis=...)``, which opset 12 and older do not have: the result would not
    load. The conversion is recorded in the report; the input package is not changed."""
    import onnx
    from onnx import version_converter

    model = onnx.load(str(src))
    have = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if have is None or have >= opset:
        return src
    try:
        converted = version_converter.convert_version(model, opset)
    except Exception as exc:  # the converter raises its own types
        raise OptimizationError(
            f"the model uses ONNX opset {have}; per-channel static int8 needs opset {opset} "
            f"(DequantizeLinear with an axis), and onnx.version_converter could not convert it: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. Convert the model "
            f"with `modelport convert --onnx FILE --opset {opset}`, or quantize per tensor "
            "(--per-tensor)"
        ) from exc
    out = work / f"opset{opset}.onnx"
    _save(converted, out)
    report.details["opset_upgrade"] = {"from": have, "to": opset}
    report.choices.append(
        f"opset {have} -> {opset} (onnx.version_converter) before quantizing: per-channel int8 "
        f"weights need DequantizeLinear's axis (opset {opset}); the result uses opset {opset}"
    )
    return out


def preprocess(src: Path, work: Path, report: OptimizeReport) -> Path:
    """Shape inference (symbolic for transformers) and ORT's basic graph clean-up, with fallbacks.

    ``quant_pre_process`` fails on some fused graphs (contrib ops unknown to ONNX shape
    inference); then symbolic shape inference alone is used, and as a last resort ONNX's. Nodes
    without a name get one (quantizers refer to nodes by name). The input file is not changed.
    """
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = work / "preprocessed.onnx"
    attempts = [
        (
            "quant_pre_process (symbolic shape inference, ORT basic optimization, ONNX shape inference)",
            dict(skip_optimization=False, skip_symbolic_shape=False, auto_merge=True),
        ),
        (
            "quant_pre_process without graph optimization",
            dict(skip_optimization=True, skip_symbolic_shape=False, auto_merge=True),
        ),
        (
            "quant_pre_process with ONNX shape inference only",
            dict(skip_optimization=True, skip_symbolic_shape=True),
        ),
    ]
    errors = []
    for label, kwargs in attempts:
        try:
            quant_pre_process(str(src), str(out), **kwargs)
            report.choices.append(f"pre-processing: {label}")
            break
        except Exception as exc:  # each tool raises its own types
            errors.append(
                f"{label}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            )
    else:
        report.warnings.append(
            "shape pre-processing failed; quantizing without it: " + "; ".join(errors)
        )
        out = src
    if errors and out != src:
        report.details["preprocess_fallbacks"] = errors
    model = onnx.load(str(out))
    if _name_nodes(model):
        onnx.save_model(model, str(out))
    return out


def _name_nodes(model: Any) -> bool:
    seen: set[str] = set()
    changed = False
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
            changed = True
        seen.add(node.name)
    return changed


def _qtype(name: str) -> Any:
    from onnxruntime.quantization import QuantType

    return {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[name]


def quantize_dynamic_int8(pre: Path, out: Path, t: QuantTypes, exclude: list[str]) -> Path:
    """ONNX Runtime's dynamic int8 of the pre-processed model ``pre`` into ``out`` (DYNAMIC_OPS;
    the nodes named in ``exclude`` stay float, also after ORT splits a Gemm into MatMul + Add)."""
    from onnxruntime.quantization import quantize_dynamic

    try:
        quantize_dynamic(
            str(pre),
            str(out),
            op_types_to_quantize=list(DYNAMIC_OPS),
            per_channel=t.per_channel,
            reduce_range=t.reduce_range,
            weight_type=_qtype(t.weight_type),
            # ORT splits Gemm into <name>_MatMul + <name>_Add before it looks at the
            # exclusions: exclude both names
            nodes_to_exclude=[*exclude, *(f"{n}_MatMul" for n in exclude)],
            extra_options={"MatMulConstBOnly": t.matmul_const_only},
        )
    except Exception as exc:
        raise OptimizationError(f"ONNX Runtime's dynamic quantizer failed: {exc}") from exc
    return out


def calibrate_to_file(
    pre: Path, work: Path, config: QuantizeConfig, pkg: ModelPackage, report: OptimizeReport
) -> Path:
    """Calibrate ``pre`` on ``config.calibration`` (streamed, bounded memory) and write the ranges
    to ``work/calibration.json``, the cache ``quantize_static_int8`` reads; returns its path. The
    report records the method, the sample count and tensors whose range no int8 scale can hold."""
    from onnxruntime.quantization.calibrate import save_tensors_data

    from ..calibration import calibrate_ranges

    if config.calibration is None:
        raise UsageError(
            "static quantization needs calibration data: --calibration DATA on the command "
            "line (QuantizeConfig.static(DATA) in Python), e.g. a few hundred "
            "representative inputs in an .npz by input name or a directory of .npz files"
        )
    t0 = time.perf_counter()
    ranges, n = calibrate_ranges(
        pre,
        config.calibration,
        pkg.signature,
        method=config.calibration_method,
        limit=config.calibration_samples,
        work_dir=work,
    )
    cache = work / "calibration.json"
    save_tensors_data(ranges, cache)
    huge = huge_range_tensors(ranges)
    if huge:
        report.details["huge_range_tensors"] = huge
        report.choices.append(
            f"{len(huge)} tensors have a calibrated range beyond +-{HUGE_RANGE:g} (attention masks "
            "filled with the float minimum, typically): the nodes around them stay float"
        )
    report.details["calibration"] = {
        "method": config.calibration_method,
        "samples": n,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    report.choices.append(f"calibration: {config.calibration_method} on {n} samples, streamed")
    return cache


HUGE_RANGE = 1e4


def huge_range_tensors(ranges: Any) -> list[str]:
    """Tensors whose calibrated range is beyond +-HUGE_RANGE: one int8 scale cannot hold them."""
    import numpy as np

    out = []
    for name in ranges:
        try:
            lo, hi = ranges[name].range_value
        except AttributeError:
            continue
        vals = np.abs(np.asarray([lo, hi], dtype=np.float64))
        if not np.all(np.isfinite(vals)) or float(vals.max()) > HUGE_RANGE:
            out.append(name)
    return out


def _nodes_touching(pre: Path, tensors: list[str]) -> list[str]:
    import onnx

    ts = set(tensors)
    model = onnx.load(str(pre), load_external_data=False)
    return [n.name for n in model.graph.node if ts & set(n.input) or ts & set(n.output)]


def quantize_static_int8(
    pre: Path, out: Path, t: QuantTypes, config: QuantizeConfig, cache: Path, exclude: list[str]
) -> Path:
    """ONNX Runtime's static int8 (QDQ) of ``pre`` into ``out`` from the calibration ``cache`` of
    ``calibrate_to_file``. Nodes named in ``exclude``, and those touching a tensor with a huge
    calibrated range (``huge_range_tensors``), stay float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[config.calibration_method]
    from onnxruntime.quantization.calibrate import load_tensors_data

    huge = huge_range_tensors(load_tensors_data(cache))
    exclude = [*exclude, *_nodes_touching(pre, huge)] if huge else exclude
    try:
        quantize_static(
            str(pre),
            str(out),
            calibration_data_reader=None,
            quant_format=QuantFormat.QDQ,
            per_channel=t.per_channel,
            reduce_range=t.reduce_range,
            activation_type=_qtype(t.activation_type),
            weight_type=_qtype(t.weight_type),
            nodes_to_exclude=exclude,
            calibrate_method=method,
            calibration_cache_path=str(cache),
            extra_options={"MatMulConstBOnly": t.matmul_const_only},
        )
    except Exception as exc:
        raise OptimizationError(f"ONNX Runtime's static quantizer failed: {exc}") from exc
    return out


def _op_hist(model: Any) -> dict[str, int]:
    h: dict[str, int] = {}
    for n in model.graph.node:
        h[n.op_type] = h.get(n.op_type, 0) + 1
    return h


def _toposort(graph: Any) -> bool:
    """Re-order ``graph``'s nodes, in place, so each comes after what it reads (its inputs and
    what its subgraphs read from outside), keeping the order otherwise. ONNX Runtime's
    quantizer writes Silero VAD (If nodes) out of order, which onnx.checker refuses. Returns
    whether anything moved (False also for a cycle, left to the checker)."""
    from .fp16 import reorder_nodes, topological_order

    order = topological_order(graph)
    if order is None or order == list(range(len(graph.node))):
        return False
    reorder_nodes(graph, order)
    return True


def _subgraph_ops(graph: Any) -> dict[str, int]:
    """Op counts inside the subgraphs (If branches, Loop and Scan bodies) of ``graph``'s nodes,
    at any depth."""
    h: dict[str, int] = {}
    for node in graph.node:
        for attr in node.attribute:
            for g in [attr.g] if attr.HasField("g") else list(attr.graphs):
                for n in g.node:
                    h[n.op_type] = h.get(n.op_type, 0) + 1
                for op, k in _subgraph_ops(g).items():
                    h[op] = h.get(op, 0) + k
    return h


def _list_float_ops(result: Path, report: OptimizeReport, config: QuantizeConfig) -> None:
    """Compute ops left in float (no int8 kernel, excluded, or not quantizable) by type."""
    import onnx

    model = onnx.load(str(result), load_external_data=False)
    hist = _op_hist(model)
    dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    float_ops: dict[str, int] = {}
    for n in model.graph.node:
        if (
            n.op_type in QUANTIZED_OPS
            or n.op_type in _SHAPE_OPS
            or any(i in dq_out for i in n.input)
        ):
            continue
        float_ops[n.op_type] = float_ops.get(n.op_type, 0) + 1
    report.float_ops = float_ops
    report.details["quantized_ops"] = {op: n for op, n in hist.items() if op in QUANTIZED_OPS}
    if not report.details["quantized_ops"]:
        report.unchanged = "no node was quantized: " + _why_nothing(result, config, report)
        report.warnings.append(report.unchanged)


def _why_nothing(result: Path, config: QuantizeConfig, report: OptimizeReport) -> str:
    """Why a quantizer left every node float, in terms of this model's ops."""
    import onnx

    part = report.details.get("partial")
    if config.mode == "partial" and part and part.get("kept"):
        return (
            f"partial quantization kept all {len(part['kept'])} candidate nodes float to stay "
            f"within --max-drop {config.max_drop:g}; the result is the float model "
            "(loosen --max-drop, or give calibration data for static int8)"
        )
    model = onnx.load(str(result), load_external_data=False)
    compute = {
        op: n for op, n in _op_hist(model).items() if op not in _SHAPE_OPS and op not in ("Add",)
    }
    have = ", ".join(f"{op} x{n}" for op, n in sorted(compute.items(), key=lambda kv: -kv[1]))
    inner = _subgraph_ops(model.graph)
    inner_compute = {
        op: n
        for op, n in sorted(inner.items(), key=lambda kv: -kv[1])
        if op not in _SHAPE_OPS and op not in ("Add", "If", "Loop", "Scan", "Identity")
    }
    flow = ", ".join(f"{op} x{n}" for op, n in compute.items() if op in ("If", "Loop", "Scan"))
    held = ", ".join(f"{op} x{n}" for op, n in inner_compute.items())
    convs = any(op in compute for op in ("Conv", "ConvTranspose"))
    if inner_compute and not (convs and config.mode in ("dynamic", "partial")):
        # the work is in If/Loop/Scan branches (an exporter's sample-rate switch)
        return (
            f"the model's compute is inside control-flow subgraphs ({flow} holding {held}), and "
            "ONNX Runtime's quantizer quantizes only the main graph's nodes; export the model "
            "without the branch (for one input size or sample rate) to quantize it"
        )
    branches = (
        f"; the ops inside its control-flow subgraphs ({flow} holding {held}) stay float too: "
        "ONNX Runtime's quantizer quantizes only the main graph's nodes"
        if inner_compute
        else ""
    )
    names = {n.name for n in model.graph.node}
    if config.exclude and not (names - set(config.exclude)) & {
        n.name for n in model.graph.node if n.op_type in (*DYNAMIC_OPS, "Conv", "Gemm")
    }:
        return f"every quantizable node is excluded (--exclude); the model's ops: {have}"
    if config.mode in ("dynamic", "partial") and not is_static(config):
        if any(op in compute for op in ("Conv", "ConvTranspose")):
            return (
                f"dynamic int8 quantizes {', '.join(DYNAMIC_OPS)} (MatMul with a constant weight), "
                f"and convolutions stay float (ConvInteger is slow on CPU); the model's ops: {have}. "
                "Use --mode static --calibration DATA for convolutional models" + branches
            )
        return (
            f"dynamic int8 quantizes {', '.join(DYNAMIC_OPS)} with constant weights; "
            f"the model has none of them (its ops: {have})"
        )
    return (
        f"ONNX Runtime's static quantizer found no op it quantizes (its ops: {have}); "
        "the size ratio is 1.0 and the model is the float one"
    )
