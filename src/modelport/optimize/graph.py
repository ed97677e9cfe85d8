"""Graph optimization of a package: ONNX Runtime's offline optimization levels, and the ORT
transformers optimizer's fusions (Attention, SkipLayerNorm, BiasGelu...) for BERT-like models.

    from modelport.optimize.graph import GraphConfig, optimize_graph
    package, report = optimize_graph(pkg, "out/fused", GraphConfig.fusion())

Measured like every optimization: a fused graph is not always faster (all-MiniLM-L6-v2 at batch 1
on a 2-core AVX2 CPU was 0.94x), and the report says so plainly.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import recorded_dims
from ..errors import OptimizationError, UsageError, output_exists
from ..package import ModelPackage, derive_package
from .report import EvalConfig, OptimizeReport

__all__ = ["GraphConfig", "LEVELS", "optimize_graph"]

LEVELS = ("basic", "extended", "all")


@dataclass(frozen=True)
class GraphConfig:
    """How to optimize the graph.

    level: ONNX Runtime's offline level: "basic" (constant folding, redundant nodes, Conv+BN),
        "extended" (+ GELU/LayerNorm/Attention fusions, CPU only), "all" (+ NCHWc layouts: the
        saved model then only runs on CPUs like this one). None with ``transformers`` skips it.
    transformers: run the ORT transformers optimizer (fusions for BERT-like models) first.
    model_type: the transformers optimizer's model type ("bert", "gpt2", "vit", ...).
    num_heads / hidden_size: attention shape for the fusions; 0 detects them from the graph.
    evaluation: how the result is measured (see ``EvalConfig``).
    threads: ONNX Runtime intra-op threads for measurement (0: ORT's default).
    max_drop: allowed drop of the metric; beyond it the report fails (None: the default budget,
        ``report.DEFAULT_MAX_DROP``).
    allow_mismatch: write the result even when it fails onnx.checker (recorded in the report).
    """

    level: str | None = "extended"
    transformers: bool = False
    model_type: str = "bert"
    num_heads: int = 0
    hidden_size: int = 0
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    threads: int = 0
    max_drop: float | None = None
    allow_mismatch: bool = False

    def __post_init__(self) -> None:
        if self.max_drop is not None and self.max_drop < 0:
            raise UsageError(f"max_drop must be >= 0 (got {self.max_drop})")
        if self.level is not None and self.level not in LEVELS:
            raise UsageError(f"level '{self.level}' is not one of {list(LEVELS)}")
        if self.level is None and not self.transformers:
            raise UsageError(
                "nothing to do: give a level (basic/extended/all) or transformers=True"
            )
        if self.num_heads < 0 or self.hidden_size < 0:
            raise UsageError("num_heads and hidden_size must be >= 0 (0 detects them)")

    @classmethod
    def ort(cls, level: str = "extended", **overrides: Any) -> GraphConfig:
        """ONNX Runtime's offline optimization at ``level``."""
        return cls(level=level, **overrides)

    @classmethod
    def fusion(cls, model_type: str = "bert", **overrides: Any) -> GraphConfig:
        """The ORT transformers optimizer's fusions (no further ORT level by default)."""
        overrides.setdefault("level", None)
        return cls(transformers=True, model_type=model_type, **overrides)

    def describe(self) -> dict[str, Any]:
        d = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "evaluation"
        }
        d["evaluation"] = {"batch_sizes": list(self.evaluation.batch_sizes)}
        return d


def optimize_graph(
    package: ModelPackage | str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: GraphConfig | None = None,
    *,
    force: bool = False,
) -> tuple[ModelPackage, OptimizeReport]:
    """Optimize ``package``'s graph into a new package at ``out``; measure it against the input."""
    import onnx

    from .report import check_result, measure

    t0 = time.perf_counter()
    config = config or GraphConfig()
    pkg = package if isinstance(package, ModelPackage) else ModelPackage.load(package)
    if Path(out).exists() and not force:
        raise output_exists(out)
    report = OptimizeReport(step="optimize", config=config.describe())
    with tempfile.TemporaryDirectory(prefix="modelport-optimize-") as tmp:
        work = Path(tmp)
        src = work / "input.onnx"
        onnx.save_model(pkg.load_onnx(), str(src))
        current = src
        if config.transformers:
            current = _transformers(current, work / "fused.onnx", config, report)
        if config.level is not None:
            level_in = current
            current = _ort_level(current, work / f"ort-{config.level}.onnx", config.level, report)
            current = _opset17_if_fused(level_in, current, work, config.level, report)
        model = onnx.load(str(current))
        check_result(model, report, config.allow_mismatch)
        measure(
            src,
            current,
            pkg.signature,
            config.evaluation,
            report,
            samples=pkg.samples(),
            budget=config.max_drop,
            threads=config.threads,
            dims=recorded_dims(pkg),
        )
        slower = [r for r in report.latency if r["speedup"] < 1.02]
        if slower:
            report.warnings.append(
                "graph optimization did not make the model faster on this CPU at batch "
                + ", ".join(str(r["batch_size"]) for r in slower)
                + "; ONNX Runtime applies its own online optimizations when it loads a model, "
                "so the offline graph mostly saves load time"
            )
        report.seconds = time.perf_counter() - t0
        new_pkg = derive_package(
            pkg, model, out, {"step": "optimize", "report": report.to_dict()}, force=force
        )
    return new_pkg, report


def _transformers(src: Path, out: Path, config: GraphConfig, report: OptimizeReport) -> Path:
    from onnxruntime.transformers.optimizer import optimize_model

    try:
        opt = optimize_model(
            str(src),
            model_type=config.model_type,
            num_heads=config.num_heads,
            hidden_size=config.hidden_size,
            opt_level=0,
        )
    except Exception as exc:
        raise OptimizationError(
            f"the ORT transformers optimizer failed for model_type '{config.model_type}': {exc}; "
            "check the model type, or use an ORT level only (--level extended)"
        ) from exc
    stats = {k: int(v) for k, v in (opt.get_fused_operator_statistics() or {}).items() if v}
    report.details["fusions"] = stats
    report.choices.append(
        "transformers optimizer ("
        + config.model_type
        + "): "
        + (", ".join(f"{k} x{v}" for k, v in stats.items()) or "nothing fused")
    )
    if not stats:
        report.warnings.append("the transformers optimizer fused nothing; is model_type right?")
    opt.save_model_to_file(str(out))
    return out


def _opset17_if_fused(src: Path, result: Path, work: Path, level: str, report: Any) -> Path:
    """ONNX Runtime fuses LayerNormalization into graphs of any opset, but it is an ONNX op
    only from opset 17: an older graph (PaddleOCR's recognizer, opset 12) then fails the checker.
    Such a graph is converted to opset 17 first and optimized again; ``result`` otherwise."""
    import onnx
    from onnx import version_converter

    model = onnx.load(str(result), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    if opset >= 17 or not any(
        n.op_type == "LayerNormalization" and n.domain in ("", "ai.onnx") for n in model.graph.node
    ):
        return result
    try:
        upgraded = version_converter.convert_version(onnx.load(str(src)), 17)
    except Exception:  # the checker then says what is wrong
        return result
    up = work / "input-opset17.onnx"
    onnx.save_model(upgraded, str(up))
    kept = len(report.choices)
    out = _ort_level(up, work / f"ort-{level}-opset17.onnx", level, report)
    del report.choices[kept:]  # the level's lines are there once already
    report.choices.append(
        f"converted from opset {opset} to 17 first: ONNX Runtime fused LayerNormalization, an "
        "ONNX op only from opset 17"
    )
    return out


def _ort_level(src: Path, out: Path, level: str, report: OptimizeReport) -> Path:
    from ..runtime import SessionConfig, make_session

    make_session(src, SessionConfig(graph_optimization=level, optimized_model_path=str(out)))
    if not out.is_file():
        raise OptimizationError(f"ONNX Runtime did not write the optimized model at level {level}")
    report.choices.append(f"ONNX Runtime offline optimization, level {level}")
    if level == "all":
        report.choices.append(
            "level 'all' adds layout transforms for this CPU: the saved model may "
            "not run on a CPU without the same instruction sets"
        )
    return out
