"""The gRPC server: ``inference.GRPCInferenceService`` on grpc.aio, calling the data plane."""

from __future__ import annotations

import logging
from typing import Any

import grpc

from ...errors import ModelportError
from ..dataplane import DataPlane
from ..errors import ForbiddenError, status_of
from .codec import request_to_internal, response_from_internal
from .generated import grpc_service_pb2 as pb
from .generated import grpc_service_pb2_grpc as pb_grpc

__all__ = ["build_grpc_server", "GRPC_MAX_SEND"]

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
            response = await self.plane.infer(request_to_internal(request))
            return response_from_internal(response)
        except Exception as exc:
            if not isinstance(exc, ModelportError):
                log.exception("unexpected error in ModelInfer")
            await self._fail(context, exc)

    async def ModelStreamInfer(self, request_iterator, context):
        async for request in request_iterator:
            try:
                response = await self.plane.infer(request_to_internal(request))
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


def server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", GRPC_MAX_SEND),
        ("grpc.so_reuseport", 0),
    ]


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
):
    """A grpc.aio server (not started) and the port it is bound to. ``credentials``:
    grpc.ssl_server_credentials for TLS; ``interceptors``: e.g. the bearer-token check;
    ``control_token``: needed (as a bearer token) for the repository RPCs."""
    server = grpc.aio.server(
        options=server_options(max_message_bytes), interceptors=list(interceptors)
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(plane, control_token), server)
    return server, listen(server, host, port, credentials)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
