"""Load against a running KServe V2 server: closed loop at a concurrency, or open loop at a rate.

- Closed loop: ``concurrency`` workers, each sends a request, waits for its answer, sends the next.
- Open loop (``rate``): requests are due at fixed intervals whether or not earlier ones have been
  answered; ``concurrency`` workers (connections) take them in turn. Latency is counted from the
  time a request was *due*, so a server that falls behind shows it (no coordinated omission);
  when more than ``8 x concurrency`` requests wait for a free worker the newest are dropped and
  counted in ``dropped``.
- Every run is bounded: by ``requests`` or ``seconds`` (5 s when neither is given) and always by
  ``max_seconds``; requests still unanswered ``timeout_s`` after the end are cancelled and counted
  as ``timeout``.
- Requests are encoded once; the workers only send bytes. HTTP goes over raw asyncio streams with
  one keep-alive HTTP/1.1 connection per worker (``http_client="httpx"`` uses an httpx pool
  instead, which is slower); gRPC uses grpc.aio with tritonclient's generated stubs.
- Answers are counted by status: the HTTP code ("200", "503"), the gRPC code name ("OK",
  "UNAVAILABLE"), or "connection_error", "protocol_error", "timeout" from the client side.
  Latency percentiles cover successful answers only.
- The client measures its own CPU time: ``client_cpu_cores`` near 1.0 means the (single-threaded)
  load generator, not the server, may have been the limit. ``measure_ceiling`` gives the client's
  throughput against a trivial endpoint in another process, the most any server can show here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ..data import Feed
from ..errors import ModelportError, UsageError
from .machine import machine_info

__all__ = [
    "PROTOCOLS",
    "HttpConnection",
    "LoadConfig",
    "LoadTarget",
    "ServerBenchResult",
    "bench_server",
    "fetch_metadata",
    "http_exchange",
    "http_request_bytes",
    "measure_ceiling",
    "run_load",
]

PROTOCOLS = ("http-json", "http-binary", "grpc")
HTTP_CLIENTS = ("raw", "httpx")
OK_STATUSES = ("200", "OK")
DEFAULT_SECONDS = 5.0
BACKLOG_PER_WORKER = 8


@dataclass(frozen=True)
class LoadTarget:
    """Where to send load.

    url: the server, e.g. "http://127.0.0.1:8000" (HTTP) or "127.0.0.1:8001" (gRPC; a scheme is
        ignored). Only loopback addresses are accepted.
    model: the model name; version: its version (None lets the server choose).
    protocol: "http-json", "http-binary" (Triton's binary tensor extension) or "grpc".
    """

    url: str
    model: str
    version: str | None = None
    protocol: str = "http-json"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise UsageError(f"protocol {self.protocol!r} is not one of {list(PROTOCOLS)}")
        if not self.model:
            raise UsageError("give the model name to load (--model NAME)")
        host, _ = self.address
        if not _is_loopback(host):
            raise UsageError(
                f"'{self.url}' is not a loopback address; modelport bench only sends load to "
                "127.0.0.1, ::1 or localhost"
            )

    @property
    def address(self) -> tuple[str, int]:
        url = self.url if "://" in self.url else f"//{self.url}"
        parts = urlsplit(url)
        if parts.scheme not in ("", "http", "grpc"):
            raise UsageError(f"'{self.url}': use http://HOST:PORT or grpc://HOST:PORT")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise UsageError(f"'{self.url}' has no host and port; e.g. http://127.0.0.1:8000")
        return parts.hostname, port

    @property
    def model_path(self) -> str:
        v = f"/versions/{self.version}" if self.version else ""
        return f"/v2/models/{self.model}{v}"


@dataclass(frozen=True)
class LoadConfig:
    """How much load, and for how long.

    concurrency: workers (closed loop) or the most requests in flight (open loop).
    requests: stop after this many requests; seconds: stop after this long (5 s if neither).
    rate: open loop at this many requests per second (None: closed loop).
    warmup: untimed requests per worker before the measurement (opens the connections).
    timeout_s: how long a request may take; max_seconds: a hard bound on any run.
    http_client: "raw" (asyncio streams, fastest) or "httpx".
    """

    concurrency: int = 1
    requests: int | None = None
    seconds: float | None = None
    rate: float | None = None
    warmup: int = 1
    timeout_s: float = 30.0
    max_seconds: float = 300.0
    http_client: str = "raw"

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UsageError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.requests is not None and self.requests < 1:
            raise UsageError(f"requests must be >= 1, got {self.requests}")
        if self.seconds is not None and self.seconds <= 0:
            raise UsageError(f"seconds must be > 0, got {self.seconds}")
        if self.rate is not None and self.rate <= 0:
            raise UsageError(f"rate must be > 0 requests/s, got {self.rate}")
        if self.warmup < 0 or self.timeout_s <= 0 or self.max_seconds <= 0:
            raise UsageError("warmup must be >= 0, timeout_s and max_seconds > 0")
        if self.http_client not in HTTP_CLIENTS:
            raise UsageError(f"http_client {self.http_client!r} is not one of {list(HTTP_CLIENTS)}")

    @property
    def duration_bound(self) -> float:
        if self.seconds is not None:
            return min(self.seconds, self.max_seconds)
        return self.max_seconds if self.requests is not None else DEFAULT_SECONDS


# --- senders: one awaitable per request, returning (status, sample) --------------------------

Sender = Callable[[], Awaitable[tuple[str, Any]]]


class HttpConnection:
    """One keep-alive HTTP/1.1 connection over asyncio streams; reconnects after a close.
    modelport's one HTTP client for load (the load generator, benchmarks/ scripts): ``request``
    sends ready-made request bytes (``http_request_bytes``) and returns (status, body, the
    Inference-Header-Content-Length or None); the body is read by Content-Length, chunks, or to
    the close."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, data: bytes) -> tuple[int, bytes, int | None]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        try:
            self.writer.write(data)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = header_len = None
            chunked = close = False
            for line in head.split(b"\r\n")[1:]:
                key, _, value = line.partition(b":")
                key = key.strip().lower()
                if key == b"content-length":
                    length = int(value)
                elif key == b"inference-header-content-length":
                    header_len = int(value)
                elif key == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif key == b"connection":
                    close = b"close" in value.lower()
            if chunked:
                body = await self._read_chunked()
            elif length is not None:
                body = await self.reader.readexactly(length)
            else:
                body, close = await self.reader.read(), True
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, body, header_len

    async def _read_chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return b"".join(parts)
            parts.append(chunk[:-2])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def http_request_bytes(
    method: str,
    path: str,
    host: str,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """One HTTP/1.1 request, encoded once (``host`` is the Host header, e.g. "127.0.0.1:8000");
    the given headers, then Content-Length."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines += [f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode() + body


def http_exchange(
    host: str, port: int, requests: Sequence[bytes], timeout_s: float = 120.0
) -> list[tuple[int, bytes, float]]:
    """Send ``requests`` one after another on one keep-alive connection (reconnecting after a
    close); (status, body, seconds from send to the whole answer) for each. A connection
    dropped without an answer is status 0 and an empty body; a timeout raises TimeoutError.
    Blocking: for scripts and tests."""

    async def run() -> list[tuple[int, bytes, float]]:
        conn, out = HttpConnection(host, port), []
        try:
            for data in requests:
                t0 = time.perf_counter()
                try:
                    status, body, _ = await _within(conn.request(data), timeout_s)
                except (ConnectionError, asyncio.IncompleteReadError):
                    status, body = 0, b""
                out.append((status, body, time.perf_counter() - t0))
        finally:
            conn.close()
        return out

    return asyncio.run(run())


def _http_request_bytes(target: LoadTarget, feed: Feed) -> tuple[bytes, dict[str, str]]:
    from .v2 import encode_binary, encode_json

    host, port = target.address
    headers = {"Content-Type": "application/json"}
    if target.protocol == "http-binary":
        body, hlen = encode_binary(feed)
        headers = {"Content-Type": "application/octet-stream",
                   "Inference-Header-Content-Length": str(hlen)}  # fmt: skip
    else:
        body = encode_json(feed)
    data = http_request_bytes(
        "POST", f"{target.model_path}/infer", f"{_host_for_url(host)}:{port}", body, headers
    )
    return data, {**headers}


if sys.version_info >= (3, 11):

    async def _within(aw: Awaitable[Any], seconds: float) -> Any:
        async with asyncio.timeout(seconds):
            return await aw

else:  # pragma: no cover
    _within = asyncio.wait_for


def _http_status(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionError | OSError | asyncio.IncompleteReadError):
        return "connection_error"
    return "protocol_error"


async def _make_senders(
    target: LoadTarget, feed: Feed, config: LoadConfig, stack: contextlib.AsyncExitStack
) -> list[Sender]:
    """One sender per worker (HTTP: a connection each; gRPC: one shared channel)."""
    n = config.concurrency
    if target.protocol == "grpc":
        return [await _grpc_sender(target, feed, config, stack)] * n
    data, headers = _http_request_bytes(target, feed)
    if config.http_client == "httpx":
        return [await _httpx_sender(target, data, headers, config, stack)] * n
    host, port = target.address
    timeout = config.timeout_s
    senders: list[Sender] = []
    for _ in range(n):
        conn = HttpConnection(host, port)
        stack.callback(conn.close)

        async def send(conn: HttpConnection = conn) -> tuple[str, Any]:
            try:
                status, body, hlen = await _within(conn.request(data), timeout)
            except (Exception, asyncio.TimeoutError) as exc:
                return _http_status(exc), None
            return str(status), (body, hlen)

        senders.append(send)
    return senders


async def _httpx_sender(
    target: LoadTarget,
    data: bytes,
    headers: Mapping[str, str],
    config: LoadConfig,
    stack: contextlib.AsyncExitStack,
) -> Sender:
    import httpx

    host, port = target.address
    body = data[data.index(b"\r\n\r\n") + 4 :]
    limits = httpx.Limits(max_connections=config.concurrency,
                          max_keepalive_connections=config.concurrency)  # fmt: skip
    client = await stack.enter_async_context(
        httpx.AsyncClient(
            base_url=f"http://{host}:{port}",
            limits=limits,
            timeout=config.timeout_s,
            trust_env=False,
        )  # fmt: skip
    )
    path = f"{target.model_path}/infer"

    async def send() -> tuple[str, Any]:
        try:
            r = await client.post(path, content=body, headers=dict(headers))
        except httpx.TimeoutException:
            return "timeout", None
        except httpx.TransportError:
            return "connection_error", None
        hlen = r.headers.get("inference-header-content-length")
        return str(r.status_code), (r.content, int(hlen) if hlen else None)

    return send


async def _grpc_sender(
    target: LoadTarget, feed: Feed, config: LoadConfig, stack: contextlib.AsyncExitStack
) -> Sender:
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    from .v2 import encode_grpc

    host, port = target.address
    opts = [("grpc.max_send_message_length", 2**31 - 1),
            ("grpc.max_receive_message_length", 2**31 - 1)]  # fmt: skip
    channel = grpc.aio.insecure_channel(f"{_host_for_url(host)}:{port}", options=opts)
    stack.push_async_callback(channel.close)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    request = encode_grpc(feed, target.model, target.version)
    timeout = config.timeout_s

    async def send() -> tuple[str, Any]:
        try:
            resp = await stub.ModelInfer(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name, exc.details() or ""
        return "OK", resp

    return send


# --- the run ---------------------------------------------------------------------------------


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    sent: int = 0
    dropped: int = 0
    sample: Any = None
    error: str | None = None  # the first failed answer: its status and what the server said


async def _load(target: LoadTarget, feed: Feed, config: LoadConfig) -> dict[str, Any]:
    async with contextlib.AsyncExitStack() as stack:
        senders = await _make_senders(target, feed, config, stack)
        await _warm_up(senders, config)
        tally = _Tally()
        cpu0, t0 = time.process_time(), time.perf_counter()
        deadline = t0 + config.duration_bound
        if config.rate is None:
            workers = [_closed_worker(s, tally, config, deadline) for s in senders]
        else:
            queue: asyncio.Queue[float | None] = asyncio.Queue()
            workers = [_open_worker(s, tally, queue) for s in senders]
            workers.append(_schedule(queue, tally, config, t0, deadline))
        tasks = [asyncio.ensure_future(w) for w in workers]
        grace = deadline - time.perf_counter() + config.timeout_s
        _, pending = await asyncio.wait(tasks, timeout=max(grace, 0.0))
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        unanswered = tally.sent - sum(tally.statuses.values())
        if unanswered > 0:
            tally.statuses["timeout"] += unanswered
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    return _summary(target, config, feed, tally, wall, cpu)


async def _warm_up(senders: Sequence[Sender], config: LoadConfig) -> None:
    for _ in range(config.warmup):
        results = await asyncio.gather(*(s() for s in senders))
        bad = [st for st, _ in results if st not in OK_STATUSES]
        if len(bad) == len(results) and bad[0] in ("connection_error", "protocol_error"):
            raise ModelportError(
                f"the server does not answer inference requests ({bad[0]}); is it running and "
                "does it speak this protocol?"
            )


async def _closed_worker(send: Sender, tally: _Tally, config: LoadConfig, deadline: float) -> None:
    limit = config.requests
    perf = time.perf_counter
    while (limit is None or tally.sent < limit) and perf() < deadline:
        tally.sent += 1
        t0 = perf()
        status, sample = await send()
        _record(tally, status, sample, perf() - t0)


async def _open_worker(send: Sender, tally: _Tally, queue: asyncio.Queue) -> None:
    perf = time.perf_counter
    while (due := await queue.get()) is not None:
        status, sample = await send()
        _record(tally, status, sample, perf() - due)


async def _schedule(
    queue: asyncio.Queue, tally: _Tally, config: LoadConfig, t0: float, deadline: float
) -> None:
    assert config.rate is not None
    interval = 1.0 / config.rate
    backlog = BACKLOG_PER_WORKER * config.concurrency
    i = 0
    try:
        while config.requests is None or i < config.requests:
            due = t0 + i * interval
            if due >= deadline:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            i += 1
            if queue.qsize() >= backlog:
                tally.dropped += 1
                continue
            tally.sent += 1
            queue.put_nowait(due)
    finally:
        for _ in range(config.concurrency):
            queue.put_nowait(None)


def _record(tally: _Tally, status: str, sample: Any, seconds: float) -> None:
    tally.statuses[status] += 1
    if status not in OK_STATUSES and tally.error is None:
        tally.error = f"{status}: {_error_text(sample)}".rstrip(": ")
    if status in OK_STATUSES:
        tally.latencies.append(seconds * 1000.0)
        if tally.sample is None:
            tally.sample = sample


def _error_text(sample: Any) -> str:
    """What a failed answer said: the V2 JSON error, the gRPC details, else the body's start."""
    if isinstance(sample, str):
        return sample[:300]
    if isinstance(sample, tuple) and sample and isinstance(sample[0], bytes | bytearray):
        body = bytes(sample[0])
        try:
            return str(json.loads(body)["error"])[:300]
        except (ValueError, TypeError, KeyError):
            return body[:300].decode("utf-8", "replace")
    return ""


def _summary(
    target: LoadTarget, config: LoadConfig, feed: Feed, tally: _Tally, wall: float, cpu: float
) -> dict[str, Any]:
    ok = len(tally.latencies)
    lat = np.asarray(tally.latencies) if ok else np.asarray([np.nan])
    # items per request: rows of the first input with an axis (not the max over inputs: a
    # recurrent state [layers, N, hidden] beside it would count its layers as items)
    first = next((v for v in feed.values() if np.ndim(v)), None)
    batch = int(np.shape(first)[0]) if first is not None else 1
    row: dict[str, Any] = {
        "protocol": target.protocol,
        "mode": "closed" if config.rate is None else "open",
        "concurrency": config.concurrency,
        "rate": config.rate,
        "batch_size": batch,
        "http_client": config.http_client if target.protocol != "grpc" else None,
        "requests": tally.sent,
        "ok": ok,
        "errors": tally.sent - ok,
        "status_counts": dict(sorted(tally.statuses.items())),
        "dropped": tally.dropped,
        "duration_s": wall,
        "throughput_req_s": ok / wall if wall > 0 else 0.0,
        "throughput_items_s": ok * batch / wall if wall > 0 else 0.0,
        "achieved_rate": tally.sent / wall if wall > 0 else 0.0,
        "p50_ms": float(np.percentile(lat, 50)) if ok else None,
        "p90_ms": float(np.percentile(lat, 90)) if ok else None,
        "p99_ms": float(np.percentile(lat, 99)) if ok else None,
        "mean_ms": float(np.mean(lat)) if ok else None,
        "max_ms": float(np.max(lat)) if ok else None,
        "client_cpu_cores": cpu / wall if wall > 0 else 0.0,
        "outputs": _outputs(target, tally.sample),
        "first_error": tally.error,
    }
    return row


def _outputs(target: LoadTarget, sample: Any) -> list[dict[str, Any]] | None:
    """Names, datatypes and shapes of the outputs in the first successful answer."""
    if sample is None:
        return None
    if target.protocol == "grpc":
        return [{"name": o.name, "datatype": o.datatype, "shape": list(o.shape)}
                for o in sample.outputs]  # fmt: skip
    from .v2 import decode_http_response

    body, hlen = sample
    try:
        return decode_http_response(body, hlen)
    except ValueError:
        return None


def _run(coro: Awaitable[Any], protocol: str) -> Any:
    """Run on uvloop for HTTP when installed (a faster client), else on asyncio's loop."""
    if protocol != "grpc":
        try:
            import uvloop
        except ImportError:
            uvloop = None
        if hasattr(uvloop, "run"):  # uvloop >= 0.18
            return uvloop.run(coro)  # type: ignore[union-attr, arg-type]
    return asyncio.run(coro)  # type: ignore[arg-type]


def run_load(target: LoadTarget, feed: Feed, config: LoadConfig | None = None) -> dict[str, Any]:
    """One bounded load run; returns its row (see the module docstring for the fields)."""
    config = config or LoadConfig()
    return _run(_load(target, dict(feed), config), target.protocol)


# --- metadata, ceiling, sweeps ---------------------------------------------------------------


def fetch_metadata(target: LoadTarget, timeout_s: float = 10.0) -> dict[str, Any]:
    """The model's V2 metadata (after checking that the server is ready)."""
    if target.protocol == "grpc":
        return _grpc_metadata(target, timeout_s)
    import http.client
    import json
    import urllib.error
    import urllib.request

    host, port = target.address
    base = f"http://{_host_for_url(host)}:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{base}/v2/health/ready", timeout=timeout_s) as r:
            ready = r.status == 200
        with opener.open(f"{base}{target.model_path}", timeout=timeout_s) as r:
            meta = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raise ModelportError(
            f"{base} answered {exc.code} for the model metadata of '{target.model}'; "
            "check --model (and --model-version)"
        ) from exc
    except http.client.HTTPException as exc:  # e.g. BadStatusLine: an HTTP/2 (gRPC) preface
        raise ModelportError(
            f"{base} is not an HTTP server (a gRPC port?): it did not answer HTTP/1.1 "
            f"({type(exc).__name__}). Give the server's HTTP port, or --protocol grpc"
        ) from exc
    except (OSError, ValueError) as exc:
        raise ModelportError(f"cannot reach a V2 server at {base}: {exc}") from exc
    if not ready:
        raise ModelportError(f"the server at {base} is not ready (/v2/health/ready)")
    return meta


def _grpc_metadata(target: LoadTarget, timeout_s: float) -> dict[str, Any]:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    host, port = target.address
    with grpc.insecure_channel(f"{_host_for_url(host)}:{port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        try:
            ready = stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=timeout_s).ready
            meta = stub.ModelMetadata(
                service_pb2.ModelMetadataRequest(name=target.model, version=target.version or ""),
                timeout=timeout_s,
            )
        except grpc.RpcError as exc:
            raise ModelportError(
                f"gRPC server at {host}:{port}: {exc.code().name} {exc.details()} "
                f"(model '{target.model}')"
            ) from exc
    if not ready:
        raise ModelportError(f"the gRPC server at {host}:{port} is not ready (ServerReady)")
    tensors = lambda ts: [  # noqa: E731
        {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in ts
    ]
    return {"name": meta.name, "versions": list(meta.versions), "platform": meta.platform,
            "inputs": tensors(meta.inputs), "outputs": tensors(meta.outputs)}  # fmt: skip


def measure_ceiling(
    protocol: str, concurrency: int = 32, seconds: float = 2.0, http_client: str = "raw"
) -> dict[str, Any]:
    """The load generator's throughput against a trivial endpoint in another process.

    The endpoint answers every request with a canned V2 response without looking at it, so this
    is the most requests per second this client (and this machine) can show for ``protocol``.
    """
    from .endpoint import running_endpoint

    feed = {"x": np.zeros((1, 4), np.float32)}
    with running_endpoint("grpc" if protocol == "grpc" else "http") as port:
        url = f"{'grpc' if protocol == 'grpc' else 'http'}://127.0.0.1:{port}"
        target = LoadTarget(url, "trivial", protocol=protocol)
        cfg = LoadConfig(concurrency=concurrency, seconds=seconds, http_client=http_client)
        row = run_load(target, feed, cfg)
    return {
        "protocol": protocol,
        "concurrency": concurrency,
        "http_client": row["http_client"],
        "req_s": row["throughput_req_s"],
        "p50_ms": row["p50_ms"],
        "errors": row["errors"],
        "client_cpu_cores": row["client_cpu_cores"],
    }


@dataclass
class ServerBenchResult:
    """Rows (one per concurrency, or rate), the client's ceiling, and what was measured."""

    target: dict[str, Any]
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    ceiling: dict[str, Any] | None
    metadata: dict[str, Any] | None
    machine: dict[str, Any]
    kind: str = "server"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "config": self.config,
                "rows": self.rows, "ceiling": self.ceiling, "metadata": self.metadata,
                "machine": self.machine}  # fmt: skip


def bench_server(
    target: LoadTarget,
    feed: Feed,
    concurrencies: Sequence[int] = (1,),
    config: LoadConfig | None = None,
    ceiling: bool = True,
    metadata: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ServerBenchResult:
    """Closed-loop load at each concurrency (or open loop at ``config.rate`` with each as the
    in-flight limit); with ``ceiling`` also the client's ceiling at the largest concurrency,
    and each row's ``fraction_of_ceiling``."""
    config = config or LoadConfig()
    if not concurrencies or any(c < 1 for c in concurrencies):
        raise UsageError(f"concurrencies must be >= 1, e.g. 1,8,32; got {list(concurrencies)}")
    rows = []
    for c in concurrencies:
        if progress is not None:
            progress(f"{target.protocol}, concurrency {c}")
        rows.append(run_load(target, feed, replace(config, concurrency=c)))
    top = None
    if ceiling:
        if progress is not None:
            progress(
                f"client ceiling: trivial {target.protocol} endpoint, concurrency {max(concurrencies)}"
            )
        top = measure_ceiling(target.protocol, max(concurrencies), http_client=config.http_client)
        for r in rows:
            r["fraction_of_ceiling"] = (
                r["throughput_req_s"] / top["req_s"] if top["req_s"] else None
            )
    cfg = asdict(config) | {"concurrencies": list(concurrencies)}
    return ServerBenchResult(
        asdict(target), cfg, rows, top, dict(metadata) if metadata else None, machine_info()
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host
