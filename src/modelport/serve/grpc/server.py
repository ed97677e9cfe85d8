"""The gRPC server: ``inference.GRPCInferenceService`` on grpc.aio, calling the data plane."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from ...errors import InputError, ModelportError
from ..config import GrpcLimits
from ..dataplane import DataPlane
from ..errors import ForbiddenError, status_of
from ..offload import PROCESS_DECODE_BYTES, off_loop, off_process
from ..types import InferenceRequest
from .codec import request_to_internal, response_from_internal
from .generated import grpc_service_pb2 as pb
from .generated import grpc_service_pb2_grpc as pb_grpc

__all__ = [
    "GRPC_MAX_SEND",
    "RawRequests",
    "build_grpc_server",
    "decode_infer_request",
    "new_server",
    "split_raw_contents",
]

log = logging.getLogger("modelport.serve")

GRPC_MAX_SEND = 2**31 - 1  # answers are never cut by gRPC's default 4 MB limit


def _loopback(peer: str) -> bool:
    return peer.startswith(("ipv4:127.", "ipv6:[::1]", "unix:"))


class Servicer(pb_grpc.GRPCInferenceServiceServicer):
    """Each RPC translates to the internal types and calls the data plane."""

    def __init__(self, plane: DataPlane, control_token: str | None = None) -> None:
        self.plane = plane
        self.control_token = control_token

    async def _fail(self, context: Any, exc: BaseException) -> None:
        status = status_of(exc)
        message = exc.message if isinstance(exc, ModelportError) else f"internal error: {exc}"
        if status.http >= 500 and status.label != "unavailable":
            log.warning("gRPC %s: %s", status.grpc, message)
        await context.abort(getattr(grpc.StatusCode, status.grpc), message)

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=self.plane.live())

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.plane.ready())

    async def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=self.plane.model_ready(request.name, request.version))

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(**self.plane.server_metadata())

    async def ModelMetadata(self, request, context):
        try:
            md = self.plane.model_metadata(request.name, request.version)
        except ModelportError as exc:
            await self._fail(context, exc)
        return pb.ModelMetadataResponse(
            name=md["name"],
            versions=md["versions"],
            platform=md["platform"],
            inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in md["inputs"]],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in md["outputs"]],
        )

    async def ModelInfer(self, request, context):
        try:
            decoded = await decode_infer_request(request, self.plane.resolve)
            response = await self.plane.infer(decoded)
            return response_from_internal(response)
        except Exception as exc:
            if not isinstance(exc, ModelportError):
                log.exception("unexpected error in ModelInfer")
            await self._fail(context, exc)

    async def ModelStreamInfer(self, request_iterator, context):
        async for request in request_iterator:
            try:
                decoded = await decode_infer_request(request, self.plane.resolve)
                response = await self.plane.infer(decoded)
                yield pb.ModelStreamInferResponse(infer_response=response_from_internal(response))
            except ModelportError as exc:
                yield pb.ModelStreamInferResponse(error_message=exc.message)

    async def _management(self, context: Any) -> None:
        if not _loopback(context.peer()):
            await self._fail(
                context,
                ForbiddenError(
                    f"management calls are only accepted from loopback peers, not {context.peer()}"
                ),
            )
        if self.control_token is not None:
            from ..auth import bearer_ok

            given = dict(context.invocation_metadata() or ()).get("authorization")
            if not bearer_ok(given, self.control_token.encode()):
                await self._fail(
                    context,
                    ForbiddenError(
                        "repository control needs the management token: send metadata "
                        "'authorization: Bearer <token>'"
                    ),
                )

    async def RepositoryIndex(self, request, context):
        await self._management(context)
        rows = self.plane.repository_index()
        if request.ready:
            rows = [r for r in rows if r["state"] == "READY"]
        return pb.RepositoryIndexResponse(
            models=[pb.RepositoryIndexResponse.ModelIndex(**r) for r in rows]
        )

    async def RepositoryModelLoad(self, request, context):
        await self._management(context)
        try:
            if request.parameters:
                from ..errors import UnsupportedError

                raise UnsupportedError(
                    f"load parameters {sorted(request.parameters)} are not supported; put the "
                    "serving config in REPO/<model>/config.json, then load"
                )
            await self.plane.load(request.model_name)
        except ModelportError as exc:
            await self._fail(context, exc)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request, context):
        await self._management(context)
        try:
            await self.plane.unload(request.model_name)
        except ModelportError as exc:
            await self._fail(context, exc)
        return pb.RepositoryModelUnloadResponse()


def server_options(
    max_message_bytes: int, limits: GrpcLimits | None = None
) -> list[tuple[str, int]]:
    """grpc server options: the message limit, and the connection limits of ``limits``."""
    return [
        *(limits or GrpcLimits()).server_options(max_message_bytes),
        ("grpc.max_send_message_length", GRPC_MAX_SEND),
        ("grpc.so_reuseport", 0),
    ]


def new_server(
    max_message_bytes: int, limits: GrpcLimits | None = None, interceptors: tuple = ()
) -> Any:
    """A grpc.aio server with modelport's limits (not bound, not started): a call beyond
    ``limits.max_concurrent_rpcs`` in progress gets RESOURCE_EXHAUSTED."""
    limits = limits or GrpcLimits()
    return grpc.aio.server(
        options=server_options(max_message_bytes, limits),
        interceptors=list(interceptors),
        maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
    )


def _parse_and_decode(data: bytes) -> InferenceRequest:
    """A serialized ModelInferRequest -> the internal request (runs in a decode process)."""
    return request_to_internal(*_parse(data))


_RAW_FIELD = 7  # ModelInferRequest.raw_input_contents


def read_varint(data: bytes | memoryview, i: int, end: int) -> tuple[int, int]:
    """(the protobuf varint at ``data[i]``, the index after it); ValueError when it runs past
    ``end`` or over 64 bits."""
    value = shift = 0
    while True:
        if i >= end or shift > 63:
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _varint(data: bytes, i: int) -> tuple[int, int]:
    try:
        return read_varint(data, i, len(data))
    except ValueError:
        raise InputError(
            "the request is not a valid inference.ModelInferRequest: truncated"
        ) from None


def split_raw_contents(data: bytes) -> tuple[bytes, list[memoryview]]:
    """(the serialized ModelInferRequest without its raw_input_contents, those contents as
    views of ``data``). Protobuf copies a bytes field when it parses it and again each time it
    is read, under the GIL (about 100 ms each for 64 MB here); the top-level fields are few, so
    they are walked here and the tensors' bytes are never copied."""
    view = memoryview(data)
    head = bytearray()
    raw: list[memoryview] = []
    i, n = 0, len(data)
    while i < n:
        start = i
        key, i = _varint(data, i)
        wire = key & 7
        if wire == 0:
            _, i = _varint(data, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            length, i = _varint(data, i)
            if key >> 3 == _RAW_FIELD:
                if i + length > n:
                    break
                raw.append(view[i : i + length])
                i += length
                continue
            i += length
        else:
            raise InputError(
                f"the request is not a valid inference.ModelInferRequest: wire type {wire}"
            )
        if i > n:
            break
        head += view[start:i]
    if i != n:
        raise InputError("the request is not a valid inference.ModelInferRequest: truncated")
    return bytes(head), raw


def _parse(data: bytes) -> tuple[Any, list[memoryview]]:
    head, raw = split_raw_contents(data)
    try:
        return pb.ModelInferRequest.FromString(head), raw
    except DecodeError as exc:
        raise InputError(f"the request is not a valid inference.ModelInferRequest: {exc}") from None


async def decode_infer_request(
    request: Any, resolve: Callable[[str, str], object] | None = None
) -> InferenceRequest:
    """A ModelInfer request (its serialized bytes, or a parsed message) -> the internal request,
    off the event loop when it is large, as the HTTP side decodes bodies. ``resolve(name,
    version)`` (``DataPlane.resolve``) is called once the message is parsed, before its tensors
    are converted: a model that is not served is NOT_FOUND whatever its tensors hold.

    Parsing runs in the decode threads above 64 KB; raw_input_contents become numpy views of
    the received bytes (``split_raw_contents``: no copy). Typed ``contents`` become numpy arrays
    value by value while holding the GIL, so a request with more than 512 KB of them is parsed
    and converted in the decode processes instead (as large JSON bodies are)."""
    if not isinstance(request, bytes | bytearray | memoryview):
        if resolve is not None:
            resolve(request.model_name, request.model_version)
        size = request.ByteSize()
        return await off_loop(size, request_to_internal, request)
    data = bytes(request)
    message, raw = await off_loop(len(data), _parse, data)
    if resolve is not None:
        resolve(message.model_name, message.model_version)
    typed = sum(t.contents.ByteSize() for t in message.inputs)
    if typed > PROCESS_DECODE_BYTES:
        return await off_process(len(data), _parse_and_decode, data)
    return await off_loop(len(data), request_to_internal, message, raw)


_RAW_METHODS = ("ModelInfer", "ModelStreamInfer")


def _raw(name: str, handler: Any, methods: tuple[str, ...]) -> Any:
    """The handler of a method in ``methods`` takes the request's bytes (its servicer parses
    them off the event loop, e.g. ``decode_infer_request``); other methods are left as
    generated."""
    if handler is not None and name.rsplit("/", 1)[-1] in methods:
        return handler._replace(request_deserializer=None)
    return handler


class _RawGeneric(grpc.GenericRpcHandler):
    def __init__(self, inner: Any, methods: tuple[str, ...]) -> None:
        self.inner = inner
        self.methods = methods

    def service(self, handler_call_details: Any) -> Any:
        return _raw(
            handler_call_details.method, self.inner.service(handler_call_details), self.methods
        )

    def service_name(self) -> str:
        return self.inner.service_name()


class RawRequests:
    """What a generated ``add_..._to_server`` takes in place of the server: it forwards to the
    server, and the ``methods`` named get the request's serialized bytes instead of a parsed
    message (ModelInfer/ModelStreamInfer by default), so that large requests are parsed off the
    event loop by the servicer."""

    def __init__(self, server: Any, methods: tuple[str, ...] = _RAW_METHODS) -> None:
        self.server = server
        self.methods = methods

    def add_generic_rpc_handlers(self, generic_handlers: Any) -> None:
        self.server.add_generic_rpc_handlers(
            tuple(_RawGeneric(h, self.methods) for h in generic_handlers)
        )

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.server.add_registered_method_handlers(
            service, {name: _raw(name, h, self.methods) for name, h in handlers.items()}
        )


def listen(server: Any, host: str, port: int, credentials: Any = None, flag: str = "") -> int:
    """Bind ``server`` (TLS when ``credentials`` are given); the port it got."""
    address = f"{_host(host)}:{port}"
    try:  # grpcio returns 0 (older) or raises RuntimeError("Failed to bind ...") (newer)
        if credentials is not None:
            bound = server.add_secure_port(address, credentials)
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if bound == 0:
        from ...errors import UsageError

        raise UsageError(
            f"cannot listen for gRPC on {host}:{port}; is the port in use? Pick another "
            f"{flag or '--grpc-port'}"
        )
    return bound


def build_grpc_server(
    plane: DataPlane,
    host: str,
    port: int,
    max_message_bytes: int,
    credentials: Any = None,
    interceptors: tuple = (),
    control_token: str | None = None,
    limits: GrpcLimits | None = None,
):
    """A grpc.aio server (not started) and the port it is bound to. ``credentials``:
    grpc.ssl_server_credentials for TLS; ``interceptors``: e.g. the bearer-token check;
    ``control_token``: needed (as a bearer token) for the repository RPCs; ``limits``: the
    connection and stream limits (``GrpcLimits()`` by default)."""
    server = new_server(max_message_bytes, limits, interceptors)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(
        Servicer(plane, control_token), RawRequests(server)
    )
    return server, listen(server, host, port, credentials)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
