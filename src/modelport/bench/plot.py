"""Plots of bench results (matplotlib, drawn off-screen to a PNG).

In-process: p50 latency (p90 as a band) and throughput against batch size, one line per model,
thread count and provider. Server: throughput and p50/p99 latency against concurrency, with the
load generator's ceiling drawn as a dashed line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import require

__all__ = ["plot_result"]


def plot_result(result: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Draw ``result`` (a ``to_dict()`` of a bench result) to the PNG ``path``; returns it."""
    matplotlib = require("matplotlib", "bench")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    try:
        if result.get("kind") == "server":
            _server(result, ax1, ax2)
        else:
            _inprocess(result, ax1, ax2)
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return out


def _series(rows: list[Mapping[str, Any]], keys: tuple[str, ...]) -> dict[tuple, list]:
    out: dict[tuple, list] = {}
    for r in rows:
        out.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    return out


def _inprocess(result: Mapping[str, Any], ax1: Any, ax2: Any) -> None:
    series = _series(result["rows"], ("variant", "threads", "provider"))
    multi_threads = len({k[1] for k in series}) > 1
    multi_prov = len({k[2] for k in series}) > 1
    for (variant, threads, provider), rows in series.items():
        rows = sorted(rows, key=lambda r: r["batch_size"])
        label = str(variant)
        if multi_threads:
            label += f", {threads or 'default'} threads"
        if multi_prov:
            label += f", {provider}"
        xs = [r["batch_size"] for r in rows]
        (line,) = ax1.plot(xs, [r["p50_ms"] for r in rows], marker="o", label=label)
        ax1.fill_between(xs, [r["p50_ms"] for r in rows], [r["p90_ms"] for r in rows],
                         color=line.get_color(), alpha=0.15)  # fmt: skip
        ax2.plot(xs, [r["throughput_items_s"] for r in rows], marker="o", label=label)
    _log_axes((ax1, ax2), sorted({r["batch_size"] for r in result["rows"]}), "batch size")
    ax1.set_yscale("log")
    ax1.yaxis.set_major_formatter(_plain())
    ax1.set_ylabel("latency p50 (ms), band to p90")
    ax2.set_ylabel("throughput (items/s)")
    ax1.set_title("Latency against batch size")
    ax2.set_title("Throughput against batch size")
    ax2.legend(fontsize=8)


def _server(result: Mapping[str, Any], ax1: Any, ax2: Any) -> None:
    series = _series(result["rows"], ("protocol", "mode", "rate"))
    for (protocol, mode, rate), rows in series.items():
        rows = sorted(rows, key=lambda r: r["concurrency"])
        label = f"{protocol}" + (f", open loop {rate:g}/s" if mode == "open" else "")
        xs = [r["concurrency"] for r in rows]
        ax1.plot(xs, [r["throughput_req_s"] for r in rows], marker="o", label=label)
        ok = [r for r in rows if r["p50_ms"] is not None]
        (line,) = ax2.plot([r["concurrency"] for r in ok], [r["p50_ms"] for r in ok],
                           marker="o", label=f"{label} p50")  # fmt: skip
        ax2.plot([r["concurrency"] for r in ok], [r["p99_ms"] for r in ok], marker="x",
                 linestyle="--", color=line.get_color(), label=f"{label} p99")  # fmt: skip
    ceiling = result.get("ceiling")
    if ceiling and ceiling.get("req_s"):
        ax1.axhline(ceiling["req_s"], color="grey", linestyle=":",
                    label=f"client ceiling ({ceiling['req_s']:.0f} req/s)")  # fmt: skip
    _log_axes((ax1, ax2), sorted({r["concurrency"] for r in result["rows"]}), "concurrency")
    for ax in (ax1, ax2):
        ax.legend(fontsize=8)
    ax1.set_ylabel("throughput (requests/s)")
    ax2.set_ylabel("latency (ms)")
    ax1.set_title("Throughput against concurrency")
    ax2.set_title("Latency against concurrency")


def _plain() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v:g}")


def _log_axes(axes: tuple[Any, ...], ticks: list[int], label: str) -> None:
    """A log2 x axis labelled with the values measured (1, 8, 32), not powers of two."""
    from matplotlib.ticker import NullLocator

    for ax in axes:
        ax.set_xlabel(label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(_plain())
        ax.xaxis.set_minor_locator(NullLocator())
        ax.grid(True, alpha=0.3)
