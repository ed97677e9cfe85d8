"""Small ASGI helpers shared by the HTTP API families: bodies with a size limit, JSON answers,
errors as ``{"error": "..."}`` with the status from the serve error table, loopback checks."""

from __future__ import annotations

import ipaddress
import logging
import zlib
from typing import Any

import orjson

from ...errors import ModelportError
from ..errors import ForbiddenError, RequestTooLargeError, status_of

__all__ = [
    "error_body",
    "header",
    "read_body",
    "require_loopback",
    "send_bytes",
    "send_error",
    "send_json",
]

log = logging.getLogger("modelport.serve")

_JSON = [(b"content-type", b"application/json")]


def header(scope: dict, name: bytes) -> bytes | None:
    """The first value of a (lower-case) request header."""
    for k, v in scope["headers"]:
        if k == name:
            return v
    return None


async def read_body(scope: dict, receive, limit: int) -> bytes:
    """The request body (decompressed when gzip/deflate), refusing more than ``limit`` bytes."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client disconnected")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            chunks.append(chunk)
        if not message.get("more_body"):
            break
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    encoding = header(scope, b"content-encoding")
    if encoding and encoding not in (b"identity",):
        body = _decompress(body, encoding, limit)
    return body


def _decompress(body: bytes, encoding: bytes, limit: int) -> bytes:
    wbits = {b"gzip": 16 + zlib.MAX_WBITS, b"deflate": zlib.MAX_WBITS}.get(encoding.lower())
    if wbits is None:
        raise ModelportError(
            f"unsupported Content-Encoding {encoding.decode(errors='replace')!r}; "
            "use gzip, deflate or none",
        )
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        from ...errors import InputError

        raise InputError(f"the {encoding.decode()} body does not decompress: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise _too_large(len(out), limit)
    return out


def _too_large(size: int, limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(
        f"the request body ({size} bytes or more) is over the server's limit of {limit} bytes; "
        "send smaller batches or raise --max-request-mb"
    )


def require_loopback(scope: dict) -> None:
    """Management calls are accepted only from loopback peers."""
    client = scope.get("client")
    host = client[0] if client else None
    try:
        ok = host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ForbiddenError(
            f"management calls are only accepted from loopback addresses (127.0.0.1, ::1), not from {host}"
        )


async def send_bytes(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_json(send, data: Any, status: int = 200) -> None:
    await send_bytes(send, status, orjson.dumps(data), _JSON)


def error_body(exc: BaseException) -> tuple[int, bytes]:
    """(HTTP status, ``{"error": message}``) for an exception."""
    status = status_of(exc).http
    message = exc.message if isinstance(exc, ModelportError) else f"internal error: {exc}"
    return status, orjson.dumps({"error": message})


async def send_error(send, exc: BaseException, request_id: str | None = None) -> None:
    status, body = error_body(exc)
    if status >= 500:
        log.warning("request %s: %s %s", request_id or "-", status, body.decode(errors="replace"))
    else:
        log.debug("request %s: %s %s", request_id or "-", status, body.decode(errors="replace"))
    await send_bytes(send, status, body, _JSON)
