"""Bench results as tables (for the terminal), Markdown and HTML reports.

Everything here reads the plain dicts that ``BenchResult.to_dict()`` and
``ServerBenchResult.to_dict()`` return (or the same JSON read back from ``--json``).
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..render import html_page, html_table, markdown_table, png_img

__all__ = ["result_table", "to_html", "to_markdown", "write_report"]

MB = 1e6


def result_table(result: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of the main table of a result."""
    if result.get("kind") == "server":
        return _server_table(result)
    return _inprocess_table(result)


def _inprocess_table(result: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    cols = ["model", "engine", "provider", "threads", "batch", "p50 ms", "p90 ms", "p99 ms", "items/s",
            "speed-up", "load ms", "load MB", "run MB", "peak MB"]  # fmt: skip
    rows = [
        [
            r["variant"],
            f"{r.get('engine', 'ort')} {r.get('precision', 'fp32')}",
            r["provider"],
            r["threads"] or "default",
            r["batch_size"],
            r["p50_ms"],
            r["p90_ms"],
            r["p99_ms"],
            r["throughput_items_s"],
            _ratio(r.get("speedup_vs_first")),
            r["load_s"] * 1000,
            r["load_rss_bytes"] / MB,
            r["first_run_peak_extra_bytes"] / MB,
            r["peak_rss_bytes"] / MB,
        ]  # fmt: skip
        for r in result["rows"]
    ]
    return cols, rows


def _server_table(result: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    cols = ["protocol", "mode", "conc.", "requests", "status", "req/s", "items/s", "p50 ms",
            "p90 ms", "p99 ms", "client cpu", "of ceiling"]  # fmt: skip
    rows = []
    for r in result["rows"]:
        mode = "closed" if r["mode"] == "closed" else f"open {r['rate']:g}/s"
        status = ", ".join(f"{k}: {v}" for k, v in r["status_counts"].items())
        if r.get("dropped"):
            status += f", dropped: {r['dropped']}"
        frac = r.get("fraction_of_ceiling")
        rows.append([r["protocol"], mode, r["concurrency"], r["requests"], status,
                     r["throughput_req_s"], r["throughput_items_s"], r["p50_ms"], r["p90_ms"],
                     r["p99_ms"], r["client_cpu_cores"],
                     f"{frac:.0%}" if frac is not None else None])  # fmt: skip
    return cols, rows


def _ratio(v: float | None) -> str | None:
    return f"{v:.2f}x" if v is not None else None


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000:  # 2,790 items/s, not 2.79e+03
            return f"{v:,.0f}"
        return f"{v:.2e}" if abs(v) < 1e-3 else f"{v:.4g}"
    return str(v)


def _notes(result: Mapping[str, Any]) -> list[str]:
    notes = []
    m = result.get("machine", {})
    notes.append(
        f"Machine: {m.get('processor')}, {m.get('cpus_usable') or m.get('cpu_count')} usable CPUs, "
        f"load average {m.get('loadavg_1m')} at start; Python {m.get('python')}, "
        f"onnxruntime {m.get('onnxruntime', '-')}."
    )
    if result.get("kind") == "server":
        c = result.get("ceiling")
        if c:
            notes.append(
                f"Load generator ceiling against a trivial endpoint ({c['protocol']}, concurrency "
                f"{c['concurrency']}): {c['req_s']:.0f} req/s; rows near 100% of it were limited "
                "by the client or the machine, not the server."
            )
        if any((r.get("fraction_of_ceiling") or 0) > 1 for r in result.get("rows", [])):
            notes.append(
                "Some rows exceed the ceiling: the trivial endpoint (or a busy machine) limited "
                "that measurement, so the ceiling is only a lower bound here."
            )
        notes.append("Latency percentiles cover successful answers; open-loop latency counts "
                     "from the time each request was due.")  # fmt: skip
    else:
        lat = result.get("config", {}).get("latency", {})
        notes.append(
            f"Models ran interleaved (order alternating every round), {lat.get('warmup')} warm-up "
            f"runs then at least {lat.get('repeats')} timed runs each"
            + (f" and {lat.get('min_seconds')} s" if lat.get("min_seconds") else "")
            + (
                f"; a model faster than {lat['block_ms']:g} ms ran that long in a row per turn "
                "(every run timed), as a server runs it"
                if lat.get("block_ms")
                else "; one run per turn"
            )
            + "; speed-up is the first model's p50 over this one's, in the same group."
        )
        notes.append(
            "Memory is this process's RSS (VmRSS/VmHWM): load MB is the growth while the session "
            "was created, run MB the peak growth during its first run at that batch size, peak MB "
            "the process's peak (interpreter and all models included)."
        )
    return notes


def to_markdown(result: Mapping[str, Any], plot: str | os.PathLike[str] | None = None) -> str:
    """A Markdown report; ``plot`` (a PNG path, relative to the report) is shown when given."""
    cols, rows = result_table(result)
    title = "Server benchmark" if result.get("kind") == "server" else "In-process benchmark"
    lines = [f"# {title}", ""]
    if result.get("kind") == "server":
        t = result["target"]
        lines += [f"Model `{t['model']}` at `{t['url']}` over {t['protocol']}.", ""]
    else:
        lines += ["Models: " + ", ".join(f"`{v['name']}` ({v['path']}, "
                                         f"{v['size_bytes'] / MB:.2f} MB)"
                                         for v in result["variants"]), ""]  # fmt: skip
    if plot is not None:
        lines += [f"![{title}]({Path(plot).as_posix()})", ""]
    lines += markdown_table(cols, [[_cell(v) for v in r] for r in rows])
    lines += [""] + [f"- {n}" for n in _notes(result)] + [""]
    return "\n".join(lines)


def to_html(result: Mapping[str, Any], plot_png: bytes | None = None) -> str:
    """A self-contained HTML report (the plot embedded as a data URI)."""
    cols, rows = result_table(result)
    title = "Server benchmark" if result.get("kind") == "server" else "In-process benchmark"
    img = png_img(plot_png, "plots") if plot_png is not None else ""
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in _notes(result))
    raw = html.escape(json.dumps(result.get("config", {}), indent=1, default=str))
    table = html_table(cols, [[_cell(v) for v in r] for r in rows])
    return html_page(
        title,
        f"<h1>{title}</h1>{img}{table}<ul>{notes}</ul>"
        f"<details><summary>configuration</summary><pre>{raw}</pre></details>",
        style="td,th{text-align:right}",
    )


def write_report(
    result: Mapping[str, Any],
    path: str | os.PathLike[str],
    plot: str | os.PathLike[str] | None = None,
) -> Path:
    """Write a ``.md`` or ``.html`` report; a plot is drawn beside it when ``plot`` is None."""
    from ..errors import UsageError
    from .plot import plot_result

    out = Path(path)
    if out.suffix not in (".md", ".html", ".htm"):
        raise UsageError(f"report '{out}': use a .md or .html file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_path = Path(plot) if plot is not None else out.with_suffix(".png")
    if plot is None or not plot_path.exists():
        plot_result(result, plot_path)
    if out.suffix == ".md":
        rel = os.path.relpath(plot_path, out.parent)
        out.write_text(to_markdown(result, rel))
    else:
        out.write_text(to_html(result, plot_path.read_bytes()))
    return out
