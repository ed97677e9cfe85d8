"""``inference.ModelInferRequest`` / ``ModelInferResponse`` <-> the internal types.

Inputs come as ``raw_input_contents`` (what tritonclient sends; read as numpy views, no copy) or
as typed ``contents``. Outputs always go back as ``raw_output_contents``, as Triton does.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...errors import InputError
from ..http.codec import decode_bytes_tensor, encode_bytes_tensor
from ..types import InferenceRequest, InferenceResponse, RequestedOutput, Tensor, numpy_dtype
from .generated import grpc_service_pb2 as pb

__all__ = ["params_from_pb", "request_to_internal", "response_from_internal"]

# V2 datatype -> the typed InferTensorContents field that carries it.
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def params_from_pb(params: Any) -> dict[str, Any]:
    """A protobuf ``map<string, InferParameter>`` as a plain dict."""
    out = {}
    for key, p in params.items():
        which = p.WhichOneof("parameter_choice")
        out[key] = getattr(p, which) if which else None
    return out


def _shape(t: Any) -> list[int]:
    shape = list(t.shape)
    if any(d < 0 for d in shape):
        raise InputError(f"input '{t.name}' has a negative dimension in its shape {shape}")
    return shape


def request_to_internal(req: Any, raw: Any = None) -> InferenceRequest:
    """Decode a ModelInferRequest; InputError for anything malformed. ``raw``: its
    raw_input_contents when they were taken out of the message (views, not copies)."""
    if raw is None:
        raw = req.raw_input_contents
    if raw and len(raw) != len(req.inputs):
        raise InputError(
            f"the request has {len(req.inputs)} inputs but {len(raw)} raw_input_contents; "
            "send all inputs raw or none"
        )
    tensors = []
    for i, t in enumerate(req.inputs):
        dtype = numpy_dtype(t.datatype)
        shape = _shape(t)
        count = math.prod(shape)
        if raw:
            chunk = raw[i]
            if t.datatype == "BYTES":
                arr = decode_bytes_tensor(chunk, t.name)
            else:
                if len(chunk) != count * dtype.itemsize:
                    raise InputError(
                        f"input '{t.name}' has {len(chunk)} raw bytes; shape {shape} of "
                        f"{t.datatype} needs {count * dtype.itemsize}",
                        input=t.name,
                    )
                arr = np.frombuffer(chunk, dtype=dtype.newbyteorder("<"))
        else:
            field = CONTENTS_FIELD.get(t.datatype)
            if field is None:
                raise InputError(
                    f"input '{t.name}': {t.datatype} must be sent in raw_input_contents"
                )
            values = getattr(t.contents, field)
            if t.datatype == "BYTES":
                arr = np.empty(len(values), dtype=object)
                arr[:] = list(values)
            else:
                try:
                    arr = np.asarray(values, dtype=dtype)
                except (ValueError, OverflowError) as exc:
                    raise InputError(f"input '{t.name}': {exc}", input=t.name) from None
        if arr.size != count:
            where = ""
            if not raw:  # values in another contents field than this datatype's
                field = CONTENTS_FIELD.get(t.datatype, "")
                used = [f.name for f, _ in t.contents.ListFields() if f.name != field]
                if used:
                    where = f" in {field} ({t.datatype} values go there; the request filled {used})"
            raise InputError(
                f"input '{t.name}' has {arr.size} elements{where} but shape {shape} needs {count}",
                input=t.name,
            )
        tensors.append(Tensor(t.name, t.datatype, shape, arr.reshape(shape)))
    outputs = None
    if req.outputs:
        outputs = [RequestedOutput(o.name, params_from_pb(o.parameters)) for o in req.outputs]
    return InferenceRequest(
        req.model_name,
        tensors,
        req.model_version or None,
        req.id or None,
        outputs,
        params_from_pb(req.parameters) if req.parameters else {},
    )


def response_from_internal(resp: InferenceResponse) -> Any:
    """A ModelInferResponse with every output in raw_output_contents."""
    out = pb.ModelInferResponse(
        model_name=resp.model_name, model_version=resp.model_version, id=resp.id or ""
    )
    raws = []
    for t in resp.outputs:
        o = out.outputs.add()
        o.name = t.name
        o.datatype = t.datatype
        o.shape.extend(t.shape)
        arr = t.data
        if arr.dtype.kind in "OSU":
            raws.append(encode_bytes_tensor(arr))
        else:
            raws.append(np.ascontiguousarray(arr).tobytes())
    out.raw_output_contents.extend(raws)
    return out
