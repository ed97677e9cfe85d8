"""A served model with its package's processing: text or images in, embeddings or labels out.

``ProcessedModel`` wraps a ``LoadedModel``: its ``input_specs``/``output_types``/``signature`` are
the public ones (e.g. ``text`` BYTES -> ``embedding`` FP32), so every protocol adapter describes
and decodes it as they would any model. The data plane calls ``prepare`` per request (tokenize,
decode; on the event loop when the payload is small, else in a worker thread); the batcher calls
``run`` per merged batch (pad token rows to the longest row, run the graph, post-process).

The raw graph stays reachable as model ``NAME_raw`` (``RAW_SUFFIX``), for clients that tokenize
themselves; it has its own batcher over the same ONNX Runtime session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError
from ..processing import Pipeline, Processing
from .model import check_request_limits, request_limits
from .offload import decode_pool
from .types import Tensor, v2_datatype

__all__ = ["RAW_SUFFIX", "ProcessedModel", "classify_outputs", "labels_of", "with_processing"]

RAW_SUFFIX = "_raw"


class ProcessedModel:
    """A LoadedModel seen through its processing (see the module docstring)."""

    def __init__(self, model: Any, pipeline: Pipeline) -> None:
        self.raw = model
        self.pipeline = pipeline
        self.name = model.name
        self.version = model.version
        self.package = model.package
        self.config = model.config
        self.signature = pipeline.signature
        self.shared_dims: dict[str, list[tuple[str, int]]] = {}
        self.input_specs = {
            t.name: (v2_datatype(t.dtype), tuple(d if isinstance(d, int) else -1 for d in t.shape))
            for t in self.signature.inputs
        }
        self.output_types = {t.name: v2_datatype(t.dtype) for t in self.signature.outputs}
        self.output_names = list(self.output_types)
        # the public inputs' limits (texts or images per request, bytes per item), from the same
        # config fields as a bare graph's (max_request_rows, max_tensor_elements)
        self._row_limit, self._element_limits = request_limits(self.signature, self.config)

    def __getattr__(self, name: str) -> Any:
        # anything else the data plane or /config reads (session, engine info, ...) is the graph's
        return getattr(self.raw, name)

    # the batcher and /config read these from the graph
    @property
    def batchable(self) -> bool:
        return self.raw.batchable

    @property
    def inline(self) -> bool:
        return self.raw.inline

    @property
    def threads(self) -> int:
        return self.raw.threads

    @property
    def session(self) -> Any:
        return self.raw.session

    @property
    def batching_note(self) -> str:
        return getattr(self.raw, "batching_note", "")

    @property
    def row_limit(self) -> int:
        return self._row_limit

    @property
    def element_limits(self) -> dict[str, int]:
        return self._element_limits

    async def prepare(self, inputs: list[Tensor]) -> dict[str, np.ndarray]:
        """The request's inputs, checked against the public signature, pre-processed."""
        given: dict[str, np.ndarray] = {}
        for t in inputs:
            spec = self.input_specs.get(t.name)
            if spec is None:
                raise InputError(
                    f"model '{self.name}' has no input named '{t.name}'; its inputs are "
                    f"{list(self.input_specs)} (the graph's own inputs are served as model "
                    f"'{self.name}{RAW_SUFFIX}')",
                    input=t.name,
                )
            if t.name in given:
                raise InputError(f"input '{t.name}' is given twice", input=t.name)
            if t.datatype != spec[0]:
                raise InputError(
                    f"input '{t.name}' has datatype {t.datatype}, the model expects {spec[0]}",
                    input=t.name,
                    expected=spec[0],
                    got=t.datatype,
                )
            check_request_limits(
                self.name,
                self._row_limit,
                self._element_limits,
                t.name,
                t.data,
                batched=bool(spec[1]) and spec[1][0] == -1,
                item_bytes=t.datatype == "BYTES",
            )
            given[t.name] = t.data
        missing = [n for n in self.input_specs if n not in given]
        if missing:
            raise InputError(
                f"missing input(s) {missing} for model '{self.name}'; its inputs are "
                f"{list(self.input_specs)}",
                input=missing[0],
            )
        if self.pipeline.inline_ok(given):
            return self.pipeline.prepare(given)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(decode_pool(), self.pipeline.prepare, given)

    def run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One merged batch: collate, graph, post-process."""
        return self.pipeline.run_batch(feed, self.raw.run)

    def close(self) -> None:
        self.raw.close()


def with_processing(model: Any, processing: Processing, *, trust: bool) -> ProcessedModel:
    """Wrap a loaded model with its package's processing (checks files, loads the tokenizer,
    and the handler when trusted); runs a one-row warm-up through the pipeline when the
    processing takes text."""
    from ..processing.pipeline import check_files

    pkg = model.package
    check_files(pkg.path, pkg.manifest, processing)
    pipeline = Pipeline(processing, pkg.path, model.signature, trust=trust)
    processed = ProcessedModel(model, pipeline)
    if model.config.warmup and processing.handler is None:
        texts = [s.input for s in processing.pre if s.kind == "tokenize"]
        if texts and len(texts) == len(pipeline.signature.inputs):
            warm = {n: np.array(["warm-up"], dtype=object) for n in texts}
            processed.run(pipeline.prepare(warm))
    return processed


def labels_of(model: Any) -> list[str] | None:
    """The class names of the package's ``top_k`` step (read once), or None. A model may carry
    them as ``class_labels`` (the Ray ingress's description of a replica's model does)."""
    carried = getattr(model, "class_labels", False)
    if carried is not False:
        return carried
    cached = getattr(model, "_class_labels", False)
    if cached is not False:
        return cached
    labels = None
    package = getattr(model, "package", None)
    processing = Processing.of(package.manifest) if package is not None else None
    for step in processing.post if processing else ():
        if step.kind == "top_k":
            path = package.path / step.labels_file
            labels = path.read_text(encoding="utf-8").splitlines()
    model._class_labels = labels
    return labels


def classify_outputs(
    model: Any, requested: list[Any], outputs: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The V2 classification extension (Triton's): an output requested with parameter
    ``classification: k`` is answered as BYTES [batch, k] of "score:index[:label]", best first,
    the labels from the package's labels file."""
    out = dict(outputs)
    types = dict(model.output_types)
    for r in requested:
        k = r.parameters.get("classification")
        if k is None:
            continue
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InputError(
                f"output '{r.name}': the classification parameter must be a class count >= 1, "
                f"got {k!r}",
                output=r.name,
            )
        scores = np.asarray(out[r.name])
        if scores.dtype.kind not in "fiu" or scores.ndim not in (1, 2):
            raise InputError(
                f"output '{r.name}' ({types[r.name]} {list(scores.shape)}) is not a vector of "
                "class scores per row; classification needs [batch, classes] numbers",
                output=r.name,
            )
        labels = labels_of(model)
        rows = scores if scores.ndim == 2 else scores[None]
        k = min(k, rows.shape[1])
        idx = np.argsort(-rows, axis=1, kind="stable")[:, :k]
        text = np.empty(idx.shape, dtype=object)
        for (i, j), c in np.ndenumerate(idx):
            label = f":{labels[c]}" if labels is not None and c < len(labels) else ""
            text[i, j] = f"{rows[i, c]:g}:{c}{label}".encode()
        out[r.name] = text if scores.ndim == 2 else text[0]
        types[r.name] = "BYTES"
    return out, types
