"""A package's processing (``Processing``, the manifest part) and the runtime that applies it
around the graph (``Pipeline``).

The manifest's ``processing`` section::

    "processing": {
      "pre":  [{"kind": "tokenize", "file": "processing/tokenizer.json", "max_length": 256, ...}],
      "post": [{"kind": "mean_pool", ...}, {"kind": "l2_normalize", ...}],
      "outputs": ["embedding"],
      "handler": {"target": "my_handler:Handler", "file": "processing/my_handler.py",
                  "sha256": "..."},
      "verification": {...}
    }

A pipeline runs in three parts so that a server can batch the graph:

    prepare(request inputs) -> item         per request (tokenize, decode images; handler.preprocess)
    run_batch(merged items, run_graph)      per merged batch: pad to the longest row, run the
                                            graph, post-process row by row (handler.postprocess)

``Pipeline.__call__`` does both for a Python caller: ``modelport.load(PKG)(["some text"])``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, PackageError, UsageError
from ..signature import Signature, TensorSpec
from .handler import HandlerRef, load_handler
from .post import POST
from .steps import PRE_KINDS, Tokenize, TopK, step_from_dict, step_to_dict
from .text import as_texts, batch_rows

__all__ = ["INLINE_PAYLOAD_BYTES", "Pipeline", "Processing"]

# Requests whose text/image payload is at most this many bytes are pre-processed on the calling
# thread (the event loop, in the server); larger ones go to a worker thread. Tokenizing costs about
# the same per sentence: measured (best of 5 x 2000, on the shared 2-core box under load average
# ~20) 210 us for one 12-word sentence (75 bytes), 1.8 ms for 14 of them; an 8x8 PNG decodes in
# 216 us there. 512 bytes is ~7 such sentences: one short request stays on the loop (a thread
# hand-off costs about as much), anything bigger leaves it.
INLINE_PAYLOAD_BYTES = 512

GraphRunner = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class Processing:
    """What happens around the graph, as declared in the manifest.

    pre: pre-processing steps (``tokenize``, ``image``), applied per request.
    post: post-processing steps, applied per merged batch, in order.
    outputs: the answer's outputs (names produced by ``post`` or by the graph); empty = the
        graph's outputs.
    handler: a custom ``module:Class`` shipped in the package (needs trust to run).
    verification: the end-to-end check made when the steps were written (informational).
    """

    pre: tuple[Any, ...] = ()
    post: tuple[Any, ...] = ()
    outputs: tuple[str, ...] = ()
    handler: HandlerRef | None = None
    verification: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        for s in self.pre:
            if s.kind not in PRE_KINDS:
                raise UsageError(f"step {s.kind!r} is not a pre-processing step ({PRE_KINDS})")
        for s in self.post:
            if s.kind in PRE_KINDS:
                raise UsageError(f"step {s.kind!r} is a pre-processing step; put it in pre")

    @property
    def files(self) -> list[str]:
        """Package-relative files the steps need."""
        out = [s.file for s in self.pre if isinstance(s, Tokenize)]
        out += [s.labels_file for s in self.post if isinstance(s, TopK)]
        if self.handler is not None:
            out.append(self.handler.file)
        return out

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "pre": [step_to_dict(s) for s in self.pre],
            "post": [step_to_dict(s) for s in self.post],
            "outputs": list(self.outputs),
        }
        if self.handler is not None:
            d["handler"] = dataclasses.asdict(self.handler)
        if self.verification is not None:
            d["verification"] = dict(self.verification)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Processing:
        if not isinstance(data, Mapping):
            raise PackageError(f"the manifest's 'processing' must be an object, got {data!r}")
        handler = data.get("handler")
        try:
            return cls(
                pre=tuple(step_from_dict(s) for s in data.get("pre", ())),
                post=tuple(step_from_dict(s) for s in data.get("post", ())),
                outputs=tuple(data.get("outputs", ())),
                handler=HandlerRef(**handler) if handler else None,
                verification=data.get("verification"),
            )
        except (TypeError, UsageError) as exc:
            raise PackageError(f"the manifest's 'processing' section is invalid: {exc}") from None

    @classmethod
    def of(cls, manifest: Mapping[str, Any]) -> Processing | None:
        """The manifest's processing, or None when the package has none."""
        data = manifest.get("processing")
        return cls.from_dict(data) if data else None


def _read_labels(path: Path) -> list[str]:
    try:
        return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise PackageError(f"cannot read the labels file {path}: {exc}", path=str(path)) from exc


class Pipeline:
    """A graph with its processing, ready to run.

    processing: the steps; base: the package directory (the steps' files are relative to it);
    graph: the graph's signature; run_graph: ``feed -> outputs`` (None: ``__call__`` is not
    available, e.g. in the server, which runs the graph through its batcher); trust: allow a
    custom handler's code to run.
    """

    def __init__(
        self,
        processing: Processing,
        base: str | os.PathLike[str],
        graph: Signature,
        run_graph: GraphRunner | None = None,
        *,
        trust: bool = False,
    ) -> None:
        from .image import ImageDecoder
        from .text import TextTokenizer

        self.processing = processing
        self.base = Path(base)
        self.graph = graph
        self.run_graph = run_graph
        self.handler = (
            load_handler(processing.handler, self.base, trust=trust) if processing.handler else None
        )
        self._pre: list[tuple[Any, Any]] = []
        for step in processing.pre:
            rt = (
                TextTokenizer(step, self.base) if isinstance(step, Tokenize) else ImageDecoder(step)
            )
            self._pre.append((step, rt))
        self._tokenizers = [rt for s, rt in self._pre if isinstance(s, Tokenize)]
        self._labels = {
            i: _read_labels(self.base / s.labels_file)
            for i, s in enumerate(processing.post)
            if isinstance(s, TopK)
        }
        self.signature = self._public_signature()
        self.graph_inputs = [t.name for t in graph.inputs]

    # --- the public signature ---------------------------------------------------------------

    def _public_signature(self) -> Signature:
        graph = self.graph
        gin = {t.name: t for t in graph.inputs}
        batch = _batch_dim(graph)
        produced: set[str] = set()
        inputs: list[TensorSpec] = []
        for step, _ in self._pre:
            if isinstance(step, Tokenize):
                made = [n for n in (step.ids, step.mask, step.type_ids) if n]
            else:
                made = [step.output]
            missing = [n for n in made if n not in gin]
            if missing:
                raise PackageError(
                    f"processing step {step.kind!r} fills graph input(s) {missing}, which the "
                    f"graph does not have (its inputs: {list(gin)})"
                )
            produced.update(made)
            inputs.append(TensorSpec(step.input, "str", (batch,)))
        inputs += [t for t in graph.inputs if t.name not in produced]
        env: dict[str, TensorSpec] = {t.name: t for t in [*graph.inputs, *graph.outputs]}
        for step in self.processing.post:
            src = env.get(step.input)
            if src is None:
                raise PackageError(
                    f"processing step {step.kind!r} reads '{step.input}', which neither the graph "
                    f"nor an earlier step produces (available: {sorted(env)})"
                )
            if step.kind in ("mean_pool", "max_pool", "cls_pool"):
                env[step.output] = TensorSpec(step.output, "float32", (src.shape[0], src.shape[-1]))
            elif step.kind in ("l2_normalize", "softmax"):
                env[step.output] = TensorSpec(step.output, "float32", src.shape)
            elif isinstance(step, TopK):
                shape = (src.shape[0],) if step.k == 1 else (src.shape[0], step.k)
                env[step.label_output] = TensorSpec(step.label_output, "str", shape)
                env[step.score_output] = TensorSpec(step.score_output, "float32", shape)
        names = list(self.processing.outputs) or [t.name for t in graph.outputs]
        unknown = [n for n in names if n not in env]
        if unknown:
            raise PackageError(
                f"the processing outputs {unknown} are not produced (available: {sorted(env)})"
            )
        outputs = [dataclasses.replace(env[n], name=n) for n in names]
        if self.handler is not None:
            inputs = _declared(self.handler, "inputs", inputs)
            outputs = _declared(self.handler, "outputs", outputs)
        return Signature(tuple(inputs), tuple(outputs))

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.signature.outputs]

    # --- per request ------------------------------------------------------------------------

    def payload_bytes(self, inputs: Mapping[str, Any]) -> int:
        """Bytes of text/image payload in a request (what pre-processing has to chew)."""
        total = 0
        for step, _ in self._pre:
            v = inputs.get(step.input)
            if v is None:
                continue
            for x in np.asarray(v, dtype=object).ravel().tolist():
                total += len(x) if isinstance(x, bytes | str) else 0
        return total

    def inline_ok(self, inputs: Mapping[str, Any]) -> bool:
        """Whether pre-processing this request is cheap enough for an event loop."""
        return self.handler is None and self.payload_bytes(inputs) <= INLINE_PAYLOAD_BYTES

    def prepare(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """One request's public inputs -> its graph feed (token rows unpadded)."""
        if self.handler is not None and hasattr(self.handler, "preprocess"):
            inputs = self.handler.preprocess({k: _bytes_elements(v) for k, v in inputs.items()})
            if not isinstance(inputs, Mapping):
                raise InputError("the handler's preprocess must return a dict of name -> array")
        feed: dict[str, np.ndarray] = {}
        used: set[str] = set()
        rows: int | None = None
        for step, rt in self._pre:
            if step.input not in inputs:
                raise InputError(
                    f"missing input '{step.input}'; this model takes {self.signature.input_names}",
                    input=step.input,
                )
            used.add(step.input)
            if isinstance(step, Tokenize):
                part = rt.encode(as_texts(step.input, inputs[step.input]))
            else:
                part = {
                    step.output: rt.decode(
                        batch_rows(step.input, inputs[step.input], "images as encoded files")
                    )
                }
            n = len(next(iter(part.values())))
            if rows is not None and n != rows:
                raise InputError(f"the inputs have different numbers of rows ({rows} and {n})")
            rows = n
            feed.update(part)
        produced = set(feed) | _filled_by_collate(self._pre)
        for name in self.graph_inputs:
            if name in produced:
                continue
            if name not in inputs:
                raise InputError(
                    f"missing input '{name}'; this model takes {self.signature.input_names}",
                    input=name,
                )
            used.add(name)
            feed[name] = np.asarray(inputs[name])
        extra = sorted(set(inputs) - used)
        if extra:
            raise InputError(
                f"unknown input(s) {extra}; this model takes {self.signature.input_names}",
                input=extra[0],
            )
        return feed

    def graph_feed(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The graph's inputs for public ``inputs`` (what a client of ``NAME_raw`` sends)."""
        feed = self.prepare({k: _as_array(v) for k, v in inputs.items()})
        full = dict(feed)
        for rt in self._tokenizers:
            full.update(rt.collate(feed))
        return {n: full[n] for n in self.graph_inputs}

    # --- per merged batch -------------------------------------------------------------------

    def run_batch(
        self, feed: Mapping[str, np.ndarray], run_graph: GraphRunner | None = None
    ) -> dict[str, np.ndarray]:
        """Collate (pad token rows to the longest), run the graph, post-process."""
        run_graph = run_graph or self.run_graph
        if run_graph is None:
            raise UsageError("this pipeline has no graph runner; load it with modelport.load")
        full = dict(feed)
        for rt in self._tokenizers:
            full.update(rt.collate(feed))
        graph_feed = {n: full[n] for n in self.graph_inputs}
        return self.postprocess({**graph_feed, **run_graph(graph_feed)})

    def postprocess(self, graph_env: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The post steps (and a handler's postprocess) over the graph's collated inputs and
        outputs (at least ``post_reads``) -> the answer's outputs."""
        env: dict[str, np.ndarray] = dict(graph_env)
        for i, step in enumerate(self.processing.post):
            env.update(POST[step.kind](step, env, self._labels.get(i)))
        if self.handler is not None and hasattr(self.handler, "postprocess"):
            result = self.handler.postprocess(env)
            if not isinstance(result, Mapping):
                raise InputError("the handler's postprocess must return a dict of name -> array")
            env.update(result)
        return {n: env[n] for n in self.output_names}

    @property
    def post_reads(self) -> list[str]:
        """The graph inputs and outputs that ``postprocess`` reads (a step's input or mask that no
        earlier step made, and the answer's outputs that no step makes)."""
        made: set[str] = set()
        reads: list[str] = []
        for step in self.processing.post:
            for name in (step.input, getattr(step, "mask", None)):
                if name and name not in made and name not in reads:
                    reads.append(name)
            made.update(
                (step.label_output, step.score_output) if isinstance(step, TopK) else (step.output,)
            )
        reads += [n for n in self.output_names if n not in made and n not in reads]
        return reads

    # --- for Python callers -----------------------------------------------------------------

    def __call__(self, *args: Any, **inputs: Any) -> dict[str, np.ndarray]:
        """Run on public inputs: ``pipe(["a text", ...])`` (one-input models), ``pipe(text=[...])``
        or ``pipe({"image": [png_bytes, ...]})``. Returns the outputs by name."""
        if args:
            if len(args) != 1 or inputs:
                raise UsageError("pass one positional value, or inputs by name, not both")
            (value,) = args
            if isinstance(value, Mapping):
                inputs = dict(value)
            elif len(self.signature.inputs) == 1:
                inputs = {self.signature.inputs[0].name: value}
            else:
                raise UsageError(
                    f"this model takes {self.signature.input_names}; pass them by name"
                )
        if isinstance(inputs.get(next(iter(inputs), "")), str | bytes):
            inputs = {k: [v] if isinstance(v, str | bytes) else v for k, v in inputs.items()}
        arrays = {k: _as_array(v) for k, v in inputs.items()}
        return self.run_batch(self.prepare(arrays))

    @classmethod
    def load(
        cls,
        package: Any,
        *,
        trust: bool = False,
        session_config: Any = None,
    ) -> Pipeline:
        """The package's pipeline with an ONNX Runtime session for the graph (no steps: the graph
        alone)."""
        from ..package import ModelPackage
        from ..runtime import SessionConfig, make_session, run_session

        pkg = package if isinstance(package, ModelPackage) else ModelPackage.load(package)
        processing = Processing.of(pkg.manifest) or Processing()
        check_files(pkg.path, pkg.manifest, processing)
        session = make_session(pkg.model_path, session_config or SessionConfig())
        names = [o.name for o in session.get_outputs()]
        return cls(
            processing,
            pkg.path,
            pkg.signature,
            lambda feed: run_session(session, feed, names),
            trust=trust,
        )


def check_files(base: Path, manifest: Mapping[str, Any], processing: Processing) -> None:
    """Every processing file is present and unchanged (sha256 in the manifest's ``files``)."""
    from ..package import file_sha256

    recorded = manifest.get("files", {})
    for rel in processing.files:
        path = base / rel
        if not path.is_file():
            raise PackageError(
                f"the package's processing file {rel} is missing; convert the model again",
                path=str(path),
            )
        want = (recorded.get(rel) or {}).get("sha256")
        if want and file_sha256(path) != want:
            raise PackageError(
                f"the processing file {rel} changed since the package was written (sha256 "
                "differs from the manifest); restore it or convert the model again",
                path=str(path),
            )


def _batch_dim(graph: Signature) -> Any:
    for t in graph.inputs:
        if t.shape and isinstance(t.shape[0], str):
            return t.shape[0]
    return "batch"


def _filled_by_collate(pre: Sequence[tuple[Any, Any]]) -> set[str]:
    return {s.mask for s, _ in pre if isinstance(s, Tokenize) and s.mask}


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, list | tuple) and value and isinstance(value[0], str | bytes | Path):
        out = np.empty(len(value), dtype=object)
        out[:] = [Path(v).read_bytes() if isinstance(v, Path) else v for v in value]
        return out
    return np.asarray(value)


_V2_TO_SIGNATURE = {
    "BYTES": "str",
    "FP32": "float32",
    "FP64": "float64",
    "FP16": "float16",
    "INT64": "int64",
    "INT32": "int32",
    "INT16": "int16",
    "INT8": "int8",
    "UINT8": "uint8",
    "BOOL": "bool",
}


def _declared(handler: Any, attr: str, default: list[TensorSpec]) -> list[TensorSpec]:
    """A handler's ``inputs``/``outputs`` class attribute ({name: (V2 datatype, shape)})."""
    declared = getattr(handler, attr, None)
    if declared is None:
        return default
    specs = []
    try:
        for name, (datatype, shape) in dict(declared).items():
            specs.append(
                TensorSpec(
                    name,
                    _V2_TO_SIGNATURE[datatype],
                    tuple("batch" if d == -1 else d for d in shape),
                )
            )
    except (KeyError, TypeError, ValueError):
        raise PackageError(
            f"the handler's {attr} must map name -> (V2 datatype, shape), e.g. "
            f'{{"text": ("BYTES", [-1])}}; got {declared!r}'
        ) from None
    return specs


def _bytes_elements(value: Any) -> Any:
    """A BYTES tensor with ``bytes`` elements whatever the protocol brought (V2 JSON gives ``str``,
    binary tensors, gRPC, TF Serving and TorchServe give ``bytes``): what a handler receives."""
    arr = np.asarray(value) if not isinstance(value, np.ndarray) else value
    if arr.dtype.kind != "U" and (
        arr.dtype != object or not any(isinstance(x, str) for x in arr.flat)
    ):
        return value
    out = np.empty(arr.shape, dtype=object)
    out.flat[:] = [x.encode("utf-8") if isinstance(x, str) else x for x in arr.flat]
    return out
