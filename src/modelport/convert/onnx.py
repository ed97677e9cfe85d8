"""Existing ONNX files: checked, shape-inferred, optionally converted to another opset, packaged.

The reference is the original file run by ONNX Runtime, so an opset conversion is verified like
any other conversion.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import generate_feed
from ..errors import ConversionError
from ..package import file_sha256, opset_of
from ..signature import Signature
from .base import ConvertConfig, Exported, Source


def convert_onnx(source: Source, config: ConvertConfig) -> Exported:
    import onnx

    from ..runtime import make_session, run_session

    path = Path(source.path or "")
    if not path.is_file():
        raise ConversionError(f"ONNX file '{path}' does not exist", path=str(path))
    try:
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
    if config.opset and config.opset != src_opset:
        from onnx import version_converter

        try:
            model = version_converter.convert_version(model, config.opset)
        except Exception as exc:
            raise ConversionError(
                f"cannot convert '{path}' from opset {src_opset} to {config.opset}: {exc}. "
                "Try a closer opset, or keep the original (omit --opset)."
            ) from exc
        notes.append(f"opset converted {src_opset} -> {config.opset}")
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:
        notes.append(f"shape inference failed and was skipped: {exc}")
    reference_session = make_session(original)

    def reference(feed):
        return run_session(reference_session, feed)

    sig = Signature.from_onnx(model)
    if config.example is not None:
        feed = {k: np.asarray(v) for k, v in config.example.items()}
    else:
        dims = {d: 2 for d in sig.symbolic_dims()}
        feed = generate_feed(sig, dims)
    dynamic = {t.name: t.dynamic_axes for t in sig.inputs if t.dynamic_axes}
    prov = {
        "source_kind": "onnx",
        "source_path": str(path),
        "source_sha256": file_sha256(path),
        "frameworks": {"onnx": onnx.__version__},
        "source_opset": src_opset,
        "source_producer": f"{original.producer_name} {original.producer_version}".strip(),
    }
    return Exported(model, reference, feed, dynamic, prov, "onnx", notes)
