"""The ingress's view of models that run in other processes (Ray Serve model deployments).

``RemoteRepository`` answers the same lookups as ``ModelRepository`` (``get``, ``entry``,
``models``, ``index``), from what each model deployment describes of itself, so the unchanged
``DataPlane`` and HTTP route modules run on top of it. The one difference is what ``get`` hands
out for a request: a ``RemoteCall`` whose ``batcher.submit(feed)`` sends the feed to a replica of
the model (where the model's own dynamic batcher merges it with other requests) instead of to a
local batcher. The data plane validates, times out, cancels and counts exactly as it does for a
local model.

A request that names no version is served by the replica's default version, and the answer says
which one that was: during a rolling update both versions answer, each under its own number.

As in the single-process server, a model whose package has processing is also served bare as
``NAME_raw`` (the same replicas: the feed goes to the model's deployment marked for its graph),
and a classification answer (V2 ``classification`` extension) names the classes with the
package's labels, which each replica describes with its model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import ModelportError
from ..contracts import Feed, Outputs, Prepare, Repository
from ..errors import (
    InferenceFailedError,
    ModelNotFoundError,
    ModelNotReadyError,
    QueueFullError,
    UnsupportedError,
)
from ..metrics import Metrics
from ..processed import RAW_SUFFIX, labels_of
from ..repository import UNAVAILABLE, not_ready, ready_version, why_not_ready
from ..types import Tensor

if TYPE_CHECKING:
    from ...runtime.engines import EngineInfo
    from ...signature import Signature
    from ..config import ModelConfig
    from ..repository import ModelRepository

__all__ = ["RemoteCall", "RemoteRepository", "describe", "remote_infer", "replica_infer"]

log = logging.getLogger("modelport.serve")


@dataclass
class RemoteSession:
    """What the data plane reads of a replica's engine session (``model.session.info``)."""

    info: EngineInfo


@dataclass
class RemoteModel:
    """What the data plane and the route modules read of a loaded model (``vs.model``): the
    request checks (row and element limits, shared dims) run in the ingress, as they would in
    the single-process server, before a request is forwarded."""

    name: str
    version: int
    signature: Signature
    config: ModelConfig
    input_specs: dict[str, tuple[str, tuple[int, ...]]]
    output_types: dict[str, str]
    batchable: bool
    inline: bool
    threads: int
    row_limit: int = 1 << 31
    element_limits: dict[str, int] = field(default_factory=dict)
    shared_dims: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    batching_note: str = ""
    session: RemoteSession | None = None
    processed: bool = False  # pre/post-processing: the replica prepares the request's inputs
    class_labels: list[str] | None = None  # the package's class names (classification answers)
    prepare: Prepare | None = field(default=None, compare=False, repr=False)  # set by _entry


@dataclass
class Batching:
    """What the data plane reads of a model's batcher (``vs.batcher``) for its config."""

    max_batch_size: int
    instances: int
    inline: bool
    max_queue_size: int


@dataclass
class RemoteVersion:
    """One version of a remote model as its deployment described it."""

    version: int
    state: str
    reason: str = ""
    model: RemoteModel | None = None
    batcher: Batching | None = None
    raw: RemoteVersion | None = None  # the bare graph (NAME_raw), when the package has processing

    @property
    def version_str(self) -> str:
        return str(self.version)


@dataclass
class RemoteEntry:
    """A remote model and its versions (``ModelEntry``'s fields that readers use)."""

    name: str
    versions: dict[int, RemoteVersion] = field(default_factory=dict)
    default: RemoteVersion | None = None
    reason: str = ""
    unloaded: bool = False
    pinned: int | None = None


class RemoteCall:
    """One request's version of a remote model: ``batcher.submit`` sends the feed to a replica.

    ``version`` is what the ingress expects; once the answer is in, it is the version that
    served it (the data plane reads ``version_str`` after the wait).
    """

    __slots__ = ("_handle", "_raw", "_requested", "model", "reason", "spec", "state", "version")

    def __init__(
        self, spec: RemoteVersion, handle: Any, requested: str | None, raw: bool = False
    ) -> None:
        self.spec = spec
        self.version = spec.version
        self.state = spec.state
        self.reason = spec.reason
        self.model = spec.model
        self._handle = handle
        self._requested = requested
        self._raw = raw  # NAME_raw: the replica runs the bare graph

    @property
    def version_str(self) -> str:
        return str(self.version)

    @property
    def batcher(self) -> RemoteCall:
        return self

    @property
    def max_batch_size(self) -> int:
        return self._batching().max_batch_size

    @property
    def instances(self) -> int:
        return self._batching().instances

    @property
    def inline(self) -> bool:
        return self._batching().inline

    def _batching(self) -> Batching:
        if self.spec.batcher is None:  # only READY versions (which have one) are handed out
            raise ModelNotReadyError(f"model version {self.version} is {self.state}")
        return self.spec.batcher

    def submit(self, feed: Feed) -> asyncio.Future[Outputs]:
        """A future of the outputs (a plain future: the data plane may fail it on timeout, which
        cancels the remote call)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        task = loop.create_task(self._call(feed, fut))
        fut.add_done_callback(lambda _: task.done() or task.cancel())
        return fut

    async def _call(self, feed: Feed, fut: asyncio.Future[Outputs]) -> None:
        sent: Feed | dict[str, Any] = {**feed, RAW: True} if self._raw else feed
        try:
            served, payload = await remote_infer(self._handle, self._requested, sent)
        except asyncio.CancelledError:
            if not fut.done():
                fut.cancel()
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
            if not fut.done():
                fut.set_exception(exc)
            return
        if fut.done():
            return
        if served is None:
            fut.set_exception(payload)
        else:
            self.version = served
            fut.set_result(payload)


async def remote_infer(
    handle: Any, version: str | None, feed: Mapping[str, Any], attempts: int = 2
) -> tuple[int | None, Any]:
    """(served version, outputs) or (None, ModelportError) from a model deployment; a replica
    that died under the request (e.g. replaced by a rolling update) is retried once. The payload
    is what Ray unpickled (Any at this boundary)."""
    from ray import exceptions as rex
    from ray.serve.exceptions import BackPressureError, RequestCancelledError

    for attempt in range(attempts):
        response = handle.remote(version, feed)
        try:
            served, payload = await response
            return (int(served), payload) if served is not None else (None, payload)
        except asyncio.CancelledError:
            response.cancel()
            raise
        except BackPressureError as exc:
            raise QueueFullError(
                "every replica of the model is busy and its queue is full; retry later, or add "
                "replicas (--replicas / --autoscale)"
            ) from exc
        except (rex.RayActorError, RequestCancelledError) as exc:
            if attempt + 1 < attempts:
                log.info("a model replica went away under a request; retrying it once")
                continue
            raise ModelNotReadyError(f"the model replica went away: {exc}") from exc
        except rex.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ModelportError):
                raise cause from None
            raise InferenceFailedError(f"the model replica failed: {cause or exc}") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def describe(repository: ModelRepository, name: str) -> dict[str, Any]:
    """What a model deployment tells the ingress about its model (plain, picklable data)."""
    entry = repository.models.get(name)
    if entry is None:
        return {"reason": "not loaded", "default": None, "versions": []}
    versions = []
    for v, vs in sorted(entry.versions.items()):
        row: dict[str, Any] = {"version": v, "state": vs.state, "reason": vs.reason}
        row.update(_described(vs))
        raw = getattr(vs, "raw", None)
        if raw is not None:
            row["raw"] = _described(raw)
        versions.append(row)
    default = entry.default.version if entry.default is not None else None
    return {"reason": entry.reason, "default": default, "versions": versions}


def _described(vs: Any) -> dict[str, Any]:
    """A loaded version's model and batching as the ingress reads them ({} when not loaded)."""
    model, batcher = vs.model, vs.batcher
    row: dict[str, Any] = {}
    if model is not None and batcher is not None:
        row["model"] = RemoteModel(
            name=model.name,
            version=model.version,
            signature=model.signature,
            config=model.config,
            input_specs=dict(model.input_specs),
            output_types=dict(model.output_types),
            batchable=model.batchable,
            inline=model.inline,
            threads=getattr(model, "threads", 0) or model.config.threads,
            row_limit=getattr(model, "row_limit", 1 << 31),
            element_limits=dict(getattr(model, "element_limits", None) or {}),
            shared_dims=dict(getattr(model, "shared_dims", None) or {}),
            batching_note=getattr(model, "batching_note", ""),
            session=_session(model),
            processed=callable(getattr(model, "prepare", None)),
            class_labels=labels_of(model),
        )
        row["batcher"] = Batching(
            batcher.max_batch_size, batcher.instances, batcher.inline, batcher.max_queue_size
        )
    return row


# A feed that still needs the model's pre-processing (the request's tensors): what the ingress
# sends for a model with processing; the replica runs ``model.prepare`` on it, then batches.
PREPARE = "\0modelport:inputs"
# A feed for the model's bare graph (NAME_raw), marked so by the ingress.
RAW = "\0modelport:raw"


async def _forward_inputs(inputs: list[Tensor]) -> dict[str, Any]:
    """``RemoteModel.prepare`` of a model with processing: leave it to the replica."""
    return {PREPARE: list(inputs)}


async def replica_infer(
    repository: Any, name: str, version: str | None, feed: dict[str, Any]
) -> tuple[str | None, Outputs | ModelportError]:
    """What a model replica does with a forwarded request: (served version, outputs), or
    (None, error) for errors that are the request's."""
    try:
        if RAW in feed:
            feed = {k: v for k, v in feed.items() if k != RAW}
            name += RAW_SUFFIX
        vs = repository.get(name, version)
        if PREPARE in feed:
            feed = await vs.model.prepare(feed[PREPARE])
        outputs = await vs.batcher.submit(feed)
    except ModelportError as exc:
        return None, exc
    return vs.version_str, outputs


def _session(model: Any) -> RemoteSession | None:
    info = getattr(getattr(model, "session", None), "info", None)
    return RemoteSession(info) if info is not None else None


def _entry(name: str, doc: dict[str, Any]) -> RemoteEntry:
    entry = RemoteEntry(name, reason=doc.get("reason", ""))
    for row in doc["versions"]:
        model = row.get("model")
        if model is not None and model.processed:
            model.prepare = _forward_inputs  # the data plane calls it; the replica prepares
        raw = row.get("raw")
        entry.versions[row["version"]] = RemoteVersion(
            row["version"],
            row["state"],
            row["reason"],
            row.get("model"),
            row.get("batcher"),
            RemoteVersion(
                row["version"], row["state"], row["reason"], raw.get("model"), raw.get("batcher")
            )
            if raw
            else None,
        )
    if doc.get("default") is not None:
        entry.default = entry.versions.get(doc["default"])
    return entry


class RemoteRepository:
    """Models served by Ray Serve deployments, as the data plane sees a repository.

    handles: model name -> the deployment handle of its ``infer`` method. ``refresh`` asks each
    deployment to describe its model; ``refresh_forever`` keeps doing so. ``failed``: models that
    could not even be packed for deploying (name -> why); they are listed, never ready.
    """

    def __init__(
        self,
        handles: dict[str, Any],
        metrics: Metrics | None = None,
        failed: dict[str, str] | None = None,
    ) -> None:
        self.handles = dict(handles)
        self.metrics = metrics or Metrics()
        self.models: dict[str, RemoteEntry] = {n: RemoteEntry(n) for n in self.handles}
        for name, reason in (failed or {}).items():
            self.models[name] = RemoteEntry(name, reason=reason)
        self.root = "ray"
        self._describe = {n: h.options(method_name="describe") for n, h in self.handles.items()}
        self._infer = {n: h.options(method_name="infer") for n, h in self.handles.items()}

    async def refresh(self, timeout_s: float = 30.0) -> None:
        async def one(name: str) -> None:
            try:
                doc = await asyncio.wait_for(self._describe[name].remote(), timeout_s)
            except Exception as exc:  # keep what we knew; say why
                log.warning("model %s did not describe itself: %s", name, exc)
                self.models[name].reason = f"its deployment did not answer: {exc}"
                return
            self.models[name] = _entry(name, doc)
            for v, spec in self.models[name].versions.items():
                self.metrics.set_state(name, str(v), spec.state)

        await asyncio.gather(*(one(n) for n in self.handles))

    async def refresh_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.refresh()

    # --- the lookups the data plane and the route modules make -------------------------------

    def get(self, name: str, version: str | None = None) -> RemoteCall:
        if name not in self.models and name.endswith(RAW_SUFFIX):
            base = name[: -len(RAW_SUFFIX)]
            if base in self.models:
                call = self.get(base, version)
                if call.spec.raw is None:
                    raise ModelNotFoundError(
                        f"model '{base}' has no processing, so there is no '{name}': its graph is "
                        f"served as '{base}' itself",
                        model=name,
                    )
                return RemoteCall(call.spec.raw, self._infer[base], version or None, raw=True)
        entry = self.entry(name)
        if not version:
            spec = entry.default
            if spec is None:  # the single-process server's words
                raise ModelNotReadyError(why_not_ready(entry), model=name)
            return RemoteCall(spec, self._infer[name], None)
        spec = ready_version(name, entry.versions, version)
        return RemoteCall(spec, self._infer[name], str(spec.version))

    def entry(self, name: str) -> RemoteEntry:
        entry = self.models.get(name)
        if entry is None and name.endswith(RAW_SUFFIX):
            entry = self.models.get(name[: -len(RAW_SUFFIX)])
        if entry is None:
            raise ModelNotFoundError(
                f"unknown model '{name}'; models served: {sorted(self.models)}", model=name
            )
        return entry

    def not_ready(self) -> list[str]:
        """The single-process server's strict readiness, over what the deployments describe."""
        return not_ready(self.models)

    def index(self) -> list[dict[str, str]]:
        rows = []
        for name, entry in sorted(self.models.items()):
            if not entry.versions:
                rows.append(
                    {"name": name, "version": "", "state": UNAVAILABLE, "reason": entry.reason}
                )
            for v, spec in sorted(entry.versions.items()):
                rows.append(
                    {"name": name, "version": str(v), "state": spec.state, "reason": spec.reason}
                )
        return rows

    async def load(self, name: str) -> None:
        raise UnsupportedError(
            "models on Ray Serve are loaded by deploying: run modelport serve REPO --ray again "
            "(a rolling update) after changing the repository"
        )

    async def unload(self, name: str) -> None:
        raise UnsupportedError(
            "models on Ray Serve are unloaded by deploying without them: remove the model from "
            "the repository and run modelport serve REPO --ray again"
        )

    async def close(self) -> None:
        return None


if TYPE_CHECKING:  # mypy: the ingress's repository keeps the data plane's contract
    _REPOSITORY: type[Repository] = RemoteRepository
