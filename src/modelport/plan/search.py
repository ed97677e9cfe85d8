"""The search: build each candidate, measure it the same way as every other, keep the best.

- Order: the candidates come cheapest/most promising first (``candidates.generate_candidates``);
  some are skipped when what is already measured shows they cannot win (partial int8 when full
  int8 of the same scheme already meets the drop budget; a stacked candidate whose base is
  already outside it).
- Measurement (``measure_model``): one function for all. Outputs on the same eval data against
  the fp32 model's outputs (fidelity drop = 1 - mean cosine, the user's metric, accuracy with
  labels); size on disk; latency at the served batch size with every session setting, each run
  *interleaved* with the fp32 baseline so machine drift cancels out in the ratio. Latencies are
  reported as ``baseline latency / speed-up`` (the baseline's median over all interleaved runs)
  so candidates measured minutes apart compare fairly.
- Time budget: a candidate starts only if the time left covers its estimated cost (cost units
  times the seconds per unit observed so far); the fp32 baseline always runs.
- Best so far: after every candidate the pick is recomputed, and when it changes the chosen
  package is rewritten (atomically) with the plan step in its history, so an interrupted or
  timed-out run always leaves the best model found.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Feed, feed_batch_size
from ..metrics import mean_cosine
from ..package import ModelPackage
from ..progress import progress
from .build import BuildContext, build_candidate
from .candidates import Candidate, SessionSetting, settings_for
from .pareto import Budget, pick

__all__ = [
    "Evaluation",
    "SearchState",
    "measure_model",
    "mean_cosine",
    "search",
    "session_for",
]


def accuracy_metric(labels: np.ndarray) -> Callable[..., float]:
    """Top-1 accuracy of the first output against ``labels`` (the reference is not used)."""
    from ..metrics import accuracy

    def accuracy_of_first_output(
        reference: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray], feed: Feed
    ) -> float:
        return accuracy(next(iter(outputs.values())), labels[: feed_batch_size(feed)])

    return accuracy_of_first_output


@dataclass
class Evaluation:
    """The one way every candidate is measured.

    feed / reference: eval inputs and the fp32 model's outputs on them.
    labels / user_metric: accuracy labels and the user's metric function, when given.
    latency_feed: the inputs timed (the served batch size).
    baseline: the fp32 model's session (default settings) every timing is interleaved with.
    settings: the session settings each model is timed with.
    providers / cores / warmup / repeats: how sessions are made and timed.
    """

    feed: Feed
    reference: dict[str, np.ndarray]
    labels: np.ndarray | None
    user_metric: Callable[..., float] | None
    latency_feed: Feed
    baseline: Any
    settings: list[SessionSetting]
    providers: tuple[str, ...] = ("cpu",)
    cores: int = 1
    warmup: int = 5
    repeats: int = 30
    baseline_ms: float | None = None  # the fp32 p50: median over the interleaved runs so far
    acc_before: float | None = None

    @property
    def budget_metric(self) -> str:
        """What ``--max-drop`` applies to."""
        if self.user_metric is not None:
            return "metric"
        return "accuracy" if self.labels is not None else "fidelity"

    def metric_fn(self) -> Callable[..., float]:
        """The budget metric as a score function (for partial quantization's search)."""
        if self.user_metric is not None:
            return self.user_metric
        if self.labels is not None:
            return accuracy_metric(self.labels)
        return mean_cosine


def session_for(path: Path, setting: SessionSetting, providers: tuple[str, ...]) -> Any:
    """The engine session a setting names (``runtime.load_engine``): what serve will run."""
    from ..runtime import EngineConfig, SessionConfig, load_engine

    return load_engine(
        path,
        EngineConfig(
            engine=setting.engine,
            precision=setting.precision,
            threads=setting.threads,
            session=SessionConfig(parallel=setting.parallel, providers=providers),
            cache_dir="",  # candidates are measured once: no compiled blobs left in the cache
        ),
    )


def measure_quality(ev: Evaluation, session: Any) -> dict[str, Any]:
    """Fidelity drop, accuracy drop, metric drop of a session's outputs on the eval data."""
    from ..metrics import accuracy
    from ..optimize.report import run_batched

    got = run_batched(session, ev.feed)
    q: dict[str, Any] = {"fidelity_drop": max(0.0, 1.0 - mean_cosine(ev.reference, got, ev.feed))}
    q["accuracy_drop"] = None
    q["accuracy"] = None
    if ev.labels is not None:
        first = next(iter(got))
        acc = accuracy(got[first], ev.labels)
        if ev.acc_before is None:
            ev.acc_before = accuracy(ev.reference[first], ev.labels)
        q["accuracy"] = acc
        q["accuracy_drop"] = ev.acc_before - acc
    q["metric_drop"] = None
    if ev.user_metric is not None:
        before = float(ev.user_metric(ev.reference, ev.reference, ev.feed))
        q["metric_drop"] = before - float(ev.user_metric(ev.reference, got, ev.feed))
    q["drop"] = {
        "metric": q["metric_drop"],
        "accuracy": q["accuracy_drop"],
        "fidelity": q["fidelity_drop"],
    }[ev.budget_metric]
    return q


def measure_model(
    ev: Evaluation, name: str, pkg: ModelPackage, cand: Candidate | None = None
) -> list[dict[str, Any]]:
    """One row per session setting: quality (the same for all settings), size, and latency
    interleaved with the fp32 baseline. ``cand`` names the engine (ORT when None)."""
    from ..bench import LatencyConfig, compare_latency

    t0 = time.perf_counter()
    path = pkg.model_path
    settings = settings_for(cand, ev.settings, ev.cores) if cand is not None else ev.settings
    sessions = [(s, session_for(path, s, ev.providers)) for s in settings]
    quality = measure_quality(ev, sessions[0][1])
    runs = [("fp32 baseline", ev.baseline)] + [(f"{name} {s.short()}", x) for s, x in sessions]
    stats = compare_latency(
        runs, ev.latency_feed, LatencyConfig(warmup=ev.warmup, repeats=ev.repeats)
    )
    base_ms = stats[0].p50
    if ev.baseline_ms is None:
        ev.baseline_ms = base_ms
    size = pkg.size_bytes()
    rows = []
    for (setting, session), st in zip(sessions, stats[1:], strict=True):
        speedup = base_ms / st.p50 if st.p50 > 0 else 0.0
        rows.append(
            {
                "name": f"{name} [{setting.short()}]",
                "candidate": name,
                "setting": setting.to_dict(),
                "setting_label": setting.label(ev.cores),
                "engine": session.info.engine,
                "precision": session.info.precision,  # what ran, read back from the engine
                "ran": session.info.to_dict(),
                "tiebreak": 0 if setting == SessionSetting() else 1,  # ties: default settings
                "latency_ms": ev.baseline_ms / speedup if speedup else float("inf"),
                "raw_ms": st.p50,
                "p90_ms": st.p90,
                "baseline_ms_interleaved": base_ms,
                "speedup": speedup,
                "size_mb": size / 1e6,
                "package": str(pkg.path),
                "model_path": str(path),
                **quality,
            }
        )
    for r in rows:
        r["measure_s"] = (time.perf_counter() - t0) / len(rows)
    return rows


@dataclass
class SearchState:
    """Everything the search has done so far (what plan.json and the report show)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)  # one per candidate
    winner: str | None = None  # name of the chosen row
    stopped: str | None = None  # why the search stopped early ("time budget", "interrupted")
    elapsed_s: float = 0.0


def _skip_reason(
    cand: Candidate,
    state: SearchState,
    built: Mapping[str, ModelPackage],
    budget: Budget,
) -> str | None:
    by_cand: dict[str, list[dict[str, Any]]] = {}
    for r in state.rows:
        by_cand.setdefault(r["candidate"], []).append(r)
    if cand.base is not None:
        if cand.base not in built:
            return f"its base {cand.base} was not built"
        base_rows = by_cand.get(cand.base, [])
        if budget.max_drop is not None and base_rows and base_rows[0]["drop"] > budget.max_drop:
            return (
                f"its base {cand.base} is already outside the drop budget "
                f"({base_rows[0]['drop']:.4g} > {budget.max_drop:g})"
            )
    if cand.options.get("partial") and budget.max_drop is not None:
        full = cand.name.removesuffix("-partial")
        rows = by_cand.get(full, [])
        if rows and rows[0]["drop"] <= budget.max_drop:
            return (
                f"{full} (every node int8) already meets the drop budget "
                f"({rows[0]['drop']:.4g} <= {budget.max_drop:g}); keeping nodes float can "
                "only be slower"
            )
    if cand.options.get("mode") == "partial" and budget.max_drop is not None:
        scheme = cand.options.get("partial_base") or "dynamic"
        for a in state.attempts:
            if a.get("mode") == scheme and a.get("base") is None and a["status"] == "measured":
                rows = by_cand.get(a["candidate"], [])
                if rows and rows[0]["drop"] <= budget.max_drop:
                    return (
                        f"{a['candidate']} (every node int8) already meets the drop budget "
                        f"({rows[0]['drop']:.4g} <= {budget.max_drop:g}); partial keeps nodes "
                        "float, so it can only be slower and larger"
                    )
    return None


def search(
    candidates: list[Candidate],
    fp32: ModelPackage,
    ctx: BuildContext,
    ev: Evaluation,
    budget: Budget,
    *,
    work: Path,
    started: float,
    time_budget_s: float | None = None,
    tie_tolerance: float = 0.05,
    on_update: Callable[[SearchState, bool], None] | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> SearchState:
    """Run ``candidates`` in order; ``on_update(state, winner_changed)`` after each one.

    KeyboardInterrupt stops the search; the state so far is returned with ``stopped`` set.
    """
    state = SearchState()
    built: dict[str, ModelPackage] = {}
    seconds_per_cost: float | None = None
    spent_cost = spent_s = 0.0
    try:
        with progress("plan: candidates", total=len(candidates)) as bar:
            for i, cand in enumerate(candidates):
                if i:
                    bar.advance()
                bar.update(description=f"plan: {cand.name}")
                elapsed = time.perf_counter() - started
                attempt: dict[str, Any] = {
                    "candidate": cand.name,
                    "kind": cand.kind,
                    "mode": cand.options.get("mode"),
                    "base": cand.base,
                    "why": cand.why,
                    "options": dict(cand.options),
                }
                if i > 0 and time_budget_s is not None:
                    left = time_budget_s - elapsed
                    estimate = cand.cost * (seconds_per_cost or 0.0)
                    if left <= 0 or estimate > left:
                        attempt.update(
                            status="skipped",
                            reason=f"time budget: {max(left, 0):.0f} s left, estimated "
                            f"{estimate:.0f} s",
                        )
                        state.attempts.append(attempt)
                        if left <= 0:
                            state.stopped = "time budget"
                        continue
                reason = _skip_reason(cand, state, built, budget)
                if reason:
                    attempt.update(status="skipped", reason=reason)
                    state.attempts.append(attempt)
                    continue
                log(f"[{i + 1}/{len(candidates)}] {cand.name}: building")
                t0 = time.perf_counter()
                base = built[cand.base] if cand.base else fp32
                try:
                    pkg = build_candidate(ctx, cand, base, work / cand.name.replace("+", "_"))
                except Exception as exc:  # any builder failure is a result, not a crash
                    attempt.update(
                        status="failed",
                        reason=f"build failed: {_first_line(exc)}",
                        build_s=time.perf_counter() - t0,
                    )
                    state.attempts.append(attempt)
                    log(f"    failed: {_first_line(exc)}")
                    continue
                build_s = time.perf_counter() - t0
                built[cand.name] = pkg
                log(f"    built in {build_s:.1f} s; measuring")
                try:
                    rows = measure_model(ev, cand.name, pkg, cand)
                except Exception as exc:
                    attempt.update(
                        status="failed",
                        reason=f"measurement failed: {_first_line(exc)}",
                        build_s=build_s,
                    )
                    state.attempts.append(attempt)
                    continue
                for r in rows:
                    r["kind"] = cand.kind
                    r["build_s"] = build_s
                state.rows.extend(rows)
                _renormalize(state.rows, ev)
                attempt.update(status="measured", build_s=build_s, rows=len(rows))
                state.attempts.append(attempt)
                spent_cost += cand.cost
                spent_s += time.perf_counter() - t0
                seconds_per_cost = spent_s / spent_cost
                idx = pick(state.rows, budget, tie_tolerance)
                new = state.rows[idx]["name"] if idx is not None else None
                changed = new != state.winner
                state.winner = new
                state.elapsed_s = time.perf_counter() - started
                best = min(rows, key=lambda r: r["latency_ms"])
                log(
                    f"    {best['speedup']:.2f}x ({best['setting_label']}), drop {best['drop']:.4g}, "
                    f"{best['size_mb']:.2f} MB"
                    + (f"; best so far: {new}" if changed and new else "")
                )
                if on_update is not None:
                    on_update(state, changed)
            if candidates:
                bar.advance()
                bar.update(description="plan: confirming the finalists")
            if state.winner is not None:
                log("confirming the finalists: timed again together")
                if confirm_finalists(state, ev, budget, tie_tolerance):
                    state.elapsed_s = time.perf_counter() - started
                    if on_update is not None:
                        on_update(state, True)
    except KeyboardInterrupt:
        state.stopped = "interrupted"
    state.elapsed_s = time.perf_counter() - started
    return state


def confirm_finalists(
    state: SearchState,
    ev: Evaluation,
    budget: Budget,
    tie_tolerance: float,
    within: float = 0.15,
    most: int = 6,
) -> bool:
    """Time the rows within ``within`` of the fastest in-budget row again, all in one interleaved
    run with the baseline and twice the repeats, so the pick is not decided by rows measured
    minutes apart under different machine load. Returns whether the winner changed."""
    from ..bench import LatencyConfig, compare_latency

    feasible = [r for r in state.rows if not budget.violations(r)]
    if not feasible:
        return False
    fastest = min(r["latency_ms"] for r in feasible)
    finalists = sorted(
        (r for r in feasible if r["latency_ms"] <= fastest * (1 + within)),
        key=lambda r: r["latency_ms"],
    )[:most]
    if len(finalists) < 2:
        return False
    runs = [("fp32 baseline", ev.baseline)]
    for r in finalists:
        setting = SessionSetting(**r["setting"])
        runs.append((r["name"], session_for(Path(r["model_path"]), setting, ev.providers)))
    stats = compare_latency(
        runs, ev.latency_feed, LatencyConfig(warmup=ev.warmup, repeats=2 * ev.repeats)
    )
    base_ms = stats[0].p50
    for r, st in zip(finalists, stats[1:], strict=True):
        r["speedup_first"] = r["speedup"]
        r["speedup"] = base_ms / st.p50 if st.p50 > 0 else 0.0
        r["raw_ms"], r["p90_ms"] = st.p50, st.p90
        r["confirmed"] = True
    _renormalize(state.rows, ev)
    idx = pick(state.rows, budget, tie_tolerance)
    new = state.rows[idx]["name"] if idx is not None else None
    changed = new != state.winner
    state.winner = new
    return changed


def _renormalize(rows: list[dict[str, Any]], ev: Evaluation) -> None:
    """Latency of every row = the median of the fp32 baseline's interleaved p50s so far /
    the row's speed-up: one noisy baseline measurement does not shift every latency."""
    per_model = {r["candidate"]: r["baseline_ms_interleaved"] for r in rows}
    ev.baseline_ms = float(np.median(list(per_model.values())))
    for r in rows:
        r["latency_ms"] = ev.baseline_ms / r["speedup"] if r["speedup"] else float("inf")


def _first_line(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return msg.strip().splitlines()[0][:300]
