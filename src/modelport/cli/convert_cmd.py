"""``modelport convert`` and ``modelport verify``."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError, VerificationError
from ..verify import VerifyConfig, VerifyReport
from .options import engine_option, given, refuse_inapplicable
from .params import DIM_SIZES, DYNAMIC_AXES, INPUT_SPEC, INT_LIST_OR_EMPTY
from .ui import console, table, write_json

# the click parameter names of the source options (one of them names the model to convert)
SOURCE_KEYS = (
    "torch_target",
    "torchscript",
    "exported_program",
    "hf_dir",
    "onnx_file",
    "savedmodel",
    "keras_file",
    "sklearn_file",
)


# source option -> how it is named in messages (also the modes of the table below)
SOURCE_LABELS = {
    "torch_target": "--torch",
    "torchscript": "--torchscript",
    "exported_program": "--exported-program",
    "hf_dir": "--hf",
    "onnx_file": "--onnx",
    "savedmodel": "--savedmodel",
    "keras_file": "--keras",
    "sklearn_file": "--sklearn",
    "savedmodel_repo": "--savedmodel-repo",
}
_TORCH = ("torch_target", "torchscript", "hf_dir")  # exported by torch.onnx, modelport's choice
_TF = ("savedmodel", "savedmodel_repo", "keras_file")
# convert: option -> the sources it applies to (options not listed apply to all); the rest are
# refused. An existing ONNX file is not exported, so export options do not apply to --onnx.
CONVERT_APPLIES: dict[str, tuple[str, ...]] = {
    "exporter": _TORCH,
    "output_names": _TORCH + ("exported_program",) + _TF,
    "dynamic": _TORCH + _TF,  # an ExportedProgram carries its own dynamic shapes
    "static": _TORCH + _TF + ("sklearn_file",),
    "task": ("hf_dir",),
    "signature_name": ("savedmodel", "savedmodel_repo"),
    "tag": ("savedmodel", "savedmodel_repo"),
    "trust": ("keras_file", "sklearn_file"),
    "weights": ("torch_target",),
    "init_args": ("torch_target",),
}


# the options of the source group that belong to one kind of source (prune, plan and verify
# check these; convert checks the whole table)
SOURCE_ONLY = ("task", "signature_name", "tag", "trust", "weights", "init_args")


def refuse_source_options(ctx: click.Context, kw: dict[str, Any], package: Any) -> None:
    """Refuse source options that do not apply to the source given (or to a PACKAGE)."""
    sources = given_sources(kw)
    if len(sources) > 1:
        return  # make_source says "give exactly one source"
    mode = sources[0] if sources else "package"
    if mode == "package" and not package:
        return
    table = {k: CONVERT_APPLIES[k] for k in SOURCE_ONLY}
    refuse_inapplicable(ctx, table, mode, {**SOURCE_LABELS, "package": "a PACKAGE"})


def given_sources(kw: dict[str, Any]) -> list[str]:
    """The source options that were given."""
    return [k for k in SOURCE_KEYS if kw.get(k)]


def verify_options(f: Any) -> Any:
    for opt in reversed(
        [
            click.option(
                "--atol", type=float, default=1e-4, show_default=True, help="Absolute tolerance."
            ),
            click.option(
                "--rtol", type=float, default=1e-3, show_default=True, help="Relative tolerance."
            ),
            click.option(
                "--verify-batch-sizes",
                type=INT_LIST_OR_EMPTY,
                default="1,4",
                show_default=True,
                help="Batch sizes to verify besides the example's.",
            ),
            click.option(
                "--verify-dim",
                "verify_dims",
                type=DIM_SIZES,
                multiple=True,
                help="Sizes of a named dynamic dim to verify, e.g. sequence=16,128.",
            ),
        ]
    ):
        f = opt(f)
    return f


def make_verify_config(
    atol: float,
    rtol: float,
    verify_batch_sizes: tuple[int, ...],
    verify_dims: tuple[tuple[str, tuple[int, ...]], ...],
) -> VerifyConfig:
    return VerifyConfig(
        atol=atol, rtol=rtol, batch_sizes=verify_batch_sizes, dim_sizes=dict(verify_dims)
    )


def source_options(f: Any) -> Any:
    opts = [
        click.option(
            "--torch",
            "torch_target",
            metavar="MODULE:NAME",
            help="nn.Module factory (or class, with --weights), e.g. mymodels:build.",
        ),
        click.option(
            "--weights",
            type=click.Path(dir_okay=False),
            help="state_dict file for the --torch class (loaded with weights_only=True).",
        ),
        click.option(
            "--init-args",
            default=None,
            metavar="JSON",
            help="Constructor kwargs for --torch, as JSON.",
        ),
        click.option(
            "--torchscript",
            type=click.Path(dir_okay=False),
            help="TorchScript file (torch.jit.save).",
        ),
        click.option(
            "--exported-program",
            type=click.Path(dir_okay=False),
            help="ExportedProgram .pt2 (torch.export.save).",
        ),
        click.option(
            "--hf",
            "hf_dir",
            type=click.Path(file_okay=False),
            help="Local Hugging Face model directory.",
        ),
        click.option(
            "--task", default=None, help="HF task: feature-extraction or text-classification."
        ),
        click.option(
            "--onnx", "onnx_file", type=click.Path(dir_okay=False), help="An existing ONNX file."
        ),
        click.option(
            "--savedmodel",
            type=click.Path(file_okay=False),
            help="TensorFlow SavedModel directory.",
        ),
        click.option(
            "--signature",
            "signature_name",
            default="serving_default",
            show_default=True,
            help="SavedModel signature.",
        ),
        click.option("--tag", default="serve", show_default=True, help="SavedModel tag set."),
        click.option(
            "--keras",
            "keras_file",
            type=click.Path(dir_okay=False),
            help="Keras model file (.keras or .h5).",
        ),
        click.option(
            "--sklearn",
            "sklearn_file",
            type=click.Path(dir_okay=False),
            help="scikit-learn model (joblib/pickle).",
        ),
        click.option(
            "--trust",
            is_flag=True,
            help="Allow loading code from the model file: unpickling --sklearn, Lambda layers in --keras.",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def make_source(kw: dict[str, Any]) -> Any:
    from ..convert import Source

    given = given_sources(kw)
    if len(given) != 1:
        raise UsageError(
            "give exactly one source: --torch, --torchscript, --exported-program, --hf, --onnx, "
            f"--savedmodel, --keras or --sklearn (got {len(given) or 'none'})"
        )
    if kw.get("weights") and not kw.get("torch_target"):
        raise UsageError("--weights goes with --torch MODULE:CLASS")
    init_args = {}
    if kw.get("init_args"):
        try:
            init_args = json.loads(kw["init_args"])
        except json.JSONDecodeError as exc:
            raise UsageError(f"--init-args is not valid JSON: {exc}") from None
        if not isinstance(init_args, dict):
            raise UsageError("--init-args must be a JSON object, e.g. '{\"hidden\": 64}'")
    if kw.get("torch_target"):
        if kw.get("weights"):
            return Source.torch_class(kw["torch_target"], kw["weights"], init_args)
        return Source("torch", target=kw["torch_target"], init_args=init_args)
    if kw.get("torchscript"):
        return Source.torchscript(kw["torchscript"])
    if kw.get("exported_program"):
        return Source.exported_program(kw["exported_program"])
    if kw.get("hf_dir"):
        return Source.hf(kw["hf_dir"], kw.get("task"))
    if kw.get("onnx_file"):
        return Source.onnx(kw["onnx_file"])
    if kw.get("savedmodel"):
        return Source.savedmodel(
            kw["savedmodel"],
            kw.get("signature_name") or "serving_default",
            kw.get("tag") or "serve",
        )
    if kw.get("keras_file"):
        return Source.keras(kw["keras_file"], trust=bool(kw.get("trust")))
    return Source.sklearn(kw["sklearn_file"], trust=bool(kw.get("trust")))


def print_report(
    report: VerifyReport, title: str = "Parity", against: Callable[[Any], str] | None = None
) -> None:
    """The parity table; ``against(case)`` fills a "compared with" column when given."""
    rows = []
    for c in report.cases:
        shapes = " ".join(f"{k}={'x'.join(map(str, v))}" for k, v in c.input_shapes.items())
        label = f"{c.label} [dim](vs {against(c)})[/]" if against else c.label
        if c.error:
            rows.append((label, shapes, "-", "-", "-", "-", "-", f"[red]{c.error}[/]"))
        if c.skipped:
            rows.append((label, shapes, "-", "-", "-", "-", "-", f"[yellow]skipped[/] {c.skipped}"))
        for o in c.outputs:
            rows.append(
                (
                    label,
                    shapes,
                    o.name,
                    "x".join(map(str, o.shape)),
                    o.max_abs_diff,
                    o.max_rel_diff,
                    f"{o.mismatched}/{o.total}",
                    "[green]ok[/]" if o.passed else f"[red]FAIL[/] {o.note}",
                )
            )
    console.print(
        table(
            f"{title} (atol={report.atol:g}, rtol={report.rtol:g})",
            ["case", "inputs", "output", "shape", "max abs", "max rel", "outside tol", "result"],
            rows,
        )
    )
    console.print(
        f"onnx.checker: {'[green]passed[/]' if report.checker == 'passed' else '[red]' + report.checker + '[/]'}"
    )
    for n in report.notes:
        console.print(f"[yellow]note:[/] {n}")


@click.command()
@source_options
@click.option(
    "--savedmodel-repo",
    type=click.Path(file_okay=False),
    metavar="BASE",
    help="TF Serving model base (BASE/<version>/saved_model.pb): convert every version into "
    "the repository entry -o REPO/NAME (REPO/NAME/<version>/).",
)
@click.option(
    "-o", "--output", "out", required=True, type=click.Path(), help="Package directory to write."
)
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@click.option(
    "--example-inputs",
    type=click.Path(exists=True),
    help="Example inputs (.npz by input name, or .npy).",
)
@click.option(
    "--input",
    "input_specs",
    type=INPUT_SPEC,
    multiple=True,
    help="Describe an input instead of --example-inputs, e.g. x:batch,3,32,32:float32; "
    "LOW..HIGH sets the range of its generated values (HIGH excluded), e.g. ids:batch,6:int64:0..50.",
)
@click.option(
    "--dynamic",
    type=DYNAMIC_AXES,
    multiple=True,
    help="Dynamic axes, e.g. input_ids:0=batch,1=sequence.",
)
@click.option("--static", is_flag=True, help="Do not make the batch axis dynamic.")
@click.option("--output-names", default=None, help="Comma-separated names for the outputs.")
@click.option("--opset", type=int, default=None, help="Target opset.")
@click.option(
    "--exporter",
    type=click.Choice(["auto", "dynamo", "torchscript"]),
    default="auto",
    show_default=True,
)
@verify_options
@click.option(
    "--allow-mismatch", is_flag=True, help="Write the package even if parity fails (recorded)."
)
@click.option(
    "--external-data", is_flag=True, help="Store weights in model.onnx.data beside the graph."
)
@click.option("--name", default=None, help="Package name (default: the output directory name).")
@click.option(
    "--image-preprocess",
    default=None,
    metavar="SPEC|FILE",
    help="Ship image decoding with the package (clients send PNG/JPEG bytes), e.g. "
    "size=8x8,grayscale,scale=1/255 or size=224x224,mean=0.485:0.456:0.406,std=0.229:0.224:0.225; "
    "or an HF preprocessor_config.json. Verified image-in -> answer-out.",
)
@click.option(
    "--label-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Class names, one per line (or a JSON list): the package answers label/score.",
)
@click.option(
    "--top-k",
    type=int,
    default=1,
    show_default=True,
    help="Classes to answer (the k best, best first): with --label-file, or an --hf text or image "
    "classifier (labels from its id2label).",
)
@click.option(
    "--no-softmax",
    is_flag=True,
    help="With --label-file: the output already holds probabilities (no softmax).",
)
@click.option(
    "--handler",
    default=None,
    metavar="MODULE:CLASS",
    help="Ship a custom pre/post-processing handler (a .py file; serve runs it only with --trust).",
)
@click.option(
    "--json", "json_out", type=click.Path(), help="Write the verification report as JSON."
)
@click.pass_context
def convert(ctx: click.Context, **kw: Any) -> int:
    """Convert a PyTorch, Hugging Face, TensorFlow, scikit-learn or ONNX model into a verified
    ONNX model package (model.onnx + modelport.json). Options that do not apply to the source
    are refused (e.g. --exporter with --onnx: an ONNX file is not exported)."""
    from ..convert import ConvertConfig
    from ..convert import convert as do_convert
    from ..data import load_feed
    from ..progress import display

    sources = given_sources(kw) + (["savedmodel_repo"] if kw.get("savedmodel_repo") else [])
    if len(sources) == 1:
        refuse_inapplicable(ctx, CONVERT_APPLIES, sources[0], SOURCE_LABELS)
    source = None if kw.get("savedmodel_repo") else make_source(kw)
    parsed = kw["input_specs"]  # (TensorSpec, value range or None), from INPUT_SPEC
    specs = tuple(spec for spec, _ in parsed)
    ranges = {spec.name: r for spec, r in parsed if r is not None}
    example = None
    if kw["example_inputs"]:
        from ..signature import Signature

        sig = Signature(specs) if specs else None
        example = load_feed(kw["example_inputs"], sig) if sig else _load_any(kw["example_inputs"])
    config = ConvertConfig(
        inputs=specs,
        example=example,
        input_ranges=ranges,
        dynamic=_dynamic(kw["dynamic"]),
        dynamic_batch=not kw["static"],
        output_names=tuple(n.strip() for n in kw["output_names"].split(","))
        if kw["output_names"]
        else (),
        opset=kw["opset"],
        exporter=kw["exporter"],
        verify=make_verify_config(
            kw["atol"], kw["rtol"], kw["verify_batch_sizes"], kw["verify_dims"]
        ),
        allow_mismatch=kw["allow_mismatch"],
        external_data=True if kw["external_data"] else None,
        name=kw["name"],
        processing=_processing_config(kw),
    )
    if source is None:
        return _convert_savedmodel_repo(kw, config)
    console.print(f"converting {source.describe()} -> {kw['out']}")
    try:
        with display("convert") as shown:  # each phase as it happens (stderr)
            result = do_convert(source, kw["out"], config, force=kw["force"], progress=shown)
    except VerificationError as exc:
        if getattr(exc, "report", None) is not None:
            print_report(exc.report)
            if kw["json_out"]:
                write_json(kw["json_out"], exc.report.to_dict())
        raise
    print_report(result.report)
    for n in result.notes:
        console.print(f"[yellow]note:[/] {n}")
    pkg = result.package
    _print_processing(pkg.spec.processing)
    status = (
        "[green]verified[/]" if result.report.passed else "[red]NOT verified (--allow-mismatch)[/]"
    )
    console.print(
        f"wrote {pkg.path} ({status}; exporter {result.exporter}; {result.seconds:.1f} s)"
    )
    if kw["json_out"]:
        write_json(
            kw["json_out"],
            {
                "package": str(pkg.path),
                "exporter": result.exporter,
                "seconds": result.seconds,
                "verification": result.report.to_dict(),
            },
        )
    return 0 if result.report.passed else 1


def _dynamic(pairs: tuple[tuple[str, dict[int, str]], ...]) -> dict[str, dict[int, str]]:
    """The --dynamic values (DYNAMIC_AXES pairs) by input; an input given twice gets both."""
    out: dict[str, dict[int, str]] = {}
    for name, axes in pairs:
        out.setdefault(name, {}).update(axes)
    return out


def _print_processing(proc: Mapping[str, Any] | None) -> None:
    if not proc:
        return
    sig_in = [s.get("input") for s in proc.get("pre", [])]
    steps = " -> ".join(s["kind"] for s in [*proc.get("pre", []), *proc.get("post", [])])
    outs = ", ".join(proc.get("outputs") or ["the graph's outputs"])
    console.print(f"processing: {', '.join(sig_in) or 'tensors'} in, {outs} out ({steps})")
    v = proc.get("verification") or {}
    if v:
        facts = ", ".join(
            f"{k} {v[k]:.6g}" if isinstance(v[k], float) else f"{k} {v[k]}"
            for k in ("texts", "images", "min_cosine", "max_abs_diff", "max_abs_score_diff")
            if k in v
        )
        ok = "[green]verified[/]" if v.get("passed") else "[red]NOT verified[/]"
        console.print(f"processing {ok} against {v.get('reference', 'the source')} ({facts})")


def _processing_config(kw: dict[str, Any]) -> Any:
    """A ProcessingConfig from --image-preprocess/--label-file/--top-k/--handler, or None."""
    from ..processing.config import ProcessingConfig, parse_image_spec, read_label_file

    given = kw.get("image_preprocess") or kw.get("label_file") or kw.get("handler")
    if not given:
        if kw.get("no_softmax"):
            raise UsageError("--no-softmax goes with --label-file")
        if kw.get("top_k", 1) == 1:
            return None
        if not kw.get("hf_dir"):  # an --hf classifier's labels are its id2label (convert/hf.py)
            raise UsageError(
                f"--top-k {kw['top_k']} needs class labels and this model has none: give "
                "--label-file (one class name per line); an --hf text or image classifier "
                "brings its own (id2label)"
            )
        return ProcessingConfig(top_k=kw["top_k"])
    return ProcessingConfig(
        image=parse_image_spec(kw["image_preprocess"]) if kw.get("image_preprocess") else None,
        labels=read_label_file(kw["label_file"]) if kw.get("label_file") else None,
        top_k=kw.get("top_k") or 1,
        softmax=not kw.get("no_softmax"),
        handler=kw.get("handler"),
    )


def _convert_savedmodel_repo(kw: dict[str, Any], config: Any) -> int:
    """``--savedmodel-repo BASE -o REPO/NAME``: every version, all or nothing."""
    from ..convert.tensorflow import convert_savedmodel_repo
    from ..progress import display

    if given_sources(kw):
        raise UsageError("--savedmodel-repo is a source of its own; drop the other source options")
    console.print(f"converting TF Serving model base {kw['savedmodel_repo']} -> {kw['out']}")
    try:
        with display("convert") as shown:
            results = convert_savedmodel_repo(
                kw["savedmodel_repo"],
                kw["out"],
                config,
                force=kw["force"],
                signature_name=kw.get("signature_name") or "serving_default",
                tag=kw.get("tag") or "serve",
                progress=shown,
            )
    except VerificationError as exc:
        if getattr(exc, "report", None) is not None:
            print_report(exc.report)
        raise
    for r in results:
        print_report(r.report, f"Version {r.package.path.name}: parity")
        for n in r.notes:
            console.print(f"[yellow]note:[/] {n}")
    passed = all(r.report.passed for r in results)
    versions = ", ".join(r.package.path.name for r in results)
    status = "[green]verified[/]" if passed else "[red]NOT verified (--allow-mismatch)[/]"
    console.print(f"wrote {kw['out']} (versions {versions}; {status})")
    if kw["json_out"]:
        write_json(
            kw["json_out"],
            {
                "entry": str(kw["out"]),
                "versions": [
                    {
                        "version": r.package.path.name,
                        "package": str(r.package.path),
                        "exporter": r.exporter,
                        "seconds": r.seconds,
                        "verification": r.report.to_dict(),
                    }
                    for r in results
                ],
            },
        )
    return 0 if passed else 1


def _the_source(case: Any) -> str:
    return "the source"


def _self_check(pkg: Any, example: Any, engine: Any = None) -> Callable[[Any], str]:
    """What each case of a source-less verification was compared with (verify_package)."""
    stored = pkg.samples()
    derived = any(step != "convert" for step in pkg.spec.steps)
    has_stored = stored is not None and bool(stored[1]) and not derived and example is None
    own = engine is None or engine.engine == "ort"

    def against(case: Any) -> str:
        if case.label == "example" and has_stored:
            return "stored outputs"
        batch = max((s[0] for s in case.input_shapes.values() if s), default=1)
        if not own:
            return "ORT fp32 row by row" if batch > 1 else "ORT fp32"
        if batch > 1:
            return "itself row by row"
        return "itself (runs)"

    return against


def _load_any(path: str) -> dict[str, Any]:
    import numpy as np

    from ..errors import InputError

    p = Path(path)
    if p.suffix != ".npz":
        raise InputError(
            f"--example-inputs '{p}': without --input specs give an .npz keyed by input name"
        )
    with np.load(p, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@click.command()
@click.argument("package", type=click.Path(exists=True))
@source_options
@click.option("--example-inputs", type=click.Path(exists=True), help="Inputs to verify on (.npz).")
@click.option(
    "--input",
    "input_specs",
    type=INPUT_SPEC,
    multiple=True,
    metavar="NAME:SHAPE:DTYPE",
    help="Describe the source's inputs (when the package stores no samples).",
)
@verify_options
@engine_option(
    "Measure parity on these engines (comma-separated, each checked): a bf16/fp16 engine is held "
    "to that precision's tolerances (2e-2 for bf16) unless --atol/--rtol are given. Default: "
    "ONNX Runtime (fp32)."
)
@click.option("--json", "json_out", type=click.Path(), help="Write the report as JSON.")
@click.pass_context
def verify(ctx: click.Context, package: str, **kw: Any) -> int:
    """Verify PACKAGE: onnx.checker, integrity, and parity, either with the outputs stored at
    conversion and batch consistency, or against a source model given with the source options
    (--torch, --hf, --onnx, ...). With --engine, parity is measured through the engine(s) the
    package will be served with."""
    import dataclasses

    from ..convert import CONVERTERS, ConvertConfig
    from ..data import load_feed
    from ..package import ModelPackage
    from ..progress import display, listening, scope
    from ..verify import merge_reports, verify_package

    refuse_source_options(ctx, kw, package)
    engines = kw["engines"] or ()
    pkg = ModelPackage.load(package)
    config = make_verify_config(kw["atol"], kw["rtol"], kw["verify_batch_sizes"], kw["verify_dims"])
    if given(ctx, "atol") or given(ctx, "rtol"):  # the tolerances given apply to every engine
        config = dataclasses.replace(config, precision_tolerances={})
    example = load_feed(kw["example_inputs"], pkg.signature) if kw["example_inputs"] else None
    reference = None
    # the phases (the source's load and export, each engine's check and cases) as they happen;
    # the tables are printed once the display has ended
    tables: list[tuple[VerifyReport, str, Callable[[Any], str]]] = []
    try:
        with display("verify") as shown, listening(shown):
            if given_sources(kw):
                source = make_source(kw)
                stored = pkg.samples()
                ex = example or (stored[0] if stored else None)
                specs = tuple(spec for spec, _ in kw["input_specs"])
                exported = CONVERTERS[source.kind](
                    source, ConvertConfig(inputs=specs, example=ex, verify=config)
                )
                reference, example = exported.reference, ex or exported.example
            if not engines:
                report = verify_package(pkg, config, reference=reference, example=example)
                if reference is not None:
                    tables.append((report, f"Verify {pkg.path} against the source", _the_source))
                else:
                    title = f"Verify {pkg.path} (no source given)"
                    tables.append((report, title, _self_check(pkg, example)))
            else:
                from ..runtime import engine_config

                reports = []
                for spec in engines:
                    econf = engine_config(spec, pkg.serving)
                    with scope(spec):
                        one = verify_package(
                            pkg, config, reference=reference, example=example, engine=econf
                        )
                    ran = one.engines[0]["ran"]
                    title = (
                        f"Verify {pkg.path} on {one.engines[0]['engine']}"
                        f"{' (the package serving section)' if spec == 'package' else ''}: ran "
                        f"{ran['engine']} {ran['version']} {ran['precision']}, {ran['threads']} "
                        "thread(s), "
                        + ("against the source" if reference is not None else "no source given")
                    )
                    against = _the_source if reference is not None else None
                    tables.append((one, title, against or _self_check(pkg, example, econf)))
                    reports.append(one)
                report = merge_reports(reports)
    finally:  # the tables of the engines done, also when a later one failed
        for one, title, against in tables:
            print_report(one, title, against)
    if reference is None:
        console.print(
            "[dim]no source given: the example is compared with the outputs stored at "
            "conversion (when the package has them), larger batches with the same model row by "
            "row, and batch-1 cases only run; give the source (--torch, --onnx, ...) to check "
            "parity with it"
            + (
                "; an engine other than ONNX Runtime is compared with ONNX Runtime fp32 (row by "
                "row) where no stored outputs apply"
                if engines
                else ""
            )
            + "[/]"
        )
        if example is None and not pkg.samples() and not engines:  # engines: vs ORT fp32
            console.print(
                "[dim]this package stores no samples (converted without --example-inputs), so no "
                "outputs were compared with reference outputs: the cases ran on generated inputs "
                "and were checked only for batch consistency; pass --example-inputs X.npz, or "
                "the source, for a parity check[/]"
            )
    if kw["json_out"]:
        write_json(kw["json_out"], report.to_dict())
    if report.passed:
        console.print("[green]verified[/]")
        return 0
    console.print("[red]verification failed:[/]\n  - " + "\n  - ".join(report.failures()))
    return 1
