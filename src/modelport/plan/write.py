"""Writing a plan's results: the chosen package (best so far), plan.json, the reports, the front.

``write_state`` runs after every candidate (cheap: JSON and Markdown, and the chosen package
when the pick changed); ``finish`` adds the verdicts' final form, the Pareto plot and HTML, the
front's packages and the deployment artifact.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..manifest import Step
from ..package import ModelPackage, json_default, now_iso, write_package
from .pareto import closest, pareto_front, verdicts

__all__ = ["explain", "finish", "summarize", "write_chosen", "write_state"]


def summarize(
    config: Any, meta: dict[str, Any], state: Any, ev: Any, final: bool
) -> dict[str, Any]:
    """plan.json: the configuration, what was considered, every row with its verdict."""
    budget = config.budget()
    rows = [dict(r) for r in state.rows]
    names = [r["name"] for r in rows]
    front = pareto_front(rows) if rows else []
    win = names.index(state.winner) if state.winner in names else None
    for i, (r, v) in enumerate(
        zip(rows, verdicts(rows, budget, win, front, names, config.tie_tolerance), strict=True)
    ):
        r["verdict"] = v
        r["front"] = i in front
        r["meets_budget"] = not budget.violations(r)
    near = [] if win is not None or not rows else [names[i] for i in closest(rows, budget)]
    summary = {
        **meta,
        "config": config.describe(),
        "budget": {
            "max_drop": budget.max_drop,
            "max_latency_ms": budget.max_latency_ms,
            "max_size_mb": budget.max_size_mb,
            "metric": meta["budget_metric"],
        },
        "baseline_ms": ev.baseline_ms,
        "rows": rows,
        "attempts": state.attempts,
        "winner": state.winner,
        "front": [names[i] for i in front],
        "closest": near,
        "met": win is not None,
        "stopped": state.stopped,
        "elapsed_s": round(state.elapsed_s, 1),
        "final": final,
    }
    summary["explanation"] = explain(summary)
    return summary


def _drop_text(r: dict[str, Any], metric: str) -> str:
    if metric == "accuracy":
        return f"accuracy drop {100 * r['drop']:.2f} points"
    if metric == "metric":
        return f"metric drop {r['drop']:.4g}"
    return f"fidelity drop {100 * r['drop']:.3f}% (1 - mean cosine)"


def explain(summary: dict[str, Any]) -> list[str]:
    """Sentences that say why the winner won (or what came closest), with the numbers."""
    rows = summary["rows"]
    if not rows:
        return ["nothing was measured"]
    metric = summary["budget"]["metric"]
    by = {r["name"]: r for r in rows}
    out = []
    win = by.get(summary["winner"]) if summary["winner"] else None
    feasible = [r for r in rows if r["meets_budget"]]
    if win is not None:
        out.append(
            f"{win['candidate']} with {win['setting_label']} wins: {win['latency_ms']:.3f} ms at "
            f"batch {summary['config']['batch_size']} ({win['speedup']:.2f}x the fp32 baseline), "
            f"{win['size_mb']:.2f} MB, {_drop_text(win, metric)}."
        )
        others = sorted(
            (r for r in feasible if r["candidate"] != win["candidate"]),
            key=lambda r: r["latency_ms"],
        )
        if others:
            r = others[0]
            out.append(
                f"The fastest other candidate within the budget, {r['candidate']} "
                f"({r['setting_label']}), takes {r['latency_ms']:.3f} ms "
                f"({r['latency_ms'] / win['latency_ms']:.2f}x the winner's time)."
            )
        same = [r for r in rows if r["candidate"] == win["candidate"] and r is not win]
        if same:
            worst = max(same, key=lambda r: r["latency_ms"])
            out.append(
                f"Session settings matter: the same model with {worst['setting_label']} takes "
                f"{worst['latency_ms']:.3f} ms."
            )
    else:
        out.append(
            "No candidate meets the budget. The closest: "
            + "; ".join(f"{n} ({by[n]['verdict']})" for n in summary["closest"])
            + ". Loosen the budget, give calibration/eval data for more candidates, or a "
            "PyTorch source with --finetune for pruning."
        )
    faster = [r for r in rows if not r["meets_budget"]]
    if faster:
        f = min(faster, key=lambda r: r["latency_ms"])
        if win is None or f["latency_ms"] < win["latency_ms"]:
            out.append(
                f"{f['candidate']} ({f['setting_label']}) was faster ({f['latency_ms']:.3f} ms, "
                f"{f['speedup']:.2f}x) but is outside the budget: {f['verdict'].split(': ', 1)[-1]}."
            )
    skipped = [a for a in summary["attempts"] if a["status"] != "measured"]
    if skipped:
        out.append(
            "Not measured: "
            + "; ".join(f"{a['candidate']} ({a['status']}: {a['reason']})" for a in skipped)
            + "."
        )
    if summary.get("stopped"):
        out.append(f"The search stopped early ({summary['stopped']}); the pick is the best so far.")
    return out


def write_chosen(row: dict[str, Any], dest: Path, config: Any, summary: dict[str, Any]) -> Path:
    """Write the package of ``row`` at ``dest`` (atomically replacing it) with the plan step in
    its history and its thread count in the serving config."""
    pkg = ModelPackage.load(row["package"])
    spec = pkg.spec
    step: dict[str, Any] = {
        "step": "plan",
        "time": now_iso(),
        "candidate": row["candidate"],
        "session": dict(row["setting"], label=row["setting_label"]),
        "budget": summary["budget"],
        "measured": {
            k: row.get(k)
            for k in (
                "latency_ms",
                "speedup",
                "size_mb",
                "drop",
                "fidelity_drop",
                "accuracy_drop",
                "metric_drop",
            )
        },
        "batch_size": config.batch_size,
        "machine": summary["machine"],
    }
    if row["setting"]["parallel"]:
        step["note"] = (
            "measured with ONNX Runtime's parallel execution mode; set it in your runtime "
            "(modelport serve runs sequential)"
        )
    serving = dict(spec.serving)
    if row["setting"]["threads"]:
        serving["intra_op_threads"] = row["setting"]["threads"]
    else:
        serving.pop("intra_op_threads", None)
    # the engine and precision plan measured: serve and bench (--engine package) run exactly these
    serving["engine"] = row["setting"].get("engine", "ort")
    serving["precision"] = row["setting"].get("precision", "fp32")
    step["ran"] = row.get("ran")
    manifest = dataclasses.replace(
        spec,
        history=(*spec.history, Step.from_dict(step, "step")),
        name=getattr(config, "name", None) or spec.name,
        serving=serving,
        files=None,  # write_package records the files it writes
    )
    has_samples = (pkg.path / "modelport.json").is_file()
    write_package(
        pkg.load_onnx(), manifest, dest, force=True, samples_from=pkg if has_samples else None
    )
    return dest


def write_state(
    out: Path,
    config: Any,
    meta: dict[str, Any],
    state: Any,
    ev: Any,
    changed: bool,
    final: bool,
) -> dict[str, Any]:
    from .report import write_markdown

    summary = summarize(config, meta, state, ev, final)
    if changed and state.winner:
        row = next(r for r in summary["rows"] if r["name"] == state.winner)
        write_chosen(row, out / "chosen", config, summary)
    summary["chosen"] = str(out / "chosen") if summary["met"] else None
    (out / "plan.json").write_text(json.dumps(summary, indent=2, default=json_default))
    write_markdown(summary, out / "report.md", plot=None)
    return summary


def finish(out: Path, config: Any, meta: dict[str, Any], state: Any, ev: Any, log: Any) -> Any:
    """The final reports, the front's packages, the deployment artifact; returns PlanResult."""
    from .report import plot_front, write_html, write_markdown
    from .run import PlanResult

    summary = summarize(config, meta, state, ev, final=True)
    chosen = None
    if summary["met"]:
        row = next(r for r in summary["rows"] if r["name"] == state.winner)
        if not (out / "chosen").is_dir():  # pragma: no cover - written when the pick changed
            write_chosen(row, out / "chosen", config, summary)
        chosen = ModelPackage.load(out / "chosen")
    summary["chosen"] = str(out / "chosen") if chosen else None
    if config.keep_front:
        written = []
        for r in summary["rows"]:
            if r["front"]:
                dest = out / "front" / f"{r['candidate'].replace('+', '_')}-{_short(r)}"
                write_chosen(r, dest, config, summary)
                written.append(str(dest))
        summary["front_packages"] = written
    deployed = None
    if config.ship and chosen is not None:
        from ..deploy import package_for

        deployed = package_for(chosen, config.ship, out / "deploy" / config.ship)
        summary["deployed"] = deployed.to_dict()
        log(f"shipped the chosen package for {config.ship}: {deployed.path}")
    reports = {"json": out / "plan.json", "md": out / "report.md", "html": out / "report.html"}
    plot = None
    if summary["rows"]:
        try:
            plot = plot_front(summary, out / "pareto.png")
            reports["plot"] = plot
        except Exception as exc:  # the plot is a convenience; the report stands without it
            summary["notes"] = [*summary["notes"], f"no Pareto plot: {exc}"]
    reports["json"].write_text(json.dumps(summary, indent=2, default=json_default))
    write_markdown(summary, reports["md"], plot=plot)
    write_html(summary, reports["html"], plot=plot)
    win = next((r for r in summary["rows"] if r["name"] == state.winner), None)
    return PlanResult(
        out=out,
        chosen=chosen,
        winner=win,
        rows=summary["rows"],
        front=summary["front"],
        closest=summary["closest"],
        reports=reports,
        summary=summary,
        stopped=state.stopped,
        deployed=deployed,
    )


def _short(r: dict[str, Any]) -> str:
    from .candidates import SessionSetting

    return SessionSetting(**r["setting"]).short()
