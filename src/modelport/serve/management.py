"""The management API on its own port (8081, loopback, bearer token): TorchServe's management
routes where they map onto a model repository, plus the KServe V2 repository extension.

    GET    /models[?limit&next_page_token]                  list
    POST   /models?url=PATH|URL[&model_name&model_version   register a package directory or .onnx
            &batch_size&max_batch_delay&initial_workers      (copied into REPO/<name>/<version>/,
            &response_timeout]                               loaded and warmed up before answering)
    GET    /models/{m}[/{v} | /all]                         describe
    PUT    /models/{m}[/{v}]?min_worker=N                   scale: N instances (all versions)
    PUT    /models/{m}/{v}/set-default                      the version that unversioned calls get
    DELETE /models/{m}[/{v}]                                unregister (files moved to
                                                             REPO/.unregistered/, not deleted)
    POST   /v2/repository/index, /v2/repository/models/{m}/load|unload

Security (TorchServe's ShellTorch CVEs came from an open management port that downloaded models
from any URL): every call needs ``Authorization: Bearer <token>``; the token is generated at start
and written to a file only its owner can read, or given by config. Registering from a URL is off
unless the URL's host is allow-listed, also after redirects. Names and versions are validated and
every path is checked to stay inside the repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import time
import urllib.parse
from pathlib import Path
from typing import Any

from starlette.routing import BaseRoute, Route, Router

from ..errors import InputError, ModelportError, UsageError
from ..package import MODEL_NAME, ModelPackage
from .auth import require_token
from .config import ManagementConfig
from .dataplane import DataPlane
from .errors import ConflictError, ForbiddenError, ModelNotFoundError, RequestTooLargeError
from .http.common import read_body, send_json
from .http.torchserve import send_torchserve_error
from .names import check_model_name, check_version, inside
from .repository import CONFIG_NAMES, FAILED, ModelRepository

__all__ = [
    "build_management_app",
    "check_url",
    "default_token_file",
    "download",
    "management_token",
    "write_token_file",
]

log = logging.getLogger("modelport.serve")

UNREGISTERED_DIR = ".unregistered"
DOWNLOAD_TIMEOUT_S = 60.0
# TorchServe registration parameters -> the serving setting they set (and how to convert them).
_REGISTER_SETTINGS = {
    "batch_size": ("max_batch_size", int),
    "max_batch_delay": ("max_queue_delay_ms", float),
    "initial_workers": ("instances", int),
    "response_timeout": ("timeout_ms", lambda s: float(s) * 1000.0),
}
_REGISTER_PARAMS = {"url", "model_name", "model_version", "synchronous", "handler", "runtime"}


# --- the token ------------------------------------------------------------------------------


def default_token_file(port: int) -> Path:
    return Path.home() / ".modelport" / f"management-{port}.token"


def write_token_file(path: Path, token: str) -> None:
    """Write ``token`` to ``path`` readable by its owner only (0600; parent made 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise UsageError(f"cannot write the management token file {path}: {exc}") from exc
    try:
        os.fchmod(fd, 0o600)  # also when the file existed with wider permissions
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)


def management_token(config: ManagementConfig, port: int) -> tuple[str, Path | None]:
    """(the token, the file a generated one was written to; None when given by config)."""
    if config.token is not None:
        return config.token, None
    token = secrets.token_urlsafe(32)
    path = config.token_file or default_token_file(port)
    write_token_file(path, token)
    return token, path


# --- registering: sources, URLs, copies -----------------------------------------------------


def check_url(url: str, allowed_hosts: tuple[str, ...]) -> str:
    """``url`` if it is http(s) to an allow-listed host; ForbiddenError / InputError otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InputError(f"only http and https URLs can be registered, not {parts.scheme!r}")
    host = (parts.hostname or "").lower()
    if not allowed_hosts:
        raise ForbiddenError(
            "registering models from URLs is off; register a local package directory or .onnx "
            f"file, or allow the host with --allow-url-host {host or 'HOST'}"
        )
    if host not in allowed_hosts:
        raise ForbiddenError(
            f"the host {host!r} is not on the allow-list {list(allowed_hosts)}; add it with "
            "--allow-url-host if you trust it"
        )
    return url


def download(url: str, out: Path, allowed_hosts: tuple[str, ...], max_bytes: int) -> None:
    """Fetch ``url`` to ``out`` (blocking), checking the host of every redirect and the size."""
    import urllib.request

    check_url(url, allowed_hosts)

    class CheckedRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            check_url(newurl, allowed_hosts)
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    opener = urllib.request.build_opener(CheckedRedirects)
    size = 0
    try:
        with opener.open(url, timeout=DOWNLOAD_TIMEOUT_S) as resp, open(out, "wb") as f:
            while chunk := resp.read(1 << 20):
                size += len(chunk)
                if size > max_bytes:
                    raise RequestTooLargeError(
                        f"the model at {url} is over the {max_bytes} byte download limit"
                    )
                f.write(chunk)
    except OSError as exc:  # URLError, HTTPError and timeouts are OSErrors
        raise InputError(f"cannot download {url}: {exc}") from exc


def _copy_source(source: Path, staging: Path) -> None:
    if source.is_file():
        shutil.copyfile(source, staging / MODEL_NAME)
    else:
        shutil.copytree(source, staging, dirs_exist_ok=True, symlinks=False)


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()  # only succeeds when empty


def _write_settings(model_dir: Path, settings: dict[str, Any]) -> None:
    """Merge serving ``settings`` into REPO/<model>/config.json (atomically)."""
    for name in CONFIG_NAMES[1:]:
        if (model_dir / name).exists():
            raise UsageError(
                f"{model_dir / name} holds this model's serving config; edit it there (the "
                "management API only writes config.json)"
            )
    path = model_dir / CONFIG_NAMES[0]
    doc: dict[str, Any] = {}
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {path}: {exc}; fix or remove it") from exc
    target = doc["serving"] if isinstance(doc.get("serving"), dict) else doc
    target.update(settings)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)


def _query(scope: dict, allowed: set[str]) -> dict[str, str]:
    query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise InputError(f"unknown parameter(s) {unknown}; known: {sorted(allowed)}")
    return {k: v[-1] for k, v in query.items()}


def _number(params: dict[str, str], key: str, convert) -> Any:
    try:
        return convert(params[key])
    except ValueError:
        raise InputError(f"{key} must be a number, got {params[key]!r}") from None


# --- the app --------------------------------------------------------------------------------


class Management:
    """The management operations over a data plane's repository (run on the event loop)."""

    def __init__(self, plane: DataPlane, config: ManagementConfig) -> None:
        if not isinstance(plane.repository, ModelRepository):
            raise UsageError(
                "the management API manages a model repository on this machine; it is not "
                "available for models served by Ray Serve"
            )
        self.plane = plane
        self.repository: ModelRepository = plane.repository
        self.config = config
        self.lock = asyncio.Lock()  # one change to the repository at a time

    def _root(self) -> Path:
        if self.repository.single:
            raise UsageError(
                "the server serves one package, not a repository; start it with a directory "
                "laid out as REPO/<model>/<version>/ to register, scale or unregister models"
            )
        if self.repository.model_folder:
            raise UsageError(
                "the server serves one model folder (its numbered versions), not a repository; "
                "start it with the directory above it, laid out as REPO/<model>/<version>/, to "
                "register, scale or unregister models"
            )
        return self.repository.root

    # --- read -------------------------------------------------------------------------------

    def list_models(self, params: dict[str, str]) -> dict[str, Any]:
        limit = _number(params, "limit", int) if "limit" in params else 100
        start = _number(params, "next_page_token", int) if "next_page_token" in params else 0
        if limit < 1 or start < 0:
            raise InputError("limit must be >= 1 and next_page_token >= 0")
        disk = self.repository.on_disk()
        names = sorted(set(disk) | set(self.repository.models))
        page = names[start : start + limit]
        doc: dict[str, Any] = {
            "models": [
                {"modelName": n, "modelUrl": str(disk.get(n, self.repository.models[n].path))}
                for n in page
            ]
        }
        if start + limit < len(names):
            doc["nextPageToken"] = str(start + limit)
        return doc

    def describe(self, name: str, version: str | None) -> list[dict[str, Any]]:
        check_model_name(name)
        entry = self.repository.entry(name)
        if version == "all":
            states = [entry.versions[v] for v in sorted(entry.versions)]
        elif version is None:  # the default version, or all when none is ready
            states = [entry.default] if entry.default else list(entry.versions.values())
        else:
            v = check_version(version)
            if v not in entry.versions:
                raise ModelNotFoundError(
                    f"model '{name}' has no version {v}; versions: {sorted(entry.versions)}",
                    model=name,
                )
            states = [entry.versions[v]]
        out = []
        for vs in states:
            d: dict[str, Any] = {
                "modelName": name,
                "modelVersion": vs.version_str,
                "modelUrl": str(
                    entry.path if self.repository.single else entry.path / vs.version_str
                ),
                "runtime": "onnxruntime",
                "default": vs is entry.default,
                "state": vs.state,
                "reason": vs.reason,
            }
            if vs.model is not None and vs.batcher is not None:
                cfg = vs.model.config
                d.update(  # workers: what runs (an inline model runs one call at a time)
                    minWorkers=cfg.instances,
                    maxWorkers=cfg.instances,
                    execution="inline" if vs.batcher.inline else "thread",
                    batchSize=vs.batcher.max_batch_size,
                    maxBatchDelay=cfg.max_queue_delay_ms,
                    responseTimeout=cfg.timeout_ms / 1000.0,
                    versionLabels=dict(cfg.version_labels),
                    workers=[
                        {"id": f"{name}-{vs.version}-{i}", "status": "READY"}
                        for i in range(vs.batcher.instances)
                    ],
                    signature=self.plane.model_metadata(name, vs.version_str),
                )
            out.append(d)
        return out

    # --- change -----------------------------------------------------------------------------

    async def register(self, params: dict[str, str]) -> dict[str, str]:
        root = self._root()
        url = params.get("url")
        if not url:
            raise InputError(
                "give the model with url=PATH (a package directory or .onnx file on the server) "
                "or url=https://... (an allow-listed host)"
            )
        settings = {
            setting: _number(params, key, convert)
            for key, (setting, convert) in _REGISTER_SETTINGS.items()
            if key in params
        }
        if settings:
            self.repository.defaults.merged(settings, source="the registration parameters")
        remote = "://" in url
        if remote:
            check_url(url, self.config.allow_url_hosts)
            source = None
            default_name = Path(urllib.parse.urlsplit(url).path).stem
        else:
            source = Path(url).expanduser()
            if not source.exists():
                raise InputError(f"no package directory or .onnx file at {source} on the server")
            try:
                package = ModelPackage.load(source)
            except ModelportError as exc:
                raise InputError(exc.message) from None
            default_name = source.stem if source.is_file() else package.name or source.name
        name = check_model_name(params.get("model_name") or default_name)
        async with self.lock:
            model_dir = inside(root, name)
            on_disk = [int(p.name) for p in model_dir.glob("*") if p.name.isdigit()]
            if "model_version" in params:
                version = check_version(params["model_version"])
            else:
                version = max(on_disk, default=0) + 1
            target = inside(root, name, str(version))
            if target.exists():
                raise ConflictError(
                    f"model '{name}' version {version} is already registered ({target}); "
                    "unregister it first or give another model_version",
                    model=name,
                )
            staging = model_dir / f".staging-{secrets.token_hex(6)}"
            staging.mkdir(parents=True)
            try:
                loop = asyncio.get_running_loop()
                if source is None:
                    await loop.run_in_executor(
                        None,
                        download,
                        url,
                        staging / MODEL_NAME,
                        self.config.allow_url_hosts,
                        self.config.max_download_bytes,
                    )
                    try:
                        ModelPackage.load(staging)
                    except ModelportError as exc:
                        raise InputError(f"{url} is not a model: {exc.message}") from None
                else:
                    await loop.run_in_executor(None, _copy_source, source, staging)
                if settings:
                    _write_settings(model_dir, settings)
                os.rename(staging, target)
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
                    _remove_if_empty(model_dir)
            log.info("registered model %s version %s from %s", name, version, url)
            return await self._load_registered(name, version, target)

    async def _load_registered(self, name: str, version: int, target: Path) -> dict[str, str]:
        with contextlib.suppress(ModelportError):  # the version's own state says why, below
            await self.repository.load(name)
        entry = self.repository.models.get(name)
        vs = entry.versions.get(version) if entry is not None else None
        if vs is None or vs.state == FAILED:
            reason = vs.reason if vs is not None else (entry.reason if entry else "not loaded")
            shutil.rmtree(target, ignore_errors=True)  # our own copy
            _remove_if_empty(target.parent)
            await self.repository.sync(name)
            raise InputError(f"model '{name}' version {version} failed to load: {reason}")
        workers = vs.batcher.instances if vs.batcher is not None else 0
        return {
            "status": f'Model "{name}" Version: {version} registered with {workers} initial workers'
        }

    async def scale(self, name: str, version: str | None, params: dict[str, str]) -> dict:
        root = self._root()
        check_model_name(name)
        if version is not None:
            self.repository.get(name, str(check_version(version)))
        if "min_worker" not in params and "max_worker" not in params:
            raise InputError("give min_worker=N (the number of concurrent model instances)")
        low = _number(params, "min_worker", int) if "min_worker" in params else None
        high = _number(params, "max_worker", int) if "max_worker" in params else None
        instances = low if low is not None else high
        if high is not None and low is not None and high < low:
            raise InputError(f"max_worker ({high}) is below min_worker ({low})")
        if instances is None or instances < 1:
            raise InputError(
                "at least 1 worker is needed; to stop serving a model, unregister it or unload it "
                "with POST /v2/repository/models/{name}/unload"
            )
        self.repository.entry(name)
        self.repository.defaults.merged({"instances": instances}, source="min_worker")
        async with self.lock:
            _write_settings(inside(root, name), {"instances": instances})
            await self.repository.sync(name)
        return {"status": f"Workers scaled to {instances} for model: {name} (all versions)"}

    def set_default(self, name: str, version: str) -> dict[str, str]:
        check_model_name(name)
        v = check_version(version)
        vs = self.repository.get(name, str(v))  # 404 / 503 unless loaded and ready
        entry = self.repository.entry(name)
        entry.pinned = vs.version
        entry.refresh_default()
        return {"status": f'Default version successfully updated for model "{name}" to "{v}"'}

    async def unregister(self, name: str, version: str | None) -> dict[str, str]:
        root = self._root()
        check_model_name(name)
        parts = (name,) if version is None else (name, str(check_version(version)))
        path = inside(root, *parts)
        if not path.is_dir():
            what = f"model '{name}'" + (f" version {version}" if version is not None else "")
            raise ModelNotFoundError(f"{what} is not in the repository {root}", model=name)
        async with self.lock:
            stamp = time.strftime("%Y%m%dT%H%M%S") + f"-{secrets.token_hex(3)}"
            kept = root / UNREGISTERED_DIR / name / ("-".join(parts[1:]) or "all") / stamp
            kept.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, kept)
            entry = self.repository.models.get(name)
            if entry is not None and version is not None and entry.pinned == int(version):
                entry.pinned = None
            await self.repository.sync(name)
        what = f'Model "{name}"' + (f" version {version}" if version is not None else "")
        log.info("unregistered %s; its files are in %s", what, kept)
        return {"status": f"{what} unregistered", "kept_at": str(kept)}


def build_management_app(
    plane: DataPlane, config: ManagementConfig, token: str, max_request_bytes: int
) -> Any:
    """The management ASGI app (every route behind the bearer token)."""
    from .http import v2
    from .http.app import HttpSettings

    ops = Management(plane, config)
    limit = max_request_bytes

    def path(scope: dict, key: str) -> str | None:
        return scope["path_params"].get(key)

    async def models(scope, receive, send):
        await read_body(scope, receive, limit)
        if scope["method"] == "GET":
            await send_json(send, ops.list_models(_query(scope, {"limit", "next_page_token"})))
            return
        known = _REGISTER_PARAMS | set(_REGISTER_SETTINGS)
        await send_json(send, await ops.register(_query(scope, known)))

    async def model(scope, receive, send):
        await read_body(scope, receive, limit)
        name, version = path(scope, "name"), path(scope, "version")
        method = scope["method"]
        if method == "GET":
            _query(scope, set())
            await send_json(send, ops.describe(name, version))
        elif method == "PUT":
            params = _query(scope, {"min_worker", "max_worker", "synchronous", "timeout"})
            await send_json(send, await ops.scale(name, version, params))
        else:
            _query(scope, set())
            await send_json(send, await ops.unregister(name, version))

    async def set_default(scope, receive, send):
        await read_body(scope, receive, limit)
        await send_json(send, ops.set_default(path(scope, "name"), path(scope, "version")))

    def endpoint(handler):
        return v2.Endpoint(handler, send_torchserve_error)

    v2_repository = [
        r
        for r in v2.routes(plane, HttpSettings(max_request_bytes=limit))
        if r.path.startswith("/v2/repository/")
    ]
    methods = ["GET", "PUT", "DELETE"]
    routes: list[BaseRoute] = [
        Route("/models", endpoint(models), methods=["GET", "POST"]),
        Route("/models/{name}/{version}/set-default", endpoint(set_default), methods=["PUT"]),
        Route("/models/{name}", endpoint(model), methods=methods),
        Route("/models/{name}/{version}", endpoint(model), methods=methods),
        *v2_repository,
    ]

    async def not_found(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = {"code": 404, "type": "ResourceNotFoundException"}
        body["message"] = f"no management route {scope['method']} {scope['path']}"
        await send_json(send, body, 404)

    app = Router(routes=routes, default=not_found)
    return require_token(app, token, open_paths=(), what="the management API")
