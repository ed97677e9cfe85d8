"""Triton Python-backend model written by modelport: one half of the package's processing.

``modelport package --target triton`` writes this file as ``model.py`` of two models of an
ensemble: NAME_preprocess (the request's text or images -> the graph's inputs, padded to the
request's longest row) and NAME_postprocess (the graph's inputs and outputs -> the answer: pooling,
normalization, softmax, labels). Which half runs is the config.pbtxt parameter ``modelport_step``
("pre" or "post"); the steps and their files (tokenizer.json, labels) are the package's, copied
next to this file with its modelport.json. Needs ``pip install 'modelport[serve]'`` in the Python
that Triton's Python backend runs (numpy, tokenizers, Pillow; no torch, no onnxruntime).
"""

import json
import os
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

# config.pbtxt data types -> numpy (TYPE_STRING travels as bytes objects)
_NUMPY = {
    "TYPE_BOOL": np.bool_,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}


def _as_output(value: Any, data_type: str, dims: list[int], batched: bool) -> np.ndarray:
    arr = np.asarray(value)
    if data_type == "TYPE_STRING":
        out = np.empty(arr.shape, dtype=np.object_)
        out.flat[:] = [x.encode("utf-8") if isinstance(x, str) else bytes(x) for x in arr.flat]
        arr = out
    else:
        arr = arr.astype(_NUMPY[data_type], copy=False)
    want = len(dims) + (1 if batched else 0)
    if arr.ndim < want:  # [n] answers (one label per row) for dims [1]
        arr = arr.reshape(arr.shape + (1,) * (want - arr.ndim))
    return arr


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        from modelport.processing import Pipeline, Processing
        from modelport.signature import Signature

        config = json.loads(args["model_config"])
        self.step = config["parameters"]["modelport_step"]["string_value"]
        if self.step not in ("pre", "post"):
            raise ValueError(f"modelport_step must be 'pre' or 'post', got {self.step!r}")
        here = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(here, "modelport.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        self.pipe = Pipeline(
            Processing.from_dict(manifest["processing"]),
            here,
            Signature.from_dict(manifest["signature"]),
        )
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.inputs = [i["name"] for i in config["input"]]
        # the JSON of the ModelConfig protobuf: int64 dims arrive as strings
        self.outputs = [
            (o["name"], o["data_type"], [int(d) for d in o.get("dims", [])])
            for o in config["output"]
        ]

    def _run(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.step == "pre":
            return self.pipe.graph_feed(values)
        return self.pipe.postprocess(values)

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request (a request holds one or more rows; Triton's dynamic batcher
        may hand several requests at once): pre-processing pads each request to its own longest
        row, so the graph model batches requests of the same padded length."""
        responses = []
        for request in requests:
            try:
                values = {
                    name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                    for name in self.inputs
                }
                result = self._run(values)
                tensors = [
                    pb_utils.Tensor(name, _as_output(result[name], dtype, dims, self.batched))
                    for name, dtype, dims in self.outputs
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as exc:  # the client gets the message, the model stays up
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[], error=pb_utils.TritonError(str(exc))
                    )
                )
        return responses

    def finalize(self) -> None:
        """Nothing to release: no session here (the graph is the NAME_raw model)."""
