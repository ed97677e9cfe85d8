"""TorchServe's inference API on the main HTTP port.

    GET  /ping                                  {"status": "Healthy"} (500 "Unhealthy" when not ready)
    POST /predictions/{m}[/{version}]           JSON or raw .npy bytes in, JSON out

The body is a nested list (one-input models), an object of input name -> nested list, or the
bytes of a .npy file (one-input models). TorchServe sends one example per request and batches on
the server: when every input is one dimension short of the model's batched signature, the batch
axis is added here and taken off the answer again. The answer is the output as nested lists
(one-output models) or an object of output name -> nested lists. Errors are TorchServe's
``{"code": ..., "type": ..., "message": ...}``.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from starlette.routing import BaseRoute, Route

from ...errors import InputError, ModelportError
from ..contracts import InputSpecs
from ..dataplane import DataPlane
from ..errors import status_of
from ..names import check_model_name, check_version
from ..offload import off_loop, off_process
from ..types import InferenceRequest, InferenceResponse, Tensor, numpy_dtype
from .common import Receive, Scope, Send, header, infer_watching, read_body, send_bytes
from .tfserving import to_array
from .v2 import Endpoint

if TYPE_CHECKING:
    from .app import HttpSettings

__all__ = [
    "ERROR_TYPES",
    "decode_predictions",
    "encode_predictions",
    "routes",
    "send_torchserve_error",
    "torchserve_error",
]

log = logging.getLogger("modelport.serve")

_JSON = [(b"content-type", b"application/json")]
_NPY_MAGIC = b"\x93NUMPY"

# Our error's metrics label -> TorchServe's exception type name.
ERROR_TYPES = {
    "invalid_argument": "BadRequestException",
    "not_found": "ModelNotFoundException",
    "unavailable": "ServiceUnavailableException",
    "deadline_exceeded": "RequestTimeoutException",
    "too_large": "RequestEntityTooLargeException",
    "forbidden": "ForbiddenException",
    "unsupported": "MethodNotAllowedException",
    "conflict": "ConflictStatusException",
    "internal": "InternalServerException",
}


def torchserve_error(exc: BaseException) -> tuple[int, bytes]:
    """(HTTP status, TorchServe error body) for an exception."""
    row = status_of(exc)
    message = exc.message if isinstance(exc, ModelportError) else f"internal error: {exc}"
    body = {"code": row.http, "type": ERROR_TYPES.get(row.label, "InternalServerException")}
    body["message"] = message
    return row.http, orjson.dumps(body)


async def send_torchserve_error(send: Send, exc: BaseException) -> None:
    status, body = torchserve_error(exc)
    if status >= 500:
        log.warning("TorchServe API: %s %s", status, body.decode(errors="replace"))
    await send_bytes(send, status, body, _JSON)


def _parse(body: bytes, content_type: bytes | None) -> Any:
    """The request body as a JSON value or a numpy array (.npy)."""
    if body.startswith(_NPY_MAGIC):
        return _load_npy(body)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        kind = (content_type or b"").decode("latin-1") or "no content type"
        raise InputError(
            f"send the inputs as JSON (a nested list, or an object of input name -> nested list) "
            f"or as the bytes of a .npy file; this body ({kind}) is neither"
        ) from None


def _load_npy(body: bytes | bytearray) -> np.ndarray:
    """A .npy body as an array, its declared shape checked against its length first (numpy
    would allocate the declared shape before reading)."""
    f = io.BytesIO(body)
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, SyntaxError, TypeError) as exc:
        raise InputError(f"the body looks like .npy but its header cannot be read: {exc}") from None
    if dtype.hasobject:
        raise InputError(".npy bodies with Python objects (pickles) are not accepted")
    count = 1
    for d in shape:
        count *= int(d)
    data = len(body) - f.tell()
    if count * dtype.itemsize != data:
        raise InputError(
            f"the .npy header declares shape {list(shape)} of {dtype} ({count * dtype.itemsize} "
            f"bytes) but the body holds {data} bytes of data"
        )
    arr = np.frombuffer(body, dtype=dtype, count=count, offset=f.tell())
    return arr.reshape(shape, order="F" if fortran else "C")


def decode_predictions_body(
    specs: InputSpecs, name: str, version: str | None, body: bytes, content_type: bytes | None
) -> tuple[InferenceRequest, bool]:
    """``decode_predictions`` from the raw body and the model's input specs (picklable)."""
    raw = _raw_file(specs, body)
    value = raw if raw is not None else _parse(body, content_type)
    return _decode_predictions(specs, name, version, value)


def _raw_file(specs: InputSpecs, body: bytes) -> Any:
    """The body itself as one example, for a model whose only input is BYTES (an image file or
    a text, as TorchServe's handlers take them: ``curl -T digit.png .../predictions/m``); None
    when the body is JSON or .npy, or the model takes tensors."""
    if len(specs) != 1 or body.startswith(_NPY_MAGIC):
        return None
    ((datatype, _),) = specs.values()
    if datatype != "BYTES" or body.lstrip()[:1] in (b"{", b"[", b'"'):
        return None
    one = np.empty((), dtype=object)
    one[()] = body
    return one


def decode_predictions(
    plane: DataPlane, name: str, version: str | None, value: Any
) -> tuple[InferenceRequest, bool]:
    """(the request, whether a batch axis was added because the body was one example)."""
    specs = plane.served_model(name, version).input_specs
    return _decode_predictions(specs, name, version, value)


def _decode_predictions(
    specs: InputSpecs, name: str, version: str | None, value: Any
) -> tuple[InferenceRequest, bool]:
    if isinstance(value, dict):
        values = value
    elif len(specs) == 1:
        values = {next(iter(specs)): value}
    else:
        raise InputError(
            f"model '{name}' has {len(specs)} inputs {list(specs)}; send an object of input "
            "name -> nested list"
        )
    arrays = {}
    for n, v in values.items():
        spec = specs.get(n)
        if spec is None:
            raise InputError(
                f"model '{name}' has no input named '{n}'; its inputs are {list(specs)}", input=n
            )
        if isinstance(v, np.ndarray):  # from .npy
            try:
                arrays[n] = v.astype(object if spec[0] == "BYTES" else numpy_dtype(spec[0]))
            except (ValueError, TypeError) as exc:
                raise InputError(f"input '{n}' cannot be cast to {spec[0]}: {exc}") from None
        else:
            arrays[n] = to_array(v, spec[0], n)
    one_example = len(arrays) == len(specs) and all(
        len(specs[n][1]) == a.ndim + 1 and specs[n][1][0] == -1 for n, a in arrays.items()
    )
    if one_example:
        arrays = {n: a[np.newaxis] for n, a in arrays.items()}
    tensors = [Tensor(n, specs[n][0], list(a.shape), a) for n, a in arrays.items()]
    return InferenceRequest(name, tensors, version), one_example


def _json(arr: np.ndarray) -> Any:
    if arr.dtype.kind in "OSU":
        flat = [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in arr.flat]
        return np.array(flat, dtype=object).reshape(arr.shape).tolist()
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    if arr.ndim == 0:  # one example's scalar output (a score): a JSON number, not [x]
        return arr.item()
    return np.ascontiguousarray(arr)


def encode_predictions(response: InferenceResponse, one_example: bool) -> bytes:
    outs = {
        t.name: (t.data[0:1].reshape(t.data.shape[1:]) if one_example and t.data.ndim else t.data)
        for t in response.outputs
    }
    if len(outs) == 1:
        data: Any = _json(next(iter(outs.values())))
    else:
        data = {n: _json(a) for n, a in outs.items()}
    return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)


def routes(plane: DataPlane, settings: HttpSettings) -> list[BaseRoute]:
    """The TorchServe inference routes; ``settings`` carries ``max_request_bytes``."""
    limit = settings.max_request_bytes

    async def ping(scope: Scope, receive: Receive, send: Send) -> None:
        ok = plane.ready()
        body = orjson.dumps({"status": "Healthy" if ok else "Unhealthy"})
        await send_bytes(send, 200 if ok else 500, body, _JSON)

    async def predictions(scope: Scope, receive: Receive, send: Send) -> None:
        p = scope["path_params"]
        name = check_model_name(p["name"])
        version = p.get("version")
        version = str(check_version(version)) if version else None
        # the model first: a request for one that is not served is a 404 whatever its body
        plane.resolve(name, version)
        body = await read_body(scope, receive, limit)
        content_type = header(scope, b"content-type")
        specs = dict(plane.served_model(name, version).input_specs)  # the one serving now
        decode = off_loop if body.startswith(_NPY_MAGIC) else off_process  # .npy: no parsing
        request, one_example = await decode(
            len(body), decode_predictions_body, specs, name, version, body, content_type
        )
        rid = header(scope, b"x-request-id")
        request.id = rid.decode("latin-1") if rid else None
        response = await infer_watching(plane, request, receive)
        await send_bytes(send, 200, encode_predictions(response, one_example), _JSON)

    endpoint = Endpoint(predictions, send_torchserve_error)
    return [
        Route("/ping", Endpoint(ping, send_torchserve_error), methods=["GET"]),
        Route("/predictions/{name}", endpoint, methods=["POST", "PUT"]),
        Route("/predictions/{name}/{version}", endpoint, methods=["POST", "PUT"]),
    ]
