"""Bearer-token authentication for the HTTP apps (an ASGI wrapper) and the gRPC servers (an
interceptor). Off unless a token is configured; tokens are compared in constant time.

    Authorization: Bearer <token>        (HTTP header, or gRPC metadata "authorization")

Health checks stay open so that load balancers and orchestrators can probe without a secret.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

import orjson

__all__ = [
    "HTTP_OPEN_PATHS",
    "GRPC_OPEN_METHODS",
    "bearer_ok",
    "log_safe",
    "grpc_token_interceptor",
    "require_token",
]

log = logging.getLogger("modelport.serve")

# Routes and RPCs that never need a token: liveness and readiness probes.
HTTP_OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/ping"})
GRPC_OPEN_METHODS = frozenset(
    {"/inference.GRPCInferenceService/ServerLive", "/inference.GRPCInferenceService/ServerReady"}
)
# Where the management token is accepted instead of the inference token (both servers).
HTTP_CONTROL_PREFIX = "/v2/repository/"
GRPC_CONTROL_PREFIX = "/inference.GRPCInferenceService/Repository"
# Paths answered with TorchServe's error shape; everything else gets {"error": ...}.
_TORCHSERVE_PREFIXES = ("/predictions", "/ping", "/models")


def bearer_ok(value: bytes | str | None, token: bytes) -> bool:
    """Whether an Authorization value is ``Bearer <token>`` (constant-time comparison)."""
    if value is None:
        return False
    if isinstance(value, str):
        value = value.encode("latin-1", "replace")
    scheme, _, given = value.strip().partition(b" ")
    # compare_digest runs in time independent of where the bytes differ
    return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token)


def log_safe(value: Any, limit: int = 200) -> str:
    """A client-supplied string for a text log line: control characters (newlines that could
    forge a line) escaped, and at most ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")


def _unauthorized_body(path: str, message: str) -> bytes:
    if path.startswith(_TORCHSERVE_PREFIXES):
        return orjson.dumps({"code": 401, "type": "UnauthorizedException", "message": message})
    return orjson.dumps({"error": message})


def require_token(
    app: Callable,
    token: str,
    open_paths: Collection[str] = HTTP_OPEN_PATHS,
    what: str = "this API",
    alternates: Mapping[str, str] | None = None,
) -> Callable:
    """``app`` behind a bearer-token check: 401 with ``WWW-Authenticate: Bearer`` when the
    token is missing or wrong (``open_paths`` excepted). Every scope but lifespan is checked:
    a WebSocket handshake without the token is refused (403) before it reaches the app.

    alternates: path prefix -> another token accepted there instead (the management token on
    the repository routes, which need that token anyway: one Authorization header cannot carry
    two tokens).
    """
    secret = token.encode()
    open_paths = frozenset(open_paths)
    others = [(prefix, t.encode()) for prefix, t in (alternates or {}).items()]

    async def guarded(scope: dict, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan" or (kind == "http" and scope["path"] in open_paths):
            await app(scope, receive, send)
            return
        value = None
        for k, v in scope.get("headers", ()):
            if k == b"authorization":
                value = v
                break
        path = scope.get("path", "")
        if bearer_ok(value, secret) or any(
            path.startswith(prefix) and bearer_ok(value, other) for prefix, other in others
        ):
            await app(scope, receive, send)
            return
        if kind != "http":  # a WebSocket handshake: refuse it (the server answers 403)
            log.info("refused a %s connection to %s: no valid token", kind, log_safe(path))
            await send({"type": "websocket.close", "code": 1008})
            return
        message = (
            f"{what} needs 'Authorization: Bearer <token>'"
            if value is None
            else f"the bearer token for {what} is wrong"
        )
        log.info("refused %s %s: %s", scope.get("method"), log_safe(scope["path"]), message)
        body = _unauthorized_body(scope["path"], message)
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b'Bearer realm="modelport"'),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return guarded


def grpc_token_interceptor(
    token: str,
    open_methods: Collection[str] = GRPC_OPEN_METHODS,
    alternates: Mapping[str, str] | None = None,
) -> Any:
    """A grpc.aio server interceptor refusing calls without ``authorization: Bearer <token>``
    metadata with UNAUTHENTICATED. ``alternates``: method prefix -> another token accepted."""
    import grpc

    secret = token.encode()
    open_methods = frozenset(open_methods)
    others = [(prefix, t.encode()) for prefix, t in (alternates or {}).items()]

    class TokenInterceptor(grpc.aio.ServerInterceptor):
        async def intercept_service(self, continuation, details):
            handler = await continuation(details)
            if handler is None or details.method in open_methods:
                return handler
            value = None
            for k, v in details.invocation_metadata or ():
                if k == "authorization":
                    value = v
                    break
            if bearer_ok(value, secret) or any(
                details.method.startswith(prefix) and bearer_ok(value, other)
                for prefix, other in others
            ):
                return handler
            message = (
                "this API needs 'authorization: Bearer <token>' metadata"
                if value is None
                else "the bearer token is wrong"
            )
            return _denying(handler, message)

    return TokenInterceptor()


def _denying(handler: Any, message: str) -> Any:
    """A method handler of the same kind as ``handler`` that aborts with UNAUTHENTICATED."""
    import grpc

    async def deny(request_or_iterator, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def deny_stream(request_or_iterator, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator

    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler, deny),
        ("unary_stream", grpc.unary_stream_rpc_method_handler, deny_stream),
        ("stream_unary", grpc.stream_unary_rpc_method_handler, deny),
        ("stream_stream", grpc.stream_stream_rpc_method_handler, deny_stream),
    )
    for attr, make, fn in kinds:
        if getattr(handler, attr) is not None:
            return make(
                fn,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler  # pragma: no cover - every gRPC handler is one of the four kinds
