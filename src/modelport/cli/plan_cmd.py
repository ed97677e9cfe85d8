"""``modelport plan``: find the best variant of a model under a budget, by measurement."""

from __future__ import annotations

from typing import Any

import click

from ..errors import UsageError
from ..progress import display, echo, listening
from .convert_cmd import given_sources, make_source, refuse_source_options, source_options
from .params import DIM_SIZE
from .ui import console, console_err, table, write_json


@click.command()
@click.argument("package", required=False, type=click.Path(exists=True))
@source_options
@click.option(
    "-o", "--output", "out", required=True, type=click.Path(), help="Plan output directory."
)
@click.option(
    "--target",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="Where the model will run (cuda needs onnxruntime-gpu).",
)
@click.option(
    "--max-drop",
    type=float,
    default=None,
    help="Allowed drop: accuracy with --labels (0.01 = 1 point), else the --metric, else "
    "1 - mean cosine vs fp32 (0.005 = 0.5%).",
)
@click.option("--max-latency-ms", type=float, default=None, help="Allowed latency at --batch-size.")
@click.option("--max-size-mb", type=float, default=None, help="Allowed model size on disk (MB).")
@click.option(
    "--eval",
    "eval_data",
    type=click.Path(exists=True),
    help="Evaluation inputs (.npz/.npy/directory); every candidate is measured on them.",
)
@click.option(
    "--labels", type=click.Path(exists=True, dir_okay=False), help="Integer labels (.npy)."
)
@click.option("--metric", default=None, help="Score function module:function (1.0 = identical).")
@click.option(
    "--calibration",
    type=click.Path(exists=True),
    help="Calibration data for static int8 (default: the --eval data).",
)
@click.option("--eval-samples", type=int, default=512, show_default=True, help="At most this many.")
@click.option(
    "--batch-size", type=int, default=1, show_default=True, help="The batch size you serve."
)
@click.option(
    "--latency-dim",
    type=DIM_SIZE,
    multiple=True,
    help="Size of a symbolic dim for the timed inputs, e.g. sequence=128.",
)
@click.option(
    "--time-budget",
    type=float,
    default=None,
    help="Minutes; no candidate starts after it (the best so far is kept).",
)
@click.option(
    "--finetune",
    metavar="MODULE:FUNCTION",
    help="Fine-tune hook for structured pruning of a --torch source (gets and returns the "
    "pruned nn.Module).",
)
@click.option(
    "--only",
    multiple=True,
    metavar="CANDIDATE",
    help="Build only these candidates (repeatable, or comma-separated: int8-static,ov-bf16).",
)
@click.option("--keep-front", is_flag=True, help="Also write the Pareto front's packages.")
@click.option(
    "--ship",
    type=click.Choice(["repo", "triton", "torchserve", "kserve", "docker"]),
    default=None,
    help="Also package the chosen model for this target (OUT/deploy/TARGET).",
)
@click.option(
    "--name",
    default=None,
    help="Model name of the chosen package (and of --ship's artifact); default: the package's "
    "name, or for a source the name of OUT.",
)
@click.option("--repeats", type=int, default=30, show_default=True, help="Timed runs per setting.")
@click.option("--force", is_flag=True, help="Replace an earlier plan output at OUT.")
@click.option("--json", "json_out", type=click.Path(), help="Also write plan.json here.")
@click.pass_context
def plan(ctx: click.Context, package: str | None, **kw: Any) -> int:
    """Build the variants that make sense for PACKAGE (or a --torch source) on this target,
    measure each on the same eval data, keep the Pareto front (latency, size, drop) and pick
    the fastest within the budget. Writes OUT/chosen (the package), OUT/report.md and
    OUT/report.html (with a Pareto plot), OUT/plan.json.

    Exit code 0 when a candidate meets the budget; 1 when none does (then nothing is chosen,
    and the closest candidates are listed)."""
    from ..plan import PlanConfig
    from ..plan import plan as run

    refuse_source_options(ctx, kw, package)
    given = given_sources(kw)
    if package and given:
        raise UsageError("give either a PACKAGE or a source option (--torch ...), not both")
    if not package and not given:
        raise UsageError(
            "give a PACKAGE to plan for, or a source: --torch MODULE:CLASS --weights W.pt"
        )
    model: Any = package or (kw["onnx_file"] if kw.get("onnx_file") else make_source(kw))
    dims = dict(kw["latency_dim"])
    config = PlanConfig(
        target=kw["target"],
        max_drop=kw["max_drop"],
        max_latency_ms=kw["max_latency_ms"],
        max_size_mb=kw["max_size_mb"],
        eval_data=kw["eval_data"],
        labels=kw["labels"],
        metric=kw["metric"],
        calibration=kw["calibration"],
        eval_samples=kw["eval_samples"],
        batch_size=kw["batch_size"],
        latency_dims=dims or None,
        time_budget_s=None if kw["time_budget"] is None else 60.0 * kw["time_budget"],
        finetune=kw["finetune"],
        only=tuple(c.strip() for item in kw["only"] for c in item.split(",") if c.strip()),
        keep_front=kw["keep_front"],
        ship=kw["ship"],
        repeats=kw["repeats"],
        name=kw["name"],
    )
    with display("plan") as shown, listening(shown):  # conversion phases, candidate bar
        result = run(
            model,
            kw["out"],
            config,
            force=kw["force"],
            log=_log,
        )
    print_result(result)
    if kw["json_out"]:
        write_json(kw["json_out"], result.to_dict())
    if result.stopped == "interrupted":
        return 130
    return 0 if result.met else 1


def print_result(result: Any) -> None:
    s = result.summary
    metric = s["budget"]["metric"]

    def drop(r: dict[str, Any]) -> str:
        return f"{100 * r['drop']:.2f} pt" if metric == "accuracy" else f"{r['drop']:.4g}"

    shown = [r for r in result.rows if (r["front"] if result.met else r["name"] in result.closest)]
    rows = [
        (
            ("* " if r["name"] == s["winner"] else "") + r["candidate"],
            r["setting_label"],
            f"{r['latency_ms']:.3f}",
            f"{r['speedup']:.2f}x",
            f"{r['size_mb']:.2f}",
            drop(r),
            r["verdict"],
        )
        for r in sorted(shown, key=lambda r: r["latency_ms"])
    ]
    title = "Pareto front" if result.met else "Closest candidates (none meets the budget)"
    console.print(
        table(
            title,
            ["candidate", "session", "latency ms", "speed-up", "MB", f"drop ({metric})", "verdict"],
            rows,
        )
    )
    for line in s["explanation"]:
        console.print(f"[dim]·[/] {line}", highlight=False)
    for n in s["notes"]:
        console.print(f"[yellow]note:[/] {n}", highlight=False)
    console.print(f"report: {result.reports['md']} and {result.reports['html']}")
    if result.met:
        console.print(f"[green]chosen:[/] {result.chosen.path}")
    else:
        console_err.print(
            "[bold red]no candidate meets the budget[/]; nothing was chosen. Closest: "
            + ", ".join(result.closest),
            highlight=False,
        )


def _log(message: str) -> None:
    """plan's progress lines: above the live display while it is on screen, else stdout."""
    if not echo(message):
        console.print(message, highlight=False, markup=False)
