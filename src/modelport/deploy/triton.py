"""The ``triton`` target: a Triton model repository (ONNX Runtime backend) with its config.pbtxt."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..errors import VerificationError
from ..package import ModelPackage, atomic_output_dir
from ..signature import V2_DATATYPES
from .base import PackageTargetConfig, TargetResult, model_name, serving_settings

__all__ = [
    "TRITON_TYPES",
    "check_triton_config",
    "target_triton",
    "tensor_blocks",
    "triton_config",
]

# Triton's config.pbtxt names: TYPE_ + the V2 datatype (TYPE_STRING for BYTES)
TRITON_TYPES = {k: "TYPE_" + ("STRING" if v == "BYTES" else v) for k, v in V2_DATATYPES.items()}


def tensor_blocks(specs: Any, batched: bool) -> str:
    """config.pbtxt ``input``/``output`` entries for signature tensors (the batch axis implied
    when ``batched``; a dynamic dimension is -1; no dimension left is ``[ 1 ]``)."""
    blocks = []
    for t in specs:
        dims = list(t.shape[1:] if batched else t.shape)
        dims_s = ", ".join(str(d) if isinstance(d, int) else "-1" for d in dims) or "1"
        blocks.append(
            f'  {{\n    name: "{t.name}"\n    data_type: {TRITON_TYPES[t.dtype]}\n    dims: [ {dims_s} ]\n  }}'
        )
    return ",\n".join(blocks)


def triton_config(pkg: ModelPackage, name: str, serving: dict[str, Any]) -> str:
    """A Triton config.pbtxt for the ONNX Runtime backend."""
    batched = serving["max_batch_size"] > 0
    lines = [
        f'name: "{name}"',
        'backend: "onnxruntime"',
        f"max_batch_size: {serving['max_batch_size']}",
        f"input [\n{tensor_blocks(pkg.signature.inputs, batched)}\n]",
        f"output [\n{tensor_blocks(pkg.signature.outputs, batched)}\n]",
        f"instance_group [\n  {{\n    count: {serving['instances']}\n    kind: KIND_CPU\n  }}\n]",
    ]
    if batched:
        us = int(serving["max_queue_delay_ms"] * 1000)
        lines.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {us}\n}}")
    return "\n".join(lines) + "\n"


def target_triton(pkg: ModelPackage, config: PackageTargetConfig, out: Path) -> TargetResult:
    """OUT is a Triton model repository: OUT/<name>/config.pbtxt and OUT/<name>/<v>/model.onnx;
    for a package with processing, an ensemble that carries it (``triton_ensemble``)."""
    name = model_name(pkg, config)
    serving = serving_settings(pkg, config)
    version = config.version or 1
    notes = (
        []
        if serving["batchable"]
        else [f"max_batch_size 0 (no batching): {serving['why_not_batched']}"]
    )
    processing = pkg.spec.processing
    if processing and not processing.get("handler"):
        from .triton_ensemble import target_ensemble

        listing, checks = target_ensemble(pkg, name, serving, version, out)
        notes.append(
            f"'{name}' is an ensemble carrying the package's processing ({name}_preprocess / "
            f"{name}_postprocess run modelport.processing in Triton's Python backend, whose "
            f"Python needs modelport with its serve extra); the bare graph is '{name}_raw'"
        )
        return TargetResult("triton", out / name, listing, checks, notes)
    text = triton_config(pkg, name, serving)
    with atomic_output_dir(out / name) as tmp:
        (tmp / str(version)).mkdir()
        shutil.copy2(pkg.model_path, tmp / str(version) / "model.onnx")
        ext = pkg.model_path.parent / "model.onnx.data"
        if ext.exists():
            shutil.copy2(ext, tmp / str(version) / ext.name)
        (tmp / "config.pbtxt").write_text(text)
    checks = [check_triton_config(out / name / "config.pbtxt", pkg)]
    if processing:
        notes.append(
            "the package's custom handler is NOT carried (it runs only under modelport serve "
            "--trust): Triton serves the bare graph, so clients send its tensors (as to NAME_raw)"
        )
    return TargetResult(
        "triton", out / name, ["config.pbtxt", f"{version}/model.onnx"], checks, notes
    )


def check_triton_config(path: Path, pkg: ModelPackage) -> str:
    from google.protobuf import text_format

    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        return "config.pbtxt written (tritonclient not installed: not parsed)"
    cfg = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    if [i.name for i in cfg.input] != pkg.signature.input_names:
        raise VerificationError(
            f"{path}: inputs {[i.name for i in cfg.input]} do not match the model"
        )
    return f"config.pbtxt parses as Triton ModelConfig ({len(cfg.input)} inputs, {len(cfg.output)} outputs, max_batch_size {cfg.max_batch_size})"
