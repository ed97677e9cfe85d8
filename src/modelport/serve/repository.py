"""The model repository: which model versions exist on disk, which are loaded, and their state.

    REPO/<model>/<version>/      each version a model package; numeric versions, highest = default
    REPO/<model>/config.json     optional per-model serving config (or config.yaml)

A single package directory (or .onnx file) is served as a repository of one model, version 1.
A model folder (``<model>/<version>/`` packages, no model folders inside: TF Serving's model base
path) is served as a repository of that one model, named after the folder, with its versions and
its ``config.json``.

Loading happens in a worker thread, so the models already serving keep serving. A new or changed
version is loaded and warmed up before it takes traffic; the version it replaces (or one the
version policy drops) is drained: it finishes what it has queued, then is closed. A version that
fails to load is reported (state FAILED with its reason, and in the log) and never replaces one
that works.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import InputError, ModelportError, UsageError
from ..package import MANIFEST_NAME, MODEL_NAME, ModelPackage
from ..processing import Processing
from .batcher import Batcher
from .config import ModelConfig
from .contracts import ModelStatus, Repository, VersionStatus
from .errors import ModelNotFoundError, ModelNotReadyError
from .metrics import Metrics
from .model import LoadedModel, load_model
from .names import check_model_name, check_version
from .processed import RAW_SUFFIX, ProcessedModel, with_processing

__all__ = [
    "ModelEntry",
    "ModelRepository",
    "VersionState",
    "is_model_folder",
    "not_ready",
    "why_not_ready",
]

log = logging.getLogger("modelport.serve")

Stat = tuple[str, int, int] | tuple[str, None]
"""A file's (name, mtime_ns, size), or (name, None) when it cannot be read."""
Fingerprint = tuple[object, ...]
"""What a version was loaded from (its files' stats and its config file's): reload on change."""
V = TypeVar("V", bound=VersionStatus)

CONFIG_NAMES = ("config.json", "config.yaml", "config.yml")
READY, LOADING, UNLOADING, UNAVAILABLE, FAILED = (
    "READY",
    "LOADING",
    "UNLOADING",
    "UNAVAILABLE",
    "FAILED",
)


@dataclass
class VersionState:
    """One version of a model: its state, why (when not ready), and what serves it."""

    version: int
    state: str = LOADING
    reason: str = ""
    model: LoadedModel | ProcessedModel | None = None
    batcher: Batcher | None = None
    fingerprint: Fingerprint = ()
    raw: VersionState | None = None  # the bare graph, when the package has processing

    @property
    def version_str(self) -> str:
        return str(self.version)


@dataclass
class ModelEntry:
    """A model in the repository and its versions."""

    name: str
    path: Path
    versions: dict[int, VersionState] = field(default_factory=dict)
    default: VersionState | None = None
    unloaded: bool = False  # explicitly unloaded: the poller leaves it alone until a load
    reason: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pinned: int | None = None  # default version set by the management API (while it is ready)

    def refresh_default(self) -> None:
        ready = [vs for vs in self.versions.values() if vs.state == READY]
        pinned = self.versions.get(self.pinned) if self.pinned is not None else None
        if pinned is not None and pinned.state == READY:
            self.default = pinned
            return
        self.default = max(ready, key=lambda vs: vs.version) if ready else None


def _stat(path: Path) -> Stat:
    try:
        st = path.stat()
    except OSError:
        return (str(path.name), None)
    return (path.name, st.st_mtime_ns, st.st_size)


def _version_dirs(model_dir: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    try:
        children = list(model_dir.iterdir())
    except OSError:
        return found
    for child in children:
        name = child.name
        if name.isdigit() and (name == "0" or not name.startswith("0")) and child.is_dir():
            found[int(name)] = child
    return found


def is_model_folder(path: Path) -> bool:
    """``path`` is one model's folder (``path/<version>/model.onnx``) rather than a repository
    of models (``path/<model>/<version>/``): a numbered folder holds a package, and no folder in
    it has numbered versions of its own."""
    versions = _version_dirs(path)
    if not any((v / MODEL_NAME).is_file() for v in versions.values()):
        return False
    try:
        children = [c for c in path.iterdir() if c.is_dir() and not c.name.startswith(".")]
    except OSError:
        return False
    numbered = {v.name for v in versions.values()}
    return not any(c.name not in numbered and _version_dirs(c) for c in children)


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:
        raise UsageError(f"cannot read serving config {path}: {exc}", path=str(path)) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"serving config {path} must be a mapping of settings", path=str(path))
    return dict(data.get("serving", data))


def ready_version(name: str, versions: Mapping[int, V], version: str) -> V:
    """``versions[version]`` when it is READY; else the 404/503 error that says why.

    ``version`` is parsed strictly (int() would take "+1", " 1", "1_0"). Shared by the local
    repository and the Ray ingress's remote one, so both answer alike.
    """
    try:
        v = check_version(version)
    except InputError:
        raise ModelNotFoundError(
            f"model version must be an integer, got '{version}'", model=name
        ) from None
    vs = versions.get(v)
    if vs is None:
        raise ModelNotFoundError(
            f"model '{name}' has no version {v} loaded; versions: {sorted(versions)}",
            model=name,
        )
    if vs.state != READY:
        raise ModelNotReadyError(
            f"model '{name}' version {v} is {vs.state}" + (f": {vs.reason}" if vs.reason else ""),
            model=name,
        )
    return vs


def why_not_ready(entry: ModelStatus) -> str:
    """The words a client gets for a model that cannot answer (shared with the Ray ingress)."""
    if entry.unloaded:
        return f"model '{entry.name}' is unloaded; load it with POST v2/repository/models/{entry.name}/load"
    details = entry.reason or "; ".join(
        f"version {v} {vs.state}" + (f": {vs.reason}" if vs.reason else "")
        for v, vs in sorted(entry.versions.items())
    )
    return f"model '{entry.name}' has no ready version" + (f" ({details})" if details else "")


def not_ready(models: Mapping[str, ModelStatus]) -> list[str]:
    """Why a repository of ``models`` is not fully ready (empty when it is): every model that
    should be loaded (not explicitly unloaded) must have each of its versions READY, and at
    least one model must be. Triton's strict readiness (shared with the Ray ingress)."""
    problems = []
    for name, entry in sorted(models.items()):
        if entry.unloaded:
            continue
        if entry.reason:
            problems.append(f"{name}: {entry.reason}")
        for v, vs in sorted(entry.versions.items()):
            if vs.state != READY:
                problems.append(f"{name} version {v} is {vs.state}")
        if not entry.versions and not entry.reason:
            problems.append(f"{name} has no version loaded")
    if not any(e.default is not None for e in models.values()):
        problems.append("no model is loaded")
    return problems


class ModelRepository:
    """Models on disk and their loaded versions. All methods run on the event loop."""

    def __init__(
        self,
        root: str | Path,
        defaults: ModelConfig | None = None,
        metrics: Metrics | None = None,
        *,
        trust: bool = False,
        engine: Mapping[str, Any] | None = None,
    ) -> None:
        self.root = Path(root)
        self.trust = trust  # run custom handlers shipped in packages (modelport serve --trust)
        self.defaults = defaults or ModelConfig()
        # engine/precision over every package's serving section (serve --engine); config.json wins
        self.engine = dict(engine or {})
        self.metrics = metrics or Metrics()
        self.single = self.root.is_file() or (self.root / MODEL_NAME).is_file()
        # REPO/<model> given instead of REPO: that one model with its numbered versions
        self.model_folder = not self.single and is_model_folder(self.root)
        self.models: dict[str, ModelEntry] = {}
        self._closed = False

    # --- what is on disk ------------------------------------------------------------------

    def on_disk(self) -> dict[str, Path]:
        """Model name -> model directory (or the package itself in single-package mode)."""
        if self.single:
            name = self.root.stem if self.root.is_file() else self.root.name
            return {name: self.root}
        if self.model_folder:
            return {self.root.resolve().name: self.root} if _version_dirs(self.root) else {}
        if not self.root.is_dir():
            return {}
        return {
            p.name: p
            for p in sorted(self.root.iterdir())
            if p.is_dir() and not p.name.startswith(".") and _version_dirs(p)
        }

    def versions_on_disk(self, path: Path) -> dict[int, Path]:
        """The version directories of a model (``{1: path}`` when serving one package)."""
        return {1: path} if self.single else _version_dirs(path)

    def model_settings(self, path: Path) -> tuple[dict[str, Any], Fingerprint, str]:
        """The model's config file settings, the file's fingerprint and its path."""
        if not self.single:
            for name in CONFIG_NAMES:
                f = path / name
                if f.is_file():
                    return _read_config_file(f), _stat(f), str(f)
        return {}, (), ""

    def _version_config(
        self, settings: dict[str, Any], source: str, package: ModelPackage
    ) -> ModelConfig:
        """Defaults, then the manifest's ``serving`` section, then the engine given for every
        model (serve --engine), then the model's config file (which names engine and precision
        as a pair over --engine: naming either keeps --engine out of that model)."""
        serving = {k: v for k, v in package.serving.items() if k != "version_policy"}
        cfg = self.defaults.merged(serving, source=str(package.path / MANIFEST_NAME))
        if self.engine and not {"engine", "precision"} & set(settings):
            cfg = cfg.merged(self.engine, source="--engine")
        return cfg.merged(settings, source=source)

    @staticmethod
    def _fingerprint(version_dir: Path, config_fp: Fingerprint) -> Fingerprint:
        if version_dir.is_file():
            return (_stat(version_dir), config_fp)
        files = (MODEL_NAME, MANIFEST_NAME, MODEL_NAME + ".data")
        return (*(_stat(version_dir / f) for f in files), config_fp)

    # --- loading and unloading ------------------------------------------------------------

    async def sync(self, name: str | None = None) -> None:
        """Bring loaded versions in line with the disk and the version policies."""
        disk = self.on_disk()
        names = [name] if name is not None else sorted(set(disk) | set(self.models))
        for n in names:
            entry = self.models.get(n)
            if n not in disk:
                if entry is not None:
                    log.info("model %s is gone from the repository; unloading it", n)
                    await self._unload_all(entry, reason="removed from the repository")
                    del self.models[n]
                continue
            if entry is None:
                entry = self.models[n] = ModelEntry(n, disk[n])
            if entry.unloaded:
                continue
            await self._sync_model(entry)

    async def _sync_model(self, entry: ModelEntry) -> None:
        async with entry.lock:
            previous = entry.reason  # every poll meets the same broken config: log it once
            try:
                settings, config_fp, source = self.model_settings(entry.path)
                model_cfg = self.defaults.merged(settings, source=source)
            except ModelportError as exc:
                entry.reason = exc.message
                if exc.message != previous:
                    log.error("model %s: %s", entry.name, exc.message)
                return
            entry.reason = ""
            on_disk = self.versions_on_disk(entry.path)
            wanted = model_cfg.version_policy.select(list(on_disk))
            if not wanted:
                entry.reason = (
                    f"no version on disk matches the version policy {model_cfg.version_policy} "
                    f"(on disk: {sorted(on_disk)})"
                )
                if entry.reason != previous:
                    log.error("model %s: %s", entry.name, entry.reason)
            for v in sorted(wanted):
                fp = self._fingerprint(on_disk[v], config_fp)
                current = entry.versions.get(v)
                if current is not None and current.fingerprint == fp:
                    continue
                await self._load_version(entry, v, on_disk[v], (settings, source), fp)
            for v in [v for v in entry.versions if v not in wanted]:
                await self._unload_version(entry, v, reason="dropped by the version policy")

    async def _load_version(
        self,
        entry: ModelEntry,
        version: int,
        path: Path,
        settings: tuple[dict[str, Any], str],
        fp: Fingerprint,
    ) -> None:
        old = entry.versions.get(version)
        name, vstr = entry.name, str(version)
        if old is None:
            entry.versions[version] = VersionState(version, LOADING, fingerprint=fp)
            self.metrics.set_state(name, vstr, LOADING)
        log.info("loading model %s version %s from %s", name, version, path)
        loop = asyncio.get_running_loop()
        model: LoadedModel | ProcessedModel
        try:
            package = ModelPackage.load(path)
            cfg = self._version_config(settings[0], settings[1], package)
            model = await loop.run_in_executor(None, load_model, package, name, version, cfg)
            processing = Processing.of(package.manifest)
            if processing is not None:
                graph = model
                model = await loop.run_in_executor(
                    None, lambda: with_processing(graph, processing, trust=self.trust)
                )
        except Exception as exc:
            message = (
                exc.message if isinstance(exc, ModelportError) else f"{type(exc).__name__}: {exc}"
            )
            log.error("model %s version %s failed to load: %s", name, version, message)
            if old is not None and old.state == READY:
                old.reason = (
                    f"a changed copy failed to load, still serving the previous one: {message}"
                )
                old.fingerprint = fp  # do not retry the same broken files on every poll
                return
            entry.versions[version] = VersionState(version, FAILED, message, fingerprint=fp)
            self.metrics.set_state(name, vstr, FAILED)
            entry.refresh_default()
            return
        batcher = Batcher(
            model.run,
            max_batch_size=cfg.max_batch_size if model.batchable else 1,
            max_queue_delay_s=cfg.max_queue_delay_ms / 1000.0,
            max_queue_size=cfg.max_queue_size,
            instances=cfg.instances,
            inline=model.inline,
            on_batch=self.metrics.on_batch(name, vstr),
            name=f"model {name} version {vstr}",
        )
        batcher.start()
        raw = None
        if isinstance(model, ProcessedModel):
            raw_batcher = Batcher(
                model.raw.run,
                max_batch_size=cfg.max_batch_size if model.batchable else 1,
                max_queue_delay_s=cfg.max_queue_delay_ms / 1000.0,
                max_queue_size=cfg.max_queue_size,
                instances=cfg.instances,
                inline=model.inline,
                on_batch=self.metrics.on_batch(name + RAW_SUFFIX, vstr),
                name=f"model {name}{RAW_SUFFIX} version {vstr}",
            )
            raw_batcher.start()
            raw = VersionState(version, READY, "", model.raw, raw_batcher, fp)
        entry.versions[version] = VersionState(version, READY, "", model, batcher, fp, raw)
        entry.refresh_default()
        self.metrics.set_state(name, vstr, READY)
        log.info(
            "model %s version %s is ready (batching %s, max_batch_size %s, %s, %s)",
            name,
            version,
            "on" if model.batchable else f"off: {model.batching_note}",
            batcher.max_batch_size,
            "inline" if model.inline else f"{batcher.instances} instance(s)",
            model.session.info.label() if model.session is not None else f"{model.threads} threads",
        )
        if old is not None and old.batcher is not None:
            await self._drain(entry.name, old)

    async def _drain(self, name: str, vs: VersionState) -> None:
        vs.state = UNLOADING
        if vs.raw is not None:
            vs.raw.state = UNLOADING
            if vs.raw.batcher is not None:
                await vs.raw.batcher.close()
            vs.raw.model = vs.raw.batcher = None
        if vs.batcher is not None:
            await vs.batcher.close()
        if vs.model is not None:
            vs.model.close()
        vs.model = vs.batcher = None
        log.info("model %s version %s drained and closed", name, vs.version)

    async def _unload_version(self, entry: ModelEntry, version: int, reason: str) -> None:
        vs = entry.versions.pop(version)
        entry.refresh_default()
        self.metrics.set_state(entry.name, str(version), None)
        log.info("unloading model %s version %s (%s)", entry.name, version, reason)
        await self._drain(entry.name, vs)

    async def _unload_all(self, entry: ModelEntry, reason: str) -> None:
        async with entry.lock:
            for v in list(entry.versions):
                await self._unload_version(entry, v, reason)

    async def load(self, name: str) -> None:
        """Load (or reload) a model explicitly, also one the poller was told to leave alone."""
        check_model_name(name)
        disk = self.on_disk()
        if name not in disk:
            raise ModelNotFoundError(
                f"no model '{name}' in the repository {self.root}; models there: {sorted(disk)}",
                model=name,
            )
        entry = self.models.get(name)
        if entry is not None:
            entry.unloaded = False
        await self.sync(name)
        entry = self.models[name]
        if entry.default is None:
            reasons = entry.reason or "; ".join(
                f"version {v}: {vs.reason}" for v, vs in sorted(entry.versions.items())
            )
            raise ModelNotReadyError(f"model '{name}' failed to load: {reasons}", model=name)

    async def unload(self, name: str) -> None:
        """Unload every version of a model; the poller leaves it unloaded until ``load``."""
        check_model_name(name)
        entry = self.models.get(name)
        if entry is None:
            if name in self.on_disk():
                entry = self.models[name] = ModelEntry(name, self.on_disk()[name])
            else:
                raise ModelNotFoundError(f"no model '{name}' in the repository", model=name)
        entry.unloaded = True
        await self._unload_all(entry, reason="unload requested")

    async def close(self) -> None:
        """Drain and close every model."""
        self._closed = True
        for entry in list(self.models.values()):
            await self._unload_all(entry, reason="server shutting down")

    async def poll_forever(self, interval_s: float) -> None:
        """Re-scan the repository every ``interval_s`` seconds (cancel the task to stop)."""
        while not self._closed:
            await asyncio.sleep(interval_s)
            try:
                await self.sync()
            except Exception:  # a poll must never take the server down
                log.exception("repository poll failed")

    # --- lookups (hot path) ---------------------------------------------------------------

    def get(self, name: str, version: str | None = None) -> VersionState:
        """The READY version serving ``name`` (the default when ``version`` is empty).

        ``NAME_raw`` is the bare graph of a model whose package has processing."""
        entry = self.models.get(name)
        if entry is None:
            if name.endswith(RAW_SUFFIX) and name[: -len(RAW_SUFFIX)] in self.models:
                return self._raw(name, version)
            raise ModelNotFoundError(
                f"unknown model '{name}'; models served: {sorted(self.models)}", model=name
            )
        if not version:
            vs = entry.default
            if vs is None:
                raise ModelNotReadyError(why_not_ready(entry), model=name)
            return vs
        return ready_version(name, entry.versions, version)

    def _raw(self, name: str, version: str | None) -> VersionState:
        base = name[: -len(RAW_SUFFIX)]
        vs = self.get(base, version)
        if vs.raw is None:
            raise ModelNotFoundError(
                f"model '{base}' has no processing, so there is no '{name}': its graph is served "
                f"as '{base}' itself",
                model=name,
            )
        return vs.raw

    def entry(self, name: str) -> ModelEntry:
        entry = self.models.get(name)
        if entry is None and name.endswith(RAW_SUFFIX):
            entry = self.models.get(name[: -len(RAW_SUFFIX)])
        if entry is None:
            raise ModelNotFoundError(
                f"unknown model '{name}'; models served: {sorted(self.models)}", model=name
            )
        return entry

    def not_ready(self) -> list[str]:
        """Why the repository is not fully ready (empty when it is); see ``not_ready``."""
        return not_ready(self.models)

    def index(self) -> list[dict[str, str]]:
        """Every model on disk or loaded, with each version's state (V2 repository index)."""
        rows: list[dict[str, str]] = []
        disk = self.on_disk()
        for name in sorted(set(disk) | set(self.models)):
            entry = self.models.get(name)
            if entry is None or not entry.versions:
                reason = "unloaded" if entry is None or entry.unloaded else entry.reason
                rows.append({"name": name, "version": "", "state": UNAVAILABLE, "reason": reason})
                continue
            for v, vs in sorted(entry.versions.items()):
                rows.append(
                    {"name": name, "version": str(v), "state": vs.state, "reason": vs.reason}
                )
        return rows


if TYPE_CHECKING:  # mypy: the local repository keeps the data plane's contract
    _REPOSITORY: type[Repository] = ModelRepository
