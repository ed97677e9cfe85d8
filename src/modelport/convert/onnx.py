"""Existing ONNX files: checked, shape-inferred, optionally converted to another opset, packaged.

Importing a valid file needs no run: ``onnx.checker`` (full check) and shape inference say it is
well formed, and unnamed symbolic dims (empty, ``?``, ``None``) are given names. With
``--example-inputs`` the file is run on them and the package keeps them as samples. Without, a
smoke run uses generated inputs at sizes a model of its kind takes (images 224x224, sequences
128, audio 512 samples, then other image sizes; integer inputs within the tables they index); a model that rejects them
is not broken: the import stands, with a note to pass real inputs.

The reference is the original file run by ONNX Runtime, so an opset conversion is verified like
any other conversion (and then needs a run that works).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from ..data import (
    Feed,
    candidate_dims,
    conform_feed,
    generate_feed,
    graph_value_ranges,
    guess_dims,
    take_rows,
)
from ..errors import ConversionError, ModelportError, VerificationError
from ..package import file_sha256, opset_of
from ..progress import phase
from ..signature import Signature
from ..verify import CaseReport, VerifyReport, check_model
from .base import ConvertConfig, Exported, Source

__all__ = ["align_output_batch_axes", "convert_onnx", "correct_output_shapes", "name_dims"]

_UNNAMED = {"", "?", "None", "none", "null", "-1"}


def name_dims(model: Any, outputs: bool = True) -> list[str]:
    """Give every unnamed symbolic dim of the graph's inputs (and ``outputs``) a name, in place.

    Axis 0 of an input becomes ``batch``; the spatial axes of an image-like input ``height`` and
    ``width``; anything else ``<tensor>_<axis>``. Returns what was renamed, for the notes.
    """
    inits = {t.name for t in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in inits]
    done = []
    for vi in [*inputs, *(model.graph.output if outputs else [])]:
        if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            continue
        dims = vi.type.tensor_type.shape.dim
        rank = len(dims)
        is_input = vi in inputs
        for axis, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value >= 0:
                continue  # a fixed size (a negative one, as some exporters write, is unknown)
            if not d.HasField("dim_value") and d.dim_param not in _UNNAMED:
                continue
            old = str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "unnamed")
            name = f"{vi.name}_{axis}"
            if is_input and axis == 0:
                name = "batch"
            elif is_input and rank == 4 and _fixed(dims[1]) in (1, 3, 4) and axis in (2, 3):
                name = "height" if axis == 2 else "width"
                name = name if len(inputs) == 1 else f"{vi.name}_{name}"
            d.dim_param = name
            done.append(f"{vi.name}[{axis}] {old!r} -> {name!r}")
    return done


def align_output_batch_axes(
    model: Any, reference: Any, feed: Feed, ranges: Any = None, rows: int = 3
) -> list[str]:
    """Rename, in place, an output's axis 0 to the inputs' batch axis where it provably is one.

    Exporters often name an output's first dim on its own (tf2onnx: input ``unk__214``, output
    ``unk__215``), and then the output looks like a detection count, so the model cannot be
    batched. An output qualifies only if ``rows`` different rows run together give ``rows`` rows
    on its axis 0, each equal to that row run alone (the stacking contract itself), and its dim
    name appears in no input. Returns what was renamed, for the notes.
    """
    sig = Signature.from_onnx(model)
    first = {t.shape[0] if t.shape else None for t in sig.inputs}
    batch = next(iter(first)) if len(first) == 1 else None
    if not isinstance(batch, str):
        return []
    used = {d for t in sig.inputs for d in t.shape if isinstance(d, str)}
    suspects = [
        t.name
        for t in sig.outputs
        if t.shape and isinstance(t.shape[0], str) and t.shape[0] != batch
        and t.shape[0] not in used and t.shape[0] != f"dim_{t.name}_0"
    ]  # fmt: skip
    if not suspects:
        return []
    dims = {
        d: int(np.shape(feed[t.name])[axis])
        for t in sig.inputs
        for axis, d in enumerate(t.shape)
        if isinstance(d, str) and t.name in feed
    }
    singles = [take_rows(dict(feed), 1)]
    singles += [
        take_rows(generate_feed(sig, {**dims, batch: 1}, seed=11 + k, ranges=ranges), 1)
        for k in range(rows - 1)
    ]
    try:
        alone = [reference(f) for f in singles]
        together = reference({k: np.concatenate([f[k] for f in singles]) for k in singles[0]})
    except Exception:  # a model that runs only one row at a time: nothing to rename
        return []
    done = []
    for name in suspects:
        got = np.asarray(together[name])
        ones = [np.asarray(a[name]) for a in alone]
        if got.shape[:1] != (rows,) or any(o.shape[:1] != (1,) for o in ones):
            continue
        if not all(
            np.allclose(got[i], ones[i][0], rtol=1e-3, atol=1e-4, equal_nan=True)
            for i in range(rows)
        ):
            continue
        for vi in model.graph.output:
            if vi.name == name:
                old = vi.type.tensor_type.shape.dim[0].dim_param
                vi.type.tensor_type.shape.dim[0].dim_param = batch
                done.append(f"{name}[0] {old!r} -> {batch!r}")
    return done


def correct_output_shapes(model: Any, outputs: Any) -> list[str]:
    """Replace, in place, a declared output shape the model's own run contradicts.

    An exporter can declare an output of the wrong rank (ddddocr's int8 OCR: ``[1, seqlen]``
    for a ``[T, 1, classes]`` result) or a fixed size it does not return. The package's signature
    is what servers publish as metadata and write into Triton configs, so it must match what the
    model returns: a wrong rank becomes the returned rank with every axis named
    ``<output>_<axis>``, a contradicted fixed size becomes such a name. Returns the notes.
    """
    done = []
    for vi in model.graph.output:
        tt = vi.type.tensor_type
        if vi.name not in outputs or not tt.HasField("shape"):
            continue
        got = np.shape(outputs[vi.name])
        dims = list(tt.shape.dim)
        declared = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in dims]
        if len(dims) != len(got):
            tt.ClearField("shape")
            for axis in range(len(got)):
                tt.shape.dim.add().dim_param = f"{vi.name}_{axis}"
        else:
            wrong = [
                a for a, d in enumerate(dims) if d.HasField("dim_value") and d.dim_value != got[a]
            ]
            if not wrong:
                continue
            for a in wrong:
                dims[a].dim_param = f"{vi.name}_{a}"  # clears dim_value (a oneof)
        now = [d.dim_param or d.dim_value for d in tt.shape.dim]
        done.append(
            f"output '{vi.name}' was declared {declared} but the model returns shape "
            f"{list(got)}: declared as {now}"
        )
    return done


def _fixed(d: Any) -> int | None:
    return int(d.dim_value) if d.HasField("dim_value") and d.dim_value >= 0 else None


def _verify_sizes(sig: Signature, feed: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """Other sizes to verify each non-batch dynamic dim at, that a model of this kind takes:
    image sides stay multiples of 32, other dims halve."""
    sizes: dict[str, tuple[int, ...]] = {}
    for t in sig.inputs:
        arr = feed[t.name]
        image = len(t.shape) == 4 and (t.shape[1] in (1, 3, 4) or t.shape[3] in (1, 3, 4))
        for axis, d in t.dynamic_axes.items():
            if axis == 0 or d in sizes:
                continue
            n = int(arr.shape[axis])
            if image:
                sizes[d] = (n + 32 - n % 32,) if n % 32 else (n + 32,)
            else:
                sizes[d] = (max(1, n // 2),)
    return sizes


def convert_onnx(source: Source, config: ConvertConfig) -> Exported:
    import onnx

    from ..runtime import make_session, run_session

    path = Path(source.path or "")
    if not path.is_file():
        raise ConversionError(f"ONNX file '{path}' does not exist", path=str(path))
    try:
        with phase("load"):
            original = onnx.load(str(path))
    except Exception as exc:
        raise ConversionError(
            f"'{path}' is not an ONNX model (onnx.load failed: {str(exc).splitlines()[0]})",
            path=str(path),
        ) from exc
    if not original.graph.node:
        raise ConversionError(f"'{path}' has an empty graph", path=str(path))
    notes = []
    model = original
    src_opset = opset_of(original)
    target = config.opset if config.opset and config.opset != src_opset else None
    converted = target is not None
    if target is not None:
        from onnx import version_converter

        try:
            model = version_converter.convert_version(model, target)
        except Exception as exc:
            raise ConversionError(
                f"cannot convert '{path}' from opset {src_opset} to {config.opset}: {exc}. "
                "Try a closer opset, or keep the original (omit --opset)."
            ) from exc
        notes.append(f"opset converted {src_opset} -> {config.opset}")
    if model is original:
        model = onnx.ModelProto()
        model.CopyFrom(original)
    renamed = name_dims(model, outputs=False)  # first, so that inference carries the names
    # outputs with unnamed dims: let inference fill them from the inputs' names
    declared = {}
    for vi in model.graph.output:
        tt = vi.type.tensor_type
        if any(
            (d.dim_value < 0) if d.HasField("dim_value") else (d.dim_param in _UNNAMED)
            for d in tt.shape.dim
        ):
            declared[vi.name] = onnx.TypeProto()
            declared[vi.name].CopyFrom(vi.type)
            tt.ClearField("shape")
    try:
        with phase("infer"):
            model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:
        notes.append(f"shape inference failed and was skipped: {str(exc).splitlines()[0]}")
    for vi in model.graph.output:
        inferred = vi.type.tensor_type
        want = declared.get(vi.name)
        if want is not None and len(inferred.shape.dim) != len(want.tensor_type.shape.dim):
            vi.type.CopyFrom(want)  # inference did not say: keep the declared shape
    renamed += name_dims(model)
    if renamed:
        notes.append("unnamed dims named: " + ", ".join(renamed))

    sig = Signature.from_onnx(model)
    dynamic = {t.name: t.dynamic_axes for t in sig.inputs if t.dynamic_axes}
    prov = {
        "source_kind": "onnx",
        "source_path": str(path),
        "source_sha256": file_sha256(path),
        "frameworks": {"onnx": onnx.__version__},
        "source_opset": src_opset,
        "source_producer": f"{original.producer_name} {original.producer_version}".strip(),
    }
    with phase("load", detail="ONNX Runtime session"):
        reference_session = make_session(original)

    def reference(feed):
        return run_session(reference_session, feed)

    vcfg = config.verify
    if not converted:
        # The graph is the file itself, so parity with it holds by construction: one run on the
        # example's shapes is the check, not other sizes that a fixed-size model would refuse.
        vcfg = dataclasses.replace(
            vcfg, batch_sizes=(), dim_sizes={d: () for d in sig.symbolic_dims()}
        )
    ranges = graph_value_ranges(model)

    def align(feed: Feed) -> None:
        try:
            outputs = reference(feed)
        except ModelportError:
            outputs = {}
        corrected = correct_output_shapes(model, outputs)
        if corrected:
            notes.append("; ".join(corrected))
        aligned = align_output_batch_axes(model, reference, feed, ranges)
        if aligned:
            notes.append(
                "output axis 0 follows the inputs' batch axis (checked: 3 rows together equal "
                "each row alone), renamed so the model can be batched: " + ", ".join(aligned)
            )

    if config.example is not None:
        feed = conform_feed(config.example, sig, source="the example inputs")
        align(feed)
        return Exported(model, reference, feed, dynamic, prov, "onnx", notes, verify_config=vcfg)

    # No real inputs: a smoke run on generated ones, at sizes a model of this kind takes.
    error: ModelportError | None = None
    candidates = list(candidate_dims(sig, batch=1))
    with phase("smoke", total=len(candidates)) as step:
        for dims in candidates:
            feed = generate_feed(sig, dims, ranges=ranges)
            step.describe(", ".join(f"{k}={v}" for k, v in dims.items()))
            try:
                reference(feed)
                error = None
                step.advance()
                break
            except ModelportError as exc:
                error = error or exc  # the first size's error is the one to report
            step.advance()
    if error is not None:
        feed = generate_feed(sig, guess_dims(sig, batch=1), ranges=ranges)
        shapes = {k: list(v.shape) for k, v in feed.items()}
        why = error.message.splitlines()[0][:300]
        if converted:
            raise VerificationError(
                f"the opset conversion of '{path}' cannot be verified: the model does not run on "
                f"generated inputs {shapes} ({why}). Pass --example-inputs FILE.npz with real "
                "inputs (one array per input name)."
            ) from None
        notes.append(
            f"could not smoke-test with generated inputs {shapes} ({why}); the file passed "
            "onnx.checker and is packaged unchanged. Pass --example-inputs FILE.npz to run and "
            "verify it on real inputs"
        )
        checker = check_model(model if model.ByteSize() < 2_000_000_000 else str(path))
        report = VerifyReport(
            checker,
            [CaseReport("imported unchanged (checker only)", {}, [])],
            config.verify.atol,
            config.verify.rtol,
        )
        return Exported(
            model, reference, feed, dynamic, prov, "onnx", notes, report=report, samples=False
        )
    align(feed)
    shapes = {k: list(v.shape) for k, v in feed.items()}
    notes.append(
        f"smoke-tested on generated inputs {shapes}; no samples are stored (generated data is "
        "not real data): convert with --example-inputs FILE.npz to store real inputs for "
        "warm-up, bench, plan and verify"
    )
    if converted and not vcfg.dim_sizes:
        vcfg = dataclasses.replace(vcfg, dim_sizes=_verify_sizes(sig, feed))
    return Exported(
        model, reference, feed, dynamic, prov, "onnx", notes, verify_config=vcfg, samples=False
    )
