"""The one internal language between the protocol adapters and the data plane.

HTTP and gRPC adapters translate their wire formats to ``InferenceRequest`` and back from
``InferenceResponse``; nothing else crosses the boundary. Tensors hold numpy arrays; BYTES tensors
are numpy object arrays of ``bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..signature import V2_DATATYPES

__all__ = [
    "DATATYPES",
    "InferenceRequest",
    "InferenceResponse",
    "RequestedOutput",
    "Tensor",
    "datatype_of",
    "numpy_dtype",
    "v2_datatype",
]

# KServe V2 datatype -> numpy dtype (BYTES -> object). BF16 has no ONNX Runtime mapping.
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}

# modelport signature dtype names (numpy names, "str" for ONNX STRING) -> V2 datatype.
_SIGNATURE_TO_V2: dict[str, str] = {**V2_DATATYPES, "object": "BYTES"}
_KIND_TO_V2 = {"O": "BYTES", "S": "BYTES", "U": "BYTES"}


def numpy_dtype(datatype: str) -> np.dtype:
    """The numpy dtype for a V2 datatype name; InputError for unknown or unsupported names."""
    try:
        return DATATYPES[datatype]
    except KeyError:
        hint = " (BF16 has no ONNX Runtime type; send FP32 or FP16)" if datatype == "BF16" else ""
        raise InputError(
            f"unsupported datatype '{datatype}'{hint}; use one of {sorted(DATATYPES)}",
            got=datatype,
        ) from None


def json_numbers(data: Any, dtype: np.dtype) -> np.ndarray:
    """JSON numbers (nested lists) as an array of ``dtype``; ValueError, TypeError or
    OverflowError when they cannot be one, as Triton's JSON parser refuses them: a string
    ("NaN", "16000") or true/false for a number, a non-integral value (16000.5 for an INT64
    sample rate) or one out of range for an integer (never truncated or wrapped)."""
    if dtype.kind == "b":
        return np.asarray(data, dtype=dtype)
    probe = np.asarray(data)  # parsed once; then only a vectorized cast
    kind = probe.dtype.kind
    if kind == "b" or (kind not in "iuf" and probe.size):
        first = probe.flat[0]
        what = "true/false" if kind == "b" else repr(first.item() if kind in "US" else first)
        if kind == "O" and isinstance(first, int) and not isinstance(first, bool):
            raise OverflowError(f"{first} is out of range for {dtype}")
        raise ValueError(f"{what} is not a number")
    if dtype.kind in "iu" and probe.size:
        if kind == "f":
            bad = probe[probe != np.trunc(probe)]  # NaN and inf too
            if bad.size:
                raise ValueError(f"{bad.flat[0].item()!r} is not an integer")
        info = np.iinfo(dtype)
        low, high = probe.min(), probe.max()
        if low < info.min or high > info.max:
            worst = (low if low < info.min else high).item()
            raise OverflowError(f"{worst} is out of range for {dtype}")
    return probe.astype(dtype)


def v2_datatype(signature_dtype: str) -> str:
    """The V2 datatype for a modelport signature dtype name ("float32" -> "FP32")."""
    return _SIGNATURE_TO_V2[signature_dtype]


def datatype_of(array: np.ndarray) -> str:
    """The V2 datatype of a numpy array."""
    kind = array.dtype.kind
    if kind in _KIND_TO_V2:
        return "BYTES"
    return _SIGNATURE_TO_V2[array.dtype.name]


@dataclass(slots=True)
class Tensor:
    """A named tensor: V2 ``datatype``, ``shape`` and the data as a numpy array of that shape."""

    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RequestedOutput:
    """An output the client asked for, with its protocol parameters (e.g. ``binary_data``)."""

    name: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferenceRequest:
    """An inference request: the model, its version ("" or None = the default), the inputs and
    the outputs wanted (None = all outputs)."""

    model_name: str
    inputs: list[Tensor]
    model_version: str | None = None
    id: str | None = None
    outputs: list[RequestedOutput] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferenceResponse:
    """The answer: the model and version that served it and the output tensors."""

    model_name: str
    model_version: str
    outputs: list[Tensor]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
