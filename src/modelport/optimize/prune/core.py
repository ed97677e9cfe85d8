"""Pruning: weight (unstructured magnitude) and parameter (structured) pruning, with a report that
says what each one buys.

    from modelport.optimize.prune import PruneConfig, prune
    result = prune("out/digits", "out/digits-sparse", PruneConfig.magnitude(0.8))
    result = prune(Source.torch_module(model), "out/resnet-half",
                   PruneConfig.structured(0.5), example={"x": x}, finetune=my_finetune)

- magnitude: zeroes the smallest weights, per layer or globally. On an ONNX package it works on
  the weight initializers of any model; on a PyTorch source the masks stay during fine-tuning.
  Shapes do not change, so a dense runtime (ONNX Runtime's CPU kernels) is *not* faster: the gain
  is the compressed size on disk. The report measures and says so.
- structured: removes whole channels/neurons, so the model gets smaller and faster. PyTorch
  sources go through torch-pruning (residual adds, concatenations, BatchNorm, grouped convs);
  ONNX packages only when they are plain MLP/Conv chains.

The result is a model package whose history holds the report. Since the structure (or the
weights) changed, parity with the source is replaced by fidelity and accuracy on eval data.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UsageError, output_exists
from ...package import ModelPackage
from ...progress import Listener, listening, phase, scope
from ..report import OptimizeReport

__all__ = ["METHODS", "PruneConfig", "PruneResult", "prune"]

METHODS = ("magnitude", "structured")
SCOPES = ("layer", "global")
IMPORTANCES = ("l1", "l2")

DENSE_NOTE = (
    "unstructured sparsity does not make a dense runtime faster: ONNX Runtime's dense kernels "
    "still multiply the zeros, so latency stays the same. It pays in compressed size on disk "
    "(gzip), and in speed only on a sparse runtime. Use --method structured for speed."
)


@dataclass(frozen=True)
class PruneConfig:
    """How to prune.

    method: "magnitude" (unstructured: zero the smallest weights) or "structured" (remove whole
        output channels / neurons).
    sparsity: fraction to remove, in [0, 1): of the weights (magnitude) or of each layer's
        channels (structured; parameters then drop by about 1-(1-s)^2).
    scope: "layer" (every layer gets the same sparsity) or "global" (one ranking over all layers;
        structured ranks channel importances normalized per layer).
    importance: channel importance for structured pruning: "l1" or "l2" norm of the weights.
    exclude: layer names to leave alone (see the docs for how layers are named).
    exclude_head: leave the classifier head (the last linear layer) alone.
    steps: prune-then-fine-tune rounds; the sparsity grows linearly to ``sparsity``.
    round_to: keep channel counts multiples of this (structured), e.g. 8 for SIMD-friendly sizes.
    batch_sizes: batch sizes at which latency before/after is measured.
    latency_repeats: timed runs per model and batch size (interleaved).
    max_drop: allowed drop of the metric (accuracy with labels, else the fidelity score: the worst
        of mean row cosine and top-1 agreement); beyond it the report fails with a loud warning
        (CLI exit code 1). None: ``report.DEFAULT_MAX_DROP`` (0.01).
    allow_mismatch: write the result even when it fails onnx.checker (recorded in the report);
        without it such a result is refused and nothing is written.
    """

    method: str = "magnitude"
    sparsity: float = 0.5
    scope: str = "layer"
    importance: str = "l1"
    exclude: tuple[str, ...] = ()
    exclude_head: bool = True
    steps: int = 1
    round_to: int | None = None
    batch_sizes: tuple[int, ...] = (1, 8)
    latency_repeats: int = 50
    max_drop: float | None = None
    allow_mismatch: bool = False

    def __post_init__(self) -> None:
        if self.max_drop is not None and not (
            isinstance(self.max_drop, int | float)
            and math.isfinite(self.max_drop)
            and self.max_drop >= 0
        ):
            raise UsageError(
                f"max_drop={self.max_drop!r}: give the allowed drop of the metric, >= 0 "
                "(e.g. 0.01 for 1 point of accuracy)",
                field="max_drop",
            )
        if self.method not in METHODS:
            raise UsageError(f"method={self.method!r}: choose one of {list(METHODS)}")
        if (
            isinstance(self.sparsity, bool)
            or not isinstance(self.sparsity, int | float)
            or not (math.isfinite(self.sparsity) and 0.0 <= self.sparsity < 1.0)
        ):
            raise UsageError(
                f"sparsity={self.sparsity!r} is outside [0, 1): it is the fraction of weights "
                "(magnitude) or channels (structured) to remove, e.g. 0.5",
                field="sparsity",
            )
        if self.scope not in SCOPES:
            raise UsageError(f"scope={self.scope!r}: choose one of {list(SCOPES)}")
        if self.importance not in IMPORTANCES:
            raise UsageError(f"importance={self.importance!r}: choose one of {list(IMPORTANCES)}")
        if isinstance(self.exclude, str):
            raise UsageError("exclude is a tuple of layer names, e.g. ('fc',), not a string")
        object.__setattr__(self, "exclude", tuple(self.exclude))
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))
        if self.steps < 1:
            raise UsageError(f"steps={self.steps}: give at least 1 prune(-then-fine-tune) round")
        if self.round_to is not None and self.round_to < 1:
            raise UsageError(f"round_to={self.round_to}: give a positive channel multiple, e.g. 8")
        if self.round_to is not None and self.method != "structured":
            raise UsageError("round_to applies to method='structured' only")
        if any(b < 1 for b in self.batch_sizes) or self.latency_repeats < 1:
            raise UsageError("batch_sizes must be >= 1 and latency_repeats >= 1")

    @classmethod
    def magnitude(cls, sparsity: float, **kw: Any) -> PruneConfig:
        return cls(method="magnitude", sparsity=sparsity, **kw)

    @classmethod
    def structured(cls, sparsity: float, **kw: Any) -> PruneConfig:
        return cls(method="structured", sparsity=sparsity, **kw)


@dataclass
class PruneResult:
    """package: the written package. report: what went into its history (the same report type as
    quantize and graph optimization). module: the pruned nn.Module (PyTorch sources only)."""

    package: ModelPackage
    report: OptimizeReport
    module: Any = None
    notes: list[str] = field(default_factory=list)


def _describe_fn(fn: Any) -> str | None:
    if fn is None:
        return None
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def prune(
    model: Any,
    out: str | os.PathLike[str],
    config: PruneConfig | None = None,
    *,
    example: Mapping[str, np.ndarray] | None = None,
    eval_data: Mapping[str, np.ndarray] | None = None,
    labels: np.ndarray | None = None,
    finetune: Any = None,
    force: bool = False,
    progress: Listener | None = None,
) -> PruneResult:
    """Prune ``model`` and write the result as a package at ``out``.

    model: a ModelPackage, a package directory / .onnx path, a torch ``convert.Source`` or an
        ``nn.Module``. PyTorch models are pruned before export, then converted and verified.
    example: example inputs by name (PyTorch; default: the first 16 rows of ``eval_data``).
    eval_data, labels: data for fidelity and accuracy (default: the package's stored samples,
        else random inputs from the signature).
    finetune: a callable that receives the pruned nn.Module and returns it trained (PyTorch).
    progress: receives each phase (``modelport.progress.Event``): "prune", "check" (ONNX),
        "measure", "write"; a PyTorch source also "load" and both conversions' phases, in the
        scopes "source" and "pruned".
    """
    with listening(progress):
        return _prune(model, out, config, example, eval_data, labels, finetune, force)


def _prune(
    model: Any,
    out: str | os.PathLike[str],
    config: PruneConfig | None,
    example: Mapping[str, np.ndarray] | None,
    eval_data: Mapping[str, np.ndarray] | None,
    labels: np.ndarray | None,
    finetune: Any,
    force: bool,
) -> PruneResult:
    config = config or PruneConfig()
    if os.path.exists(out) and not force:
        raise output_exists(out)
    source = _as_torch_source(model)
    if source is not None:
        return _prune_torch(source, out, config, example, eval_data, labels, finetune, force)
    if finetune is not None:
        raise UsageError(
            "fine-tuning needs the PyTorch model: give it as the source (--torch MODULE:CLASS "
            "--weights W.pt) instead of an ONNX package"
        )
    pkg = model if isinstance(model, ModelPackage) else ModelPackage.load(model)
    return _prune_onnx(pkg, out, config, eval_data, labels, force)


def _as_torch_source(model: Any) -> Any:
    from ...convert import Source

    if isinstance(model, Source):
        if model.kind != "torch":
            raise UsageError(
                f"prune works on PyTorch modules and ONNX packages, not on a {model.kind} source; "
                f"convert it first (modelport convert ...) and prune the package"
            )
        return model
    if isinstance(model, ModelPackage | str | os.PathLike):
        return None
    try:
        import torch
    except ImportError:
        pass  # not a torch module then: refused below
    else:
        if isinstance(model, torch.nn.Module):
            return Source.torch_module(model)
    raise UsageError(
        f"cannot prune a {type(model).__name__}: give a package path, a ModelPackage, "
        "a torch Source or an nn.Module"
    )


def _eval_feed(
    pkg_or_sig: Any, eval_data: Mapping[str, np.ndarray] | None, report: OptimizeReport
) -> dict[str, np.ndarray]:
    """The eval inputs; ``report.eval_source`` says where they came from (as quantize's do)."""
    from ...data import conform_feed, generate_feed, guess_dims, recorded_dims, rows_dim

    sig = pkg_or_sig.signature
    if eval_data is not None:
        report.eval_source = "given data"
        return conform_feed(eval_data, sig, source="eval data")
    stored = pkg_or_sig.samples() if isinstance(pkg_or_sig, ModelPackage) else None
    if stored is not None:
        report.eval_source = "the package's stored samples"
        report.notes.append(
            "no eval data given: fidelity is measured on the package's stored example inputs"
        )
        return stored[0]
    report.eval_source = "generated random inputs"
    report.notes.append(
        "no eval data given: fidelity is measured on random inputs; pass --eval for real data"
    )
    # at the sizes the package was converted at, 8 rows where the inputs share a batch axis
    rows = rows_dim(sig)
    sizes = guess_dims(sig, batch=8 if rows else 1)
    if isinstance(pkg_or_sig, ModelPackage):
        sizes.update(recorded_dims(pkg_or_sig))
    if rows:
        sizes[rows] = 8
    return generate_feed(sig, sizes)


def _prune_onnx(
    pkg: ModelPackage, out: Any, config: PruneConfig, eval_data: Any, labels: Any, force: bool
) -> PruneResult:
    from ...errors import OptimizationError, VerificationError
    from ...package import derive_package
    from .onnx import (
        constants_to_initializers,
        find_layers,
        head_layer,
        magnitude_prune_onnx,
        resolve_layers,
        structured_prune_onnx,
    )
    from .report import measure, onnx_layer_rows

    t0 = time.perf_counter()
    report = OptimizeReport(step="prune", config=_describe(config))
    original = pkg.load_onnx()
    moved = constants_to_initializers(original)
    if moved:
        report.notes.append(f"{moved} Constant nodes were turned into initializers (weights)")
    layers = find_layers(original)
    if not layers:
        raise OptimizationError(
            "the model has no Conv, Gemm or MatMul layer with constant weights to prune"
        )
    targets = resolve_layers(layers, config.exclude, config.exclude_head)
    if not targets:
        raise UsageError(
            f"every prunable layer is excluded ({[la.name for la in layers]}); nothing to prune"
        )
    if config.steps > 1:
        report.notes.append("steps > 1 without fine-tuning prunes to the same result as one step")
    with phase("prune", detail=config.method):
        if config.method == "magnitude":
            pruned = magnitude_prune_onnx(
                original, targets, config.sparsity, config.scope == "global"
            )
        else:
            pruned = structured_prune_onnx(
                original,
                targets,
                config.sparsity,
                global_scope=config.scope == "global",
                p=1 if config.importance == "l1" else 2,
                round_to=config.round_to,
            )
    from ..report import run_checker

    with phase("check"):
        checker = run_checker(pruned)
    if checker != "passed" and not config.allow_mismatch:
        raise VerificationError(
            f"the pruned graph fails onnx.checker: {checker}. Nothing was written; pass "
            "--allow-mismatch to write it anyway (the report records the failure)",
            checker=checker,
        )
    feed = _eval_feed(pkg, eval_data, report)
    names = [t.name for t in targets]
    rows = onnx_layer_rows(original, pruned, names)
    head = head_layer(layers)
    with phase("measure"):
        measure(original, pruned, feed, labels, config.batch_sizes, config.latency_repeats, report)
    _finish(
        config,
        rows,
        report,
        excluded=sorted({la.name for la in layers} - set(names)),
        head=head.name if head else None,
        finetune=None,
        source="onnx",
        checker=checker,
    )
    report.seconds = time.perf_counter() - t0
    step = {
        "step": "prune",
        "method": config.method,
        "sparsity": config.sparsity,
        "scope": config.scope,
        "passed": report.passed,
        "report": report.to_dict(),
        "notes": report.notes,
    }
    with phase("write"):
        package = derive_package(pkg, pruned, out, step, force=force)
    return PruneResult(package, report, None, report.notes)


def _describe(config: PruneConfig) -> dict[str, Any]:
    return {
        **dataclasses.asdict(config),
        "exclude": list(config.exclude),
        "batch_sizes": list(config.batch_sizes),
    }


def _finish(
    config: PruneConfig,
    rows: list[dict[str, Any]],
    report: OptimizeReport,
    *,
    excluded: list[str],
    head: str | None,
    finetune: str | None,
    source: str,
    checker: str,
) -> None:
    """Complete a measured ``report``: the budget, warnings, notes and the prune details."""
    from ..report import DEFAULT_MAX_DROP
    from .report import global_sparsity

    notes, warnings = report.notes, report.warnings
    metric = report.metric
    metric["budget"] = DEFAULT_MAX_DROP if config.max_drop is None else config.max_drop
    metric["budget_source"] = "default" if config.max_drop is None else "given"
    within = metric["drop"] <= metric["budget"] + 1e-12
    if not within:
        which = (
            "the default budget; set --max-drop to choose another"
            if config.max_drop is None
            else "--max-drop"
        )
        warnings.append(
            f"OUTSIDE THE BUDGET: {metric['name']} dropped by {metric['drop']:.4f} from "
            f"{metric['before']:.4f} to {metric['after']:.4f} (allowed {metric['budget']:.4g}, "
            f"{which})" + ("; fine-tune (--finetune) to recover it" if finetune is None else "")
        )
    if checker != "passed":
        warnings.append(f"onnx.checker FAILED: {checker} (written anyway: --allow-mismatch)")
    if config.method == "magnitude":
        speed = ", ".join(f"batch {r['batch_size']}: {r['speedup']:.2f}x" for r in report.latency)
        s = report.details["size_bytes"]
        notes.insert(
            0,
            DENSE_NOTE
            + (f" Measured latency ratio {speed}; " if speed else " ")
            + f"gzip size {s['gzip_before']:,} -> {s['gzip_after']:,} bytes "
            f"(raw {s['raw_before']:,} -> {s['raw_after']:,}).",
        )
    else:
        notes.append(
            "the structure changed, so parity with the source is replaced by fidelity and "
            "accuracy on the eval data"
        )
    report.checker = checker
    report.details.update(
        {
            "source": source,
            "finetune": finetune,
            "head": head,
            "excluded": excluded,
            "global_sparsity": global_sparsity(rows),
            "layers": rows,
        }
    )


def _prune_torch(
    source: Any,
    out: Any,
    config: PruneConfig,
    example: Any,
    eval_data: Any,
    labels: Any,
    finetune: Any,
    force: bool,
) -> PruneResult:
    from ...convert import ConvertConfig, Source, convert
    from ...convert.torch import load_module
    from ...package import now_iso, write_package
    from .report import measure
    from .torch import prune_module

    source = _fresh(source)  # never touch the caller's module
    if example is None and eval_data is not None:
        example = {k: np.asarray(v)[:16] for k, v in eval_data.items()}
    if example is None:
        raise UsageError(
            "pruning a PyTorch model needs example inputs: give --example-inputs FILE.npz (or --eval)"
        )
    example = {k: np.asarray(v) for k, v in example.items()}
    t0 = time.perf_counter()
    report = OptimizeReport(step="prune", config=_describe(config))
    with phase("load"):
        module, _ = load_module(_fresh(source))  # exporting `source` below may change it
    with tempfile.TemporaryDirectory(prefix="modelport-prune-") as tmp:
        # named after the output, not after the temporary directory ("source")
        name = Path(out).resolve().name
        with scope("source"):
            base = convert(source, Path(tmp) / "source", ConvertConfig(example=example, name=name))
        with phase("prune", detail=config.method + (" + fine-tuning" if finetune else "")):
            pruned_module, info = prune_module(module, example, config, finetune)
        with scope("pruned"):
            after = convert(
                Source.torch_module(copy.deepcopy(pruned_module)),
                Path(tmp) / "pruned",
                ConvertConfig(example=example, allow_mismatch=config.allow_mismatch),
            )
        before_model, after_model = base.package.load_onnx(), after.package.load_onnx()
        feed = _eval_feed(base.package, eval_data, report)
        with phase("measure"):
            measure(
                before_model,
                after_model,
                feed,
                labels,
                config.batch_sizes,
                config.latency_repeats,
                report,
            )
        pruned_names = [r["name"] for r in info["layers"] if r["pruned"]]
        report.notes.extend(info["notes"] + after.notes)
        _finish(
            config,
            info["layers"],
            report,
            excluded=info["excluded"],
            head=info["head"],
            finetune=_describe_fn(finetune),
            source="torch",
            checker=after.report.checker,
        )
        report.details["torch_params"] = {
            "before": info["torch_params_before"],
            "after": info["torch_params_after"],
        }
        report.details["pruned_layers"] = pruned_names
        report.seconds = time.perf_counter() - t0
        manifest = copy.deepcopy(base.package.manifest)
        manifest["verification"] = after.report.to_dict()
        manifest["signature"] = after.package.manifest["signature"]
        manifest["history"] = [
            *manifest.get("history", []),
            {
                "step": "prune",
                "time": now_iso(),
                "method": config.method,
                "sparsity": config.sparsity,
                "scope": config.scope,
                "finetune": report.details["finetune"],
                "exporter": after.exporter,
                "verified": after.report.passed,
                "passed": report.passed,
                "report": report.to_dict(),
                "notes": report.notes,
            },
        ]
        manifest.pop("files", None)
        with phase("write"):
            package = write_package(
                after_model, manifest, out, force=force, samples_from=base.package
            )
    return PruneResult(package, report, pruned_module, report.notes)


def _fresh(source: Any) -> Any:
    """The source with a deep copy of its in-memory module, if it has one."""
    if source.obj is None:
        return source
    return dataclasses.replace(source, obj=copy.deepcopy(source.obj))
