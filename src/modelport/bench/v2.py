"""The KServe V2 / Open Inference Protocol on the wire, as the load generator needs it.

Requests are encoded once, before the load starts (the load generator only sends bytes):
JSON bodies, Triton's binary tensor extension (JSON header, then raw little-endian tensors;
``Inference-Header-Content-Length`` gives the header's length), and gRPC ``ModelInferRequest``
messages built with tritonclient's generated ``service_pb2`` (``raw_input_contents``).
This module is independent of modelport's own server: it is a client of any V2 server.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import UsageError
from ..signature import V2_DATATYPES, Signature, TensorSpec

__all__ = [
    "DTYPE_TO_V2",
    "V2_TO_DTYPE",
    "decode_http_response",
    "encode_binary",
    "encode_grpc",
    "encode_json",
    "signature_from_metadata",
]

DTYPE_TO_V2 = dict(V2_DATATYPES)
V2_TO_DTYPE = {v: k for k, v in DTYPE_TO_V2.items()}


def _v2_type(arr: np.ndarray) -> str:
    name = "str" if arr.dtype.kind in "OUS" else arr.dtype.name
    try:
        return DTYPE_TO_V2[name]
    except KeyError:
        raise UsageError(
            f"numpy dtype {name} has no KServe V2 datatype (supported: {sorted(DTYPE_TO_V2)})"
        ) from None


def _raw(arr: np.ndarray) -> bytes:
    """Little-endian row-major bytes; BYTES elements are a 4-byte length then the bytes."""
    if arr.dtype.kind in "OUS":
        parts = []
        for item in arr.reshape(-1):
            b = item if isinstance(item, bytes) else str(item).encode()
            parts.append(struct.pack("<I", len(b)) + b)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def _json_data(arr: np.ndarray) -> list[Any]:
    flat = arr.reshape(-1)
    if arr.dtype.kind in "OUS":
        return [x.decode() if isinstance(x, bytes) else str(x) for x in flat]
    return flat.tolist()


def encode_json(feed: Mapping[str, np.ndarray]) -> bytes:
    """A V2 JSON request body with every input's data inline."""
    inputs = [
        {"name": n, "shape": list(a.shape), "datatype": _v2_type(a), "data": _json_data(a)}
        for n, a in feed.items()
    ]
    return json.dumps({"inputs": inputs}, separators=(",", ":")).encode()


def encode_binary(feed: Mapping[str, np.ndarray]) -> tuple[bytes, int]:
    """(body, JSON header length) for the binary tensor extension; outputs asked in binary too."""
    raws = [_raw(np.asarray(a)) for a in feed.values()]
    inputs = [
        {
            "name": n,
            "shape": list(a.shape),
            "datatype": _v2_type(a),
            "parameters": {"binary_data_size": len(r)},
        }  # fmt: skip
        for (n, a), r in zip(feed.items(), raws, strict=True)
    ]
    header = json.dumps(
        {"inputs": inputs, "parameters": {"binary_data_output": True}}, separators=(",", ":")
    ).encode()
    return header + b"".join(raws), len(header)


def encode_grpc(feed: Mapping[str, np.ndarray], model: str, version: str | None = None) -> Any:
    """A ``ModelInferRequest`` with ``raw_input_contents`` (what tritonclient sends)."""
    from tritonclient.grpc import service_pb2

    req = service_pb2.ModelInferRequest(model_name=model, model_version=version or "")
    for name, arr in feed.items():
        t = req.inputs.add()
        t.name, t.datatype = name, _v2_type(arr)
        t.shape.extend(arr.shape)
        req.raw_input_contents.append(_raw(arr))
    return req


def decode_http_response(body: bytes, header_length: int | None) -> list[dict[str, Any]]:
    """The outputs' names, datatypes and shapes from a V2 HTTP response (JSON or binary)."""
    head = body[:header_length] if header_length else body
    doc = json.loads(head)
    return [
        {"name": o.get("name"), "datatype": o.get("datatype"), "shape": o.get("shape")}
        for o in doc.get("outputs", [])
    ]


def signature_from_metadata(meta: Mapping[str, Any]) -> Signature:
    """A Signature from V2 model metadata; -1 on the first axis becomes ``batch``, elsewhere
    ``dim_<input>_<axis>`` (the names modelport gives unnamed ONNX dims)."""

    def spec(t: Mapping[str, Any]) -> TensorSpec:
        dt = V2_TO_DTYPE.get(str(t.get("datatype")))
        if dt is None:
            raise UsageError(
                f"the server's metadata gives input '{t.get('name')}' the datatype "
                f"{t.get('datatype')!r}, which the load generator cannot produce; "
                "give the inputs with --data"
            )
        shape = tuple(
            ("batch" if i == 0 else f"dim_{t['name']}_{i}") if int(d) < 0 else int(d)
            for i, d in enumerate(t.get("shape", []))
        )
        return TensorSpec(str(t["name"]), dt, shape)

    try:
        return Signature(
            tuple(spec(t) for t in meta.get("inputs", [])),
            tuple(spec(t) for t in meta.get("outputs", [])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"cannot read the server's model metadata {dict(meta)}: {exc}") from exc
