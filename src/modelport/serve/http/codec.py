"""KServe V2 JSON and Triton's binary tensor data extension <-> the internal types.

A request body is JSON, optionally followed by binary tensors; ``Inference-Header-Content-Length``
gives the JSON's length. Binary tensors are little-endian, row-major; BYTES elements are each a
4-byte little-endian length and the bytes. JSON tensor data is decoded straight into numpy by
orjson + ``np.asarray`` (no per-element Python loop except for BYTES); binary tensors are views on
the request body (no copy).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson

from ...errors import InputError
from ..types import (
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
    json_numbers,
    numpy_dtype,
)

__all__ = [
    "decode_request",
    "encode_bytes_tensor",
    "encode_response",
    "decode_bytes_tensor",
    "encode_request",
    "decode_response",
]

_NUMPY_OPT = orjson.OPT_SERIALIZE_NUMPY
_ORJSON_NUMPY_KINDS = "biuf"  # what orjson serializes natively (float16 excepted)


def _malformed(message: str) -> InputError:
    return InputError(f"malformed inference request: {message}")


def decode_request(
    body: bytes | bytearray | memoryview,
    header_length: int | None,
    model_name: str,
    model_version: str | None,
) -> InferenceRequest:
    """Parse a V2 infer body (JSON, or JSON + binary tensors) into an InferenceRequest."""
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise _malformed(
                f"Inference-Header-Content-Length is {header_length} but the body has "
                f"{len(body)} bytes"
            )
        view = memoryview(body)
        head: bytes | bytearray | memoryview = view[:header_length]
        binary: memoryview | None = view[header_length:]
    else:
        head, binary = body, None
    try:
        doc = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        hint = (
            "; binary tensors need the Inference-Header-Content-Length header"
            if header_length is None
            else ""
        )
        raise _malformed(f"the JSON does not parse ({exc}){hint}") from None
    if not isinstance(doc, dict):
        raise _malformed("the JSON must be an object with an 'inputs' list")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _malformed("'inputs' must be a non-empty list of tensors")
    offset = 0
    tensors = []
    for i, t in enumerate(inputs):
        tensor, used = _decode_input(t, i, binary, offset)
        tensors.append(tensor)
        offset += used
    if binary is not None and offset != len(binary):
        raise _malformed(
            f"{len(binary) - offset} bytes of binary data after the last binary tensor; "
            "check binary_data_size and Inference-Header-Content-Length"
        )
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise _malformed("'parameters' must be an object")
    outputs = doc.get("outputs")
    requested = None
    if outputs is not None:
        if not isinstance(outputs, list):
            raise _malformed("'outputs' must be a list of {\"name\": ...}")
        requested = []
        for o in outputs:
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise _malformed("each requested output needs a string 'name'")
            p = o.get("parameters") or {}
            if not isinstance(p, dict):
                raise _malformed(f"parameters of output '{o['name']}' must be an object")
            requested.append(RequestedOutput(o["name"], p))
    rid = doc.get("id")
    return InferenceRequest(
        model_name,
        tensors,
        model_version,
        str(rid) if rid is not None else None,
        requested,
        params,
    )


def _decode_input(t: Any, index: int, binary: memoryview | None, offset: int) -> tuple[Tensor, int]:
    if not isinstance(t, dict):
        raise _malformed(f"input #{index} must be an object with name, shape, datatype, data")
    name, datatype, shape = t.get("name"), t.get("datatype"), t.get("shape")
    if not isinstance(name, str):
        raise _malformed(f"input #{index} has no string 'name'")
    if not isinstance(datatype, str):
        raise _malformed(f"input '{name}' has no string 'datatype'")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise _malformed(f"input '{name}' needs 'shape', a list of non-negative integers")
    dtype = numpy_dtype(datatype)
    count = math.prod(shape)
    params = t.get("parameters") or {}
    if not isinstance(params, dict):
        raise _malformed(f"parameters of input '{name}' must be an object")
    size = params.get("binary_data_size")
    if size is not None:
        if binary is None:
            raise _malformed(
                f"input '{name}' has binary_data_size but the request has no "
                "Inference-Header-Content-Length header"
            )
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _malformed(f"binary_data_size of input '{name}' must be a non-negative integer")
        if offset + size > len(binary):
            raise _malformed(
                f"input '{name}' has binary_data_size {size} but only {len(binary) - offset} "
                "bytes of binary data are left"
            )
        chunk = binary[offset : offset + size]
        if datatype == "BYTES":
            arr = decode_bytes_tensor(chunk, name)
            if arr.size != count:
                raise _malformed(
                    f"input '{name}' has {arr.size} BYTES elements for shape {shape} ({count})"
                )
            return Tensor(name, datatype, shape, arr.reshape(shape)), size
        if size != count * dtype.itemsize:
            raise _malformed(
                f"input '{name}' has {size} bytes of binary data; shape {shape} of {datatype} "
                f"needs {count * dtype.itemsize}"
            )
        arr = np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).reshape(shape)
        return Tensor(name, datatype, shape, arr), size
    if "data" not in t:
        raise _malformed(f"input '{name}' has neither 'data' nor a binary_data_size parameter")
    data = t["data"]
    try:
        if datatype == "BYTES":
            arr = _bytes_from_json(data, name)
        else:
            arr = json_numbers(data, dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(
            f"input '{name}': the data cannot be read as {datatype} ({exc})", input=name
        ) from None
    if arr.size != count:
        raise InputError(
            f"input '{name}' has {arr.size} values but shape {shape} needs {count}",
            input=name,
            expected=shape,
        )
    return Tensor(name, datatype, shape, arr.reshape(shape)), 0


def _bytes_from_json(data: Any, name: str) -> np.ndarray:
    flat: list[Any] = []
    stack = [data] if not isinstance(data, list) else list(reversed(data))
    while stack:
        x = stack.pop()
        if isinstance(x, list):
            stack.extend(reversed(x))
        elif isinstance(x, str):
            flat.append(x)
        else:
            raise TypeError(f"BYTES elements must be strings, got {type(x).__name__}")
    arr = np.empty(len(flat), dtype=object)
    arr[:] = flat
    return arr


def decode_bytes_tensor(chunk: bytes | memoryview, name: str = "") -> np.ndarray:
    """Length-prefixed BYTES elements -> a flat numpy object array of bytes."""
    mv = memoryview(chunk)
    n = len(mv)
    out = []
    i = 0
    unpack = struct.Struct("<I").unpack_from
    while i < n:
        if i + 4 > n:
            raise _malformed(f"BYTES tensor '{name}' ends inside an element's 4-byte length")
        (length,) = unpack(mv, i)
        i += 4
        if i + length > n:
            raise _malformed(
                f"BYTES tensor '{name}' has an element of {length} bytes past the end of its data"
            )
        out.append(bytes(mv[i : i + length]))
        i += length
    arr = np.empty(len(out), dtype=object)
    arr[:] = out
    return arr


def encode_bytes_tensor(arr: np.ndarray) -> bytes:
    """A BYTES tensor (str or bytes elements) as length-prefixed elements."""
    parts = []
    pack = struct.Struct("<I").pack
    for x in arr.ravel():
        b = x if isinstance(x, bytes) else str(x).encode("utf-8")
        parts.append(pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def _json_data(arr: np.ndarray) -> Any:
    kind = arr.dtype.kind
    if kind in "OSU":
        return [
            x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in arr.ravel()
        ]
    if arr.dtype == np.float16:
        return arr.astype(np.float32).ravel()
    if kind in _ORJSON_NUMPY_KINDS:
        return np.ascontiguousarray(arr).ravel()
    return arr.ravel().tolist()


def _binary_data(arr: np.ndarray) -> bytes | memoryview:
    """The tensor's wire bytes: a view on the array when it is contiguous (no copy)."""
    if arr.dtype.kind in "OSU":
        return encode_bytes_tensor(arr)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    arr = np.ascontiguousarray(arr)
    return arr.reshape(-1).data.cast("B") if arr.size else b""


def encode_response(
    response: InferenceResponse, request: InferenceRequest
) -> tuple[bytes, int | None, str]:
    """(body, JSON header length or None, content type) for a V2 infer response.

    An output is sent binary when its requested output says ``binary_data: true``, or when the
    request's ``binary_data_output`` is true and the output does not say otherwise.
    """
    default_binary = bool(request.parameters.get("binary_data_output", False))
    per_output = {o.name: o.parameters for o in request.outputs} if request.outputs else {}
    outputs = []
    chunks: list[bytes | memoryview] = []
    for t in response.outputs:
        p = per_output.get(t.name)
        binary = p.get("binary_data", default_binary) if p else default_binary
        entry: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": t.shape}
        if binary:
            raw = _binary_data(t.data)
            chunks.append(raw)
            entry["parameters"] = {"binary_data_size": len(raw)}
        else:
            entry["data"] = _json_data(t.data)
        outputs.append(entry)
    doc: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
    }
    if response.id is not None:
        doc["id"] = response.id
    if response.parameters:
        doc["parameters"] = response.parameters
    doc["outputs"] = outputs
    head = orjson.dumps(doc, option=_NUMPY_OPT)
    if not chunks:
        return head, None, "application/json"
    return b"".join([head, *chunks]), len(head), "application/octet-stream"


# --- the client side (used by tests and the benchmark) --------------------------------------


def encode_request(
    inputs: dict[str, np.ndarray], binary: bool = True, binary_outputs: bool = True
) -> tuple[bytes, dict[str, str]]:
    """A V2 infer body and its headers for numpy ``inputs`` (binary or JSON tensors)."""
    from ..types import datatype_of

    entries = []
    chunks = []
    for name, arr in inputs.items():
        arr = np.asarray(arr)
        e: dict[str, Any] = {"name": name, "shape": list(arr.shape), "datatype": datatype_of(arr)}
        if binary:
            raw = _binary_data(arr)
            chunks.append(raw)
            e["parameters"] = {"binary_data_size": len(raw)}
        else:
            e["data"] = _json_data(arr)
        entries.append(e)
    doc = {"inputs": entries, "parameters": {"binary_data_output": binary_outputs}}
    head = orjson.dumps(doc, option=_NUMPY_OPT)
    if not chunks:
        return head, {"content-type": "application/json"}
    return b"".join([head, *chunks]), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(head)),
    }


def decode_response(body: bytes, header_length: int | None) -> dict[str, np.ndarray]:
    """Outputs by name from a V2 infer response body."""
    head = body[:header_length] if header_length is not None else body
    doc = orjson.loads(head)
    offset = header_length or 0
    out = {}
    for o in doc["outputs"]:
        dtype = numpy_dtype(o["datatype"])
        size = (o.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            chunk = body[offset : offset + size]
            offset += size
            if o["datatype"] == "BYTES":
                arr = decode_bytes_tensor(chunk)
            else:
                arr = np.frombuffer(chunk, dtype=dtype)
        else:
            arr = np.asarray(o["data"], dtype=dtype)
        out[o["name"]] = arr.reshape(o["shape"])
    return out
