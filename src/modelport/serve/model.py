"""A loaded model version: its engine session (ONNX Runtime or OpenVINO) and a thread-safe
``run``.

The only serve module that touches ``modelport.runtime`` (and through it the engines).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import InputError, ModelportError
from ..package import ModelPackage
from ..runtime import EngineConfig, SessionConfig, load_engine, run_session  # engines load lazily
from ..signature import Signature
from .config import INLINE_THRESHOLD_S, ModelConfig
from .errors import InferenceFailedError, RequestTooLargeError, ServeError
from .types import v2_datatype

__all__ = [
    "LoadedModel",
    "batch_axis_name",
    "batching_plan",
    "check_request_limits",
    "load_model",
    "request_limits",
]

log = logging.getLogger("modelport.serve")


def batch_axis_name(signature: Signature) -> str | None:
    """The symbolic dim every input and output has on axis 0, or None (then no batching)."""
    return batching_plan(signature)[0]


def batching_plan(signature: Signature) -> tuple[str | None, str]:
    """(the batch axis name, "") when requests may be merged, else (None, why not):
    ``Signature.batching``, the one rule for stacking rows (the warm-up then checks that an
    unnamed output axis 0 keeps one row per input row)."""
    return signature.batching()


def _shared_dims(signature: Signature) -> dict[str, list[tuple[str, int]]]:
    """Symbolic dims that more than one input uses: name -> [(input, axis), ...]."""
    uses: dict[str, list[tuple[str, int]]] = {}
    for s in signature.inputs:
        for axis, d in enumerate(s.shape):
            if isinstance(d, str) and not d.startswith(f"dim_{s.name}_"):
                uses.setdefault(d, []).append((s.name, axis))
    return {d: u for d, u in uses.items() if len({n for n, _ in u}) > 1}


@dataclass
class LoadedModel:
    """One model version, ready to run. ``run`` may be called from several threads at once."""

    name: str
    version: int
    package: ModelPackage
    signature: Signature
    config: ModelConfig
    session: Any
    batchable: bool
    inline: bool
    threads: int = 0  # ORT intra-op threads per call
    batching_note: str = ""  # why dynamic batching is off, when it is
    prepare: ClassVar[None] = None  # no pre-processing: the request's tensors are the feed

    def __post_init__(self) -> None:
        # Lookups the data plane makes on every request, computed once.
        self.shared_dims = _shared_dims(self.signature)
        self.row_limit, self.element_limits = request_limits(self.signature, self.config)
        # Runs above this many rows or input bytes hand their arena memory back afterwards.
        self.shrink_above_rows = max(self.config.max_batch_size, 1)
        self.input_specs = {
            t.name: (v2_datatype(t.dtype), tuple(d if isinstance(d, int) else -1 for d in t.shape))
            for t in self.signature.inputs
        }
        self.output_types = {t.name: v2_datatype(t.dtype) for t in self.signature.outputs}
        self.output_names = list(self.session.output_names)

    def run(
        self, feed: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Outputs by name. Bad inputs raise InputError, other ORT failures InferenceFailedError.

        A run larger than usual (more rows than a full merged batch, or over 1 MB of inputs)
        asks ONNX Runtime to give the arena memory it grew for it back to the system afterwards.
        """
        options = None
        arrays = list(feed.values())
        if arrays and (
            sum(a.nbytes for a in arrays) > SHRINK_ABOVE_BYTES
            or (arrays[0].ndim and arrays[0].shape[0] > self.shrink_above_rows)
        ):
            options = _shrink_options()
        try:
            return run_session(self.session, feed, outputs or self.output_names, options)
        except InputError as exc:
            raise InputError(without_paths(exc.message), model=self.name) from exc
        except ModelportError as exc:
            raise InferenceFailedError(
                f"model '{self.name}' version {self.version} failed: {without_paths(exc.message)}",
                model=self.name,
            ) from exc

    def close(self) -> None:
        self.session = None


_SOURCE_PATH = re.compile(r"\S*/\S+\.(?:h|hpp|cc|cpp|c|cu|py)\b(?::\d+)?(?:\s+\S+\([^)]*\))?")


def without_paths(message: str) -> str:
    """An ONNX Runtime message without the source file locations it carries (clients see it)."""
    return re.sub(r"\s{2,}", " ", _SOURCE_PATH.sub("", message)).strip()


# Elements per input tensor allowed whatever the model, and the rows allowed by default.
MIN_ELEMENT_LIMIT = 1 << 24
DEFAULT_ROW_LIMIT = 1024
SHRINK_ABOVE_BYTES = 1 << 20


def request_limits(signature: Signature, config: ModelConfig) -> tuple[int, dict[str, int]]:
    """(rows per request, {input: elements}) for the model: the config's values, or derived.

    Rows: ``max_request_rows`` or max(1024, max_batch_size). Elements: ``max_tensor_elements`` or
    the larger of 2**24 and rows x the input's fixed elements per row (symbolic dims other than
    the batch axis count 1)."""
    rows = config.max_request_rows or max(DEFAULT_ROW_LIMIT, config.max_batch_size)
    elements = {}
    for s in signature.inputs:
        if config.max_tensor_elements:
            elements[s.name] = config.max_tensor_elements
            continue
        per_row = 1
        for d in s.shape[1:]:
            per_row *= d if isinstance(d, int) else 1
        first = s.shape[0] if s.shape else 1
        fixed = per_row * (first if isinstance(first, int) else rows)
        elements[s.name] = max(MIN_ELEMENT_LIMIT, fixed)
    return rows, elements


def check_request_limits(
    model: str,
    row_limit: int,
    element_limits: Mapping[str, int],
    name: str,
    arr: np.ndarray,
    *,
    batched: bool,
    item_bytes: bool = False,
) -> None:
    """One request input against its model's limits: rows (axis 0 of a ``batched`` input) at
    most ``row_limit``, elements at most ``element_limits[name]``, and with ``item_bytes`` (the
    texts or encoded images a model with processing takes) each item's bytes at most that too.
    RequestTooLargeError (413) naming the limit, its config field and flag, before any work."""
    if batched and arr.ndim and arr.shape[0] > row_limit:
        raise RequestTooLargeError(
            f"input '{name}' has {arr.shape[0]} rows; model '{model}' accepts at most "
            f"{row_limit} rows per request (max_request_rows in its serving config, or "
            "--max-request-rows); send smaller batches",
            model=model,
            input=name,
        )
    limit = element_limits.get(name)
    if limit is None:
        return
    if arr.size > limit:
        raise RequestTooLargeError(
            f"input '{name}' has {arr.size} elements; model '{model}' accepts at most "
            f"{limit} per tensor (max_tensor_elements in its serving config, or "
            "--max-tensor-elements); send smaller inputs",
            model=model,
            input=name,
        )
    if item_bytes and arr.dtype == object:
        for row, item in enumerate(arr.ravel().tolist()):
            if isinstance(item, bytes | str) and len(item) > limit:
                what = "bytes" if isinstance(item, bytes) else "characters"
                raise RequestTooLargeError(
                    f"input '{name}' item {row} has {len(item)} {what}; model '{model}' accepts "
                    f"at most {limit} per text or image (max_tensor_elements in its serving "
                    "config, or --max-tensor-elements); send smaller items",
                    model=model,
                    input=name,
                )


_ARENA: dict[str, Any] = {}


def _serving_session_options() -> tuple[tuple[str, str], ...]:
    """Session entries that put the session on one process-wide CPU arena that grows by exactly
    what is requested (kSameAsRequested), so that arena shrinkage can hand back what a large
    run grew (measured: ORT's default arena keeps it; see docs/serve.md)."""
    if "registered" not in _ARENA:
        import threading

        with _ARENA.setdefault("lock", threading.Lock()):
            if "registered" not in _ARENA:
                import onnxruntime as ort

                try:
                    ort.create_and_register_allocator(
                        ort.OrtMemoryInfo(
                            "Cpu",
                            ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR,
                            0,
                            ort.OrtMemType.DEFAULT,
                        ),
                        ort.OrtArenaCfg(0, 1, -1, -1),  # max_mem, kSameAsRequested, defaults
                    )
                    _ARENA["registered"] = True
                except Exception as exc:  # pragma: no cover - an ORT build without it
                    log.warning("cannot register a shrinkable CPU arena: %s", exc)
                    _ARENA["registered"] = False
    return (("session.use_env_allocators", "1"),) if _ARENA["registered"] else ()


def _shrink_options() -> Any:
    options = _ARENA.get("shrink")
    if options is None:
        import onnxruntime as ort

        options = ort.RunOptions()
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        _ARENA["shrink"] = options
    return options


def _engine(package: ModelPackage, config: ModelConfig, threads: int) -> Any:
    """The session of the engine and precision the serving config names (plan records them)."""
    return load_engine(
        package.model_path,
        EngineConfig(
            engine=config.engine,
            precision=config.precision,
            threads=threads,
            session=SessionConfig(
                inter_op_threads=1, extra_session_options=_serving_session_options()
            )
            if config.engine == "ort"
            else None,
        ),
    )


def load_model(package: ModelPackage, name: str, version: int, config: ModelConfig) -> LoadedModel:
    """Create the session, warm it up and decide batching and inline execution by measurement."""
    signature = package.signature
    session = _engine(package, config, config.threads)
    batch_name, why_not = batching_plan(signature)
    coupled = package.batch_coupled_ops() if batch_name is not None else []
    if coupled:  # merged requests would change each other's answers
        batch_name, why_not = (
            None,
            (
                f"the model quantizes activations at run time ({', '.join(coupled)}: one int8 "
                "scale per run, over every row), so a request merged with others would get another "
                "answer than alone"
            ),
        )
    if batch_name is None and config.max_batch_size > 1:
        log.info("model %s version %s: dynamic batching is off: %s", name, version, why_not)
    model = LoadedModel(
        name=name,
        version=version,
        package=package,
        signature=signature,
        config=config,
        session=session,
        batchable=batch_name is not None and config.max_batch_size > 1,
        inline=config.execution == "inline",
        threads=config.threads,
        batching_note=why_not if config.max_batch_size > 1 else "max_batch_size is 1",
    )
    if config.warmup:
        _warm_up(model, batch_name)
    return model


class _WarmUpFeeds:
    """Inputs for the warm-up: the package's stored samples (real data) when it has them, else
    generated ones at sizes a model of its kind takes, integers within the tables they index."""

    def __init__(self, model: LoadedModel, batch_name: str | None) -> None:
        self.batch_name = batch_name
        self.signature = model.signature
        stored = model.package.samples()
        self.samples = dict(stored[0]) if stored and stored[0] else None
        self._ranges: dict[str, tuple[float, float]] | None = None
        self.package = model.package
        self.dims: dict[str, int] | None = None  # generated sizes, once one set has run

    @property
    def real(self) -> bool:
        return self.samples is not None

    def candidates(self) -> list[dict[str, int]]:
        """Generated sizes to try for the first run (one entry, ignored, for real samples)."""
        from ..data import candidate_dims

        return [{}] if self.samples is not None else candidate_dims(self.signature)

    def feed(self, rows: int, dims: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        from ..data import generate_feed, guess_dims, take_rows

        if self.samples is not None:
            return take_rows(self.samples, rows) if self.batch_name else dict(self.samples)
        if self._ranges is None:
            self._ranges = _graph_ranges(self.package)
        dims = dict(dims or self.dims or guess_dims(self.signature))
        if self.batch_name:
            dims[self.batch_name] = rows
        return generate_feed(self.signature, dims, ranges=self._ranges)


def _graph_ranges(package: ModelPackage) -> dict[str, tuple[float, float]]:
    """Integer input ranges the graph implies (embedding tables, OneHot depths); {} if unknown."""
    try:
        import onnx

        from ..data import graph_value_ranges

        proto = onnx.load(str(package.model_path), load_external_data=False)
        return graph_value_ranges(proto)
    except Exception:  # a hint only: generation falls back to its defaults
        return {}


def _warm_up(model: LoadedModel, batch_name: str | None) -> None:
    """Run the stored samples (else generated inputs) at batch 1 and at a merged batch; check the
    batch axis is kept; decide inline execution by measurement.

    A model that fails on its stored samples fails to load. One that fails on generated inputs
    (no samples stored) is loaded anyway, with batching off and a warning: generated inputs
    are a guess at what it takes, not evidence that it is broken.
    """
    feeds = _WarmUpFeeds(model, batch_name)
    error: ModelportError | None = None
    for dims in feeds.candidates():
        try:
            model.run(feeds.feed(1, dims))
            feeds.dims, error = dims, None
            break
        except ModelportError as exc:
            error = error or exc
    if error is not None:
        if feeds.real:
            raise ServeError(
                f"warm-up of model '{model.name}' version {model.version} failed on the "
                f"package's stored samples: {error.message}",
                model=model.name,
            ) from error
        log.warning(
            "model %s version %s: could not warm up with generated inputs (%s); it is served "
            "without warm-up and without dynamic batching. Store real inputs in the package "
            "(convert with --example-inputs) to warm it up",
            model.name,
            model.version,
            error.message.splitlines()[0][:300],
        )
        if model.batchable:
            model.batchable = False
            model.batching_note = (
                "the warm-up could not run generated inputs, so the batch axis was not checked; "
                "store real samples (convert with --example-inputs) to enable batching"
            )
        return
    try:
        _measure(model, batch_name, feeds)
    except ModelportError as exc:
        if feeds.real:
            raise ServeError(
                f"warm-up of model '{model.name}' version {model.version} failed on the "
                f"package's stored samples: {exc.message}; set warmup: false in its serving "
                "config if it cannot be warmed up",
                model=model.name,
            ) from exc
        # one row ran; a merged batch of generated rows did not: serve it unbatched
        log.warning(
            "model %s version %s: a merged batch of generated inputs failed (%s); dynamic "
            "batching is off for it",
            model.name,
            model.version,
            exc.message.splitlines()[0][:300],
        )
        model.batchable = False
        model.batching_note = (
            "a merged batch of generated inputs failed in the warm-up; store real samples "
            "(convert with --example-inputs) to check batching on real data"
        )


def _measure(model: LoadedModel, batch_name: str | None, feeds: _WarmUpFeeds) -> None:
    if model.batchable:
        rows = min(model.config.max_batch_size, 8)
        outs = model.run(feeds.feed(rows))
        bad = [k for k, v in outs.items() if np.ndim(v) == 0 or np.shape(v)[0] != rows]
        if bad:
            log.warning(
                "model %s version %s: outputs %s do not keep the batch on axis 0; "
                "dynamic batching is off for it",
                model.name,
                model.version,
                bad,
            )
            model.batchable = False
            model.batching_note = (
                f"outputs {bad} do not keep one row per input row (found by the warm-up)"
            )
    if model.config.execution == "auto":
        rows = min(model.config.max_batch_size, 8) if model.batchable else 1
        feed = feeds.feed(rows)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            model.run(feed)
            times.append(time.perf_counter() - t0)
        model.inline = float(np.median(times)) < INLINE_THRESHOLD_S
    if model.inline and model.config.intra_op_threads == 0 and model.config.threads > 1:
        # A model this small runs fastest in the calling thread alone: waking ORT's pool
        # threads costs more than the work (measured, docs/serve.md). Small, so cheap to redo.
        model.session = _engine(model.package, model.config, 1)
        model.threads = 1
        model.run(feeds.feed(1))
