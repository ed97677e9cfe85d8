"""Small ASGI helpers shared by the HTTP API families: bodies with a size limit, JSON answers,
errors as ``{"error": "..."}`` with the status from the serve error table, loopback checks."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import zlib
from typing import TYPE_CHECKING, Any

import orjson

# ASGI's types (Starlette's): the server's dicts hold JSON-like values, Any at this boundary
from starlette.types import Message, Receive, Scope, Send

from ...errors import InputError, ModelportError
from ..errors import (
    ClientDisconnected,
    ForbiddenError,
    RequestTooLargeError,
    UnsupportedMediaError,
    status_of,
)
from ..offload import off_loop

if TYPE_CHECKING:
    from ..dataplane import DataPlane
    from ..types import InferenceRequest, InferenceResponse

__all__ = [
    "WATCH_DISCONNECT_AFTER_S",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "error_body",
    "header",
    "infer_watching",
    "read_body",
    "require_loopback",
    "send_bytes",
    "send_error",
    "send_json",
    "strict_int",
]

log = logging.getLogger("modelport.serve")

_JSON = [(b"content-type", b"application/json")]


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a (lower-case) request header."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for k, v in headers:
        if k == name:
            return v
    return None


_INFLATE_STEP = 1 << 20  # inflate at most this much per zlib call (the cap is checked between)
_ENCODINGS = {
    b"gzip": 16 + zlib.MAX_WBITS,
    b"x-gzip": 16 + zlib.MAX_WBITS,
    b"deflate": zlib.MAX_WBITS,
}


def strict_int(value: bytes, what: str) -> int:
    """A header value that must be a plain non-negative decimal integer (Python's int() would
    also take "1_155", " 7" or "+7")."""
    if not (value.isdigit() and value.isascii() and len(value) <= 18):
        shown = value.decode("latin-1")[:40]
        raise InputError(f"{what} must be a non-negative decimal integer, got {shown!r}")
    return int(value)


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes | bytearray:
    """The request body (inflated when gzip/deflate), refusing more than ``limit`` bytes, before
    and after inflation. Inflation of large bodies runs off the event loop, in steps, and stops
    as soon as the output passes ``limit``."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    encoding = header(scope, b"content-encoding")
    wbits = None
    if encoding is not None and encoding.strip().lower() not in (b"identity", b""):
        wbits = _ENCODINGS.get(encoding.strip().lower())
        if wbits is None:
            shown = encoding.decode("latin-1")[:40]
            raise UnsupportedMediaError(
                f"unsupported Content-Encoding {shown!r}; send the body as gzip, deflate or "
                "uncompressed"
            )
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
    if wbits is not None:
        body = await off_loop(len(body), _inflate, body, wbits, encoding, limit)
    return body


def _inflate(body: bytes, wbits: int, encoding: bytes, limit: int) -> bytearray:
    d = zlib.decompressobj(wbits)
    out = bytearray()
    data = body
    try:
        while data:
            out += d.decompress(data, _INFLATE_STEP)
            if len(out) > limit:
                raise _too_large(len(out), limit)
            data = d.unconsumed_tail
        out += d.flush()
    except zlib.error as exc:
        raise InputError(
            f"the {encoding.decode('latin-1')} body does not decompress: {exc}"
        ) from None
    if len(out) > limit:
        raise _too_large(len(out), limit)
    return out


def _too_large(size: int, limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(
        f"the request body ({size} bytes or more) is over the server's limit of {limit} bytes; "
        "send smaller batches or raise --max-request-mb"
    )


def require_loopback(scope: Scope) -> None:
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


async def send_bytes(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, data: Any, status: int = 200) -> None:
    await send_bytes(send, status, orjson.dumps(data), _JSON)


def error_body(exc: BaseException) -> tuple[int, bytes]:
    """(HTTP status, ``{"error": message}``) for an exception."""
    status = status_of(exc).http
    message = exc.message if isinstance(exc, ModelportError) else f"internal error: {exc}"
    return status, orjson.dumps({"error": message})


async def send_error(send: Send, exc: BaseException, request_id: str | None = None) -> None:
    status, body = error_body(exc)
    if status >= 500:
        log.warning("request %s: %s %s", request_id or "-", status, body.decode(errors="replace"))
    else:
        log.debug("request %s: %s %s", request_id or "-", status, body.decode(errors="replace"))
    await send_bytes(send, status, body, _JSON)


# A request still waiting after this long starts listening for its client going away. Not
# sooner: a listener is a task per request, which at 5 ms cost a third of the throughput at 32
# connections (every request waits a few ms there); requests that wait longer are the ones worth
# cancelling.
WATCH_DISCONNECT_AFTER_S = 0.1


async def infer_watching(
    plane: DataPlane, request: InferenceRequest, receive: Receive
) -> InferenceResponse:
    """``plane.infer(request)`` for an HTTP request whose body has been read: if it waits longer
    than ``WATCH_DISCONNECT_AFTER_S``, listen for the client going away and then cancel it (work
    not yet started is dropped from the model's queue) and raise ``ClientDisconnected``."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    gone = False
    watcher: asyncio.Task[None] | None = None

    async def watch() -> None:
        nonlocal gone
        # The body is read: the server's next message is the disconnect (anything else: stop).
        message = await receive()
        if message["type"] == "http.disconnect" and task is not None:
            gone = True
            task.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = loop.create_task(watch())

    timer = loop.call_later(WATCH_DISCONNECT_AFTER_S, start_watching)
    try:
        return await plane.infer(request)
    except asyncio.CancelledError:
        if gone:
            log.info("request %s: client disconnected; cancelled", request.id or "-")
            raise ClientDisconnected() from None
        raise
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()
