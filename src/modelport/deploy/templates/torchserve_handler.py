"""TorchServe handler written by modelport: runs model.onnx with ONNX Runtime (no torch needed).

Requests: a JSON body with a nested list (one-input models) or an object of named inputs, or
raw .npy bytes. Responses: a JSON object of named outputs (lists).

TorchServe calls ``handle(data, context)``: once with ``data=None`` to load the model, then with a
batch of requests; ``handle`` is ``postprocess(inference(preprocess(data)))``.
"""

import io
import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort

_session: Any = None
_inputs: dict[str, Any] = {}

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
}


def initialize(context: Any) -> None:
    global _session, _inputs
    model_dir = context.system_properties.get("model_dir", ".")
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    _session = ort.InferenceSession(
        os.path.join(model_dir, "model.onnx"), so, providers=["CPUExecutionProvider"]
    )
    _inputs = {i.name: i for i in _session.get_inputs()}


def _decode(body: Any) -> dict[str, np.ndarray]:
    if isinstance(body, bytes | bytearray):
        if body[:6] == b"\x93NUMPY":
            return {next(iter(_inputs)): np.load(io.BytesIO(bytes(body)), allow_pickle=False)}
        body = json.loads(body)
    if isinstance(body, dict) and "inputs" in body and isinstance(body["inputs"], dict):
        body = body["inputs"]
    if not isinstance(body, dict):
        body = {next(iter(_inputs)): body}
    return {k: np.asarray(v, dtype=_DTYPES.get(_inputs[k].type)) for k, v in body.items()}


def preprocess(data: list[Any]) -> list[dict[str, np.ndarray]]:
    """One feed per request: the body (or ``data``) decoded."""
    feeds = []
    for row in data:
        body = row.get("body") if isinstance(row, dict) else row
        if body is None and isinstance(row, dict):
            body = row.get("data")
        feeds.append(_decode(body))
    return feeds


def inference(feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """The graph on each request's feed."""
    names = [o.name for o in _session.get_outputs()]
    return [dict(zip(names, _session.run(names, feed), strict=True)) for feed in feeds]


def postprocess(outputs: list[dict[str, np.ndarray]]) -> list[dict[str, Any]]:
    """One JSON object of named outputs (nested lists) per request."""
    return [{n: o.tolist() for n, o in out.items()} for out in outputs]


def handle(data: Any, context: Any) -> list[dict[str, Any]] | None:
    if _session is None:
        initialize(context)
    if data is None:
        return None
    return postprocess(inference(preprocess(data)))
