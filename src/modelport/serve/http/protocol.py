"""uvicorn's httptools protocol with the connection limits it lacks (slowloris and friends).

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but never one that opens and
sends nothing, or sends half a request and stops, and it has no cap on open connections or on
header size. This subclass adds:

- header deadline: a connection must deliver a request's complete headers within
  ``header_timeout_s`` of opening (or of its first byte after a keep-alive pause);
- body timeout: while a request body is arriving, at most ``body_timeout_s`` between chunks;
- header size: request line + headers over ``max_header_bytes`` -> 431 and close;
- connection cap: above ``max_connections`` open connections, the connection idle the longest
  (no request in progress) is closed to make room; if every connection is busy the new one is
  answered 503 and closed;
- shutdown: a request whose body is still arriving is cut at once (uvicorn would wait for it up to
  the whole grace period, so one stalled upload held SIGTERM for ``shutdown_grace_s``); requests
  that arrived complete are still answered within the grace period.

Closing a connection whose request is in the application turns into ``http.disconnect`` for it.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["ConnectionLimits", "guarded_protocol"]

log = logging.getLogger("modelport.serve")
_ACTIVITY = itertools.count(1)


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float = 30.0
    body_timeout_s: float = 60.0
    max_header_bytes: int = 64 * 1024
    max_connections: int = 2048


def _plain_response(status: bytes, message: str) -> bytes:
    body = ('{"error": "' + message + '"}').encode()
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )  # fmt: skip


def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """An HttpToolsProtocol subclass enforcing ``limits`` (pass it as uvicorn's ``http``)."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _limits = limits

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._deadline = None  # TimerHandle: header deadline or body gap
            self._header_bytes = 0
            self._in_body = False
            self._last_active = 0  # order of last activity (a counter: loop.time() is cached)

        # --- timers ---------------------------------------------------------------------

        def _arm(self, seconds: float, why: str) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expire, why)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self, why: str) -> None:
            self._deadline = None
            if self.transport is not None and not self.transport.is_closing():
                client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
                log.info("closed the connection from %s: %s", client, why)
                self.transport.close()

        # --- connection -----------------------------------------------------------------

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._last_active = next(_ACTIVITY)
            self._arm(self._limits.header_timeout_s, self._header_why())
            if len(self.connections) > self._limits.max_connections:
                self._make_room()

        def _header_why(self) -> str:
            return f"no complete request headers within {self._limits.header_timeout_s:g} s"

        def _make_room(self) -> None:
            live = [c for c in self.connections if c.transport and not c.transport.is_closing()]
            if len(live) <= self._limits.max_connections:
                return
            idle = [
                c
                for c in self.connections
                if c is not self
                and (c.cycle is None or c.cycle.response_complete)
                and c.transport is not None
                and not c.transport.is_closing()  # closed, connection_lost not yet called
            ]
            if idle:
                oldest = min(idle, key=lambda c: getattr(c, "_last_active", 0))
                oldest._expire(
                    f"{self._limits.max_connections} connections are open and this one was "
                    "idle the longest"
                )
                return
            self.transport.write(
                _plain_response(
                    b"503 Service Unavailable",
                    f"the server has {self._limits.max_connections} connections open; retry",
                )
            )
            self.transport.close()

        def shutdown(self) -> None:
            if self._in_body and self.transport is not None and not self.transport.is_closing():
                self._expire("the server is shutting down and the request body was not complete")
                return
            super().shutdown()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            self._last_active = next(_ACTIVITY)
            if self._in_body:
                self._arm(
                    self._limits.body_timeout_s,
                    f"no request body data for {self._limits.body_timeout_s:g} s",
                )
            super().data_received(data)

        # --- parser callbacks -----------------------------------------------------------

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = 0
            self._in_body = False
            if self._deadline is None:  # after a keep-alive pause: a new header deadline
                self._arm(self._limits.header_timeout_s, self._header_why())

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def _count(self, n: int) -> None:
            self._header_bytes += n
            if self._header_bytes > self._limits.max_header_bytes:
                # stops the parser; uvicorn answers through send_400_response, below
                raise ValueError("request headers too large")

        def send_400_response(self, msg: str) -> None:
            if self._header_bytes <= self._limits.max_header_bytes:
                super().send_400_response(msg)
                return
            self._disarm()
            self.transport.write(
                _plain_response(
                    b"431 Request Header Fields Too Large",
                    f"the request line and headers are over {self._limits.max_header_bytes} bytes",
                )
            )
            self.transport.close()

        def on_headers_complete(self) -> None:
            self._in_body = True
            self._arm(
                self._limits.body_timeout_s,
                f"no request body data for {self._limits.body_timeout_s:g} s",
            )
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_body = False
            self._disarm()
            super().on_message_complete()

    return GuardedHttpToolsProtocol
