"""The gRPC port's limits (GrpcLimits) with a real grpc client and raw sockets: calls in
progress capped with RESOURCE_EXHAUSTED, the HTTP/2 stream cap advertised, silent connections
closed at the handshake timeout, idle connections closed, the message limit, and large requests
decoded off the event loop."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time

import grpc
import numpy as np
import pytest

from modelport.errors import InputError, UsageError
from modelport.serve.config import GrpcLimits, ServerConfig
from modelport.serve.grpc import server as grpc_server
from modelport.serve.grpc.generated import grpc_service_pb2 as pb
from modelport.serve.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from modelport.serve.grpc.server import build_grpc_server

from .conftest import running

pytestmark = pytest.mark.anyio


class Served:
    def __init__(self, plane, limits=None, max_message_bytes=1 << 20):
        self.plane, self.limits, self.max_message_bytes = plane, limits, max_message_bytes

    async def __aenter__(self):
        self.server, self.port = build_grpc_server(
            self.plane, "127.0.0.1", 0, self.max_message_bytes, limits=self.limits
        )
        await self.server.start()
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)
        return self

    async def __aexit__(self, *exc):
        await self.channel.close()
        await self.server.stop(0)


def mlp_request(rows: int = 2) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="mlp", model_version="1")
    req.inputs.add(name="x", datatype="FP32", shape=[rows, 4])
    req.raw_input_contents.append(np.ones((rows, 4), np.float32).tobytes())
    return req


def test_limits_are_checked_like_the_other_settings(tmp_path):
    with pytest.raises(UsageError, match="max_concurrent_rpcs must be between 1"):
        GrpcLimits(max_concurrent_rpcs=0)
    with pytest.raises(UsageError, match="idle_timeout_s must be a finite number"):
        GrpcLimits(idle_timeout_s=float("inf"))
    assert ServerConfig(repository=tmp_path).grpc_limits == GrpcLimits()
    options = dict(GrpcLimits(max_connection_age_s=60).server_options(1234))
    assert options["grpc.max_receive_message_length"] == 1234
    assert options["grpc.max_connection_age_ms"] == 60_000
    assert "grpc.max_connection_age_ms" not in dict(GrpcLimits().server_options(1))


async def test_calls_beyond_the_cap_get_resource_exhausted(repo):
    async with running(repo) as plane:
        gate = asyncio.Event()
        real = plane.infer

        async def held(request):
            await gate.wait()
            return await real(request)

        plane.infer = held
        async with Served(plane, GrpcLimits(max_concurrent_rpcs=2)) as s:
            calls = [asyncio.ensure_future(s.stub.ModelInfer(mlp_request())) for _ in range(5)]
            await asyncio.sleep(0.5)
            gate.set()
            results = await asyncio.gather(*calls, return_exceptions=True)
            refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
            answered = [r for r in results if not isinstance(r, BaseException)]
            assert len(answered) == 2 and len(refused) == 3
            assert {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
            # once the calls in progress are done, new ones are served again
            out = await s.stub.ModelInfer(mlp_request())
            assert list(out.outputs[0].shape) == [2, 3]


def _server_settings(port: int) -> dict[int, int]:
    """The SETTINGS the server sends a new HTTP/2 connection (id -> value)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        data = b""
        while True:
            while len(data) < 9:
                data += sock.recv(65536)
            length = int.from_bytes(data[:3], "big")
            kind, flags = data[3], data[4]
            while len(data) < 9 + length:
                data += sock.recv(65536)
            payload, data = data[9 : 9 + length], data[9 + length :]
            if kind == 0x4 and not flags & 0x1:  # SETTINGS, not an ACK
                return dict(struct.unpack(">HI", payload[i : i + 6]) for i in range(0, length, 6))


async def test_the_stream_cap_is_advertised_to_clients(repo):
    async with running(repo) as plane, Served(plane, GrpcLimits(max_streams_per_connection=7)) as s:
        settings = await asyncio.to_thread(_server_settings, s.port)
        assert settings[0x3] == 7  # SETTINGS_MAX_CONCURRENT_STREAMS


def _closed_after(port: int, send: bytes, limit_s: float) -> float | None:
    """Seconds until the server closes a connection that sent ``send`` and then nothing."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=limit_s) as sock:
        if send:
            sock.sendall(send)
        try:
            while sock.recv(65536):
                pass
        except TimeoutError:
            return None
        except ConnectionResetError:
            pass
    return time.monotonic() - t0


async def test_a_connection_that_sends_nothing_is_closed_at_the_handshake_timeout(repo):
    limits = GrpcLimits(handshake_timeout_s=0.5)
    async with running(repo) as plane, Served(plane, limits) as s:
        silent, half = await asyncio.gather(
            asyncio.to_thread(_closed_after, s.port, b"", 10),
            asyncio.to_thread(_closed_after, s.port, b"PRI * HTTP/2.0\r\n", 10),
        )
        assert silent is not None and silent < 5
        assert half is not None and half < 5
        # and the server still serves
        out = await s.stub.ModelInfer(mlp_request())
        assert list(out.outputs[0].shape) == [2, 3]


async def test_an_idle_connection_is_closed_and_the_client_reconnects(repo):
    async with running(repo) as plane, Served(plane, GrpcLimits(idle_timeout_s=0.5)) as s:
        await s.stub.ModelInfer(mlp_request())
        assert s.channel.get_state() == grpc.ChannelConnectivity.READY
        for _ in range(50):  # GOAWAY after ~0.5 s idle: the channel goes back to IDLE
            await asyncio.sleep(0.1)
            if s.channel.get_state() != grpc.ChannelConnectivity.READY:
                break
        assert s.channel.get_state() == grpc.ChannelConnectivity.IDLE
        out = await s.stub.ModelInfer(mlp_request())  # reconnects on its own
        assert list(out.outputs[0].shape) == [2, 3]


async def test_a_message_over_the_request_limit_is_refused(repo):
    async with running(repo) as plane, Served(plane, max_message_bytes=64 * 1024) as s:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await s.stub.ModelInfer(mlp_request(rows=5000))  # 80 KB
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        out = await s.stub.ModelInfer(mlp_request(rows=1000))  # 16 KB
        assert list(out.outputs[0].shape) == [1000, 3]


async def test_large_requests_are_decoded_off_the_event_loop(repo, monkeypatch):
    where = []
    real_parse, real_decode = grpc_server._parse, grpc_server.request_to_internal

    def parse(data):
        where.append(("parse", len(data), threading.current_thread() is threading.main_thread()))
        return real_parse(data)

    def decode(*args):
        where.append(("decode", 0, threading.current_thread() is threading.main_thread()))
        return real_decode(*args)

    monkeypatch.setattr(grpc_server, "_parse", parse)
    monkeypatch.setattr(grpc_server, "request_to_internal", decode)
    async with (
        running(repo, max_request_rows=50_000) as plane,
        Served(plane, max_message_bytes=8 << 20) as s,
    ):
        small = await s.stub.ModelInfer(mlp_request(rows=2))  # 32 bytes: on the loop
        big = await s.stub.ModelInfer(mlp_request(rows=20_000))  # 320 KB: in the decode threads
        assert list(small.outputs[0].shape) == [2, 3] and list(big.outputs[0].shape) == [20_000, 3]
        assert [w[2] for w in where] == [True, True, False, False]
        # not protobuf at all: INVALID_ARGUMENT naming the message type (not INTERNAL)
        garbage = s.channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await garbage(b"\xff\xff\xff\xff")
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid inference.ModelInferRequest" in info.value.details()


async def test_large_typed_contents_are_decoded_in_the_decode_processes(repo, monkeypatch):
    sizes = []
    real = grpc_server.off_process

    async def spy(size, fn, *args):
        sizes.append((size, fn.__name__))
        return await real(size, fn, *args)

    monkeypatch.setattr(grpc_server, "off_process", spy)
    req = pb.ModelInferRequest(model_name="mlp", model_version="1")
    x = req.inputs.add(name="x", datatype="FP32", shape=[40_000, 4])
    x.contents.fp32_contents.extend(np.full(160_000, 0.5, np.float32).tolist())  # 640 KB typed
    async with (
        running(repo, max_request_rows=50_000) as plane,
        Served(plane, max_message_bytes=8 << 20) as s,
    ):
        out = await s.stub.ModelInfer(req)
        assert list(out.outputs[0].shape) == [40_000, 3]
        assert [name for _, name in sizes] == ["_parse_and_decode"]
        # the same rows sent raw stay in the decode threads (numpy views, no per-value work)
        sizes.clear()
        assert list((await s.stub.ModelInfer(mlp_request(40_000))).outputs[0].shape) == [40_000, 3]
        assert sizes == []


async def test_stream_infer_decodes_each_message(repo):
    """ModelStreamInfer takes each message's bytes too: good ones are answered in order, a
    malformed one gets an error_message and the stream goes on."""
    async with running(repo) as plane, Served(plane) as s:
        stream = s.channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            request_serializer=lambda b: b,
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )
        messages = [
            mlp_request(2).SerializeToString(),
            b"\xff\xff\xff\xff",
            mlp_request(3).SerializeToString(),
        ]

        async def requests():
            for m in messages:
                yield m

        answers = [a async for a in stream(requests())]
        assert [list(a.infer_response.outputs[0].shape) for a in (answers[0], answers[2])] == [
            [2, 3],
            [3, 3],
        ]
        assert "not a valid inference.ModelInferRequest" in answers[1].error_message
        # the generated stub (a parsed message on the client side) works as before
        stub_answers = [a async for a in s.stub.ModelStreamInfer(iter([mlp_request(1)]))]
        assert list(stub_answers[0].infer_response.outputs[0].shape) == [1, 3]


def test_raw_contents_are_split_off_without_a_copy():
    req = pb.ModelInferRequest(model_name="m", model_version="2", id="r")
    req.parameters["timeout"].int64_param = 5
    req.inputs.add(name="a", datatype="FP32", shape=[1, 2])
    req.inputs.add(name="b", datatype="BYTES", shape=[1])
    req.outputs.add(name="y")
    req.raw_input_contents.extend([np.ones(2, np.float32).tobytes(), b""])
    data = req.SerializeToString()
    head, raw = grpc_server.split_raw_contents(data)
    assert [bytes(r) for r in raw] == list(req.raw_input_contents)
    assert all(r.obj is data for r in raw)  # views of the received bytes
    rest = pb.ModelInferRequest.FromString(head)
    expected = pb.ModelInferRequest()
    expected.CopyFrom(req)
    del expected.raw_input_contents[:]
    assert rest == expected
    for bad in (data[:-3], data + b"\x0b", b"\x3a\xff"):  # truncated, a group, a bad length
        with pytest.raises(InputError, match="not a valid inference.ModelInferRequest"):
            grpc_server._parse(bad)
