"""The contracts between the data plane and what serves its models.

The data plane (serve/dataplane.py) and the protocol front-ends (serve/http/, serve/grpc/) see
models only through these Protocols. Two implementations satisfy them, checked by mypy:

    contract          in one process (serve/repository.py, model.py, processed.py, batcher.py)
                      | under --ray, in the ingress (serve/ray/remote.py)
    Repository        ModelRepository            | RemoteRepository
    ModelStatus       ModelEntry                 | RemoteEntry
    VersionStatus     VersionState               | RemoteVersion
    ServedVersion     VersionState               | RemoteCall (one request's version)
    ServedModel       LoadedModel, ProcessedModel | RemoteModel
    ModelQueue        Batcher                    | RemoteCall (sends the feed to a replica)

Members are read-only properties, so an implementation may hold a narrower type (e.g.
``VersionState.model: LoadedModel | None``). A version that ``Repository.get`` hands out is READY:
its ``model`` and ``batcher`` are set; ``serving(version)`` says so to the type checker, and
answers 503 for a version drained between the lookup and the use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .errors import ModelNotReadyError
from .types import Tensor

if TYPE_CHECKING:
    from ..runtime.engines import EngineInfo
    from ..signature import Signature
    from .config import ModelConfig
    from .metrics import Metrics

__all__ = [
    "Feed",
    "InputSpecs",
    "ModelQueue",
    "ModelStatus",
    "Outputs",
    "Prepare",
    "Repository",
    "ServedModel",
    "ServedVersion",
    "SessionView",
    "VersionStatus",
    "serving",
]

Feed = Mapping[str, np.ndarray]
"""A model's inputs by name, as the batcher takes them."""
Outputs = dict[str, np.ndarray]
"""A model's outputs by name."""
InputSpecs = Mapping[str, tuple[str, tuple[int, ...]]]
"""Input name -> (V2 datatype, shape with -1 for a dynamic dim), in signature order."""
Prepare = Callable[[list[Tensor]], Awaitable[dict[str, np.ndarray]]]
"""A model with pre-processing: request tensors (text, images) -> the graph's feed."""


class SessionView(Protocol):
    """What the data plane reads of an engine session: what actually ran."""

    @property
    def info(self) -> EngineInfo: ...


class ServedModel(Protocol):
    """A loaded model version as the data plane and the front-ends read it."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def signature(self) -> Signature: ...
    @property
    def config(self) -> ModelConfig: ...
    @property
    def input_specs(self) -> InputSpecs: ...
    @property
    def output_types(self) -> Mapping[str, str]:
        """Output name -> V2 datatype."""

    @property
    def batchable(self) -> bool: ...
    @property
    def inline(self) -> bool: ...
    @property
    def threads(self) -> int: ...
    @property
    def batching_note(self) -> str:
        """Why dynamic batching is off ("" when it is on)."""

    @property
    def session(self) -> SessionView | None: ...
    @property
    def row_limit(self) -> int:
        """Rows per request (``max_request_rows``)."""

    @property
    def element_limits(self) -> Mapping[str, int]:
        """Input name -> elements per tensor (``max_tensor_elements``)."""

    @property
    def shared_dims(self) -> Mapping[str, list[tuple[str, int]]]:
        """Symbolic dims more than one input uses: dim -> [(input, axis), ...]."""

    @property
    def prepare(self) -> Prepare | None:
        """Pre-processing of the request's tensors (None: the tensors are the graph's feed)."""


class ModelQueue(Protocol):
    """Where the data plane queues a request's feed (a model's dynamic batcher)."""

    @property
    def max_batch_size(self) -> int: ...
    @property
    def instances(self) -> int: ...
    @property
    def inline(self) -> bool: ...

    def submit(self, feed: Feed) -> asyncio.Future[Outputs]:
        """A future of the outputs; the data plane may fail it (timeout), which drops the work."""
        ...


class VersionStatus(Protocol):
    """One version of a model in a listing: its number and state."""

    @property
    def version(self) -> int: ...
    @property
    def version_str(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def reason(self) -> str:
        """Why it is not READY ("" when it is)."""


class ServedVersion(VersionStatus, Protocol):
    """The version that answers one request (``Repository.get``)."""

    @property
    def model(self) -> ServedModel | None: ...
    @property
    def batcher(self) -> ModelQueue | None: ...


class ModelStatus(Protocol):
    """A model and its versions (``Repository.entry``)."""

    @property
    def name(self) -> str: ...
    @property
    def versions(self) -> Mapping[int, VersionStatus]: ...
    @property
    def default(self) -> VersionStatus | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def unloaded(self) -> bool: ...


class Repository(Protocol):
    """The models the data plane serves."""

    @property
    def metrics(self) -> Metrics: ...
    @property
    def models(self) -> Mapping[str, ModelStatus]: ...

    def get(self, name: str, version: str | None = None) -> ServedVersion:
        """The READY version serving ``name`` (the default when ``version`` is empty); 404/503
        errors (ModelNotFoundError, ModelNotReadyError) that say why not."""
        ...

    def entry(self, name: str) -> ModelStatus:
        """The model and all its versions, whatever their state; ModelNotFoundError if unknown."""
        ...

    def not_ready(self) -> list[str]:
        """Why the repository is not fully ready (empty when it is)."""
        ...

    def index(self) -> list[dict[str, str]]:
        """The V2 repository index: name, version, state, reason per row."""
        ...

    async def load(self, name: str) -> None: ...
    async def unload(self, name: str) -> None: ...
    async def close(self) -> None: ...


def serving(version: ServedVersion) -> tuple[ServedModel, ModelQueue]:
    """The model and queue of a version ``Repository.get`` handed out; 503 if it was drained
    (unloaded or replaced) since."""
    model, batcher = version.model, version.batcher
    if model is None or batcher is None:
        raise ModelNotReadyError(
            f"version {version.version_str} was unloaded while the request was under way; "
            "retry to reach its successor"
        )
    return model, batcher
