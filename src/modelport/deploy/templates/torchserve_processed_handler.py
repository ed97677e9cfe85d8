"""TorchServe handler written by modelport: the package's processing around model.onnx.

Needs `pip install 'modelport[serve]'` in TorchServe's Python. Requests: the text or the image file
itself as the body (or JSON {"<input>": value}). Responses: a JSON object of the outputs.

TorchServe calls ``handle(data, context)``: once with ``data=None`` to load the model, then with a
batch of requests; ``handle`` is ``postprocess(inference(preprocess(data)))``.
"""

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort

_pipe: Any = None
_input = ""


def initialize(context: Any) -> None:
    global _pipe, _input
    from modelport.processing import Pipeline, Processing
    from modelport.signature import Signature

    model_dir = context.system_properties.get("model_dir", ".")
    with open(os.path.join(model_dir, "modelport.json")) as f:
        manifest = json.load(f)
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        os.path.join(model_dir, "model.onnx"), so, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    _pipe = Pipeline(
        Processing.from_dict(manifest["processing"]),
        model_dir,
        Signature.from_dict(manifest["signature"]),
        lambda feed: dict(zip(names, session.run(names, dict(feed)), strict=True)),
    )
    _input = _pipe.signature.input_names[0]


def _value(body: Any) -> Any:
    if isinstance(body, bytes | bytearray):
        if bytes(body).lstrip()[:1] == b"{":
            doc = json.loads(body)
            return doc.get(_input, doc)
        return bytes(body)
    if isinstance(body, dict):
        return body.get(_input, body)
    return body


def _json(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    v = np.asarray(v)
    if v.dtype.kind in "OS":
        return [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in v.ravel()]
    return v.tolist()


def preprocess(data: list[Any]) -> list[dict[str, np.ndarray]]:
    """Each request's text or image through the package's pre-processing (unpadded rows)."""
    feeds = []
    for row in data:
        body = row.get("body") if isinstance(row, dict) else row
        if body is None and isinstance(row, dict):
            body = row.get("data")
        feeds.append(_pipe.prepare({_input: [_value(body)]}))
    return feeds


def inference(feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The requests merged into one batch (tokens padded to the longest), the graph, the
    post-processing."""
    merged = {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
    outputs: dict[str, np.ndarray] = _pipe.run_batch(merged)
    return outputs


def postprocess(outputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One JSON object of the outputs per request."""
    rows = len(next(iter(outputs.values())))
    return [{k: _json(v[i]) for k, v in outputs.items()} for i in range(rows)]


def handle(data: Any, context: Any) -> list[dict[str, Any]] | None:
    if _pipe is None:
        initialize(context)
    if data is None:
        return None
    return postprocess(inference(preprocess(data)))
