"""The HTTP application: the route lists of the registered API families on one router, plus
``/metrics``.

To add an API family (e.g. TF Serving REST or TorchServe), write a module with
``routes(plane, settings) -> list[starlette.routing.BaseRoute]`` and add it to ``HTTP_APIS``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from starlette.routing import Route, Router

from ..dataplane import DataPlane
from .common import Receive, Scope, Send, send_bytes, send_json

__all__ = ["HTTP_APIS", "HttpSettings", "build_app"]

# API family -> "module:function" returning its routes. A plain dict: grep it.
HTTP_APIS: dict[str, str] = {
    "v2": "modelport.serve.http.v2:routes",
    "tfserving": "modelport.serve.http.tfserving:routes",
    "torchserve": "modelport.serve.http.torchserve:routes",
}


@dataclass(frozen=True)
class HttpSettings:
    """What route factories may need.

    max_request_bytes: the largest body accepted.
    control_token: when set, repository control routes (V2 load/unload/index) need
        ``Authorization: Bearer <token>`` as well as a loopback peer.
    """

    max_request_bytes: int = 256 * 1024 * 1024
    control_token: str | None = None


def build_app(
    plane: DataPlane, settings: HttpSettings | None = None, apis: tuple[str, ...] | None = None
) -> Router:
    """One ASGI app serving the ``apis`` (all registered ones by default) and ``/metrics``."""
    settings = settings or HttpSettings()
    routes = []
    for api in apis or tuple(HTTP_APIS):
        module_name, _, attr = HTTP_APIS[api].partition(":")
        routes.extend(getattr(importlib.import_module(module_name), attr)(plane, settings))

    class Metrics:
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            body, content_type = plane.metrics.render()
            await send_bytes(send, 200, body, [(b"content-type", content_type.encode())])

    routes.append(Route("/metrics", Metrics(), methods=["GET"]))

    class OpenAPI:
        body: bytes | None = None

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if OpenAPI.body is None:
                import orjson

                from .openapi import openapi_document

                OpenAPI.body = orjson.dumps(openapi_document())
            await send_bytes(send, 200, OpenAPI.body, [(b"content-type", b"application/json")])

    routes.append(Route("/openapi.json", OpenAPI(), methods=["GET"]))
    return Router(routes=routes, default=_not_found)


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":  # no WebSocket API: refuse the handshake (403)
        await send({"type": "websocket.close", "code": 1008})
        return
    if scope["type"] != "http":
        return
    await send_json(send, {"error": f"no route for {scope.get('path')}; see docs/serve.md"}, 404)
