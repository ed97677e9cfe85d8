"""The TorchServe .mar of a package with processing: its handler runs the package's steps
(modelport.processing: tokenizer, image decoding, pooling, labels) around model.onnx.

The handler imports ``modelport.processing``, so TorchServe's Python needs
``pip install 'modelport[serve]'`` (tokenizers, Pillow, numpy; no torch). One example per request
(TorchServe batches them): the body is the text or the image file itself, or JSON
``{"<input>": value}``; the answer is a JSON object of the package's outputs for that example.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import types
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError, VerificationError
from ..package import PROCESSING_DIR, ModelPackage
from ..processing import Pipeline, Processing

__all__ = ["check_processed_mar", "sample_input", "stage_processing"]


def stage_processing(pkg: ModelPackage, tmp: Path) -> Path | None:
    """A directory holding ``processing/`` for ``--extra-files`` (the archiver copies a
    directory's items into the model directory), or None when the package has no processing."""
    processing = Processing.of(pkg.manifest)
    if processing is None:
        return None
    if processing.handler is not None:
        raise UsageError(
            "the torchserve target cannot carry a custom handler (it runs only under modelport "
            "serve --trust); serve the package with modelport, or package one without --handler"
        )
    if len(Pipeline(processing, pkg.path, pkg.signature).signature.inputs) != 1:
        raise UsageError("the torchserve target carries processing for one-input models only")
    extra = tmp / "processing-extra"
    shutil.copytree(pkg.path / PROCESSING_DIR, extra / PROCESSING_DIR)
    return extra


def sample_input(step: Any) -> bytes:
    """A sample for a pre-processing step: a random PNG of its size for ``image``, else a text."""
    if step is not None and step.kind == "image":
        from ..processing.image import encode_png

        h, w = step.size
        rng = np.random.default_rng(0)
        shape = (h, w) if step.mode == "L" else (h, w, 3)
        return encode_png(rng.integers(0, 256, size=shape, dtype=np.uint8))
    return b"A model package carries its own tokenizer."


def check_processed_mar(mar: Path, pkg: ModelPackage) -> str:
    """Unpack the .mar, run its handler on a text or an image, compare with modelport.load."""
    import importlib.util

    expected_pipe = Pipeline.load(pkg)
    body = sample_input(expected_pipe.processing.pre[0] if expected_pipe.processing.pre else None)
    name = expected_pipe.signature.input_names[0]
    expected = expected_pipe({name: [body]})
    with tempfile.TemporaryDirectory() as d, zipfile.ZipFile(mar) as z:
        z.extractall(d)
        man = json.loads(Path(d, "MAR-INF", "MANIFEST.json").read_text())
        spec = importlib.util.spec_from_file_location(
            "_mar_handler", Path(d, man["model"]["handler"])
        )
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        context = types.SimpleNamespace(system_properties={"model_dir": d}, manifest=man)
        module.initialize(context)
        (result,) = module.handle([{"body": bytearray(body)}], context)
    for k, ref in expected.items():
        got: Any = result.get(k)
        ref0 = ref[0]
        same = (
            got == ref0.decode()
            if isinstance(ref0, bytes)
            else np.allclose(np.asarray(got, dtype=np.float64), ref0, atol=1e-4, rtol=1e-4)
        )
        if not same:
            raise VerificationError(
                f"the .mar handler's output '{k}' differs from the package's pipeline"
            )
    kind = "image" if body.startswith(b"\x89PNG") else "text"
    steps = ", ".join(s.kind for s in expected_pipe.processing.pre)
    return (
        f".mar carries the processing ({steps} -> {', '.join(expected_pipe.output_names)}); its "
        f"handler ran on a sample {kind}: outputs match modelport.load"
    )
