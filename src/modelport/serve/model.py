"""A loaded model version: its ONNX Runtime session and a thread-safe ``run``.

The only serve module that touches ``modelport.runtime`` (and through it onnxruntime).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError, ModelportError
from ..package import ModelPackage
from ..runtime import SessionConfig, make_session, run_session  # light: ORT loads on first use
from ..signature import Signature
from .config import INLINE_THRESHOLD_S, ModelConfig
from .errors import InferenceFailedError
from .types import v2_datatype

__all__ = ["LoadedModel", "batch_axis_name", "load_model"]

log = logging.getLogger("modelport.serve")


def batch_axis_name(signature: Signature) -> str | None:
    """The symbolic dim every input and output has on axis 0, or None (then no batching)."""
    specs = [*signature.inputs, *signature.outputs]
    if not signature.inputs or not all(s.shape and isinstance(s.shape[0], str) for s in specs):
        return None
    names = {s.shape[0] for s in signature.inputs}
    return names.pop() if len(names) == 1 else None


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

    def __post_init__(self) -> None:
        # Lookups the data plane makes on every request, computed once.
        self.input_specs = {
            t.name: (v2_datatype(t.dtype), tuple(d if isinstance(d, int) else -1 for d in t.shape))
            for t in self.signature.inputs
        }
        self.output_types = {t.name: v2_datatype(t.dtype) for t in self.signature.outputs}
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feed: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None):
        """Outputs by name. Bad inputs raise InputError, other ORT failures InferenceFailedError."""
        try:
            return run_session(self.session, feed, outputs or self.output_names)
        except InputError:
            raise
        except ModelportError as exc:
            raise InferenceFailedError(
                f"model '{self.name}' version {self.version} failed: {exc.message}",
                model=self.name,
            ) from exc

    def close(self) -> None:
        self.session = None


def load_model(package: ModelPackage, name: str, version: int, config: ModelConfig) -> LoadedModel:
    """Create the session, warm it up and decide batching and inline execution by measurement."""
    signature = package.signature
    session = make_session(
        package.model_path,
        SessionConfig(intra_op_threads=config.threads, inter_op_threads=1),
    )
    batch_name = batch_axis_name(signature)
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
    )
    if config.warmup:
        _warm_up(model, batch_name)
    return model


def _warm_up(model: LoadedModel, batch_name: str | None) -> None:
    """Run generated inputs at batch 1 and at a merged batch; check the batch axis is kept."""
    from ..data import generate_feed

    sig = model.signature
    try:
        model.run(generate_feed(sig, {batch_name: 1} if batch_name else {}))
        if model.batchable:
            rows = min(model.config.max_batch_size, 8)
            feed = generate_feed(sig, {batch_name: rows})
            outs = model.run(feed)
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
        if model.config.execution == "auto":
            rows = min(model.config.max_batch_size, 8) if model.batchable else 1
            feed = generate_feed(sig, {batch_name: rows} if batch_name else {})
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                model.run(feed)
                times.append(time.perf_counter() - t0)
            model.inline = float(np.median(times)) < INLINE_THRESHOLD_S
        if model.inline and model.config.intra_op_threads == 0 and model.config.threads > 1:
            # A model this small runs fastest in the calling thread alone: waking ORT's pool
            # threads costs more than the work (measured, docs/serve.md). Small, so cheap to redo.
            model.session = make_session(
                model.package.model_path, SessionConfig(intra_op_threads=1, inter_op_threads=1)
            )
            model.threads = 1
            model.run(generate_feed(sig, {batch_name: 1} if batch_name else {}))
    except ModelportError as exc:
        raise ModelportError(
            f"warm-up of model '{model.name}' version {model.version} failed: {exc.message}; "
            "set warmup: false in its serving config if generated inputs cannot work for it",
            model=model.name,
        ) from exc
