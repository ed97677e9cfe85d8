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
    "parse_request",
    "predict_tensors",
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


def tensor_to_numpy(tp: Any, name: str, stubs: SimpleNamespace) -> tuple[str, np.ndarray]:
    """(V2 datatype, array) for a TensorProto; InputError for anything we cannot read."""
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
    content = tp.tensor_content  # protobuf copies a bytes field at each read: read it once
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
    try:
        if datatype == "BYTES":
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


def predict_tensors(inputs: Any, stubs: SimpleNamespace) -> list[Tensor]:
    """A PredictRequest's ``inputs`` (name -> TensorProto) as tensors."""
    tensors = []
    for key, tp in inputs.items():
        datatype, arr = tensor_to_numpy(tp, key, stubs)
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
                request = await off_loop(
                    len(data), parse_request, stubs.predict_pb2.PredictRequest, data
                )
                name, version = which(request.model_spec)
                check_signature_name(request.model_spec.signature_name)
                plane.resolve(name, version)  # a model not served: NOT_FOUND, whatever the inputs
                tensors = await off_loop(len(data), predict_tensors, request.inputs, stubs)
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
