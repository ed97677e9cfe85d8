"""The Ray Serve deployments: one ``ModelDeployment`` per model and the HTTP ``Ingress``.

Imports Ray at import time: import this module only where ``modelport[ray]`` is installed.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from typing import Any

from ray import serve

from ...errors import ModelportError
from ..config import ModelConfig
from ..repository import ModelRepository
from .packages import PackageRef, fetch, unpack
from .remote import RemoteRepository, describe

__all__ = ["Ingress", "ModelDeployment"]

log = logging.getLogger("modelport.serve")


@serve.deployment
class ModelDeployment:
    """One model, served by the single-process server's repository and dynamic batcher.

    The package arrives through the object store (``package``: its store reference), is unpacked
    into a temporary repository of this one model, loaded and warmed up before the replica
    reports ready; a replica whose model fails to load fails to start, so a broken package never
    replaces a working one in a rolling update.
    """

    async def __init__(self, name: str, package: PackageRef, defaults: ModelConfig) -> None:
        self.name = name
        self.root = unpack(await fetch(package), name)
        self.repository = ModelRepository(self.root, defaults)
        await self.repository.sync()
        entry = self.repository.models.get(name)
        if entry is None or entry.default is None:
            reason = "not in the package"
            if entry is not None:
                reason = entry.reason or "; ".join(
                    f"version {v}: {vs.reason}" for v, vs in sorted(entry.versions.items())
                )
            await self.repository.close()
            shutil.rmtree(self.root, ignore_errors=True)
            raise ModelportError(f"model '{name}' failed to load: {reason}", model=name)

    async def infer(self, version: str | None, feed: dict[str, Any]):
        """(served version, outputs), or (None, error) for errors that are the request's."""
        try:
            vs = self.repository.get(self.name, version)
            outputs = await vs.batcher.submit(feed)
        except ModelportError as exc:
            return None, exc
        return vs.version_str, outputs

    def describe(self) -> dict[str, Any]:
        return describe(self.repository, self.name)

    async def __del__(self) -> None:
        repository = getattr(self, "repository", None)  # None when __init__ failed early
        if repository is not None:
            await repository.close()
        if getattr(self, "root", None) is not None:
            shutil.rmtree(self.root, ignore_errors=True)


@serve.deployment
@serve.ingress()
class Ingress:
    """The HTTP API families of the single-process server (``HTTP_APIS``) over a ``DataPlane``
    whose repository is remote: inference goes to the model deployments."""

    async def __init__(
        self,
        models: dict[str, Any],
        max_request_bytes: int,
        apis: tuple[str, ...] | None = None,
        refresh_s: float = 2.0,
    ) -> None:
        from ..dataplane import DataPlane

        self.repository = RemoteRepository(models)
        await self.repository.refresh()
        self.plane = DataPlane(self.repository, self.repository.metrics)  # type: ignore[arg-type]
        self.plane.started = True
        self.max_request_bytes = max_request_bytes
        self.apis = apis
        self.refresher = asyncio.get_running_loop().create_task(
            self.repository.refresh_forever(refresh_s)
        )

    def __serve_build_asgi_app__(self):
        from ..http.app import HttpSettings, build_app

        return build_app(self.plane, HttpSettings(self.max_request_bytes), self.apis)

    async def __del__(self) -> None:
        if hasattr(self, "refresher"):
            self.plane.draining = True
            self.refresher.cancel()
