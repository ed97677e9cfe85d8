"""The data plane: one implementation of health, metadata, readiness and inference that every
protocol adapter (HTTP, gRPC) calls with the internal types."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np

from .. import __version__
from ..errors import InputError
from .contracts import Feed, Outputs, Repository, ServedModel, serving
from .errors import RequestTimeoutError, status_of
from .metrics import Metrics
from .model import check_request_limits
from .offload import off_loop
from .processed import classify_outputs
from .repository import READY
from .types import InferenceRequest, InferenceResponse, RequestedOutput, Tensor

__all__ = ["DataPlane", "EXTENSIONS", "PLATFORM"]

log = logging.getLogger("modelport.serve")

PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["binary_tensor_data", "classification", "model_repository", "model_configuration"]
_UNKNOWN = "(unknown)"  # metrics label for names that are not models (bounded cardinality)


class DataPlane:
    """Health, metadata and inference over a repository (serve/contracts.py: the local
    ModelRepository or the Ray ingress's RemoteRepository), in the internal types."""

    def __init__(self, repository: Repository, metrics: Metrics | None = None) -> None:
        self.repository = repository
        self.metrics = metrics or repository.metrics
        self.started = False
        self.draining = False
        self.strict_readiness = True

    # --- health and metadata --------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """Ready once the initial load (with warm-up) is done and every model that should be
        loaded is ready (Triton's strict readiness; at least one model), until shutdown starts.
        With ``strict_readiness`` off: ready once started, whatever the models."""
        if not self.started or self.draining:
            return False
        if not self.strict_readiness:
            return True
        return not self.repository.not_ready()

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "modelport", "version": __version__, "extensions": list(EXTENSIONS)}

    def model_ready(self, name: str, version: str | None = None) -> bool:
        try:
            return self.repository.get(name, version).state == READY
        except Exception:
            return False

    def served_model(self, name: str, version: str | None = None) -> ServedModel:
        """The model that serves ``name`` (at ``version``); 404/503 errors that say why not."""
        return serving(self.repository.get(name, version))[0]

    def resolve(self, name: str, version: str | None = None) -> ServedModel:
        """``served_model`` for an inference request whose body is not read yet: the HTTP
        routes call it first, so a request for a model (or version) that is not served is
        answered 404 (503: not ready) whatever its body holds. A refusal is counted in the
        request metrics as ``infer`` counts it."""
        try:
            return self.served_model(name, version)
        except Exception as exc:
            self._count_refusal(name, version or "", status_of(exc).label)
            raise

    def _count_refusal(self, name: str, version: str, status: str) -> None:
        if status == "not_found":  # bounded label values: not every name a client sends
            name = _UNKNOWN if name not in self.repository.models else name
            version = ""
        self.metrics.requests[(name, version, status)] += 1

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        model, _ = serving(self.repository.get(name, version))
        entry = self.repository.entry(name)
        return {
            "name": name,
            "versions": [str(v) for v, s in sorted(entry.versions.items()) if s.state == READY],
            "platform": PLATFORM,
            "inputs": [
                {"name": n, "datatype": dt, "shape": list(shape)}
                for n, (dt, shape) in model.input_specs.items()
            ],
            "outputs": [
                {
                    "name": t.name,
                    "datatype": model.output_types[t.name],
                    "shape": _v2_shape(t.shape),
                }
                for t in model.signature.outputs
            ],
        }

    def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        """A Triton-style model configuration (what ``get_model_config`` expects)."""
        model, batcher = serving(self.repository.get(name, version))
        batched = batcher.max_batch_size > 1

        def dims(shape: tuple[int | str, ...]) -> list[int]:
            v2 = _v2_shape(shape)
            return v2[1:] if batched else v2

        def typ(dt: str) -> str:
            return "TYPE_STRING" if dt == "BYTES" else f"TYPE_{dt}"

        cfg = model.config
        return {
            "name": name,
            "platform": PLATFORM,
            # Triton's backend names: "openvino" when OpenVINO runs it (parameters.engine: what ran)
            "backend": "openvino"
            if model.session is not None and model.session.info.engine == "openvino"
            else "onnxruntime",
            "max_batch_size": batcher.max_batch_size if batched else 0,
            "input": [
                {
                    "name": t.name,
                    "data_type": typ(model.input_specs[t.name][0]),
                    "dims": dims(t.shape),
                }
                for t in model.signature.inputs
            ],
            "output": [
                {
                    "name": t.name,
                    "data_type": typ(model.output_types[t.name]),
                    "dims": dims(t.shape),
                }
                for t in model.signature.outputs
            ],
            "version_policy": str(cfg.version_policy),
            "dynamic_batching": {
                "max_queue_delay_microseconds": int(cfg.max_queue_delay_ms * 1000),
                "max_queue_size": cfg.max_queue_size,
            },
            "instance_group": [{"count": batcher.instances, "kind": "KIND_CPU"}],
            "parameters": {
                "execution": "inline" if batcher.inline else "thread",
                "intra_op_threads": model.threads,
                "engine": model.session.info.to_dict() if model.session is not None else None,
                "timeout_ms": cfg.timeout_ms,
                "dynamic_batching": "on"
                if batched
                else f"off: {model.batching_note or 'max_batch_size is 1'}",
            },
        }

    # --- inference ------------------------------------------------------------------------

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        """Validate, queue for the model's batcher, wait (bounded by the timeout), answer."""
        t0 = time.perf_counter()
        metrics = self.metrics
        name = request.model_name
        version = request.model_version or ""
        counted = False
        status = "internal"
        try:
            vs = self.repository.get(name, request.model_version)
            version = vs.version_str
            metrics.inflight[name] += 1
            counted = True
            model, batcher = serving(vs)
            prepare = model.prepare  # a ProcessedModel: text/images in
            if prepare is not None:
                feed = await prepare(request.inputs)
            else:
                strings = sum(t.data.size for t in request.inputs if t.datatype == "BYTES")
                feed = await off_loop(strings * 16, _feed, model, request.inputs)
            wanted = _wanted_outputs(model, request.outputs)
            outputs = await self._wait(model, batcher.submit(feed), request)
            types = model.output_types
            if request.outputs and any("classification" in r.parameters for r in request.outputs):
                outputs, types = classify_outputs(model, request.outputs, outputs)
            version = vs.version_str  # a remote version (serve/ray) knows only now which served
            response = InferenceResponse(
                name,
                version,
                [Tensor(n, types[n], list(outputs[n].shape), outputs[n]) for n in wanted],
                request.id,
            )
            status = "success"
            return response
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        except Exception as exc:
            status = status_of(exc).label
            if status == "not_found":
                name = _UNKNOWN if name not in self.repository.models else name
                version = ""
            if status == "internal":
                log.error("request %s for model %s failed: %s", request.id or "-", name, exc)
            raise
        finally:
            if counted:
                metrics.inflight[name] -= 1
                metrics.histogram("duration", name, version).observe(time.perf_counter() - t0)
            metrics.requests[(name, version, status)] += 1

    async def _wait(
        self, model: ServedModel, fut: asyncio.Future[Outputs], request: InferenceRequest
    ) -> Outputs:
        """The outputs, or RequestTimeoutError when the model's (or the request's) timeout
        passes first."""
        timeout = model.config.timeout_ms / 1000.0
        asked = request.parameters.get("timeout")  # microseconds, as tritonclient sends it
        if isinstance(asked, int | float) and not isinstance(asked, bool) and asked > 0:
            timeout = min(timeout, asked / 1e6)
        timer = asyncio.get_running_loop().call_later(timeout, _expire, fut, timeout)
        try:
            return await fut
        finally:
            timer.cancel()

    # --- repository extension ------------------------------------------------------------

    def repository_index(self) -> list[dict[str, str]]:
        return self.repository.index()

    async def load(self, name: str) -> None:
        await self.repository.load(name)

    async def unload(self, name: str) -> None:
        await self.repository.unload(name)


def _expire(fut: asyncio.Future[Outputs], timeout: float) -> None:
    if not fut.done():
        fut.set_exception(
            RequestTimeoutError(
                f"no answer within the {timeout * 1000:.0f} ms timeout; the server is overloaded "
                "or the model is slow for this input"
            )
        )


def _v2_shape(shape: tuple[int | str, ...]) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in shape]


def _feed(model: ServedModel, inputs: list[Tensor]) -> dict[str, np.ndarray]:
    """The model's feed from request tensors, in signature order; InputError on any mismatch."""
    specs = model.input_specs
    given: dict[str, np.ndarray] = {}
    for t in inputs:
        spec = specs.get(t.name)
        if spec is None:
            raise InputError(
                f"model '{model.name}' has no input named '{t.name}'; its inputs are {list(specs)}",
                input=t.name,
            )
        if t.name in given:
            raise InputError(f"input '{t.name}' is given twice", input=t.name)
        datatype, shape = spec
        if t.datatype != datatype:
            raise InputError(
                f"input '{t.name}' has datatype {t.datatype}, the model expects {datatype}",
                input=t.name,
                expected=datatype,
                got=t.datatype,
            )
        arr = t.data
        if arr.ndim != len(shape) or any(
            d != -1 and d != n for d, n in zip(shape, arr.shape, strict=True)
        ):
            raise InputError(
                f"input '{t.name}' has shape {list(arr.shape)}, the model expects {list(shape)} "
                "(-1 = any size)",
                input=t.name,
                expected=list(shape),
                got=list(arr.shape),
            )
        _check_limits(model, t.name, arr, shape)
        if datatype == "BYTES":
            arr = _as_str(t.name, arr)
        given[t.name] = arr
    if len(given) != len(specs):
        missing = [n for n in specs if n not in given]
        raise InputError(
            f"missing input(s) {missing} for model '{model.name}'; its inputs are {list(specs)}",
            input=missing[0],
        )
    _check_shared_dims(model, given)
    return given if list(given) == list(specs) else {n: given[n] for n in specs}


def _check_limits(model: ServedModel, name: str, arr: np.ndarray, shape: tuple[int, ...]) -> None:
    """The model's rows-per-request and elements-per-tensor limits (413 before the run)."""
    batched = bool(shape) and shape[0] == -1
    check_request_limits(
        model.name, model.row_limit, model.element_limits, name, arr, batched=batched
    )


def _check_shared_dims(model: ServedModel, given: Feed) -> None:
    """Inputs that share a symbolic dim (e.g. the batch axis) must agree on its size.

    ONNX Runtime does not check this, and a merged batch would hand one request's rows to
    another, so it is checked here, before the batcher.
    """
    for dim, uses in model.shared_dims.items():
        sizes = {n: int(given[n].shape[axis]) for n, axis in uses}
        if len(set(sizes.values())) > 1:
            detail = ", ".join(f"'{n}' has {k}" for n, k in sizes.items())
            raise InputError(
                f"the inputs disagree on dimension '{dim}': {detail}; every input of one "
                f"request must have the same size on '{dim}' (e.g. the same batch size)",
                dim=dim,
                sizes=sizes,
            )


def _as_str(name: str, arr: np.ndarray) -> np.ndarray:
    """ONNX STRING tensors are handed to ONNX Runtime as Python str (UTF-8)."""
    flat = arr.ravel()
    try:
        out = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in flat]
    except UnicodeDecodeError as exc:
        raise InputError(
            f"input '{name}' holds bytes that are not UTF-8; ONNX string tensors need UTF-8 text",
            input=name,
        ) from exc
    result = np.empty(len(out), dtype=object)
    result[:] = out
    return result.reshape(arr.shape)


def _wanted_outputs(model: ServedModel, requested: list[RequestedOutput] | None) -> list[str]:
    if not requested:
        return list(model.output_types)
    names = []
    for r in requested:
        if r.name not in model.output_types:
            raise InputError(
                f"model '{model.name}' has no output named '{r.name}'; its outputs are "
                f"{list(model.output_types)}",
                output=r.name,
            )
        names.append(r.name)
    return names
