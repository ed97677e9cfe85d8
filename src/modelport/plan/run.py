"""``plan()``: build the candidates, measure them, keep the Pareto front, write OUT.

The package docstring (``modelport.plan``) describes the search and the output directory.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Feed
from ..errors import InputError, UsageError, output_exists
from ..package import ModelPackage

__all__ = ["TARGETS", "PlanConfig", "PlanResult", "plan"]

TARGETS = ("cpu", "cuda")


@dataclass(frozen=True)
class PlanConfig:
    """What to plan for. Every budget is optional; with none, the fastest candidate wins.

    target: "cpu" or "cuda" (needs onnxruntime-gpu with CUDAExecutionProvider).
    max_drop: allowed drop of the budget metric: accuracy with labels (0.01 = 1 point), else the
        user's metric, else the fidelity drop 1 - mean cosine vs fp32 (0.005 = 0.5%).
    max_latency_ms / max_size_mb: allowed latency at ``batch_size`` and size on disk.
    eval_data: evaluation inputs (path, feed or iterable); None: the package's stored samples,
        else generated inputs (then fidelity means little: a warning says so).
    labels: integer labels (.npy path or array), one per eval sample, for accuracy.
    metric: score function or "module:function", ``f(reference, outputs, feed) -> float``
        (1.0 = identical), as for ``quantize``.
    calibration: calibration data for static int8; None uses ``eval_data``.
    eval_samples: use at most this many eval samples.
    batch_size: the batch size served: latency is measured there.
    latency_dims: sizes of other symbolic dims for the latency inputs (e.g. {"sequence": 128});
        None takes rows of the eval data.
    time_budget_s: stop starting candidates after this many seconds (None: no limit); the best
        model found so far is always left in OUT/chosen.
    finetune: fine-tune hook for structured pruning of a PyTorch source: a callable (or
        "module:function") that receives the pruned nn.Module and returns it trained.
    only: build only these candidates (names as in the report, e.g. ("fp32", "int8-static")).
    keep_front: also write every Pareto-front package under OUT/front/.
    ship: also package the chosen model for a deployment target ("repo", "triton",
        "torchserve", "kserve", "docker") under OUT/deploy/<target>.
    repeats: timed runs per model and session setting (interleaved with fp32).
    name: the model name of the chosen package (what ``serve`` and ``ship`` call it); None:
        the input package's name, or for a source model the output directory's name.
    tie_tolerance: latencies within this fraction of the fastest are a tie, settled by the
        smaller drop, then the smaller size, then the default session setting. 5%: on a shared
        2-core machine, repeated interleaved runs of one model differed by up to ~5%, and
        whether 1 thread or all cores is faster flipped with the load of other processes.
    """

    target: str = "cpu"
    max_drop: float | None = None
    max_latency_ms: float | None = None
    max_size_mb: float | None = None
    eval_data: Any = None
    labels: str | os.PathLike[str] | np.ndarray | None = None
    metric: str | Callable[..., float] | None = None
    calibration: Any = None
    eval_samples: int | None = 512
    batch_size: int = 1
    latency_dims: Mapping[str, int] | None = None
    time_budget_s: float | None = None
    finetune: str | Callable[[Any], Any] | None = None
    only: tuple[str, ...] = ()
    keep_front: bool = False
    ship: str | None = None
    repeats: int = 30
    tie_tolerance: float = 0.05
    name: str | None = None

    def __post_init__(self) -> None:
        from ..deploy import TARGETS as SHIP_TARGETS

        if self.target not in TARGETS:
            raise UsageError(f"target={self.target!r}: choose one of {list(TARGETS)}")
        self.budget()  # validates the three limits
        if self.batch_size < 1:
            raise UsageError(f"batch_size={self.batch_size}: the served batch size must be >= 1")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise UsageError(
                f"time_budget_s={self.time_budget_s}: give a positive number of seconds "
                "(--time-budget takes minutes), or None for no limit"
            )
        if self.eval_samples is not None and self.eval_samples < 1:
            raise UsageError("eval_samples must be >= 1 or None (all)")
        if self.repeats < 3:
            raise UsageError(f"repeats={self.repeats}: time at least 3 runs per setting")
        if not 0 <= self.tie_tolerance < 0.5:
            raise UsageError(f"tie_tolerance={self.tie_tolerance}: give a fraction in [0, 0.5)")
        if self.ship is not None and self.ship not in SHIP_TARGETS:
            raise UsageError(f"ship={self.ship!r}: choose one of {sorted(SHIP_TARGETS)}")
        if isinstance(self.only, str):
            raise UsageError("only is a tuple of candidate names, e.g. ('int8-static',)")
        object.__setattr__(self, "only", tuple(self.only))
        if self.labels is not None and self.eval_data is None:
            raise UsageError(
                "labels need the eval data they label: give eval_data (--eval) with --labels"
            )
        if isinstance(self.metric, str) and ":" not in self.metric:
            raise UsageError(f"metric {self.metric!r} must be given as module:function")
        if isinstance(self.finetune, str) and ":" not in self.finetune:
            raise UsageError(f"finetune {self.finetune!r} must be given as module:function")
        if self.latency_dims is not None and any(v < 1 for v in self.latency_dims.values()):
            raise UsageError(f"latency_dims must be >= 1, got {dict(self.latency_dims)}")

    def budget(self) -> Any:
        from .pareto import Budget

        return Budget(self.max_drop, self.max_latency_ms, self.max_size_mb)

    def describe(self) -> dict[str, Any]:
        def data(v: Any) -> Any:
            if v is None or isinstance(v, str | int | float):
                return v
            if isinstance(v, os.PathLike):
                return str(v)
            return f"<{type(v).__name__}>"

        return {
            "target": self.target,
            "max_drop": self.max_drop,
            "max_latency_ms": self.max_latency_ms,
            "max_size_mb": self.max_size_mb,
            "eval_data": data(self.eval_data),
            "labels": data(self.labels),
            "metric": self.metric
            if isinstance(self.metric, str | None)
            else getattr(self.metric, "__name__", "callable"),
            "calibration": data(self.calibration),
            "eval_samples": self.eval_samples,
            "batch_size": self.batch_size,
            "latency_dims": dict(self.latency_dims or {}),
            "time_budget_s": self.time_budget_s,
            "finetune": self.finetune
            if isinstance(self.finetune, str | None)
            else getattr(self.finetune, "__qualname__", "callable"),
            "only": list(self.only),
            "keep_front": self.keep_front,
            "ship": self.ship,
            "repeats": self.repeats,
            "tie_tolerance": self.tie_tolerance,
            "name": self.name,
        }


@dataclass
class PlanResult:
    """What ``plan`` found.

    chosen: the chosen package at OUT/chosen (None when no candidate meets the budget).
    winner: the chosen row (candidate, session setting, latency, size, drops), or None.
    rows: every measured (candidate, session setting), with its verdict.
    front / closest: names of the Pareto-front rows, and of the rows nearest the budget.
    reports: "md", "html", "json", "plot" -> path.
    stopped: why the search stopped early ("time budget", "interrupted") or None.
    """

    out: Path
    chosen: ModelPackage | None
    winner: dict[str, Any] | None
    rows: list[dict[str, Any]]
    front: list[str]
    closest: list[str]
    reports: dict[str, Path]
    summary: dict[str, Any] = field(repr=False)
    stopped: str | None = None
    deployed: Any = None

    @property
    def met(self) -> bool:
        return self.winner is not None

    def to_dict(self) -> dict[str, Any]:
        return self.summary


def _prepare_out(out: Path, force: bool) -> None:
    if out.exists():
        if not force:
            raise output_exists(out)
        if out.is_dir() and ((out / "plan.json").is_file() or not any(out.iterdir())):
            shutil.rmtree(out)
        else:
            raise UsageError(
                f"'{out}' exists and is not a plan output (no plan.json); refusing to replace it",
                path=str(out),
            )
    out.mkdir(parents=True)


def _as_source(model: Any) -> Any:
    from ..convert import Source

    if isinstance(model, Source):
        return model
    if isinstance(model, ModelPackage | str | os.PathLike):
        return None
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is an extra
        pass
    else:
        if isinstance(model, torch.nn.Module):
            return Source.torch_module(copy.deepcopy(model))
    raise UsageError(
        f"cannot plan for a {type(model).__name__}: give a package path, a ModelPackage, a "
        "convert.Source or an nn.Module"
    )


def _raw_feed(data: Any) -> dict[str, np.ndarray] | None:
    """Eval data before the model's signature is known (to export a source)."""
    from ..data import load_feed

    if data is None:
        return None
    if isinstance(data, Mapping):
        return {k: np.asarray(v) for k, v in data.items()}
    if isinstance(data, str | os.PathLike):
        return load_feed(data)
    raise UsageError("to plan for a source model, give eval_data as a path or a feed mapping")


def _load_labels(labels: Any, n: int) -> np.ndarray | None:
    if labels is None:
        return None
    arr = labels if isinstance(labels, np.ndarray) else np.load(labels, allow_pickle=False)
    arr = np.asarray(arr).reshape(-1)
    if arr.dtype.kind not in "iu":
        raise InputError(f"labels must be integers (got {arr.dtype})")
    if len(arr) < n:
        raise InputError(f"{len(arr)} labels for {n} evaluation samples; give one per sample")
    return arr[:n]


def _latency_feed(
    pkg: ModelPackage, feed: Feed, batch: int, dims: Mapping[str, int] | None
) -> Feed:
    from ..data import generate_feed, rows_dim, take_rows

    sig = pkg.signature
    if dims:
        bdim = next(
            (t.shape[0] for t in sig.inputs if t.shape and isinstance(t.shape[0], str)), None
        )
        return generate_feed(sig, {**dict(dims), **({bdim: batch} if bdim else {})}, seed=1)
    if rows_dim(sig) is None:  # a recurrent state, a scalar: the feed is one call, as it is
        return dict(feed)
    return take_rows(feed, batch)


def _openvino_precisions(target: str) -> tuple[str, ...] | None:
    """OpenVINO's natively supported float precisions here, or None (not installed, or a GPU
    target, which OpenVINO's CPU plugin does not serve)."""
    from ..runtime import engine_available, native_precisions

    if target != "cpu" or not engine_available("openvino"):
        return None
    return native_precisions("openvino")


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def plan(
    model: ModelPackage | str | os.PathLike[str] | Any,
    out: str | os.PathLike[str],
    config: PlanConfig | None = None,
    *,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> PlanResult:
    """Search the variants of ``model`` for the best under ``config``'s budget; write OUT.

    model: a package (path or ModelPackage), a ``convert.Source`` or an nn.Module (PyTorch
        sources also allow structured pruning with ``config.finetune``).
    Nothing is written at OUT/chosen unless a candidate meets the budget; the report is
    always written. The input package and ``config`` are not modified.
    """
    from ..convert.torch import import_target
    from ..optimize.calibration import take_feed
    from ..optimize.hardware import detect_cpu
    from ..optimize.report import load_metric
    from ..runtime import available_providers
    from .build import BuildContext
    from .candidates import generate_candidates, profile_model, session_settings
    from .search import Evaluation, search, session_for
    from .write import finish, write_state

    started = time.perf_counter()
    config = config or PlanConfig()
    log = log or (lambda _msg: None)
    out = Path(out)
    if config.target == "cuda" and "CUDAExecutionProvider" not in available_providers():
        raise UsageError(
            "--target cuda needs ONNX Runtime's CUDAExecutionProvider, which this onnxruntime "
            f"build does not have (available: {available_providers()}); install onnxruntime-gpu "
            "on a machine with a CUDA GPU, or plan for --target cpu"
        )
    source = _as_source(model)
    finetune = config.finetune
    if isinstance(finetune, str):
        finetune = import_target(finetune)
        if not callable(finetune):
            raise UsageError(f"finetune {config.finetune!r} is not a function")
    if finetune is not None and (source is None or source.kind != "torch"):
        raise UsageError(
            "a fine-tune hook is for structured pruning of a PyTorch model: give the PyTorch "
            "source (--torch MODULE:CLASS --weights W.pt) instead of an ONNX package"
        )
    user_metric = load_metric(config.metric) if config.metric is not None else None
    _prepare_out(out, force)
    work = out / ".work"
    work.mkdir()
    notes: list[str] = []
    example = None
    try:
        if source is not None:
            from ..convert import ConvertConfig, convert

            raw = _raw_feed(config.eval_data)
            if raw is None:
                raise UsageError(
                    "planning for a source model needs eval data (--eval) to export it with and "
                    "to measure the candidates on"
                )
            example = {k: v[:16] for k, v in raw.items()}
            log("converting the source to an fp32 package")
            name = config.name or out.resolve().name  # not the work directory's name
            fp32 = convert(
                source, work / "fp32-source", ConvertConfig(example=example, name=name)
            ).package
        else:
            fp32 = model if isinstance(model, ModelPackage) else ModelPackage.load(model)
        # every package plan writes (chosen, front, --ship) is named like this
        config = dataclasses.replace(config, name=config.name or fp32.name)
        sig = fp32.signature
        stored = fp32.samples() if config.eval_data is None else None
        if config.eval_data is not None:
            feed = take_feed(config.eval_data, sig, config.eval_samples)
            eval_source = "given data"
        elif stored is not None and stored[0]:
            feed = dict(stored[0])
            eval_source = "the package's stored samples"
            notes.append(
                "no eval data given: fidelity is measured on the package's stored example "
                "inputs only; give --eval for a meaningful number"
            )
        else:
            from ..data import package_feed

            feed, _ = package_feed(fp32, batch=8)
            eval_source = "generated random inputs"
            notes.append("no eval data given: fidelity is measured on random inputs; give --eval")
        from ..data import feed_batch_size

        n_eval = feed_batch_size(feed)
        labels = _load_labels(config.labels, n_eval)
        calibration = config.calibration
        if calibration is None and config.eval_data is not None:
            calibration = feed
            notes.append(
                "static int8 is calibrated on the eval data (no --calibration given); give "
                "separate calibration data to keep them apart"
            )
        providers = ("cuda",) if config.target == "cuda" else ("cpu",)
        cores = _cores()
        settings = session_settings(config.target, cores)
        from ..runtime import SessionConfig, make_session
        from .candidates import SessionSetting

        baseline = session_for(fp32.model_path, SessionSetting(), providers)
        from ..optimize.report import run_batched

        reference = run_batched(
            make_session(fp32.model_path, SessionConfig(providers=providers)), feed
        )
        ev = Evaluation(
            feed=feed,
            reference=reference,
            labels=labels,
            user_metric=user_metric,
            latency_feed=_latency_feed(fp32, feed, config.batch_size, config.latency_dims),
            baseline=baseline,
            settings=settings,
            providers=providers,
            cores=cores,
            repeats=config.repeats,
        )
        cpu = detect_cpu()
        openvino = _openvino_precisions(config.target)
        profile = profile_model(fp32.load_onnx(load_external_data=False))
        log(f"model: {profile.summary()}")
        cands, not_generated = generate_candidates(
            profile,
            target=config.target,
            calibration=calibration is not None,
            eval_data=config.eval_data is not None,
            max_drop=config.max_drop,
            torch_source=source is not None and source.kind == "torch",
            finetune=finetune is not None,
            int8_kernels=cpu.vnni or cpu.arm_dot,
            openvino=openvino,
        )
        if config.only:
            known = {c.name for c in cands}
            unknown = sorted(set(config.only) - known)
            if unknown:
                raise UsageError(
                    f"only={list(config.only)}: {unknown} are not candidates for this model and "
                    f"inputs; the candidates are {sorted(known)}"
                )
            keep = set(config.only) | {"fp32"}
            keep |= {c.base for c in cands if c.name in keep and c.base}
            not_generated += [(c.name, "not in --only") for c in cands if c.name not in keep]
            cands = [c for c in cands if c.name in keep]
        ctx = BuildContext(
            eval_feed=feed,
            labels=labels,
            metric=ev.metric_fn(),
            calibration=calibration,
            max_drop=config.max_drop,
            source=source,
            finetune=finetune,
            example=example,
            batch_size=config.batch_size,
        )
        meta = {
            "model": str(getattr(model, "path", model)) if source is None else source.describe(),
            "machine": {
                "cpu": cpu.summary(),
                "cores": cores,
                "providers": list(providers),
                "engines": {"ort": ["fp32"], **({"openvino": list(openvino)} if openvino else {})},
            },
            "profile": profile.to_dict(),
            "profile_summary": profile.summary(),
            "eval": {"source": eval_source, "samples": n_eval, "labels": labels is not None},
            "budget_metric": ev.budget_metric,
            "settings": [s.label(cores) for s in settings],
            "candidates": [c.describe() for c in cands],
            "not_generated": [{"candidate": n, "reason": r} for n, r in not_generated],
            "notes": notes,
            "latency_inputs": {k: list(v.shape) for k, v in ev.latency_feed.items()},
        }

        def on_update(state: Any, changed: bool) -> None:
            write_state(out, config, meta, state, ev, changed, final=False)

        state = search(
            cands,
            fp32,
            ctx,
            ev,
            config.budget(),
            work=work,
            started=started,
            time_budget_s=config.time_budget_s,
            tie_tolerance=config.tie_tolerance,
            on_update=on_update,
            log=log,
        )
        result: PlanResult = finish(out, config, meta, state, ev, log)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
