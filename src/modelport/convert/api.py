"""``convert()``: export a source with its converter, verify it, write the package.

``CONVERTERS`` maps a source kind to the function that exports it; every conversion then goes
through the same verification and atomic package writing.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from ..errors import VerificationError
from ..manifest import Manifest, Step, Verification
from ..package import base_manifest, opset_of, write_package
from ..progress import Listener, listening, phase
from ..signature import Signature
from ..verify import verify_model
from .base import ConvertConfig, Converter, ConvertResult, Exported, Source

__all__ = ["CONVERTERS", "convert"]


def _torch(source: Source, config: ConvertConfig) -> Exported:
    from .torch import convert_torch

    return convert_torch(source, config)


def _torchscript(source: Source, config: ConvertConfig) -> Exported:
    from .torch import convert_torchscript

    return convert_torchscript(source, config)


def _exported_program(source: Source, config: ConvertConfig) -> Exported:
    from .torch import convert_exported_program

    return convert_exported_program(source, config)


def _hf(source: Source, config: ConvertConfig) -> Exported:
    from .hf import convert_hf

    return convert_hf(source, config)


def _onnx(source: Source, config: ConvertConfig) -> Exported:
    from .onnx import convert_onnx

    return convert_onnx(source, config)


def _savedmodel(source: Source, config: ConvertConfig) -> Exported:
    from .tensorflow import convert_savedmodel

    return convert_savedmodel(source, config)


def _keras(source: Source, config: ConvertConfig) -> Exported:
    from .tensorflow import convert_keras

    return convert_keras(source, config)


def _sklearn(source: Source, config: ConvertConfig) -> Exported:
    from .sklearn import convert_sklearn

    return convert_sklearn(source, config)


# sources whose exporter --exporter chooses (the others have one way to ONNX, or are ONNX)
_EXPORTER_CHOICE = ("torch", "torchscript", "hf")

CONVERTERS: dict[str, Converter] = {
    "torch": _torch,
    "torchscript": _torchscript,
    "exported_program": _exported_program,
    "hf": _hf,
    "onnx": _onnx,
    "savedmodel": _savedmodel,
    "keras": _keras,
    "sklearn": _sklearn,
}


def _as_named(outputs: Any, names: list[str]) -> dict[str, Any]:
    import numpy as np

    if isinstance(outputs, dict):
        return {k: np.asarray(v) for k, v in outputs.items()}
    return {name: np.asarray(v) for name, v in zip(names, outputs, strict=True)}


def convert(
    source: Source,
    out: str | os.PathLike[str],
    config: ConvertConfig | None = None,
    *,
    force: bool = False,
    progress: Listener | None = None,
) -> ConvertResult:
    """Export ``source`` to ONNX, verify it and write a model package at ``out``.

    Raises VerificationError (with ``report``) when the checker or parity fails, unless
    ``config.allow_mismatch``; then the package is written and its manifest records the failure.
    Nothing is written at ``out`` unless the whole conversion succeeds.

    ``progress`` receives each phase as it starts, advances and ends (``modelport.progress.Event``):
    "load", "reference" (torch sources), "export" (once per exporter tried), "check", "verify"
    (counted over the cases), "processing" (when configured) and "write"; the command line draws
    them with ``modelport.progress.display``.
    """
    with listening(progress):
        return _convert(source, out, config, force)


def _convert(
    source: Source, out: str | os.PathLike[str], config: ConvertConfig | None, force: bool
) -> ConvertResult:
    from ..errors import UsageError, output_exists

    config = config or ConvertConfig()
    if source.kind not in CONVERTERS:
        raise UsageError(f"unknown source kind '{source.kind}'; known: {sorted(CONVERTERS)}")
    if os.path.exists(out) and not force:
        raise output_exists(out)
    t0 = time.perf_counter()
    exported = CONVERTERS[source.kind](source, config)
    export_seconds = time.perf_counter() - t0
    report = exported.report or verify_model(
        exported.model,
        exported.reference,
        exported.example,
        exported.verify_config or config.verify,
        declared_dynamic=exported.declared_dynamic,
    )
    seconds = time.perf_counter() - t0
    if not report.passed and not config.allow_mismatch:
        raise VerificationError(
            "the converted model does not match the source:\n  - "
            + "\n  - ".join(report.failures())
            + "\nNothing was written. Loosen --atol/--rtol if the differences are expected, "
            + ("try --exporter torchscript|dynamo, " if source.kind in _EXPORTER_CHOICE else "")
            + "or pass --allow-mismatch to write the package anyway.",
            report=report,
        )
    name = config.name or os.path.basename(os.path.normpath(os.fspath(out)))
    signature = Signature.from_onnx(exported.model)
    base = base_manifest(name, signature, opset_of(exported.model), exported.provenance)
    step = {
        "step": "convert",
        "time": base["provenance"]["created"],
        "source": source.describe(),
        "exporter": exported.exporter,
        "seconds": round(seconds, 3),
        "export_seconds": round(export_seconds, 3),
        "notes": exported.notes,  # notes added below are recorded too
        "verified": report.passed,
    }
    processing, files = exported.processing, dict(exported.processing_files)
    if config.processing is not None:
        from ..processing.build import configured_processing

        with phase("processing"):
            processing, files, more = configured_processing(
                config.processing, processing, files, exported, allow_mismatch=config.allow_mismatch
            )
        exported.notes.extend(more)
    if processing is not None and processing.verification is not None:
        step["processing_verified"] = bool(processing.verification.get("passed"))
    with phase("write"):
        samples = None
        try:
            if exported.samples:
                ref_out = _as_named(exported.reference(exported.example), signature.output_names)
                samples = (exported.example, ref_out)
        except Exception as exc:  # samples are a convenience; the conversion stands without them
            exported.notes.append(f"sample outputs not stored: {exc}")
        manifest = dataclasses.replace(
            Manifest.from_dict(base),
            verification=Verification.from_dict(report.to_dict()),
            history=(Step.from_dict(step, "history[0]"),),
            processing=None if processing is None else processing.to_dict(),
        )
        package = write_package(
            exported.model,
            manifest,
            out,
            force=force,
            external_data=config.external_data,
            samples=samples,
            files=files,
        )
    return ConvertResult(package, report, exported.exporter, seconds, exported.notes)
