"""``modelport serve``'s --grpc-* flags set the gRPC ports' limits (GrpcLimits), as the HTTP
connection flags set the HTTP ones: enforced by a real server started by the command, bad values
refused with exit 2 naming the flag, refused where there is no gRPC port."""

from __future__ import annotations

import queue
import time

import grpc
import numpy as np
import pytest

from modelport.cli import main
from modelport.serve.config import GrpcLimits, ServerConfig
from modelport.serve.grpc.generated import grpc_service_pb2 as pb
from modelport.serve.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from tests.serve.models import mlp_model, write
from tests.serve.test_grpc_limits import _server_settings
from tests.serve_process import free_port, serve_process

pytestmark = pytest.mark.timeout(180)

ALL_FLAGS = [
    "--grpc-max-concurrent-rpcs", "3",
    "--grpc-max-streams-per-connection", "5",
    "--grpc-handshake-timeout", "2.5",
    "--grpc-idle-timeout", "40",
    "--grpc-max-connection-age", "600",
    "--grpc-max-connection-age-grace", "7",
    "--grpc-keepalive-time", "11",
    "--grpc-keepalive-timeout", "4",
]  # fmt: skip


@pytest.fixture
def repo(tmp_path):
    write(mlp_model()[0], tmp_path / "repo" / "mlp" / "1", "mlp")
    return tmp_path / "repo"


@pytest.fixture
def started(monkeypatch):
    """The ServerConfig ``modelport serve`` would start (the server is not started)."""
    configs: list[ServerConfig] = []
    monkeypatch.setattr(
        "modelport.serve.server.serve", lambda config, on_ready: configs.append(config)
    )
    return configs


def test_the_flags_set_every_grpc_limit(repo, started):
    assert main(["serve", str(repo), *ALL_FLAGS]) == 0
    assert started[-1].grpc_limits == GrpcLimits(
        max_concurrent_rpcs=3,
        max_streams_per_connection=5,
        handshake_timeout_s=2.5,
        idle_timeout_s=40.0,
        max_connection_age_s=600.0,
        age_grace_s=7.0,
        keepalive_time_s=11.0,
        keepalive_timeout_s=4.0,
    )
    assert main(["serve", str(repo)]) == 0
    assert started[-1].grpc_limits == GrpcLimits()  # no flag: the defaults, as before
    # --no-grpc with TF Serving's gRPC port: the limits apply to that port
    assert (
        main(["serve", str(repo), "--no-grpc", "--tfserving-grpc-port", "0", *ALL_FLAGS[:2]]) == 0
    )
    assert started[-1].grpc_limits.max_concurrent_rpcs == 3


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--grpc-idle-timeout", "0"], "'--grpc-idle-timeout': 0.0 is not in the range 0.1<=x<=86400"),
        (["--grpc-idle-timeout", "nan"], "'--grpc-idle-timeout': 'nan' is not a finite number"),
        (["--grpc-keepalive-time", "inf"], "'--grpc-keepalive-time': inf is not in the range"),
        (["--grpc-handshake-timeout", "soon"], "'--grpc-handshake-timeout': 'soon' is not a valid number"),
        (["--grpc-max-concurrent-rpcs", "0"], "'--grpc-max-concurrent-rpcs': 0 is not in the range 1<=x"),
        (["--grpc-max-streams-per-connection", "1.5"], "'1.5' is not a valid integer"),
        (["--grpc-max-connection-age", "-1"], "'--grpc-max-connection-age': -1.0 is not in the range 0<=x"),
        (
            ["--no-grpc", "--grpc-idle-timeout", "5"],
            "--grpc-idle-timeout sets a limit of the gRPC ports, and --no-grpc turns gRPC off",
        ),
        (["--ray", "--grpc-keepalive-time", "5"], "--grpc-keepalive-time cannot be used with --ray"),
    ],
)  # fmt: skip
def test_bad_values_exit_2_naming_the_flag(repo, started, capsys, args, words):
    assert main(["serve", str(repo), *args]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not started


def test_the_help_documents_the_flags(capsys):
    assert main(["serve", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ALL_FLAGS[::2]:
        assert flag in text
    assert "--grpc-idle-timeout SECONDS" in text and "[default: 300.0; 0.1<=x<=86400]" in text


def _request() -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="mlp")
    req.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    req.raw_input_contents.append(np.ones((1, 4), np.float32).tobytes())
    return req


def test_a_real_server_enforces_the_limits_set_by_flag(repo):
    """``modelport serve --grpc-max-concurrent-rpcs 1 --grpc-max-streams-per-connection 3``: the
    HTTP/2 SETTINGS advertise 3 streams, and while one call (an open ModelStreamInfer) is in
    progress another is refused with RESOURCE_EXHAUSTED; served again once it ends."""
    grpc_port = free_port()
    args = [str(repo), "--http-port", str(free_port()), "--grpc-port", str(grpc_port)]
    args += ["--no-management", "--grpc-max-concurrent-rpcs", "1"]
    args += ["--grpc-max-streams-per-connection", "3"]

    def grpc_ready() -> bool:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
            stub = pb_grpc.GRPCInferenceServiceStub(ch)
            try:
                return stub.ServerReady(pb.ServerReadyRequest(), timeout=5).ready
            except grpc.RpcError:  # not listening yet
                return False

    with (
        serve_process(args, grpc_ready) as proc,
        grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
    ):
        assert _server_settings(grpc_port)[0x3] == 3  # SETTINGS_MAX_CONCURRENT_STREAMS
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        outgoing: queue.Queue = queue.Queue()
        outgoing.put(_request())
        stream = stub.ModelStreamInfer(iter(outgoing.get, None), timeout=60)
        first = next(stream)  # answered: the stream is a call in progress on the server now
        assert list(first.infer_response.outputs[0].shape) == [1, 3]
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(_request(), timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(grpc.RpcError) as info:
            stub.ServerLive(pb.ServerLiveRequest(), timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        outgoing.put(None)  # the client ends its stream: the call completes
        assert list(stream) == []
        out = None
        for _ in range(200):  # the server counts the stream done once its handler returns
            try:
                out = stub.ModelInfer(_request(), timeout=30)
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                time.sleep(0.05)
        assert out is not None, "calls were still refused after the stream ended"
        assert list(out.outputs[0].shape) == [1, 3]
        assert proc.poll() is None
