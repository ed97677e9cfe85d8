"""``modelport optimize``: graph optimization (ORT levels, transformers fusions), measured."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from .options import AliasedOption, output_option, refuse_inapplicable
from .params import DIM_SIZE, INT_LIST_OR_EMPTY
from .ui import console, console_err, table, write_json

# optimize: option -> the modes it applies to (the rest are refused)
OPTIMIZE_MODES = {
    "ort": "ONNX Runtime levels (no --transformers)",
    "transformers": "--transformers",
}
OPTIMIZE_APPLIES: dict[str, tuple[str, ...]] = {
    "model_type": ("transformers",),
    "num_heads": ("transformers",),
    "hidden_size": ("transformers",),
}


def eval_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by quantize and optimize: how the result is measured."""
    opts = [
        click.option(
            "--eval",
            "eval_data",
            type=click.Path(exists=True),
            help="Evaluation inputs (.npz/.npy/directory); default: the package's samples.",
        ),
        click.option(
            "--labels", type=click.Path(exists=True), help="Integer labels (.npy) for accuracy."
        ),
        click.option(
            "--metric",
            help="Score function module:function(reference, outputs, feed) "
            "-> float (1.0 = identical); default: cosine / top-1 agreement.",
        ),
        click.option(
            "--eval-samples",
            type=int,
            default=512,
            show_default=True,
            help="Use at most this many evaluation samples.",
        ),
        click.option(
            "--batch-sizes",
            type=INT_LIST_OR_EMPTY,
            default="1,8",
            show_default=True,
            help="Latency is measured at these batch sizes.",
        ),
        click.option(
            "--latency-dim",
            type=DIM_SIZE,
            multiple=True,
            help="Size of a symbolic dim for latency inputs, e.g. sequence=128 "
            "(default: rows of the evaluation data).",
        ),
        click.option(
            "--repeats", type=int, default=20, show_default=True, help="Timed runs per model."
        ),
        click.option(
            "--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: default)."
        ),
        click.option("--no-latency", is_flag=True, help="Skip latency measurement."),
        click.option(
            "--json",
            "--json-file",
            "json_file",
            cls=AliasedOption,
            hidden_aliases=("--json-file",),
            type=click.Path(),
            help="Also write the report as JSON here.",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def make_eval_config(
    eval_data: str | None,
    labels: str | None,
    metric: str | None,
    eval_samples: int,
    batch_sizes: tuple[int, ...],
    latency_dim: tuple[tuple[str, int], ...],
    repeats: int,
    threads: int,
    no_latency: bool,
) -> Any:
    from ..optimize.report import EvalConfig

    dims = dict(latency_dim)
    return EvalConfig(
        data=eval_data,
        labels=labels,
        metric=metric,
        limit=eval_samples,
        batch_sizes=batch_sizes,
        latency_dims=dims or None,
        repeats=repeats,
        measure_latency=not no_latency,
    )


def print_report(report: Any, out: str, json_file: str | None) -> None:
    for c in report.choices:
        console.print(f"[dim]·[/] {c}")
    if report.checker == "passed":
        note = f" ({report.checker_note})" if report.checker_note else ""
        console.print(f"onnx.checker (full check): [green]passed[/]{note}")
    else:
        console.print(f"onnx.checker (full check): [bold red]{report.checker}[/]", highlight=False)
    console.print(table(f"{report.step}: {out}", ["", "before", "after", "change"], report.rows()))
    part = report.details.get("partial")
    if part:
        rows = [(k["name"], k.get("scope", ""), k["cost"], k["weights"]) for k in part["kept"]]
        console.print(
            table(
                f"kept float ({len(rows)} of {part['candidates']}; metric drop when "
                "quantized alone)",
                ["node", "scope", "metric drop alone", "weights"],
                rows,
            )
        )
    if report.float_ops:
        console.print(
            "left in float: " + ", ".join(f"{k} x{v}" for k, v in report.float_ops.items())
        )
    for w in report.warnings:
        console_err.print(f"[bold yellow]WARNING:[/] {w}", highlight=False)
    if json_file:
        write_json(json_file, report.to_dict())
    if report.passed:
        console.print(f"wrote {out}: [green]passed[/] (checker, budget)")
    else:
        why = [
            *([report.unchanged] if report.unchanged else []),
            *(["onnx.checker failed"] if report.checker != "passed" else []),
            *(
                ["outside the budget"]
                if report.metric.get("budget") is not None
                and report.metric["drop"] > report.metric["budget"] + 1e-12
                else []
            ),
        ]
        console_err.print(f"[bold red]FAILED[/] (wrote {out}; exit code 1): " + "; ".join(why))


@click.command()
@click.argument("package", type=click.Path(exists=True))
@output_option()
@click.option(
    "--level",
    type=click.Choice(["basic", "extended", "all"]),
    default=None,
    help="ONNX Runtime offline optimization level (default: extended, or none with "
    "--transformers).",
)
@click.option("--transformers", is_flag=True, help="Run the ORT transformers optimizer's fusions.")
@click.option("--model-type", default="bert", show_default=True, help="Transformers model type.")
@click.option("--num-heads", type=int, default=0, help="Attention heads (0: detect).")
@click.option("--hidden-size", type=int, default=0, help="Hidden size (0: detect).")
@click.option(
    "--max-drop",
    type=float,
    default=None,
    help="Allowed drop of the metric; exit 1 with a loud warning beyond it (default 0.01).",
)
@click.option(
    "--allow-mismatch",
    is_flag=True,
    help="Write the result even when it fails onnx.checker (recorded; exit code 1).",
)
@eval_options
@click.option("--force", is_flag=True, help="Replace an existing output.")
@click.pass_context
def optimize(
    ctx: click.Context,
    package: str,
    out: str,
    level: str | None,
    transformers: bool,
    model_type: str,
    num_heads: int,
    hidden_size: int,
    max_drop: float | None,
    allow_mismatch: bool,
    force: bool,
    **eval_kw: Any,
) -> int:
    """Optimize PACKAGE's graph into a new package at OUT; measure size, latency and fidelity
    against PACKAGE, and say plainly when it is not faster on this CPU.

    Exit code 1 when the result is outside the budget (--max-drop, default 0.01) or fails
    onnx.checker (written only with --allow-mismatch)."""
    from ..optimize.graph import GraphConfig, optimize_graph

    mode = "transformers" if transformers else "ort"
    refuse_inapplicable(ctx, OPTIMIZE_APPLIES, mode, OPTIMIZE_MODES)
    json_file = eval_kw.pop("json_file")
    evaluation = make_eval_config(**eval_kw)
    if level is None and not transformers:
        level = "extended"
    config = GraphConfig(
        level=level,
        transformers=transformers,
        model_type=model_type,
        num_heads=num_heads,
        hidden_size=hidden_size,
        evaluation=evaluation,
        threads=eval_kw.get("threads") or 0,
        max_drop=max_drop,
        allow_mismatch=allow_mismatch,
    )
    _, report = optimize_graph(package, out, config, force=force)
    print_report(report, out, json_file)
    return 0 if report.passed else 1
