"""TensorFlow Serving's gRPC API on its own port: ``tensorflow.serving.PredictionService``
(Predict, Classify, GetModelMetadata) and ``tensorflow.serving.ModelService`` (GetModelStatus),
wire-compatible with the official client (pip tensorflow-serving-api).

Classify answers for models with class labels (``label``/``score`` outputs: a package converted
with ``--label-file`` or a Hugging Face classifier), like the REST ``:classify``: each
``tf.Example``'s features are the model's inputs by name (``bytes_list`` for BYTES inputs such as
a text or an image file, ``float_list``/``int64_list`` for tensors, a row's values in row-major
order); the context's features are added to every example.

The generated stubs come from the tensorflow-serving-api package, which imports tensorflow (about
7 s and 600 MB on first import), so they are imported only when this port is turned on, in a
worker thread; without the package the port stays closed and the log says why.

TensorProto values are read from ``tensor_content`` or from the typed fields (``float_val``,
``int64_val``, ``string_val``, ...; a short list is padded with its last value, as
``tf.make_ndarray`` does); answers use ``tensor_content`` (``string_val`` for strings).
Status, metadata and version labels are the TF Serving REST module's dicts, parsed into protos.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np

from ...errors import InputError, ModelportError
from ..config import GrpcLimits
from ..dataplane import DataPlane
from ..errors import UnsupportedError, status_of
from ..http.tfserving import (
    SIGNATURE_NAME,
    TF_DTYPES,
    check_signature_name,
    classify_result,
    decode_classify_doc,
    model_status,
    resolve_version,
    signature_def_map,
)
from ..offload import off_loop
from ..types import InferenceRequest, RequestedOutput, Tensor, numpy_dtype

__all__ = [
    "RAW_METHODS",
    "build_tfserving_server",
    "classify_request",
    "examples_to_json",
    "load_stubs",
    "numpy_to_tensor",
    "parse_predict",
    "parse_request",
    "predict_tensors",
    "split_tensor_bytes",
    "tensor_to_numpy",
]

log = logging.getLogger("modelport.serve")

_FROM_TF = {tf: v2 for v2, tf in TF_DTYPES.items()}
# V2 datatype -> the typed TensorProto field that carries it.
_VALUE_FIELD = {
    "FP32": "float_val",
    "FP64": "double_val",
    "FP16": "half_val",
    "INT8": "int_val",
    "INT16": "int_val",
    "INT32": "int_val",
    "UINT8": "int_val",
    "UINT16": "int_val",
    "INT64": "int64_val",
    "UINT32": "uint32_val",
    "UINT64": "uint64_val",
    "BOOL": "bool_val",
    "BYTES": "string_val",
}


def load_stubs() -> SimpleNamespace:
    """The generated modules of tensorflow-serving-api (ImportError when it is not installed)."""
    from google.protobuf import json_format
    from tensorflow.core.framework import tensor_pb2, types_pb2
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    return SimpleNamespace(
        json_format=json_format,
        tensor_pb2=tensor_pb2,
        types_pb2=types_pb2,
        metadata_pb2=get_model_metadata_pb2,
        status_pb2=get_model_status_pb2,
        predict_pb2=predict_pb2,
        classification_pb2=classification_pb2,
        model_grpc=model_service_pb2_grpc,
        prediction_grpc=prediction_service_pb2_grpc,
    )


# --- TensorProto <-> numpy ------------------------------------------------------------------


def tensor_to_numpy(
    tp: Any, name: str, stubs: SimpleNamespace, split: Mapping[int, memoryview] | None = None
) -> tuple[str, np.ndarray]:
    """(V2 datatype, array) for a TensorProto; InputError for anything we cannot read.

    ``split``: the tensor's bytes that ``split_tensor_bytes`` took out of the message (field
    number -> bytes: tensor_content, packed float_val / double_val), read without a copy."""
    split = split or {}
    try:
        dt_name = stubs.types_pb2.DataType.Name(tp.dtype)
    except ValueError:
        dt_name = str(tp.dtype)
    datatype = _FROM_TF.get(dt_name)
    if datatype is None:
        raise InputError(
            f"input '{name}' has dtype {dt_name}, which ONNX models do not take; use one of "
            f"{sorted(_FROM_TF)}",
            input=name,
        )
    if tp.tensor_shape.unknown_rank:
        raise InputError(f"input '{name}' must have a known shape", input=name)
    shape = [d.size for d in tp.tensor_shape.dim]
    if any(d < 0 for d in shape):
        raise InputError(f"input '{name}' has a negative dimension in {shape}", input=name)
    count = math.prod(shape)
    dtype = numpy_dtype(datatype)
    # protobuf copies a bytes field at each read: read it once (or not at all: split off)
    content = split.get(_CONTENT) or tp.tensor_content
    if content:
        if datatype == "BYTES":
            raise InputError(f"string input '{name}' must use string_val, not tensor_content")
        if len(content) != count * dtype.itemsize:
            raise InputError(
                f"input '{name}' has {len(content)} bytes of tensor_content; shape "
                f"{shape} of {dt_name} needs {count * dtype.itemsize}",
                input=name,
            )
        return datatype, np.frombuffer(content, dtype.newbyteorder("<")).reshape(shape)
    values = getattr(tp, _VALUE_FIELD[datatype])
    packed = split.get(_PACKED.get(datatype, -1))
    try:
        if packed is not None:  # packed little-endian floats: the bytes are the array
            arr = np.frombuffer(packed, dtype.newbyteorder("<"))
        elif datatype == "BYTES":
            arr = np.empty(len(values), dtype=object)
            arr[:] = list(values)
        elif datatype == "FP16":  # half_val holds the float16 bit patterns
            arr = np.asarray(values, dtype=np.uint16).view(np.float16)
        else:
            arr = np.asarray(values, dtype=dtype)
    except (ValueError, OverflowError) as exc:
        raise InputError(f"input '{name}': {exc}", input=name) from None
    if arr.size > count:
        raise InputError(
            f"input '{name}' has {arr.size} values but shape {shape} holds {count}", input=name
        )
    if arr.size < count:  # tf.make_ndarray: no values = zeros, too few = repeat the last
        if arr.size == 0:
            fill = np.array([b""], dtype=object) if datatype == "BYTES" else np.zeros(1, dtype)
            arr = np.repeat(fill, count)
        else:
            arr = np.concatenate([arr, np.repeat(arr[-1:], count - arr.size)])
    return datatype, arr.reshape(shape)


def numpy_to_tensor(arr: np.ndarray, datatype: str, stubs: SimpleNamespace) -> Any:
    """A TensorProto for an output: tensor_content for numbers, string_val for strings."""
    tp = stubs.tensor_pb2.TensorProto(dtype=stubs.types_pb2.DataType.Value(TF_DTYPES[datatype]))
    for d in arr.shape:
        tp.tensor_shape.dim.add(size=d)
    if datatype == "BYTES":
        tp.string_val.extend(
            x if isinstance(x, bytes) else str(x).encode("utf-8") for x in arr.ravel()
        )
    else:
        little = arr.dtype.newbyteorder("<")
        tp.tensor_content = np.ascontiguousarray(arr, dtype=little).tobytes()
    return tp


def examples_to_json(request_input: Any, specs: Any) -> dict[str, Any]:
    """A ClassificationRequest's ``input`` (tf.Examples, with or without context) as the REST
    classify body ``{"examples": [...], "context": {...}}``: BYTES features as ``{"b64": ...}``,
    numbers reshaped to the input's per-example shape when it is fixed."""
    import base64

    def value(name: str, feature: Any) -> Any:
        kind = feature.WhichOneof("kind")
        if kind == "bytes_list":
            values: list[Any] = [
                {"b64": base64.b64encode(v).decode("ascii")} for v in feature.bytes_list.value
            ]
        elif kind == "float_list":
            values = list(feature.float_list.value)
        elif kind == "int64_list":
            values = list(feature.int64_list.value)
        else:
            raise InputError(f"feature '{name}' has no values", input=name)
        spec = specs.get(name)
        if spec is None:
            raise InputError(
                f"feature '{name}' is not an input of this model; its inputs are {list(specs)}",
                input=name,
            )
        row = tuple(spec[1][1:])
        if row == () and len(values) == 1:
            return values[0]
        if row and all(d > 0 for d in row) and math.prod(row) == len(values):
            return np.asarray(values, dtype=object).reshape(row).tolist()
        return values

    def features(example: Any) -> dict[str, Any]:
        return {k: value(k, f) for k, f in example.features.feature.items()}

    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        return {"examples": [features(e) for e in request_input.example_list.examples]}
    if kind == "example_list_with_context":
        lc = request_input.example_list_with_context
        return {"examples": [features(e) for e in lc.examples], "context": features(lc.context)}
    raise InputError("the ClassificationRequest has no input examples")


# --- the wire format: tensors' bytes split off without a copy ---------------------------------

_INPUTS = 2  # PredictRequest.inputs: map<string, TensorProto>, entries {1: key, 2: value}
_CONTENT = 4  # TensorProto.tensor_content
_PACKED = {"FP32": 5, "FP64": 6}  # TensorProto.float_val / double_val: packed, fixed width
_WIDTH = {4: 1, 5: 4, 6: 8}  # field -> the item size its length must be a multiple of
# most fields walked per message (a real one has a few); beyond: left whole to protobuf
_REQUEST_FIELDS, _ENTRY_FIELDS, _TENSOR_FIELDS = 4096, 16, 64


def _fields(
    data: memoryview, start: int, end: int, limit: int
) -> list[tuple[int, int, int, int, int]]:
    """(field number, wire type, field start, value start, value end) of each field of the
    message in ``data[start:end]``; ValueError when it is not well formed or has more than
    ``limit`` fields (walked in Python: a message of many tiny fields is left to protobuf)."""
    from .server import read_varint  # (grpc is imported where it is served)

    out: list[tuple[int, int, int, int, int]] = []
    i = start
    while i < end:
        if len(out) >= limit:
            raise ValueError("too many fields to walk")
        first = i
        key, i = read_varint(data, i, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, j = read_varint(data, i, end)
            value_start = i
        elif wire == 1:
            value_start, j = i, i + 8
        elif wire == 5:
            value_start, j = i, i + 4
        elif wire == 2:
            length, value_start = read_varint(data, i, end)
            j = value_start + length
        else:  # groups (3, 4) are not used by these messages
            raise ValueError(f"wire type {wire}")
        if j > end or number == 0:
            raise ValueError("truncated field")
        out.append((number, wire, first, value_start, j))
        i = j
    return out


def _length_delimited(number: int, body: bytes) -> bytes:
    key, n = (number << 3) | 2, len(body)
    out = bytearray()
    for v in (key, n):
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out) + body


def _split_tensor(view: memoryview, start: int, end: int) -> tuple[bytes, dict[int, memoryview]]:
    """A TensorProto without its tensor_content and packed float_val/double_val, and those as
    views; nothing taken (``b"", {}``) when there are none or a field is in a form protobuf
    should judge."""
    fields = _fields(view, start, end, _TENSOR_FIELDS)
    taken: dict[int, list[memoryview]] = {}
    for number, wire, _, v0, v1 in fields:
        if number in _WIDTH:
            if wire != 2 or (v1 - v0) % _WIDTH[number]:
                return b"", {}  # unpacked or malformed: protobuf decides
            taken.setdefault(number, []).append(view[v0:v1])
    if not taken:
        return b"", {}
    rest = b"".join(bytes(view[f0:v1]) for number, _, f0, _, v1 in fields if number not in _WIDTH)
    split = {}
    for number, views in taken.items():
        if number == _CONTENT:
            split[number] = views[-1]  # a bytes field: the last one wins
        else:  # packed repeated: the pieces add up
            split[number] = views[0] if len(views) == 1 else memoryview(b"".join(views))
    return rest, split


def split_tensor_bytes(data: bytes) -> tuple[bytes, dict[str, dict[int, memoryview]]]:
    """(the serialized PredictRequest without its inputs' tensor_content and packed
    float_val/double_val, those per input name as views of ``data``). Protobuf copies a bytes
    field when it parses it and again at each read, under the GIL (about 90 ms each for 64 MB
    here), and turns packed floats into a list a value at a time; the V2 servicer splits
    raw_input_contents off alike. A message that does not walk cleanly is left whole (protobuf
    then parses it, or says what is wrong)."""
    view = memoryview(data)
    try:
        fields = _fields(view, 0, len(view), _REQUEST_FIELDS)
        head = bytearray()
        side: dict[str, dict[int, memoryview]] = {}
        for number, wire, f0, v0, v1 in fields:
            if number != _INPUTS or wire != 2:
                head += view[f0:v1]
                continue
            entry = _fields(view, v0, v1, _ENTRY_FIELDS)
            keys = [(a, b) for n, w, _, a, b in entry if n == 1 and w == 2]
            values = [(a, b) for n, w, _, a, b in entry if n == 2 and w == 2]
            key = bytes(view[keys[-1][0] : keys[-1][1]]).decode() if keys else ""
            tensor, split = _split_tensor(view, *values[-1]) if len(values) == 1 else (b"", {})
            if not split:  # nothing to take, or several values that merge: protobuf's job
                head += view[f0:v1]
                side.pop(key, None)  # a later entry for a key replaces an earlier one
                continue
            others = b"".join(bytes(view[a:c]) for n, _, a, _, c in entry if n != 2)
            head += _length_delimited(_INPUTS, others + _length_delimited(2, tensor))
            side[key] = split
        if not side:
            return data, {}  # nothing to take out: no copy
        return bytes(head), side
    except (ValueError, UnicodeDecodeError):
        return data, {}


# --- decoding (in the decode threads for large requests, as the V2 gRPC servicer does) -------

# PredictionService methods whose handlers take the request's bytes (grpc.server.RawRequests):
# they are parsed and converted off the event loop when large (``off_loop``)
RAW_METHODS = ("Predict", "Classify")


def parse_request(message_type: Any, data: bytes) -> Any:
    """A serialized request -> the message; InputError when it is not one."""
    from google.protobuf.message import DecodeError

    try:
        return message_type.FromString(data)
    except DecodeError as exc:
        raise InputError(
            f"the request is not a valid {message_type.DESCRIPTOR.full_name}: {exc}"
        ) from None


def parse_predict(data: bytes, stubs: SimpleNamespace) -> tuple[Any, dict]:
    """A serialized PredictRequest -> (the message without its tensors' large bytes, those
    bytes per input: ``split_tensor_bytes``)."""
    head, split = split_tensor_bytes(data)
    return parse_request(stubs.predict_pb2.PredictRequest, head), split


def predict_tensors(
    inputs: Any, stubs: SimpleNamespace, split: Mapping[str, Mapping[int, memoryview]]
) -> list[Tensor]:
    """A PredictRequest's ``inputs`` (name -> TensorProto, with the bytes ``split`` off them)
    as tensors."""
    tensors = []
    for key, tp in inputs.items():
        datatype, arr = tensor_to_numpy(tp, key, stubs, split.get(key))
        tensors.append(Tensor(key, datatype, list(arr.shape), arr))
    return tensors


def classify_request(
    request_input: Any,
    specs: Any,
    output_types: Any,
    name: str,
    version: str | None,
) -> InferenceRequest:
    """A ClassificationRequest's ``input`` -> the request, as the REST ``:classify`` decodes."""
    doc = examples_to_json(request_input, specs)
    return decode_classify_doc(specs, output_types, name, version, doc)


# --- the servicers --------------------------------------------------------------------------


def _spec(spec: Any) -> tuple[str, str | None, str | None]:
    """(name, version or None, label or None) of a ModelSpec."""
    version = str(spec.version.value) if spec.HasField("version") else None
    return spec.name, version, spec.version_label or None


def _servicers(plane: DataPlane, stubs: SimpleNamespace) -> tuple[Any, Any]:
    import grpc

    async def fail(context: Any, exc: BaseException) -> None:
        status = status_of(exc)
        message = exc.message if isinstance(exc, ModelportError) else f"internal error: {exc}"
        if status.label == "internal":
            log.warning("TF Serving gRPC: %s", message)
        await context.abort(getattr(grpc.StatusCode, status.grpc), message)

    def which(spec: Any) -> tuple[str, str | None]:
        name, version, label = _spec(spec)
        return name, resolve_version(plane, name, version, label)

    def answered_spec(target: Any, name: str, version: str) -> None:
        target.name = name
        target.version.value = int(version)
        target.signature_name = SIGNATURE_NAME

    class PredictionService(stubs.prediction_grpc.PredictionServiceServicer):
        async def Predict(self, request, context):  # noqa: N802
            try:
                data = bytes(request)  # its bytes (RAW_METHODS): parsed here, off the loop
                request, split = await off_loop(len(data), parse_predict, data, stubs)
                name, version = which(request.model_spec)
                check_signature_name(request.model_spec.signature_name)
                plane.resolve(name, version)  # a model not served: NOT_FOUND, whatever the inputs
                tensors = await off_loop(len(data), predict_tensors, request.inputs, stubs, split)
                outputs = [RequestedOutput(n) for n in request.output_filter] or None
                response = await plane.infer(
                    InferenceRequest(name, tensors, version, None, outputs)
                )
                reply = stubs.predict_pb2.PredictResponse()
                answered_spec(reply.model_spec, name, response.model_version)
                for t in response.outputs:
                    reply.outputs[t.name].CopyFrom(numpy_to_tensor(t.data, t.datatype, stubs))
                return reply
            except Exception as exc:
                if not isinstance(exc, ModelportError):
                    log.exception("unexpected error in TF Serving Predict")
                await fail(context, exc)

        async def GetModelMetadata(self, request, context):  # noqa: N802
            try:
                fields = list(request.metadata_field)
                if fields != ["signature_def"]:
                    raise InputError(
                        f"metadata_field {fields} is not supported; ask for ['signature_def']"
                    )
                name, version = which(request.model_spec)
                answered, sigs = signature_def_map(plane, name, version)
                sig_map = stubs.json_format.ParseDict(sigs, stubs.metadata_pb2.SignatureDefMap())
                reply = stubs.metadata_pb2.GetModelMetadataResponse()
                answered_spec(reply.model_spec, name, answered)
                reply.metadata["signature_def"].Pack(sig_map)
                return reply
            except Exception as exc:
                await fail(context, exc)

        async def Classify(self, request, context):  # noqa: N802
            try:
                data = bytes(request)  # its bytes (RAW_METHODS): parsed here, off the loop
                request = await off_loop(
                    len(data), parse_request, stubs.classification_pb2.ClassificationRequest, data
                )
                name, version = which(request.model_spec)
                check_signature_name(request.model_spec.signature_name)
                model = plane.resolve(name, version)
                specs, types = dict(model.input_specs), dict(model.output_types)
                decoded = await off_loop(
                    len(data), classify_request, request.input, specs, types, name, version
                )
                response = await plane.infer(decoded)
                reply = stubs.classification_pb2.ClassificationResponse()
                answered_spec(reply.model_spec, name, response.model_version)
                for row in classify_result(response):
                    classes = reply.result.classifications.add()
                    for label, score in row:
                        classes.classes.add(label=label, score=score)
                return reply
            except Exception as exc:
                if not isinstance(exc, ModelportError):
                    log.exception("unexpected error in TF Serving Classify")
                await fail(context, exc)

        async def Regress(self, request, context):  # noqa: N802
            await fail(context, UnsupportedError("Regress needs tf.Example; use Predict"))

        async def MultiInference(self, request, context):  # noqa: N802
            await fail(context, UnsupportedError("MultiInference is not supported; use Predict"))

    class ModelService(stubs.model_grpc.ModelServiceServicer):
        async def GetModelStatus(self, request, context):  # noqa: N802
            try:
                name, version = which(request.model_spec)
                rows = model_status(plane, name, version)
                return stubs.json_format.ParseDict(
                    {"model_version_status": rows}, stubs.status_pb2.GetModelStatusResponse()
                )
            except Exception as exc:
                await fail(context, exc)

        async def HandleReloadConfigRequest(self, request, context):  # noqa: N802
            await fail(
                context,
                UnsupportedError(
                    "reloading a model config is not supported; use the management API "
                    "(POST /models, DELETE /models/{name}) or --poll"
                ),
            )

    return PredictionService(), ModelService()


async def build_tfserving_server(
    plane: DataPlane,
    host: str,
    port: int,
    max_message_bytes: int,
    credentials: Any = None,
    interceptors: tuple = (),
    limits: GrpcLimits | None = None,
) -> tuple[Any, int | None]:
    """A grpc.aio server (not started) with TF Serving's services and its port; (None, None)
    when tensorflow-serving-api is not installed (logged). ``limits``: as the V2 gRPC port's."""
    from .server import RawRequests, listen, new_server

    try:
        stubs = await asyncio.get_running_loop().run_in_executor(None, load_stubs)
    except ImportError as exc:
        log.warning(
            "TF Serving gRPC API is off: %s (install it with pip install 'modelport[tensorflow]')",
            exc,
        )
        return None, None
    server = new_server(max_message_bytes, limits, interceptors)
    prediction, model = _servicers(plane, stubs)
    stubs.prediction_grpc.add_PredictionServiceServicer_to_server(
        prediction, RawRequests(server, RAW_METHODS)
    )
    stubs.model_grpc.add_ModelServiceServicer_to_server(model, server)
    return server, listen(server, host, port, credentials, "--tfserving-grpc-port")
