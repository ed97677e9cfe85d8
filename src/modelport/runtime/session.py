"""Creating and running ONNX Runtime sessions with settings that behave well in a server.

Defaults worth knowing (measured, see docs): intra-op spinning is turned off because several
sessions in one process (a server with several models, an interleaved benchmark) otherwise slow
each other down badly; the thread count defaults to the number of physical cores available.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from ..errors import InputError, ModelportError, UsageError, require

if TYPE_CHECKING:
    import onnx

__all__ = ["ModelSource", "SessionConfig", "available_providers", "make_session", "run_session"]

ModelSource: TypeAlias = "str | os.PathLike[str] | bytes | onnx.ModelProto"
"""What an engine loads: a model file's path, its serialized bytes or an ONNX ModelProto."""

_GRAPH_LEVELS = {"disable": 0, "basic": 1, "extended": 2, "all": 99}


@dataclass(frozen=True)
class SessionConfig:
    """How to build an ONNX Runtime session.

    intra_op_threads: threads inside one operator (0 = ORT's default, all cores).
    inter_op_threads: threads across operators in parallel execution mode.
    providers: execution providers in priority order ("cpu", "cuda", "tensorrt" or full ORT names).
    graph_optimization: "disable", "basic", "extended" or "all".
    allow_spinning: let idle ORT threads spin (faster for one busy session, harmful for many).
    parallel: parallel execution mode (inter-op) instead of sequential.
    optimized_model_path: where to save the graph after ORT's optimizations, if wanted.
    memory_arena: keep ORT's CPU memory arena and memory patterns (fast for repeated runs; they
        hold the peak of the largest run). False for one-off runs of large inputs: no arena, no
        memory patterns, and nodes run in ORT's priority-based order, which frees each tensor
        sooner than the default order when a graph has many outputs (calibration's augmented
        model of the 4.7 MB PP-OCRv4 detector, one 960x960 image: 1486 MB -> 183 MB peak).
    """

    intra_op_threads: int = 0
    inter_op_threads: int = 0
    providers: tuple[str, ...] = ("cpu",)
    graph_optimization: str = "all"
    allow_spinning: bool = False
    parallel: bool = False
    optimized_model_path: str | None = None
    extra_session_options: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    memory_arena: bool = True

    def __post_init__(self) -> None:
        if self.graph_optimization not in _GRAPH_LEVELS:
            raise UsageError(
                f"graph_optimization={self.graph_optimization!r} is not one of "
                f"{sorted(_GRAPH_LEVELS)}"
            )
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise UsageError("thread counts must be >= 0 (0 means ONNX Runtime's default)")
        if not self.providers:
            raise UsageError("providers must name at least one execution provider, e.g. ('cpu',)")


_PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}


def available_providers() -> list[str]:
    ort = require("onnxruntime", "all")
    return list(ort.get_available_providers())


def _resolve_providers(names: Sequence[str]) -> list[str]:
    ort = require("onnxruntime", "all")
    available = ort.get_available_providers()
    resolved = [_PROVIDER_ALIASES.get(n.lower(), n) for n in names]
    missing = [p for p in resolved if p not in available]
    if missing:
        raise UsageError(
            f"execution provider(s) {missing} are not available in this onnxruntime build "
            f"(available: {available}); for CUDA install onnxruntime-gpu"
        )
    return resolved


def make_session(model: ModelSource, config: SessionConfig | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for a path, serialized bytes or a ModelProto.

    Returned as ``Any``: onnxruntime ships no type information."""
    ort = require("onnxruntime", "all")
    config = config or SessionConfig()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel(
        {0: 0, 1: 1, 2: 2, 99: 99}[_GRAPH_LEVELS[config.graph_optimization]]
    )
    if config.intra_op_threads:
        so.intra_op_num_threads = config.intra_op_threads
    if config.inter_op_threads:
        so.inter_op_num_threads = config.inter_op_threads
    so.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL if config.parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    so.add_session_config_entry(
        "session.intra_op.allow_spinning", "1" if config.allow_spinning else "0"
    )
    so.add_session_config_entry(
        "session.inter_op.allow_spinning", "1" if config.allow_spinning else "0"
    )
    for k, v in config.extra_session_options:
        so.add_session_config_entry(k, v)
    if config.optimized_model_path:
        so.optimized_model_filepath = config.optimized_model_path
    if not config.memory_arena:
        so.enable_cpu_mem_arena = False
        so.enable_mem_pattern = False
        if hasattr(ort, "ExecutionOrder"):
            so.execution_order = ort.ExecutionOrder.PRIORITY_BASED
    # ORT's own log lines (coloured, many per failure) stay off the user's terminal: failures
    # reach the user through the exception's message, in modelport's reports and errors
    so.log_severity_level = 4
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif isinstance(model, os.PathLike | str):
        model = str(Path(model))
    try:
        return ort.InferenceSession(model, so, providers=_resolve_providers(config.providers))
    except UsageError:
        raise
    except Exception as exc:
        raise ModelportError(f"ONNX Runtime cannot load the model: {exc}") from exc


# ONNX Runtime's words (status FAIL, not INVALID_ARGUMENT) when an operator cannot take the
# sizes it was given: inputs whose dims the signature leaves free but the graph ties together
# (a recurrent state's batch and the input's, a text recognizer's height)
_SIZE_REFUSALS = (
    "must have shape",
    "dimensions must match",
    "mismatched dimensions",
    "broadcast",
    "cannot be reshaped",
    "Incompatible dimensions",
)


def run_session(
    session: Any,
    feed: Mapping[str, np.ndarray],
    output_names: Sequence[str] | None = None,
    run_options: Any = None,
) -> dict[str, np.ndarray]:
    """Run ``session`` and return outputs by name; ORT's argument errors become InputError.
    ``run_options``: an ``onnxruntime.RunOptions`` (e.g. arena shrinkage), or None.
    ``session`` may also be any engine's session (``runtime.load_engine``; ``run_options`` are
    ONNX Runtime's and do not apply to another engine)."""
    if not hasattr(session, "get_outputs") and hasattr(session, "output_names"):
        outputs: dict[str, np.ndarray] = session.run(feed, output_names)  # an EngineSession
        return outputs
    names = list(output_names) if output_names else [o.name for o in session.get_outputs()]
    try:
        values = session.run(names, dict(feed), run_options)
    except Exception as exc:
        msg = str(exc)
        if (
            "INVALID_ARGUMENT" in msg
            or "Invalid" in msg
            or "Unexpected input" in msg
            or any(p in msg for p in _SIZE_REFUSALS)
        ):
            raise InputError(f"the model rejected the inputs: {msg}") from exc
        raise ModelportError(f"ONNX Runtime failed while running the model: {msg}") from exc
    return dict(zip(names, values, strict=True))
