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
from ..errors import ModelNotReadyError, ServeError
from ..repository import ModelRepository
from .packages import PackageRef, fetch, unpack
from .remote import RemoteRepository, describe, replica_infer

__all__ = ["Ingress", "ModelDeployment"]

log = logging.getLogger("modelport.serve")


@serve.deployment
class ModelDeployment:
    """One model, served by the single-process server's repository and dynamic batcher.

    The package arrives through the object store (``package``: its store reference), is unpacked
    into a temporary repository of this one model, loaded and warmed up before the replica
    reports ready. ``engine``: ``serve --engine`` (``{"engine": ..., "precision": ...}``) over the
    package's serving section, as in the single-process server (a config.json naming an engine
    or precision keeps its own). A model that fails to load does not fail the replica (nor the application):
    the replica runs, describes the model as the single-process server would (its versions
    FAILED, with the reason) and serves nothing. Only in a rolling update of a model that works
    (``reconfigure({"strict": True})``, set by ``deploy``) does a failed load fail the replica, so
    that a broken package never replaces a working one.
    """

    async def __init__(
        self,
        name: str,
        package: PackageRef,
        defaults: ModelConfig,
        engine: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.failure = ""
        self.root = self.repository = None
        self.origin: tuple[str, str] | None = None  # set by reconfigure
        try:
            self.root = unpack(await fetch(package), name)
            self.repository = ModelRepository(self.root, defaults, engine=engine)
            await self.repository.sync()
        except Exception as exc:  # noqa: BLE001 - reported, like the single-process server does
            message = (
                exc.message if isinstance(exc, ModelportError) else f"{type(exc).__name__}: {exc}"
            )
            self.failure = f"model '{name}' failed to load: {message}"
            log.error("%s", self.failure)
            return
        entry = self.repository.models.get(name)
        if entry is None or entry.default is None:
            reason = "not in the package"
            if entry is not None:
                reason = entry.reason or "; ".join(
                    f"version {v}: {vs.reason}" for v, vs in sorted(entry.versions.items())
                )
            self.failure = f"model '{name}' failed to load: {reason}"
            log.error("%s", self.failure)

    def _where(self, text: str) -> str:
        """``text`` with the replica's temporary paths put back as the repository's paths."""
        if self.root is None or self.origin is None:
            return text
        return text.replace(str(self.root / self.origin[0]), self.origin[1])

    def reconfigure(self, config: dict[str, Any]) -> None:
        """``origin``: (the model's path in the package, its path in the deployed repository),
        so that messages name the repository's files, not this replica's temporary copy.
        ``strict``: this replica must serve its model (a rolling update of a model that works):
        fail to start when it cannot. (Ray calls this before the replica takes requests, and
        again when only these change, without restarting the replica.)"""
        origin = config.get("origin")
        self.origin = tuple(origin) if origin else None
        if config.get("strict") and self.failure:
            raise ServeError(
                self._where(self.failure) + "; the replicas serving the previous package keep "
                "serving",
                model=self.name,
            )

    async def infer(self, version: str | None, feed: dict[str, Any]):
        """(served version, outputs), or (None, error) for errors that are the request's."""
        if self.repository is None:
            return None, ModelNotReadyError(self._where(self.failure), model=self.name)
        return await replica_infer(self.repository, self.name, version, feed)

    def describe(self) -> dict[str, Any]:
        if self.repository is None:
            return {"reason": self._where(self.failure), "default": None, "versions": []}
        doc = describe(self.repository, self.name)
        doc["reason"] = self._where(doc["reason"])
        for row in doc["versions"]:
            row["reason"] = self._where(row["reason"])
        return doc

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
        failed: dict[str, str] | None = None,
        strict_readiness: bool = True,
    ) -> None:
        from ..dataplane import DataPlane

        self.repository = RemoteRepository(models, failed=failed)
        await self.repository.refresh()
        self.plane = DataPlane(self.repository, self.repository.metrics)
        self.plane.started = True
        self.plane.strict_readiness = strict_readiness
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
