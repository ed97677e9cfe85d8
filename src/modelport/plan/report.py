"""The plan report: Markdown and HTML (with the Pareto plot embedded), from plan.json's summary.

Every candidate is a row (one per session setting): latency, speed-up, size, fidelity drop,
accuracy drop, metric drop, build time, whether it is on the front, and the verdict: why it won
or why it lost. Candidates not measured (skipped, failed, not generated) are listed with reasons.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from ..errors import require
from ..render import html_page, html_table, markdown_table, png_img

__all__ = ["plot_front", "render_markdown", "write_html", "write_markdown"]

COLUMNS = (
    "candidate",
    "engine (what ran)",
    "session",
    "latency ms",
    "speed-up",
    "size MB",
    "fidelity drop %",
    "accuracy drop pt",
    "metric drop",
    "build s",
    "front",
    "verdict",
)


def _f(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table_rows(summary: dict[str, Any]) -> list[list[str]]:
    """The candidate table (fastest first), as strings."""
    out = []
    for r in sorted(summary["rows"], key=lambda r: r["latency_ms"]):
        win = r["name"] == summary["winner"]
        out.append(
            [
                ("**" + r["candidate"] + "**") if win else r["candidate"],
                f"{r.get('engine', 'ort')} {r.get('precision', 'fp32')}",
                r["setting_label"],
                _f(r["latency_ms"]),
                _f(r["speedup"], 2) + "x",
                _f(r["size_mb"], 2),
                _f(100 * r["fidelity_drop"], 3),
                _f(None if r["accuracy_drop"] is None else 100 * r["accuracy_drop"], 2),
                _f(r["metric_drop"], 4),
                _f(r.get("build_s"), 1),
                "yes" if r["front"] else "",
                r["verdict"],
            ]
        )
    return out


def _header(summary: dict[str, Any]) -> list[tuple[str, str]]:
    b = summary["budget"]
    metric = {
        "accuracy": "accuracy drop (labels given)",
        "metric": f"drop of {summary['config']['metric']}",
        "fidelity": "fidelity drop, 1 - mean cosine vs fp32",
    }[b["metric"]]
    limits = [
        f"drop <= {b['max_drop']:g} ({metric})" if b["max_drop"] is not None else None,
        f"latency <= {b['max_latency_ms']:g} ms" if b["max_latency_ms"] is not None else None,
        f"size <= {b['max_size_mb']:g} MB" if b["max_size_mb"] is not None else None,
    ]
    cfg = summary["config"]
    ev = summary["eval"]
    return [
        ("model", str(summary["model"])),
        ("model profile", summary["profile_summary"]),
        ("target", f"{cfg['target']}; {summary['machine']['cpu']}"),
        ("budget", "; ".join(x for x in limits if x) or "none: the fastest wins"),
        ("budget metric", metric),
        (
            "eval data",
            f"{ev['samples']} samples ({ev['source']})" + (", with labels" if ev["labels"] else ""),
        ),
        (
            "latency",
            f"p50 at batch {cfg['batch_size']}, inputs "
            + ", ".join(f"{k} {v}" for k, v in summary["latency_inputs"].items())
            + f"; interleaved with the fp32 baseline ({_f(summary['baseline_ms'])} ms), "
            f"at least {cfg['repeats']} runs per setting (sub-ms models in ~20 ms blocks of "
            "consecutive runs, as a server runs them)",
        ),
        ("session settings", "; ".join(summary["settings"])),
        (
            "time",
            f"{summary['elapsed_s']:.0f} s"
            + (
                f" of a {cfg['time_budget_s']:.0f} s budget"
                if cfg["time_budget_s"] is not None
                else ""
            )
            + (f"; stopped early: {summary['stopped']}" if summary["stopped"] else ""),
        ),
        ("chosen", summary.get("chosen") or "nothing: no candidate meets the budget"),
    ]


def render_markdown(summary: dict[str, Any], plot: Path | None = None) -> str:
    lines = [f"# modelport plan: {summary['model']}", ""]
    if not summary.get("final"):
        lines += ["_In progress: this report is rewritten after every candidate._", ""]
    lines += [f"- **{k}**: {v}" for k, v in _header(summary)]
    lines += ["", "## Result", ""]
    lines += [f"- {s}" for s in summary["explanation"]]
    if plot is not None:
        lines += ["", f"![Pareto front: latency vs drop]({plot.name})"]
    lines += [
        "",
        "## Every candidate",
        "",
        "One row per model and ONNX Runtime session setting, fastest first. Latency = the fp32 "
        "baseline's latency / the speed-up measured interleaved with it.",
        "",
    ]
    lines += markdown_table(COLUMNS, table_rows(summary))
    not_measured = [a for a in summary["attempts"] if a["status"] != "measured"]
    if not_measured:
        lines += ["", "## Not measured", ""]
        lines += markdown_table(
            ("candidate", "status", "reason"),
            [(a["candidate"], a["status"], a["reason"]) for a in not_measured],
        )
    if summary["not_generated"]:
        lines += ["", "## Not generated for this model, target and inputs", ""]
        lines += [f"- **{x['candidate']}**: {x['reason']}" for x in summary["not_generated"]]
    lines += ["", "## Why each candidate was tried", ""]
    lines += [f"- **{c['name']}**: {c['why']}" for c in summary["candidates"]]
    if summary["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in summary["notes"]]
    return "\n".join(lines) + "\n"


def write_markdown(summary: dict[str, Any], path: Path, plot: Path | None = None) -> Path:
    path.write_text(render_markdown(summary, plot))
    return path


def write_html(summary: dict[str, Any], path: Path, plot: Path | None = None) -> Path:
    """A self-contained HTML report (the plot embedded as a data URI)."""
    e = html.escape
    title = f"modelport plan: {summary['model']}"
    parts = [f"<h1>{e(title)}</h1><ul>"]
    parts += [f"<li><b>{e(k)}</b>: {e(str(v))}</li>" for k, v in _header(summary)]
    parts.append("</ul><h2>Result</h2><ul>")
    parts += [f"<li>{e(s)}</li>" for s in summary["explanation"]]
    parts.append("</ul>")
    if plot is not None and plot.is_file():
        parts.append(png_img(plot.read_bytes(), "Pareto front"))
    parts.append("<h2>Every candidate</h2>")
    ordered = sorted(summary["rows"], key=lambda r: r["latency_ms"])
    classes = [
        "win" if r["name"] == summary["winner"] else "" if r["meets_budget"] else "out"
        for r in ordered
    ]
    cells = [[c.strip("*") for c in row] for row in table_rows(summary)]
    parts.append(html_table(COLUMNS, cells, classes))
    not_measured = [a for a in summary["attempts"] if a["status"] != "measured"]
    if not_measured:
        parts.append("<h2>Not measured</h2><ul>")
        parts += [
            f"<li><b>{e(a['candidate'])}</b> ({e(a['status'])}): {e(a['reason'])}</li>"
            for a in not_measured
        ]
        parts.append("</ul>")
    if summary["not_generated"]:
        parts.append("<h2>Not generated for this model, target and inputs</h2><ul>")
        parts += [
            f"<li><b>{e(x['candidate'])}</b>: {e(x['reason'])}</li>"
            for x in summary["not_generated"]
        ]
        parts.append("</ul>")
    parts.append("<h2>Why each candidate was tried</h2><ul>")
    parts += [f"<li><b>{e(c['name'])}</b>: {e(c['why'])}</li>" for c in summary["candidates"]]
    parts.append("</ul>")
    if summary["notes"]:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in summary["notes"]))
        parts.append("</ul>")
    style = (
        "body{max-width:1200px;margin:2em auto}table{font-size:13px}"
        "td,th{padding:3px 6px;text-align:left}tr.win{background:#e6f4e6}tr.out{color:#888}"
    )
    path.write_text(html_page(title, "\n".join(parts), style))
    return path


def plot_front(summary: dict[str, Any], path: Path) -> Path:
    """Latency (x) against drop (y), marker area by size; the front as a step line, the budget
    as dashed lines, the winner as a star."""
    matplotlib = require("matplotlib", "bench")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    metric = summary["budget"]["metric"]
    scale, unit = (100.0, "points") if metric == "accuracy" else (100.0, "%")
    if metric == "metric":
        scale, unit = 1.0, ""
    ylabel = {
        "accuracy": "accuracy drop (points)",
        "fidelity": "fidelity drop (%, 1 - mean cosine)",
        "metric": "metric drop",
    }[metric]
    fig, ax = plt.subplots(figsize=(8.5, 5.2), layout="constrained")
    try:
        max_size = max(r["size_mb"] for r in rows) or 1.0
        for r in rows:
            color = "tab:green" if r["meets_budget"] else "tab:gray"
            ax.scatter(
                r["latency_ms"],
                scale * r["drop"],
                s=30 + 250 * r["size_mb"] / max_size,
                c=color,
                alpha=0.55,
                edgecolors="black" if r["front"] else "none",
            )
        front = sorted((r for r in rows if r["front"]), key=lambda r: r["latency_ms"])
        if front:
            ax.step(
                [r["latency_ms"] for r in front],
                [scale * r["drop"] for r in front],
                where="post",
                color="tab:blue",
                lw=1,
                label="Pareto front",
            )
            for r in front:
                ax.annotate(
                    f"{r['candidate']}\n{_short(r)}",
                    (r["latency_ms"], scale * r["drop"]),
                    fontsize=7,
                    xytext=(4, 4),
                    textcoords="offset points",
                )
        b = summary["budget"]
        if b["max_drop"] is not None:
            ax.axhline(scale * b["max_drop"], ls="--", color="tab:red", lw=1, label="drop budget")
        if b["max_latency_ms"] is not None:
            ax.axvline(b["max_latency_ms"], ls=":", color="tab:red", lw=1, label="latency budget")
        win = next((r for r in rows if r["name"] == summary["winner"]), None)
        if win is not None:
            ax.scatter(
                win["latency_ms"],
                scale * win["drop"],
                marker="*",
                s=320,
                c="gold",
                edgecolors="black",
                zorder=5,
                label=f"chosen: {win['candidate']} {_short(win)}",
            )
        ax.set_xlabel(f"latency p50 at batch {summary['config']['batch_size']} (ms)")
        ax.set_ylabel(ylabel + (f" [{unit}]" if unit and unit not in ylabel else ""))
        ax.set_title("Candidates (marker area = size on disk; green = within budget)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path


def _short(r: dict[str, Any]) -> str:
    from .candidates import SessionSetting

    return SessionSetting(**r["setting"]).short()
