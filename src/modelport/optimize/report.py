"""Measuring an optimized model against its input on this machine, and the report that says so.

Every optimization reports the same things: size, latency at batch 1 and at a larger batch
(interleaved with the original, via ``modelport.runtime.latency.compare_latency``), fidelity of the outputs
(cosine per row, top-1 agreement for classifier-like outputs, max error), the user's metric when
one is given, and accuracy when labels are given. Warnings are loud and kept in the report: a
result slower than its input, or outside the fidelity budget.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..data import Feed, feed_batch_size, generate_feed, guess_dims, rows_dim, split_batches
from ..errors import InputError, UsageError
from ..signature import Signature
from .calibration import DataSource, take_feed

__all__ = [
    "DEFAULT_MAX_DROP",
    "EvalConfig",
    "Metric",
    "OptimizeReport",
    "fidelity_score",
    "load_metric",
    "measure",
    "run_batched",
    "run_checker",
    "sentence_embedding_cosine",
]

# The budget every quantize / optimize / prune run is held to when none is given: the metric
# (accuracy with labels, else the fidelity score: the worst of mean row cosine and top-1 agreement)
# may drop by at most 0.01 (1 point of accuracy, 1 % of fidelity). Beyond it: a loud warning and
# exit code 1. Documented in docs/quantize.md and docs/prune.md.
DEFAULT_MAX_DROP = 0.01

# metric(reference_outputs, outputs, feed) -> score, higher is better, 1.0 for identical outputs
Metric = Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray], Feed], float]


@dataclass(frozen=True)
class EvalConfig:
    """How a result is measured against its input.

    data: evaluation inputs (path, feed or iterable of feeds); None uses the package's stored
        samples, else generated inputs.
    labels: integer labels (path to .npy or an array) for accuracy of a classifier-like output.
    metric: a score function or "module:function": ``f(reference, outputs, feed) -> float``,
        higher is better, 1.0 when the outputs equal the reference; default: ``fidelity_score``.
    limit: at most this many evaluation samples.
    batch_sizes: latency is measured at each of these batch sizes (1 and a larger one).
    latency_dims: sizes of other symbolic dims for latency inputs (e.g. {"sequence": 128});
        None takes rows of the evaluation data.
    repeats: timed runs per model and batch size (interleaved).
    measure_latency: False skips timing (size and fidelity are still measured).
    """

    data: DataSource | None = None
    labels: str | os.PathLike[str] | np.ndarray | None = None
    metric: str | Metric | None = None
    limit: int | None = 512
    batch_sizes: tuple[int, ...] = (1, 8)
    latency_dims: Mapping[str, int] | None = None
    repeats: int = 20
    measure_latency: bool = True

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise UsageError(f"batch_sizes must be positive (got {list(self.batch_sizes)})")
        if self.repeats < 1:
            raise UsageError(f"repeats must be >= 1 (got {self.repeats})")
        if isinstance(self.metric, str) and ":" not in self.metric:
            raise UsageError(f"metric '{self.metric}' must be given as module:function")


def load_metric(metric: str | Metric | None) -> Metric:
    """The metric function: a callable, "module:function", or the default fidelity score."""
    if metric is None:
        return fidelity_score
    if callable(metric):
        return metric
    mod_name, _, attr = metric.partition(":")
    try:
        fn = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(
            f"cannot load metric '{metric}': {exc}; give it as module:function "
            "importable from the current directory"
        ) from exc
    if not callable(fn):
        raise UsageError(f"metric '{metric}' is not a function")
    return cast("Metric", fn)


def resolve_metric(config: EvalConfig, labels: np.ndarray | None) -> Metric:
    """The metric a budget applies to: the given one; else accuracy when labels are given; else
    the fidelity score."""
    if config.metric is None and labels is not None:
        return label_accuracy(labels)
    return load_metric(config.metric)


def label_accuracy(labels: np.ndarray) -> Metric:
    """Accuracy of the first output against ``labels`` (the reference is ignored)."""
    from ..metrics import accuracy

    def accuracy_metric(
        reference: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray], feed: Feed
    ) -> float:
        return accuracy(next(iter(outputs.values())), labels[: feed_batch_size(feed)])

    return accuracy_metric


def fidelity_score(
    reference: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray], feed: Feed
) -> float:
    """The default metric: the worst over float outputs of mean row cosine and top-1 agreement."""
    from ..metrics import fidelity

    vals = []
    for d in fidelity(reference, outputs).values():
        vals += [v for k, v in d.items() if k in ("cos_mean", "top1_agreement", "exact_match")]
    return float(min(vals)) if vals else 1.0


def sentence_embedding_cosine(
    reference: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray], feed: Feed
) -> float:
    """Mean cosine of mean-pooled sentence embeddings (first 3-D output, masked by the feed's
    ``attention_mask``): the metric for sentence-transformers models such as MiniLM.

    Use it with ``--metric modelport.optimize.report:sentence_embedding_cosine``.
    """
    from ..metrics import cosine_rows, mean_pool

    name = next(k for k, v in reference.items() if np.ndim(v) == 3)
    mask = feed.get("attention_mask")
    if mask is None:
        mask = np.ones(np.shape(reference[name])[:2], dtype=np.int64)
    return float(
        cosine_rows(mean_pool(reference[name], mask), mean_pool(outputs[name], mask)).mean()
    )


def run_batched(session: Any, feed: Feed, batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Outputs of ``session`` on ``feed``, run in batches (default: ``eval_batch_rows``)."""
    from ..runtime import run_session

    rows = batch_size or eval_batch_rows(feed)
    parts = [run_session(session, b) for b in split_batches(feed, rows)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


EVAL_BATCH_BYTES = 8 << 20


def eval_batch_rows(feed: Mapping[str, np.ndarray], max_rows: int = 64) -> int:
    """Rows per run: as many as fit ``EVAL_BATCH_BYTES`` of input (at least one), so that the
    activations of one run stay small (a 960x960 image is 11 MB: one row at a time)."""
    n = max(1, max((len(v) for v in feed.values() if np.ndim(v)), default=1))
    per_row = sum(np.asarray(v).nbytes for v in feed.values()) / n
    return int(max(1, min(max_rows, EVAL_BATCH_BYTES // max(per_row, 1))))


def eval_feed(
    config: EvalConfig,
    signature: Signature,
    samples: tuple[Feed, Feed] | None,
    dims: Mapping[str, int] | None = None,
) -> tuple[Feed, str]:
    """The evaluation inputs and where they came from."""
    if config.data is not None:
        return take_feed(config.data, signature, config.limit), "given data"
    if samples is not None and samples[0]:
        return dict(samples[0]), "the package's stored samples"
    # 8 rows at sizes a model of this kind accepts (224 x 224 images, 128-token sequences...):
    # 8 in every dim made a detector's feature maps disagree in its Concat. ``dims``: the sizes
    # the package was converted at (a recognizer fixed at height 48). A model whose inputs do
    # not share a dynamic axis 0 (a recurrent state [layers, N, hidden], a scalar) takes one row.
    bdim = rows_dim(signature)
    sizes = guess_dims(signature, batch=8 if bdim else 1)
    sizes.update(dims or {})
    if bdim:
        sizes[bdim] = 8
    return generate_feed(signature, sizes), "generated random inputs"


def load_labels(labels: str | os.PathLike[str] | np.ndarray | None, n: int) -> np.ndarray | None:
    if labels is None:
        return None
    arr = np.load(labels, allow_pickle=False) if not isinstance(labels, np.ndarray) else labels
    arr = np.asarray(arr).reshape(-1)
    if arr.dtype.kind not in "iu":
        raise InputError(f"labels must be integers (got {arr.dtype})")
    if len(arr) < n:
        raise InputError(f"{len(arr)} labels for {n} evaluation samples; give one label per sample")
    return arr[:n]


def score(
    metric: Metric,
    reference: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray],
    feed: Feed,
) -> float:
    """The metric's score of ``outputs`` relative to its score of the reference itself."""
    return float(metric(reference, outputs, feed))


@dataclass
class OptimizeReport:
    """What an optimization (quantize, graph, prune) did and what it cost, measured on this machine.

    One set of units for every step: sizes in bytes, latency rows per batch size with p50 in ms
    and ``speedup`` = before / after, metric and accuracy drops as fractions (before - after;
    0.01 is one point of accuracy). What only one step measures goes in ``details`` (prune: the
    layers, parameters, gzip sizes).
    """

    step: str
    config: dict[str, Any]
    choices: list[str] = field(default_factory=list)  # what was chosen and why
    size_before: int = 0
    size_after: int = 0
    latency: list[dict[str, Any]] = field(default_factory=list)  # per batch size
    fidelity: dict[str, Any] = field(default_factory=dict)
    metric: dict[str, Any] = field(default_factory=dict)  # name, before, after, drop, budget
    accuracy: dict[str, Any] | None = None
    eval_source: str = ""
    eval_samples: int = 0
    ops_before: dict[str, int] = field(default_factory=dict)
    ops_after: dict[str, int] = field(default_factory=dict)
    float_ops: dict[str, int] = field(default_factory=dict)  # ops left in float
    details: dict[str, Any] = field(default_factory=dict)  # step-specific (kept nodes, costs...)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what to know about the result (caveats)
    checker: str = "not run"  # "passed", "not run", or the checker's message
    checker_note: str = ""  # why a known-benign checker failure was accepted, if one was
    unchanged: str = ""  # why the step changed nothing (e.g. no node was quantized), if it did
    seconds: float = 0.0

    @property
    def size_ratio(self) -> float:
        return self.size_before / self.size_after if self.size_after else 0.0

    @property
    def passed(self) -> bool:
        """The checker passed, the step changed the model, and the metric is within the budget."""
        ok = self.checker == "passed" and not self.unchanged
        if self.metric.get("budget") is not None:
            ok = ok and self.metric["drop"] <= self.metric["budget"] + 1e-12
        return ok

    def speedup(self, batch_size: int | None = None) -> float | None:
        for row in self.latency:
            if batch_size is None or row["batch_size"] == batch_size:
                return float(row["speedup"])
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "config": self.config,
            "choices": self.choices,
            "size_before": self.size_before,
            "size_after": self.size_after,
            "size_ratio": round(self.size_ratio, 3),
            "latency": self.latency,
            "fidelity": self.fidelity,
            "metric": self.metric,
            "accuracy": self.accuracy,
            "eval_source": self.eval_source,
            "eval_samples": self.eval_samples,
            "ops_before": self.ops_before,
            "ops_after": self.ops_after,
            "float_ops": self.float_ops,
            "details": self.details,
            "warnings": self.warnings,
            "notes": self.notes,
            "checker": self.checker,
            "checker_note": self.checker_note,
            "unchanged": self.unchanged,
            "passed": self.passed,
            "seconds": round(self.seconds, 2),
        }

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(what, before, after, change) rows for a table."""
        out = [
            (
                "size",
                f"{self.size_before / 1e6:.2f} MB",
                f"{self.size_after / 1e6:.2f} MB",
                f"{self.size_ratio:.2f}x smaller",
            )
        ]
        for r in self.latency:
            out.append(
                (
                    f"latency p50, batch {r['batch_size']}",
                    f"{r['before_ms']:.2f} ms",
                    f"{r['after_ms']:.2f} ms",
                    f"{r['speedup']:.2f}x " + ("faster" if r["speedup"] >= 1 else "(SLOWER)"),
                )
            )
        labels = {"cos_mean": "cosine, mean", "cos_min": "cosine, min",
                  "top1_agreement": "top-1 agreement", "max_abs_err": "max abs error"}  # fmt: skip
        for name, d in self.fidelity.items():
            for k, label in labels.items():
                if k in d:
                    v = d[k]
                    after = f"{v:.4f}" if v == 0 or abs(v) >= 1e-3 else f"{v:.2e}"
                    before = "0" if k == "max_abs_err" else "1.0000"
                    out.append((f"{name}: {label}", before, after, ""))
        if self.metric:
            m = self.metric
            budget = ""
            if m.get("budget") is not None:
                default = ", default" if m.get("budget_source") == "default" else ""
                budget = f" (budget {m['budget']:.4g}{default})"
            out.append(
                (
                    f"metric {m['name']}",
                    f"{m['before']:.4f}",
                    f"{m['after']:.4f}",
                    f"drop {m['drop']:.4f}{budget}",
                )
            )
        if self.accuracy:
            a = self.accuracy
            out.append(
                (
                    "accuracy",
                    f"{a['before']:.4f}",
                    f"{a['after']:.4f}",
                    f"drop {100 * a['drop']:.2f} points",
                )
            )
        return out


def _op_counts(model: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in model.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _latency_feed(
    signature: Signature, feed: Feed, batch: int, dims: Mapping[str, int] | None
) -> Feed | str:
    """The feed to time at ``batch`` rows, or why the model cannot take ``batch`` rows.

    Rows are stacked only on inputs whose axis 0 is dynamic, and beyond one row only for models
    batched on axis 0 (``Signature.batching``): a recurrent state [1, 1, 128] or an input fixed
    to one image stays as it is.
    """
    stacked, why = signature.batching()
    if batch > 1 and stacked is None:
        return f"latency at batch {batch} not measured: {why}"
    if dims is not None:
        bdim = _batch_dim(signature)
        return generate_feed(signature, {**dict(dims), **({bdim: batch} if bdim else {})}, seed=1)
    rows = {t.name for t in signature.inputs if t.shape and isinstance(t.shape[0], str)}
    n = min((int(np.shape(feed[k])[0]) for k in rows if k in feed), default=1)
    idx = np.arange(batch) % max(n, 1)
    return {k: v[idx] if k in rows and np.ndim(v) else v for k, v in feed.items()}


def _batch_dim(signature: Signature) -> str | None:
    for t in signature.inputs:
        if t.shape and isinstance(t.shape[0], str):
            return t.shape[0]
    return None


def measure(
    before: Any,
    after: Any,
    signature: Signature,
    config: EvalConfig,
    report: OptimizeReport,
    *,
    samples: tuple[Feed, Feed] | None = None,
    budget: float | None = None,
    threads: int = 0,
    engine: Any = None,
    dims: Mapping[str, int] | None = None,
) -> OptimizeReport:
    """Fill ``report`` with size, latency, fidelity, metric and accuracy of ``after`` vs ``before``.

    ``engine`` (a ``runtime.EngineConfig``): both models run on it (the engine the result will be
    served with); None = ONNX Runtime. ``threads`` (when not 0) replaces the engine's threads.
    What ran is recorded in ``report.details["engine"]``.

    ``before``/``after`` are paths to .onnx files. ``dims``: sizes for generated evaluation
    inputs (the package's ``data.recorded_dims``). ``budget`` is the allowed metric drop (None:
    ``DEFAULT_MAX_DROP``, recorded as the default).
    """
    import onnx

    from ..metrics import accuracy, fidelity
    from ..runtime import SessionConfig, make_session
    from ..runtime.latency import LatencyConfig, compare_latency

    before, after = Path(before), Path(after)
    report.size_before = _file_size(before)
    report.size_after = _file_size(after)
    m_before = onnx.load(str(before), load_external_data=False)
    m_after = onnx.load(str(after), load_external_data=False)
    report.ops_before, report.ops_after = _op_counts(m_before), _op_counts(m_after)
    if engine is None:
        scfg = SessionConfig(intra_op_threads=threads)
        s_before, s_after = make_session(before, scfg), make_session(after, scfg)
    else:
        import dataclasses

        from ..runtime import load_engine

        econf = dataclasses.replace(engine, threads=threads or engine.threads, cache_dir="")
        s_before, s_after = load_engine(before, econf), load_engine(after, econf)
        threads = econf.threads
        report.details["engine"] = {
            "before": s_before.info.to_dict(),
            "after": s_after.info.to_dict(),
        }
        report.choices.append(
            f"measured on {s_after.info.engine} {s_after.info.version} (the result ran "
            f"{s_after.info.precision}, the input {s_before.info.precision}; "
            f"{s_after.info.threads} thread(s))"
        )
    feed, source = eval_feed(config, signature, samples, dims)
    # samples: rows on the inputs' dynamic axis 0 (a state's fixed first axis is not samples)
    rows = {t.name for t in signature.inputs if t.shape and isinstance(t.shape[0], str)}
    counted = {k: v for k, v in feed.items() if k in rows} or feed
    report.eval_source, report.eval_samples = source, feed_batch_size(counted)
    if source != "given data":
        report.warnings.append(
            f"fidelity measured on {source} ({report.eval_samples} samples) only; "
            "give evaluation data (--eval) for a meaningful number"
        )
    ref, got = run_batched(s_before, feed), run_batched(s_after, feed)
    report.fidelity = fidelity(ref, got)
    labels = load_labels(config.labels, report.eval_samples)
    metric = resolve_metric(config, labels)
    name = getattr(metric, "__name__", "metric")
    before_score = score(metric, ref, ref, feed)
    after_score = score(metric, ref, got, feed)
    report.metric = {
        "name": name,
        "before": before_score,
        "after": after_score,
        "drop": before_score - after_score,
        "budget": DEFAULT_MAX_DROP if budget is None else budget,
        "budget_source": "default" if budget is None else "given",
    }
    budget = report.metric["budget"]
    if labels is not None:
        out = next(iter(ref))
        acc_b, acc_a = accuracy(ref[out], labels), accuracy(got[out], labels)
        report.accuracy = {"output": out, "before": acc_b, "after": acc_a, "drop": acc_b - acc_a}
    if report.metric["drop"] > budget + 1e-12:
        which = (
            "the default budget; set --max-drop to choose another"
            if report.metric["budget_source"] == "default"
            else "--max-drop"
        )
        report.warnings.append(
            f"OUTSIDE THE BUDGET: metric {name} dropped by {report.metric['drop']:.4f} "
            f"from {before_score:.4f} to {after_score:.4f} (allowed {budget:.4g}, {which})"
        )
    if config.measure_latency:
        lcfg = LatencyConfig(warmup=3, repeats=config.repeats, threads=threads)
        for b in config.batch_sizes:
            lfeed = _latency_feed(signature, feed, b, config.latency_dims)
            if isinstance(lfeed, str):
                report.choices.append(lfeed)
                continue
            st = compare_latency([("before", s_before), ("after", s_after)], lfeed, lcfg)
            row: dict[str, Any] = {
                "batch_size": b,
                "before_ms": st[0].p50,
                "after_ms": st[1].p50,
                "speedup": st[0].p50 / st[1].p50 if st[1].p50 else 0.0,
                "input_shapes": {k: list(np.shape(v)) for k, v in lfeed.items()},
            }
            report.latency.append(row)
            if row["speedup"] < 1.0:
                noise = " (within timing noise)" if row["speedup"] > 0.97 else ""
                report.warnings.append(
                    f"SLOWER THAN THE INPUT at batch {b}: {row['after_ms']:.2f} ms vs "
                    f"{row['before_ms']:.2f} ms ({row['speedup']:.2f}x) on this CPU{noise}"
                )
    return report


def run_checker(model: Any) -> str:
    """The full ``onnx.checker`` on ``model``: "passed", or its whole message on one line."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # ValidationError, InferenceError, and what protobuf raises
        msg = " ".join(str(exc).split())
        return msg or type(exc).__name__
    return "passed"


def check_result(model: Any, report: OptimizeReport, allow_mismatch: bool) -> None:
    """Run the checker on the optimized ``model`` and record it in ``report``.

    A failure raises VerificationError (nothing is written) unless ``allow_mismatch``; then the
    package is written, the failure is a loud warning, and ``report.passed`` is False.
    """
    from ..errors import VerificationError

    report.checker = run_checker(model)
    if report.checker == "passed":
        return
    if not allow_mismatch:
        raise VerificationError(
            f"the {report.step} result fails onnx.checker: {report.checker}. Nothing was written; "
            "pass --allow-mismatch to write it anyway (the report records the failure)",
            checker=report.checker,
        )
    report.warnings.append(
        f"onnx.checker FAILED: {report.checker} (written anyway: --allow-mismatch)"
    )


def _file_size(path: Path) -> int:
    total = path.stat().st_size
    ext = path.parent / (path.name + ".data")
    if ext.exists():
        total += ext.stat().st_size
    return total
