"""KServe V2 / Open Inference Protocol REST routes, with Triton's binary tensor extension and the
repository extension (index, load, unload; loopback peers only).

Endpoints are plain ASGI callables (no per-request Request/Response objects on the hot path).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute, Route

from ...errors import ModelportError
from ..auth import bearer_ok
from ..dataplane import DataPlane
from ..errors import ClientDisconnected, ForbiddenError
from ..offload import PROCESS_DECODE_BYTES, off_loop, off_process
from .codec import decode_request, encode_response
from .common import (
    Receive,
    Scope,
    Send,
    header,
    infer_watching,
    read_body,
    require_loopback,
    send_bytes,
    send_error,
    send_json,
    strict_int,
)

if TYPE_CHECKING:
    from .app import HttpSettings

__all__ = ["routes"]

log = logging.getLogger("modelport.serve")

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


class Endpoint:
    """An ASGI endpoint that answers errors as ``{"error": ...}``, or with ``on_error`` (other API
    families' error shapes). Starlette mounts class instances as raw ASGI apps."""

    def __init__(
        self, handler: Handler, on_error: Callable[..., Awaitable[None]] = send_error
    ) -> None:
        self.handler = handler
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.handler(scope, receive, send)
        except (ConnectionResetError, ClientDisconnected):
            return  # the client is gone: nobody to answer
        except ModelportError as exc:
            await self.on_error(send, exc)
        except Exception as exc:
            log.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            await self.on_error(send, exc)


def _version(scope: Scope) -> str | None:
    version: str | None = scope["path_params"].get("version")
    return version


async def _empty(send: Send, ok: bool) -> None:
    await send_bytes(send, 200 if ok else 400, b"", [])


def routes(plane: DataPlane, settings: HttpSettings) -> list[BaseRoute]:
    """The V2 routes for ``plane``; ``settings`` carries ``max_request_bytes``."""
    limit = settings.max_request_bytes

    async def live(scope: Scope, receive: Receive, send: Send) -> None:
        await _empty(send, plane.live())

    async def ready(scope: Scope, receive: Receive, send: Send) -> None:
        await _empty(send, plane.ready())

    async def server_metadata(scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, plane.server_metadata())

    async def model_metadata(scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, plane.model_metadata(scope["path_params"]["name"], _version(scope)))

    async def model_ready(scope: Scope, receive: Receive, send: Send) -> None:
        await _empty(send, plane.model_ready(scope["path_params"]["name"], _version(scope)))

    async def model_config(scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, plane.model_config(scope["path_params"]["name"], _version(scope)))

    def require_control(scope: Scope) -> None:
        require_loopback(scope)
        if settings.control_token is not None and not bearer_ok(
            header(scope, b"authorization"), settings.control_token.encode()
        ):
            raise ForbiddenError(
                "repository control needs the management token: send 'Authorization: Bearer "
                "<token>' (the token file path is printed at start)"
            )

    async def repository_index(scope: Scope, receive: Receive, send: Send) -> None:
        require_control(scope)
        await read_body(scope, receive, limit)
        await send_json(send, plane.repository_index())

    async def load(scope: Scope, receive: Receive, send: Send) -> None:
        require_control(scope)
        _check_load_body(await read_body(scope, receive, limit))
        await plane.load(scope["path_params"]["name"])
        await send_bytes(send, 200, b"", [])

    async def unload(scope: Scope, receive: Receive, send: Send) -> None:
        require_control(scope)
        await read_body(scope, receive, limit)
        await plane.unload(scope["path_params"]["name"])
        await send_bytes(send, 200, b"", [])

    infer = Endpoint(_infer_handler(plane, limit))
    get = ["GET"]
    post = ["POST"]
    m = "/v2/models/{name}"
    mv = "/v2/models/{name}/versions/{version}"
    return [  # infer first: the router tries routes in order
        Route(m + "/infer", infer, methods=post),
        Route(mv + "/infer", infer, methods=post),
        Route("/v2/health/live", Endpoint(live), methods=get),
        Route("/v2/health/ready", Endpoint(ready), methods=get),
        Route("/v2", Endpoint(server_metadata), methods=get),
        Route(m, Endpoint(model_metadata), methods=get),
        Route(mv, Endpoint(model_metadata), methods=get),
        Route(m + "/ready", Endpoint(model_ready), methods=get),
        Route(mv + "/ready", Endpoint(model_ready), methods=get),
        Route(m + "/config", Endpoint(model_config), methods=get),
        Route(mv + "/config", Endpoint(model_config), methods=get),
        Route("/v2/repository/index", Endpoint(repository_index), methods=post),
        Route("/v2/repository/models/{name}/load", Endpoint(load), methods=post),
        Route("/v2/repository/models/{name}/unload", Endpoint(unload), methods=post),
    ]


def _check_load_body(body: bytes | bytearray) -> None:
    if not body.strip():
        return
    import orjson

    from ..errors import UnsupportedError

    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        from ...errors import InputError

        raise InputError("the load request body must be JSON (or empty)") from None
    params = doc.get("parameters") if isinstance(doc, dict) else None
    if params:
        raise UnsupportedError(
            f"load parameters {sorted(params)} are not supported; put the serving config in "
            "REPO/<model>/config.json and the files in the repository, then load"
        )


def _infer_handler(plane: DataPlane, limit: int) -> Handler:
    async def infer(scope: Scope, receive: Receive, send: Send) -> None:
        params = scope["path_params"]
        # the model first: a request for one that is not served is a 404 whatever its body
        plane.resolve(params["name"], params.get("version"))
        body = await read_body(scope, receive, limit)
        hl = header(scope, b"inference-header-content-length")
        header_length = None if hl is None else strict_int(hl, "Inference-Header-Content-Length")
        json_size = len(body) if header_length is None else header_length
        decode = off_process if json_size > PROCESS_DECODE_BYTES else off_loop
        request = await decode(
            len(body), decode_request, body, header_length, params["name"], params.get("version")
        )
        if request.id is None:
            rid = header(scope, b"x-request-id")
            request.id = rid.decode("latin-1") if rid else None
        try:
            response = await infer_watching(plane, request, receive)
        except ModelportError as exc:
            await send_error(send, exc, request.id)  # logged with the request id
            return
        out, out_header_length, content_type = encode_response(response, request)
        headers = [(b"content-type", content_type.encode())]
        if out_header_length is not None:
            headers.append((b"inference-header-content-length", str(out_header_length).encode()))
        await send_bytes(send, 200, out, headers)

    return infer
