"""TensorFlow Serving's REST API on the main HTTP port (also KServe V1's ``:predict``).

    GET  /v1/models/{m}[/versions/{v} | /labels/{l}]             model status
    GET  /v1/models/{m}[/versions/{v} | /labels/{l}]/metadata    signature_def of our signature
    POST /v1/models/{m}[/versions/{v} | /labels/{l}]:predict     row ("instances") or columnar
                                                                 ("inputs") format
    GET  /v1/models                                              names served (KServe V1)

Errors are ``{"error": "..."}`` with TF Serving's HTTP statuses (its http_server.cc table, keyed
here by the gRPC code of our error). The pieces shared with the TF Serving gRPC API (statuses,
signature_def, dtype names) are functions here that return plain dicts.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from starlette.routing import BaseRoute, Route

from ...errors import InputError, ModelportError
from ..contracts import InputSpecs, serving
from ..dataplane import DataPlane
from ..errors import UnsupportedError, status_of
from ..names import check_model_name, check_version, version_for_label
from ..offload import off_process
from ..repository import FAILED, LOADING, READY, UNLOADING
from ..types import InferenceRequest, InferenceResponse, Tensor, json_numbers, numpy_dtype
from .common import Receive, Scope, Send, infer_watching, read_body, send_bytes, send_json
from .v2 import Endpoint

if TYPE_CHECKING:
    from .app import HttpSettings

__all__ = [
    "SIGNATURE_NAME",
    "TF_DTYPES",
    "TFS_HTTP_STATUS",
    "check_signature_name",
    "decode_classify",
    "decode_classify_doc",
    "decode_predict",
    "encode_predict",
    "model_status",
    "resolve_version",
    "routes",
    "send_tfs_error",
    "signature_def_map",
    "to_array",
]

log = logging.getLogger("modelport.serve")

SIGNATURE_NAME = "serving_default"
MAX_NESTING = 32  # numpy allows 64 dimensions; no model input has more than a handful
PREDICT_METHOD = "tensorflow/serving/predict"

# V2 datatype -> TensorFlow DataType enum name.
TF_DTYPES = {
    "FP32": "DT_FLOAT",
    "FP64": "DT_DOUBLE",
    "FP16": "DT_HALF",
    "INT8": "DT_INT8",
    "INT16": "DT_INT16",
    "INT32": "DT_INT32",
    "INT64": "DT_INT64",
    "UINT8": "DT_UINT8",
    "UINT16": "DT_UINT16",
    "UINT32": "DT_UINT32",
    "UINT64": "DT_UINT64",
    "BOOL": "DT_BOOL",
    "BYTES": "DT_STRING",
}

# gRPC code of an error -> the HTTP status TF Serving answers it with (model_servers/http_server.cc).
TFS_HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}

# Our version states -> TF Serving's ModelVersionStatus.State names.
_STATE = {READY: "AVAILABLE", LOADING: "LOADING", UNLOADING: "UNLOADING", FAILED: "END"}


# --- shared with the gRPC API --------------------------------------------------------------


def resolve_version(plane: DataPlane, name: str, version: Any, label: str | None) -> str | None:
    """The version string a request means: an explicit version, a label's version, or None (the
    default). Names, versions and labels are validated here."""
    check_model_name(name)
    if label:
        if version not in (None, ""):
            raise InputError("give a model version or a version label, not both")
        return version_for_label(plane.repository, name, label)
    if version in (None, ""):
        return None
    return str(check_version(version))


def model_status(plane: DataPlane, name: str, version: str | None) -> list[dict[str, Any]]:
    """TF Serving ``model_version_status`` rows: every version of the model, or one."""
    entry = plane.repository.entry(name)
    if version is not None:
        vs = entry.versions.get(int(version))
        if vs is None:
            from ..errors import ModelNotFoundError

            raise ModelNotFoundError(
                f"model '{name}' has no version {version}; versions: {sorted(entry.versions)}",
                model=name,
            )
        states = [vs]
    else:
        states = [entry.versions[v] for v in sorted(entry.versions, reverse=True)]
    if not states:
        from ..errors import ModelNotReadyError

        raise ModelNotReadyError(
            f"model '{name}' has no versions loaded"
            + (f" ({entry.reason})" if entry.reason else "; it was unloaded"),
            model=name,
        )
    rows = []
    for vs in states:
        failed = vs.state == FAILED
        rows.append(
            {
                "version": vs.version_str,
                "state": _STATE.get(vs.state, "UNKNOWN"),
                "status": {
                    "error_code": "UNKNOWN" if failed else "OK",
                    "error_message": vs.reason if failed else "",
                },
            }
        )
    return rows


def _tensor_info(name: str, datatype: str, shape: Sequence[int | str]) -> dict[str, Any]:
    return {
        "dtype": TF_DTYPES[datatype],
        "tensor_shape": {
            "dim": [
                {"size": str(d), "name": ""} if isinstance(d, int) else {"size": "-1", "name": d}
                for d in shape
            ],
            "unknown_rank": False,
        },
        "name": name,
    }


def signature_def_map(
    plane: DataPlane, name: str, version: str | None
) -> tuple[str, dict[str, Any]]:
    """(the version that answered, a SignatureDefMap in its JSON form) for the model."""
    vs = plane.repository.get(name, version)
    model, _ = serving(vs)
    sig = model.signature
    signature = {
        "inputs": {
            t.name: _tensor_info(t.name, model.input_specs[t.name][0], t.shape) for t in sig.inputs
        },
        "outputs": {
            t.name: _tensor_info(t.name, model.output_types[t.name], t.shape) for t in sig.outputs
        },
        "method_name": PREDICT_METHOD,
    }
    return vs.version_str, {"signature_def": {SIGNATURE_NAME: signature}}


def check_signature_name(signature_name: Any) -> None:
    if signature_name not in (None, "", SIGNATURE_NAME):
        raise InputError(
            f"Serving signature name: {signature_name!r} not found in signature def; the only "
            f"signature is {SIGNATURE_NAME!r}"
        )


# --- predict: JSON <-> the internal types ---------------------------------------------------


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _bytes_leaf(value: Any, name: str) -> bytes:
    if _is_b64(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (ValueError, TypeError):
            raise InputError(f"input '{name}': the b64 value is not valid base64") from None
    if isinstance(value, str):
        return value.encode("utf-8")
    raise InputError(f"input '{name}' is a string input; give strings or {{\"b64\": ...}} values")


def _bytes_array(value: Any, name: str) -> np.ndarray:
    """Nested lists of strings / {"b64": ...} as a numpy object array of bytes."""
    shape = []
    probe = value
    while isinstance(probe, list):
        shape.append(len(probe))
        if len(shape) > MAX_NESTING:
            raise InputError(
                f"input '{name}' is nested more than {MAX_NESTING} lists deep; tensors have at "
                f"most {MAX_NESTING} dimensions"
            )
        if not probe:
            break
        probe = probe[0]
    flat: list[bytes] = []

    def walk(v: Any, depth: int) -> None:
        if depth == len(shape):
            flat.append(_bytes_leaf(v, name))
            return
        if not isinstance(v, list) or len(v) != shape[depth]:
            raise InputError(f"input '{name}' is ragged: every row must have the same length")
        for x in v:
            walk(x, depth + 1)

    walk(value, 0)
    arr = np.empty(len(flat), dtype=object)
    arr[:] = flat
    return arr.reshape(shape)


def to_array(value: Any, datatype: str, name: str) -> np.ndarray:
    """A JSON value as a numpy array of ``datatype`` (InputError when it cannot be one)."""
    if datatype == "BYTES":
        return _bytes_array(value, name)
    try:
        return json_numbers(value, numpy_dtype(datatype))
    except (ValueError, TypeError, OverflowError) as exc:
        hint = ' ({"b64": ...} is only for string inputs)' if "dict" in str(exc) else ""
        raise InputError(
            f"input '{name}' cannot be read as {datatype}: {exc}{hint}; give a nested list of "
            "numbers with the same length in every row",
            input=name,
        ) from None


def _named(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _tensors(values: dict[str, Any], specs: InputSpecs) -> list[Tensor]:
    tensors = []
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None:
            raise InputError(
                f"the model has no input named '{name}'; its inputs are {list(specs)}", input=name
            )
        arr = to_array(value, spec[0], name)
        tensors.append(Tensor(name, spec[0], list(arr.shape), arr))
    return tensors


def decode_predict_body(
    specs: InputSpecs, name: str, version: str | None, body: bytes
) -> tuple[InferenceRequest, int | None]:
    """``decode_predict`` from the raw body and the model's input specs (picklable, so that
    large bodies can be decoded in another process)."""
    return _decode_predict(specs, name, version, _loads(body))


def decode_predict(
    plane: DataPlane, name: str, version: str | None, doc: Any
) -> tuple[InferenceRequest, int | None]:
    """A TF Serving predict body -> (request, number of instances; None for the columnar form)."""
    return _decode_predict(plane.served_model(name, version).input_specs, name, version, doc)


def _decode_predict(
    specs: InputSpecs, name: str, version: str | None, doc: Any
) -> tuple[InferenceRequest, int | None]:
    if not isinstance(doc, dict):
        raise InputError('the predict body must be a JSON object with "instances" or "inputs"')
    check_signature_name(doc.get("signature_name"))
    if ("instances" in doc) == ("inputs" in doc):
        raise InputError(
            "Request format must contain either 'instances' (row format) or 'inputs' (columnar "
            "format), not both and not neither"
        )
    only = next(iter(specs)) if len(specs) == 1 else None
    rows = None
    if "instances" in doc:
        instances = doc["instances"]
        if not isinstance(instances, list) or not instances:
            raise InputError("'instances' must be a non-empty list, one entry per example")
        rows = len(instances)
        if _named(instances[0]):
            keys = set(instances[0])
            if any(not _named(i) or set(i) != keys for i in instances):
                raise InputError(
                    "every instance must be an object with the same input names "
                    f"(the first one has {sorted(keys)})"
                )
            values = {k: [i[k] for i in instances] for k in instances[0]}
        elif only is not None:
            values = {only: instances}
        else:
            raise InputError(
                f"the model has {len(specs)} inputs {list(specs)}; each instance must be an "
                "object of input name -> value"
            )
        unstacked = [  # a scalar, or a fixed axis 0 (a recurrent state's layers) != the rows
            n
            for n, (_, shape) in specs.items()
            if n in values and (not shape or shape[0] not in (-1, rows))
        ]
        if unstacked:
            raise InputError(
                "the row format ('instances') stacks one entry per example on axis 0, but "
                f"input(s) {unstacked} have no batch axis 0 (a scalar or a fixed first axis); "
                'send the columnar format: {"inputs": {"name": value, ...}}'
            )
    else:
        inputs = doc["inputs"]
        if _named(inputs):
            values = inputs
        elif only is not None:
            values = {only: inputs}
        else:
            raise InputError(
                f"the model has {len(specs)} inputs {list(specs)}; 'inputs' must be an object "
                "of input name -> value"
            )
    return InferenceRequest(name, _tensors(values, specs), version), rows


def _json_value(arr: np.ndarray, name: str) -> Any:
    """A numpy output as JSON-ready data; strings as text, or {"b64"} for names ending _bytes."""
    if arr.dtype.kind in "OSU":
        b64 = name.endswith("_bytes")

        def leaf(x: Any) -> Any:
            if b64:
                raw = x if isinstance(x, bytes) else str(x).encode("utf-8")
                return {"b64": base64.b64encode(raw).decode("ascii")}
            return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)

        def walk(v: Any) -> Any:
            return [walk(x) for x in v] if isinstance(v, list) else leaf(v)

        return walk(arr.tolist())
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    return np.ascontiguousarray(arr)


def encode_predict(response: InferenceResponse, rows: int | None) -> bytes:
    """``{"predictions": ...}`` for the row format, ``{"outputs": ...}`` for the columnar one."""
    outs = {t.name: t.data for t in response.outputs}
    if rows is None:
        if len(outs) == 1:
            ((name, arr),) = outs.items()
            doc: dict[str, Any] = {"outputs": _json_value(arr, name)}
        else:
            doc = {"outputs": {n: _json_value(a, n) for n, a in outs.items()}}
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    for n, a in outs.items():
        if a.ndim == 0 or a.shape[0] != rows:
            raise InputError(
                f"output '{n}' has shape {list(a.shape)}, which does not have one row per "
                f'instance ({rows}); use the columnar format ("inputs") for this model'
            )
    if len(outs) == 1:
        ((name, arr),) = outs.items()
        doc = {"predictions": _json_value(arr, name)}
    else:
        cols = {n: _json_value(a, n) for n, a in outs.items()}
        cols = {n: c.tolist() if isinstance(c, np.ndarray) else c for n, c in cols.items()}
        doc = {"predictions": [{n: c[i] for n, c in cols.items()} for i in range(rows)]}
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def decode_classify(plane: DataPlane, name: str, version: str | None, doc: Any) -> InferenceRequest:
    """A TF Serving classify body (``{"examples": [{feature: value}, ...]}``) for a model that
    answers ``label``/``score`` (a package with class labels) -> the request."""
    model = plane.served_model(name, version)
    return decode_classify_doc(model.input_specs, model.output_types, name, version, doc)


def decode_classify_doc(
    specs: InputSpecs, output_types: Mapping[str, str], name: str, version: str | None, doc: Any
) -> InferenceRequest:
    """``decode_classify`` from the model's input specs and output types (no data plane, so
    that it can run in the decode threads)."""
    if "label" not in output_types or "score" not in output_types:
        raise UnsupportedError(
            ":classify needs a model that answers class labels (convert it with --label-file, "
            "or a Hugging Face text classifier); use :predict for this one"
        )
    if not isinstance(doc, dict) or not isinstance(doc.get("examples"), list):
        raise InputError('the classify body must be a JSON object with "examples": [{...}, ...]')
    context = doc.get("context") or {}
    examples = [{**context, **e} if isinstance(e, dict) else e for e in doc["examples"]]
    predict = {"instances": examples, "signature_name": doc.get("signature_name")}
    request, _ = _decode_predict(specs, name, version, predict)
    return request


def classify_result(response: InferenceResponse) -> list[list[tuple[str, float]]]:
    """Per example, its (label, score) classes best first (REST :classify and gRPC Classify)."""
    outs = {t.name: t.data for t in response.outputs}
    labels, scores = outs["label"], np.asarray(outs["score"], dtype=np.float64)
    if labels.ndim == 1:
        labels, scores = labels[:, None], scores[:, None]
    return [
        [
            (x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x), float(s))
            for x, s in zip(row_l, row_s, strict=True)
        ]
        for row_l, row_s in zip(labels.tolist(), scores.tolist(), strict=True)
    ]


def encode_classify(response: InferenceResponse) -> bytes:
    """``{"result": [[[label, score], ...], ...]}``: per example, its classes best first."""
    result = [[[label, score] for label, score in row] for row in classify_result(response)]
    return orjson.dumps({"result": result})


def _loads(body: bytes | bytearray) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:  # TF Serving accepts NaN / Infinity literals, which orjson does not
        return json.loads(body)
    except RecursionError:
        raise InputError(
            f"the request body is nested too deeply; tensors have at most {MAX_NESTING} dimensions"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"the request body is not valid JSON: {exc}") from None


# --- routes ---------------------------------------------------------------------------------


async def send_tfs_error(send: Send, exc: BaseException) -> None:
    """``{"error": message}`` with TF Serving's status for the error."""
    status = TFS_HTTP_STATUS.get(status_of(exc).grpc, 500)
    message = exc.message if isinstance(exc, ModelportError) else f"internal error: {exc}"
    if status >= 500:
        log.warning("TF Serving REST: %s %s", status, message)
    await send_bytes(
        send, status, orjson.dumps({"error": message}), [(b"content-type", b"application/json")]
    )


def _which(plane: DataPlane, scope: Scope) -> tuple[str, str | None]:
    p = scope["path_params"]
    name = p["name"]
    return name, resolve_version(plane, name, p.get("version"), p.get("label"))


def routes(plane: DataPlane, settings: HttpSettings) -> list[BaseRoute]:
    """The TF Serving REST routes for ``plane``; ``settings`` carries ``max_request_bytes``."""
    limit = settings.max_request_bytes

    async def status(scope: Scope, receive: Receive, send: Send) -> None:
        name, version = _which(plane, scope)
        await send_json(send, {"model_version_status": model_status(plane, name, version)})

    async def metadata(scope: Scope, receive: Receive, send: Send) -> None:
        name, version = _which(plane, scope)
        answered, sigs = signature_def_map(plane, name, version)
        await send_json(
            send,
            {
                "model_spec": {"name": name, "signature_name": "", "version": answered},
                "metadata": {"signature_def": sigs},
            },
        )

    async def verb(scope: Scope, receive: Receive, send: Send) -> None:
        name, version = _which(plane, scope)
        action = scope["path_params"]["verb"]
        # the model first: a request for one that is not served is a 404 whatever its body
        plane.resolve(name, version)
        body = await read_body(scope, receive, limit)
        if action == "classify":
            request = decode_classify(plane, name, version, _loads(body))
            response = await infer_watching(plane, request, receive)
            await send_bytes(
                send, 200, encode_classify(response), [(b"content-type", b"application/json")]
            )
            return
        if action == "regress":
            raise UnsupportedError(
                ":regress needs tf.Example inputs, which ONNX models do not take; use :predict"
            )
        if action != "predict":
            raise UnsupportedError(f"unknown method :{action}; use :predict")
        specs = plane.served_model(name, version).input_specs  # the one serving now
        request, rows = await off_process(
            len(body), decode_predict_body, dict(specs), name, version, body
        )
        response = await infer_watching(plane, request, receive)
        await send_bytes(
            send, 200, encode_predict(response, rows), [(b"content-type", b"application/json")]
        )

    async def listing(scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, {"models": sorted(plane.repository.models)})

    m = "/v1/models/{name}"
    variants = (m, m + "/versions/{version}", m + "/labels/{label}")
    post, get = ["POST"], ["GET"]
    out: list[BaseRoute] = [Route("/v1/models", Endpoint(listing, send_tfs_error), methods=get)]
    for base in variants:
        out.append(Route(base + ":{verb}", Endpoint(verb, send_tfs_error), methods=post))
    for base in variants:
        out.append(Route(base + "/metadata", Endpoint(metadata, send_tfs_error), methods=get))
        out.append(Route(base, Endpoint(status, send_tfs_error), methods=get))
    return out
