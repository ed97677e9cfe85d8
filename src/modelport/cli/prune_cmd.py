"""``modelport prune``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import UsageError
from .convert_cmd import given_sources, make_source, refuse_source_options, source_options
from .options import refuse_inapplicable
from .params import INT_LIST_OR_EMPTY
from .ui import console, console_err, human_bytes, table, write_json

if TYPE_CHECKING:
    from ..optimize.report import OptimizeReport

# prune: option -> the methods it applies to (the rest are refused)
PRUNE_MODES = {"magnitude": "--method magnitude", "structured": "--method structured"}
PRUNE_APPLIES: dict[str, tuple[str, ...]] = {
    "importance": ("structured",),
    "round_to": ("structured",),
}


@click.command()
@click.argument("package", required=False, type=click.Path(exists=True))
@source_options
@click.option(
    "-o", "--output", "out", required=True, type=click.Path(), help="Package directory to write."
)
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@click.option(
    "--method",
    type=click.Choice(["magnitude", "structured"]),
    default="magnitude",
    show_default=True,
    help="magnitude: zero the smallest weights; structured: remove channels.",
)
@click.option(
    "--sparsity",
    type=float,
    required=True,
    help="Fraction in [0, 1) of weights (magnitude) or channels per layer (structured) to remove.",
)
@click.option(
    "--scope",
    type=click.Choice(["layer", "global"]),
    default="layer",
    show_default=True,
    help="Same sparsity in every layer, or one ranking over all layers.",
)
@click.option(
    "--importance",
    type=click.Choice(["l1", "l2"]),
    default="l1",
    show_default=True,
    help="Channel importance for structured pruning.",
)
@click.option(
    "--exclude", multiple=True, metavar="LAYER", help="A layer to leave alone (repeatable)."
)
@click.option(
    "--include-head", is_flag=True, help="Also prune the classifier head (the last linear layer)."
)
@click.option(
    "--round-to", type=int, default=None, help="Structured: keep channel counts multiples of this."
)
@click.option(
    "--steps", type=int, default=1, show_default=True, help="Prune-then-fine-tune rounds."
)
@click.option(
    "--finetune",
    metavar="MODULE:FUNCTION",
    help="Recovery hook (PyTorch sources): receives the pruned nn.Module, returns it trained.",
)
@click.option(
    "--example-inputs",
    type=click.Path(exists=True),
    help="Example inputs for a PyTorch source (.npz).",
)
@click.option(
    "--eval",
    "eval_path",
    type=click.Path(exists=True),
    help="Eval inputs for fidelity/accuracy (.npz/.npy).",
)
@click.option(
    "--labels", type=click.Path(exists=True, dir_okay=False), help="Labels (.npy) for accuracy."
)
@click.option(
    "--batch-sizes",
    type=INT_LIST_OR_EMPTY,
    default="1,8",
    show_default=True,
    help="Batch sizes for latency.",
)
@click.option(
    "--repeats",
    type=int,
    default=50,
    show_default=True,
    help="Timed runs per model and batch size.",
)
@click.option(
    "--max-drop",
    type=float,
    default=None,
    help="Allowed drop of accuracy (with --labels) or of the fidelity score; exit 1 with a loud "
    "warning beyond it. Default: 0.01.",
)
@click.option(
    "--allow-mismatch",
    is_flag=True,
    help="Write the result even when it fails onnx.checker (recorded; exit code 1).",
)
@click.option("--json", "json_out", type=click.Path(), help="Write the report as JSON.")
@click.pass_context
def prune(ctx: click.Context, package: str | None, **kw: Any) -> int:
    """Prune PACKAGE (an ONNX package or .onnx file) or a PyTorch source (--torch ...), measure what it
    bought (sparsity, parameters, size raw and gzip, latency, fidelity, accuracy) and write a package
    whose manifest holds the report.

    Exit code 1 when the result is outside the budget (--max-drop, default 0.01) or fails
    onnx.checker (written only with --allow-mismatch)."""
    import numpy as np

    from ..convert.torch import import_target
    from ..data import load_feed
    from ..optimize.prune import PruneConfig
    from ..optimize.prune import prune as do_prune
    from ..package import ModelPackage
    from ..progress import display

    refuse_inapplicable(ctx, PRUNE_APPLIES, kw["method"], PRUNE_MODES)
    refuse_source_options(ctx, kw, package)
    given = given_sources(kw)
    if package and given:
        raise UsageError("give either a PACKAGE or a source option (--torch ...), not both")
    if not package and not given:
        raise UsageError(
            "give a PACKAGE to prune, or a PyTorch source: --torch MODULE:CLASS --weights W.pt"
        )
    config = PruneConfig(
        method=kw["method"],
        sparsity=kw["sparsity"],
        scope=kw["scope"],
        importance=kw["importance"],
        exclude=tuple(kw["exclude"]),
        exclude_head=not kw["include_head"],
        steps=kw["steps"],
        round_to=kw["round_to"],
        batch_sizes=kw["batch_sizes"],
        latency_repeats=kw["repeats"],
        max_drop=kw["max_drop"],
        allow_mismatch=kw["allow_mismatch"],
    )
    finetune = import_target(kw["finetune"]) if kw["finetune"] else None
    if finetune is not None and not callable(finetune):
        raise UsageError(f"--finetune {kw['finetune']} is not a function")
    if package or kw.get("onnx_file"):
        model: Any = ModelPackage.load(package or kw["onnx_file"])
        sig = model.signature
        example = None
        if kw["example_inputs"]:
            raise UsageError("--example-inputs is for PyTorch sources; give eval data with --eval")
    else:
        model = make_source(kw)
        sig = None
        example = _load_npz(kw["example_inputs"]) if kw["example_inputs"] else None
    eval_data = None
    if kw["eval_path"]:
        eval_data = (
            load_feed(kw["eval_path"], sig)
            if sig is not None
            else _load_eval(kw["eval_path"], example)
        )
    labels = np.load(kw["labels"], allow_pickle=False) if kw["labels"] else None
    console.print(
        f"pruning ({config.method}, sparsity {config.sparsity:g}, {config.scope}) -> {kw['out']}"
    )
    with display("prune") as shown:  # each phase as it happens (stderr)
        result = do_prune(
            model,
            kw["out"],
            config,
            example=example,
            eval_data=eval_data,
            labels=labels,
            finetune=finetune,
            force=kw["force"],
            progress=shown,
        )
    print_prune_report(result.report)
    if kw["json_out"]:
        write_json(
            kw["json_out"],
            {"package": str(result.package.path), "report": result.report.to_dict()},
        )
    if result.report.passed:
        console.print(f"wrote {result.package.path}: [green]passed[/] (checker, budget)")
        return 0
    r = result.report
    m = r.metric
    why = [] if r.checker == "passed" else ["onnx.checker failed"]
    if m["drop"] > m["budget"] + 1e-12:
        why.append(f"outside the budget ({m['name']} drop {m['drop']:.4f} > {m['budget']:.4g})")
    console_err.print(
        f"[bold red]FAILED[/] (wrote {result.package.path}; exit code 1): " + "; ".join(why),
        highlight=False,
    )
    return 1


def _load_npz(path: str) -> dict[str, Any]:
    import numpy as np

    from ..errors import InputError

    if Path(path).suffix != ".npz":
        raise InputError(f"'{path}': for a PyTorch source give an .npz keyed by input name")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _load_eval(path: str, example: dict[str, Any] | None) -> dict[str, Any]:
    import numpy as np

    if Path(path).suffix == ".npy":
        if not example or len(example) != 1:
            raise UsageError(
                f"--eval '{path}' is a single .npy: give --example-inputs (.npz) to name the input"
            )
        return {next(iter(example)): np.load(path, allow_pickle=False)}
    return _load_npz(path)


def _pruned_cell(x: dict[str, Any]) -> str:
    """yes: the layer was a pruning target; inputs only: it was not, but it lost input
    channels because the layer before it was pruned (structured); no: unchanged."""
    if x["pruned"]:
        return "yes"
    if x.get("shape_after") is not None and list(x["shape_after"]) != list(x["shape_before"]):
        return "inputs only"
    return "no"


def print_prune_report(r: OptimizeReport) -> None:
    d = r.details
    rows = [
        (
            x["name"],
            _pruned_cell(x),
            "x".join(map(str, x["shape_before"])),
            "x".join(map(str, x["shape_after"] or [])),
            x["params_before"],
            x["nonzero"],
            f"{x['sparsity']:.1%}",
        )
        for x in d["layers"]
    ]
    console.print(
        table(
            "Layers",
            [
                "layer",
                "pruned",
                "shape before",
                "shape after",
                "params before",
                "nonzero after",
                "sparsity",
            ],
            rows,
        )
    )
    p, s = d["params"], d["size_bytes"]
    summary = [
        ("global sparsity (pruned layers)", f"{d['global_sparsity']:.1%}"),
        (
            "parameters",
            f"{p['before']:,} -> {p['after']:,} ({p['ratio']:.2f}x fewer); "
            f"nonzero {p['nonzero_before']:,} -> {p['nonzero_after']:,}",
        ),
        ("size on disk, raw", f"{human_bytes(s['raw_before'])} -> {human_bytes(s['raw_after'])}"),
        (
            "size on disk, gzip",
            f"{human_bytes(s['gzip_before'])} -> {human_bytes(s['gzip_after'])}",
        ),
    ]
    for v in r.latency:
        summary.append(
            (
                f"latency p50, batch {v['batch_size']}",
                f"{v['before_ms']:.3f} -> {v['after_ms']:.3f} ms ({v['speedup']:.2f}x)",
            )
        )
    for out, f in r.fidelity.items():
        parts = [f"{k}={v:.4g}" for k, v in f.items() if isinstance(v, float)]
        summary.append((f"fidelity ({out})", ", ".join(parts) or str(f)))
    if r.accuracy:
        a = r.accuracy
        summary.append(
            (
                "accuracy",
                f"{a['before']:.4f} -> {a['after']:.4f} (drop {100 * a['drop']:.2f} points)",
            )
        )
    if r.metric:
        m = r.metric
        default = ", default" if m.get("budget_source") == "default" else ""
        summary.append(
            (
                f"budget ({m['name']})",
                f"drop {m['drop']:.4f}, allowed {m['budget']:.4g}{default}: "
                + ("within" if m["drop"] <= m["budget"] + 1e-12 else "OUTSIDE"),
            )
        )
    summary.append(("onnx.checker (full check)", r.checker))
    if d.get("finetune"):
        summary.append(("fine-tune", d["finetune"]))
    console.print(table("Prune report", ["", ""], summary))
    for n in r.notes:
        console.print(f"[yellow]note:[/] {n}")
    for w in r.warnings:
        console_err.print(f"[bold yellow]WARNING:[/] {w}", highlight=False)
