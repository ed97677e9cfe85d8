"""``modelport quantize``: dynamic, static, partial or fp16, measured against the input."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from ..errors import UsageError
from .optimize_cmd import eval_options, make_eval_config, print_report
from .options import engine_option, output_option, refuse_inapplicable

MODES = {m: f"--mode {m}" for m in ("dynamic", "static", "partial", "fp16")}


def applies() -> dict[str, tuple[str, ...]]:
    """Option -> the modes it applies to: the library's own table (QuantizeConfig's fields and
    these options share their names), so the CLI and the recorded history cannot disagree."""
    from ..optimize.quantize import FIELD_MODES

    return dict(FIELD_MODES)


@click.command()
@click.argument("package", type=click.Path(exists=True))
@output_option()
@click.option(
    "--mode",
    type=click.Choice(["dynamic", "static", "partial", "fp16"]),
    default="dynamic",
    show_default=True,
    help="dynamic: int8 weights, run-time activations (transformers, "
    "MLPs); static: int8 QDQ calibrated (CNNs); partial: int8 with the most harmful nodes "
    "kept float within --max-drop; fp16.",
)
@click.option(
    "--calibration",
    type=click.Path(exists=True),
    help="Calibration data (.npz/.npy/directory) for static (and static-based partial).",
)
@click.option(
    "--method",
    "calibration_method",
    type=click.Choice(["minmax", "entropy", "percentile"]),
    default="minmax",
    show_default=True,
    help="Calibration method.",
)
@click.option(
    "--calibration-samples",
    type=int,
    default=256,
    show_default=True,
    help="Use at most this many calibration samples.",
)
@click.option(
    "--max-drop",
    type=float,
    default=None,
    help="Allowed drop of the metric (partial: the target; other modes: exit 1 with a loud "
    "warning beyond it). Default: 0.01 (1 point of accuracy with --labels, else 1 % fidelity).",
)
@click.option(
    "--allow-mismatch",
    is_flag=True,
    help="Write the result even when it fails onnx.checker (recorded; exit code 1).",
)
@click.option("--exclude", multiple=True, help="Node name to keep float (repeatable).")
@click.option("--per-channel/--per-tensor", default=None, help="Override the per-channel choice.")
@click.option("--reduce-range/--no-reduce-range", default=None, help="Override reduce_range.")
@click.option(
    "--weight-type",
    type=click.Choice(["int8", "uint8"]),
    default=None,
    help="Override the weight type chosen for this CPU.",
)
@click.option(
    "--activation-type",
    type=click.Choice(["int8", "uint8"]),
    default=None,
    help="Override the activation type (static).",
)
@click.option(
    "--granularity",
    type=click.Choice(["node", "layer"]),
    default="node",
    show_default=True,
    help="partial: keep float whole nodes or whole layers.",
)
@click.option(
    "--partial-base",
    type=click.Choice(["dynamic", "static"]),
    default=None,
    help="partial: the int8 scheme to start from (default: static with --calibration).",
)
@click.option(
    "--smoothing",
    default=None,
    help="Activation smoothing before dynamic int8: an alpha in (0, 1), 'auto' (measured) or "
    "'none'. Default: auto for partial, none otherwise.",
)
@click.option(
    "--time-budget",
    type=float,
    default=None,
    help="partial: minutes for the search; no evaluation starts after it (the best so far is kept).",
)
@engine_option(
    "The engine the input and the result are measured on, and the result will be served with "
    "(written into its serving section); not with --mode partial. Default: the input package's "
    "serving section (ONNX Runtime when it names none).",
    single=True,
    name="engine",
)
@eval_options
@click.option("--force", is_flag=True, help="Replace an existing output.")
@click.pass_context
def quantize(
    ctx: click.Context,
    package: str,
    out: str,
    mode: str,
    calibration: str | None,
    calibration_method: str,
    calibration_samples: int,
    max_drop: float | None,
    exclude: tuple[str, ...],
    per_channel: bool | None,
    reduce_range: bool | None,
    weight_type: str | None,
    activation_type: str | None,
    granularity: str,
    partial_base: str | None,
    smoothing: str | None,
    time_budget: float | None,
    engine: tuple[str, ...] | None,
    allow_mismatch: bool,
    force: bool,
    **eval_kw: Any,
) -> int:
    """Quantize PACKAGE into a new package at OUT and measure it against PACKAGE on this machine:
    size, latency at batch 1 and a larger batch, fidelity, accuracy (with --labels).

    Exit code 1 when the result is outside the budget (--max-drop, default 0.01), fails
    onnx.checker (written only with --allow-mismatch), or no node was quantized. Options that do
    not apply to --mode are refused (for example --method with fp16)."""
    from ..optimize.quantize import QuantizeConfig
    from ..optimize.quantize import quantize as run

    refuse_inapplicable(
        ctx,
        applies(),
        mode,
        MODES,
        {
            "engine": "partial's search runs on ONNX Runtime; for OpenVINO int8 within a budget use "
            "modelport plan (ov-int8-*-partial)"
        },  # fmt: skip
    )
    json_file = eval_kw.pop("json_file")
    evaluation = make_eval_config(**eval_kw)
    smooth: float | str | None
    if smoothing is None:
        smooth = "auto" if mode == "partial" else None
    elif smoothing in ("auto", "none"):
        smooth = None if smoothing == "none" else "auto"
    else:
        try:
            smooth = float(smoothing)
        except ValueError:
            raise UsageError(
                f"--smoothing '{smoothing}': give an alpha like 0.6, auto or none"
            ) from None
    if mode == "partial" and max_drop is None:
        max_drop = 0.01
    config = QuantizeConfig(
        mode=mode,
        calibration=calibration,
        calibration_method=calibration_method,
        calibration_samples=calibration_samples,
        max_drop=max_drop,
        exclude=tuple(exclude),
        per_channel=per_channel,
        reduce_range=reduce_range,
        weight_type=weight_type,
        activation_type=activation_type,
        granularity=granularity,
        partial_base=partial_base,
        smoothing=smooth,
        evaluation=evaluation,
        threads=eval_kw.get("threads") or 0,
        time_budget_s=None if time_budget is None else 60.0 * time_budget,
        allow_mismatch=allow_mismatch,
        engine=engine[0] if engine else None,
    )
    _, report = run(package, out, dataclasses.replace(config), force=force)
    print_report(report, out, json_file)
    return 0 if report.passed else 1
