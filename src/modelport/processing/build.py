"""Turn a ``ProcessingConfig`` (given at convert time) into the package's ``Processing``, and
verify it image-in -> label-out against the source model."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np

from ..errors import UsageError, VerificationError
from ..signature import Signature
from .config import ProcessingConfig
from .handler import HandlerRef, resolve_handler_file
from .image import encode_png
from .pipeline import Processing
from .steps import ImagePreprocess, Softmax, TopK
from .verify import compare_labels, failure_message, staged_pipeline

__all__ = ["LABELS_FILE", "configured_processing"]

LABELS_FILE = "processing/labels.txt"


def configured_processing(
    pconf: ProcessingConfig,
    found: Processing | None,
    files: dict[str, Any],
    exported: Any,
    *,
    allow_mismatch: bool = False,
) -> tuple[Processing, dict[str, Any], list[str]]:
    """(processing, files, notes): what the converter ``found`` plus what ``pconf`` asks for."""
    proto = exported.model
    graph = Signature.from_onnx(proto)
    files = dict(files)
    notes: list[str] = []
    pre = list(found.pre) if found else []
    post = list(found.post) if found else []
    outputs = tuple(found.outputs) if found else ()
    image = None
    if pconf.image is not None:
        target = pconf.image.output or _only(graph.input_names, "input", "--image-preprocess")
        if target not in graph.input_names:
            raise UsageError(
                f"--image-preprocess fills input '{target}', but the model's inputs are "
                f"{graph.input_names}"
            )
        image = dataclasses.replace(pconf.image, output=target)
        _check_image_shape(image, graph.input(target).shape)
        pre = [s for s in pre if getattr(s, "output", None) != target] + [image]
    if pconf.labels is not None:
        out = _only(graph.output_names, "output", "--label-file")
        files[LABELS_FILE] = "\n".join(pconf.labels).encode("utf-8")
        scores = "probabilities" if pconf.softmax else out
        post = [Softmax(out, scores)] if pconf.softmax else []
        post.append(TopK(LABELS_FILE, scores, k=pconf.top_k))
        outputs = ("label", "score")
    handler = found.handler if found else None
    if pconf.handler:
        path = resolve_handler_file(pconf.handler)
        data = path.read_bytes()
        rel = f"processing/{path.name}"
        files[rel] = data
        _, _, cls = pconf.handler.rpartition(":")
        handler = HandlerRef(f"{path.stem}:{cls}", rel, hashlib.sha256(data).hexdigest())
        notes.append(
            f"custom handler {handler.target} shipped (sha256 {handler.sha256[:12]}...); it runs "
            "only with --trust and is not verified against the source"
        )
    # the converter's own check still holds when nothing it checked was replaced
    unchanged = image is None and pconf.labels is None and not pconf.handler
    kept = found.verification if found and unchanged else None
    processing = Processing(tuple(pre), tuple(post), outputs, handler, kept)
    if image is not None and handler is None:
        report = check_image(processing, files, exported, image, pconf.labels is not None)
        if not report["passed"] and not allow_mismatch:
            raise VerificationError(
                failure_message(
                    "image processing",
                    report,
                    "Check --image-preprocess (scale, mean/std, layout, grayscale) against how the "
                    "model was trained. Nothing was written; --allow-mismatch writes it anyway.",
                )
            )
        processing = dataclasses.replace(processing, verification=report)
    return processing, files, notes


def _only(names: list[str], what: str, option: str) -> str:
    if len(names) != 1:
        raise UsageError(
            f"{option} needs a model with one {what}; this one has {names} (a custom handler "
            "can serve models with several)"
        )
    return names[0]


def _check_image_shape(step: ImagePreprocess, shape: tuple) -> None:
    h, w = step.out_hw
    c = step.channels
    want = (c, h, w) if step.layout == "NCHW" else (h, w, c)
    got = tuple(shape[1:])
    if len(got) != 3 or any(isinstance(g, int) and g != x for g, x in zip(got, want, strict=True)):
        raise UsageError(
            f"--image-preprocess makes tensors [batch, {', '.join(map(str, want))}] "
            f"({step.layout}, mode {step.mode}), but the model's input '{step.output}' is "
            f"{list(shape)}; fix size/crop, grayscale|rgb or layout"
        )


def check_image(
    processing: Processing,
    files: dict[str, Any],
    exported: Any,
    step: ImagePreprocess,
    labels: bool,
) -> dict[str, Any]:
    """Image in -> answer out against the source model.

    The example input tensors are written as 8-bit PNGs (the inverse of scale/mean/std) and run
    through the package's pipeline. Checked: (a) the decoded tensors equal the same tensors
    quantized to 8 bits in numpy (decode, mode, layout, scale, normalization); (b) the answer
    equals the source model's on those tensors (scores within 1e-4); (c) the labels equal the
    source model's on the original example tensors, so a spec that does not match how the model
    was trained (wrong scale, mean/std) fails even though it is self-consistent."""
    example = np.asarray(exported.example[step.output], dtype=np.float32)
    hwc = example.transpose(0, 2, 3, 1) if step.layout == "NCHW" else example
    c = step.channels
    mean = np.asarray(step.mean or [0.0] * c, np.float32)
    std = np.asarray(step.std or [1.0] * c, np.float32)
    pixels = np.clip(np.rint((hwc * std + mean) / step.scale), 0, 255).astype(np.uint8)
    quantized = (pixels.astype(np.float32) * np.float32(step.scale) - mean) / std
    quantized = quantized.transpose(0, 3, 1, 2) if step.layout == "NCHW" else quantized
    pngs = [encode_png(p[:, :, 0] if c == 1 else p) for p in pixels]
    graph = Signature.from_onnx(exported.model)
    with staged_pipeline(processing, files, exported.model, graph) as pipe:
        decoded = pipe.prepare({step.input: _objects(pngs)})[step.output]
        ours = pipe({step.input: _objects(pngs)})
    ref_q = _first(exported.reference({**exported.example, step.output: quantized}))
    ref_x = _first(exported.reference(exported.example))
    report: dict[str, Any] = {
        "reference": "source model on the example tensors and on their 8-bit PNGs",
        "images": len(pngs),
        "max_abs_pixel_tensor_diff": float(np.abs(decoded - quantized).max()),
        "max_abs_png_roundtrip_diff": float(np.abs(quantized - example).max()),
    }
    passed = report["max_abs_pixel_tensor_diff"] <= 1e-5
    if labels:
        post = processing.post
        soft = any(isinstance(s, Softmax) for s in post)
        probs_q = _softmax(ref_q) if soft else ref_q
        topk = next(s for s in post if isinstance(s, TopK))
        names = files[topk.labels_file].decode("utf-8").split("\n")
        ref_labels = [names[i] for i in ref_x.argmax(axis=1)]
        ours_top = ours["label"] if topk.k == 1 else ours["label"][:, 0]
        score_top = ours["score"] if topk.k == 1 else ours["score"][:, 0]
        cmp = compare_labels(ours_top, ref_labels, score_top, probs_q.max(axis=1))
        report.update({k: v for k, v in cmp.items() if k != "passed"})
        passed = passed and cmp["passed"] and cmp["max_abs_score_diff"] <= 1e-4
    else:
        name = processing.outputs[0] if processing.outputs else graph.output_names[0]
        report["max_abs_output_diff"] = float(np.abs(np.asarray(ours[name]) - ref_q).max())
        same = np.asarray(ours[name]).argmax(-1) == ref_x.argmax(-1)
        report["argmax_agreement_with_source"] = float(same.mean())
        passed = passed and report["max_abs_output_diff"] <= 1e-4 and bool(same.all())
    report["passed"] = bool(passed)
    return report


def _first(outputs: Any) -> np.ndarray:
    if isinstance(outputs, dict):
        return np.asarray(next(iter(outputs.values())))
    if isinstance(outputs, list | tuple):
        return np.asarray(outputs[0])
    return np.asarray(outputs)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _objects(items: list[bytes]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out
