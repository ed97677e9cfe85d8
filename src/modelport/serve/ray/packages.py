"""Model packages travel to the replicas through Ray's object store, so the nodes need no shared
filesystem: the deploying process packs each model (the versions its policy serves, plus its
config file) into one uncompressed tar, puts it into the object store, and each replica unpacks
it into a temporary directory laid out as a repository of that one model.

The objects are put (and so owned) by a small detached actor (``PackageStore``), not by the
process that deployed them, so replicas started later (autoscaling, restarts) still find them after that
process exits. The store keeps the packages the current deployment uses and drops the others.
"""

from __future__ import annotations

import functools
import hashlib
import io
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from ...errors import PackageError
from ..config import ModelConfig
from ..repository import ModelRepository

__all__ = [
    "STORE_NAME",
    "STORE_NAMESPACE",
    "PackageRef",
    "fetch",
    "pack_model",
    "put",
    "retain",
    "unpack",
]

STORE_NAME = "modelport-packages"
STORE_NAMESPACE = "modelport"

# (model name, sha256 of the packed bytes): what a model deployment is told to load.
PackageRef = tuple[str, str]


def pack_model(repository: ModelRepository, name: str) -> bytes:
    """The model's served versions and its config file as tar bytes: ``<name>/<version>/...``
    and ``<name>/config.json`` (a single-package repository becomes ``<name>/1/``)."""
    path = repository.on_disk().get(name)
    if path is None:
        raise PackageError(f"no model '{name}' in {repository.root}", path=str(repository.root))
    settings, _, source = repository.model_settings(path)
    policy = repository.defaults.merged(settings, source=source).version_policy
    versions = repository.versions_on_disk(path)
    wanted = policy.select(list(versions))
    if not wanted:
        raise PackageError(
            f"model '{name}': no version on disk matches the version policy {policy} "
            f"(on disk: {sorted(versions)})",
            path=str(path),
        )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if source:
            tar.add(source, arcname=f"{name}/{Path(source).name}", filter=_plain)
        for v in sorted(wanted):
            tar.add(versions[v], arcname=f"{name}/{v}", filter=_plain)
    return buf.getvalue()


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Regular files and directories only, no owners: the same bytes on every machine."""
    if not (info.isfile() or info.isdir()):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def unpack(blob: bytes, name: str) -> Path:
    """Unpack a packed model into a new temporary repository directory (the caller removes it)."""
    root = Path(tempfile.mkdtemp(prefix=f"modelport-{name}-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
            tar.extractall(root, filter="data")
    except Exception:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return root


@functools.cache
def _store_class() -> Any:
    import ray

    @ray.remote(num_cpus=0, max_restarts=0)
    class PackageStore:
        """Owns the object refs of the packed models; each application says which it uses."""

        def __init__(self) -> None:
            self.refs: dict[tuple, Any] = {}
            self.apps: dict[str, set[tuple]] = {}

        def has(self, key: PackageRef) -> bool:
            return tuple(key) in self.refs

        def keep(self, key: PackageRef, blob: bytes) -> None:
            import ray

            if tuple(key) not in self.refs:
                self.refs[tuple(key)] = ray.put(blob)  # put here, so this actor owns it

        def get(self, key: PackageRef) -> list:
            ref = self.refs.get(tuple(key))
            return [] if ref is None else [ref]  # boxed: the caller fetches the bytes itself

        def retain(self, app: str, keys: list) -> int:
            """``app`` now uses ``keys``: drop packages no application uses; how many."""
            self.apps[app] = {tuple(k) for k in keys}
            used = set().union(*self.apps.values())
            gone = [k for k in self.refs if k not in used]
            for k in gone:
                del self.refs[k]
            return len(gone)

    return PackageStore


def store() -> Any:
    """The cluster's package store actor (created, detached, on first use)."""
    return (
        _store_class()
        .options(
            name=STORE_NAME, namespace=STORE_NAMESPACE, lifetime="detached", get_if_exists=True
        )
        .remote()
    )


def put(blob: bytes, name: str) -> PackageRef:
    """Put a packed model into the object store, owned by the store; its reference."""
    import ray

    key = (name, digest(blob))
    holder = store()
    if not ray.get(holder.has.remote(key)):
        ray.get(holder.keep.remote(key, blob))
    return key


async def fetch(key: PackageRef) -> bytes:
    """The packed model's bytes (inside a replica)."""
    import ray

    holder = ray.get_actor(STORE_NAME, namespace=STORE_NAMESPACE)
    boxed = await holder.get.remote(key)
    if not boxed:
        raise PackageError(
            f"the package of model '{key[0]}' ({key[1][:12]}) is no longer in the object store; "
            "deploy again with modelport serve --ray"
        )
    blob = await boxed[0]
    if digest(blob) != key[1]:
        raise PackageError(f"the package of model '{key[0]}' arrived damaged (sha256 mismatch)")
    return blob


def defaults_for_replica(defaults: ModelConfig, threads: int) -> ModelConfig:
    """Serving defaults inside a replica: ONNX Runtime threads = the replica's CPUs unless set."""
    if defaults.intra_op_threads:
        return defaults
    return defaults.merged({"intra_op_threads": threads})


def retain(app: str, keys: list[PackageRef]) -> int:
    """Tell the store which packages ``app`` uses now; the others are released."""
    import ray

    return ray.get(store().retain.remote(app, list(keys)))
