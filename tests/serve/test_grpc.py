"""The V2 gRPC adapter in-process (grpc.aio on a free loopback port) with modelport's stubs."""

import grpc
import numpy as np
import pytest

from modelport.serve.grpc.generated import grpc_service_pb2 as pb
from modelport.serve.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from modelport.serve.grpc.server import build_grpc_server

from .conftest import running

pytestmark = pytest.mark.anyio


class Served:
    def __init__(self, plane, control_token=None):
        self.plane = plane
        self.control_token = control_token

    async def __aenter__(self):
        self.server, port = build_grpc_server(
            self.plane, "127.0.0.1", 0, 1 << 20, control_token=self.control_token
        )
        await self.server.start()
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        return pb_grpc.GRPCInferenceServiceStub(self.channel)

    async def __aexit__(self, *exc):
        await self.channel.close()
        await self.server.stop(0)


async def test_health_metadata_and_infer_raw_and_typed(repo):
    async with running(repo) as plane, Served(plane) as stub:
        assert (await stub.ServerLive(pb.ServerLiveRequest())).live
        assert (await stub.ServerReady(pb.ServerReadyRequest())).ready
        assert (await stub.ModelReady(pb.ModelReadyRequest(name="mlp", version="1"))).ready
        md = await stub.ModelMetadata(pb.ModelMetadataRequest(name="ints"))
        assert [(t.name, t.datatype, list(t.shape)) for t in md.inputs] == [
            ("ids", "INT64", [-1, 3])
        ]
        smd = await stub.ServerMetadata(pb.ServerMetadataRequest())
        assert "binary_tensor_data" in smd.extensions

        req = pb.ModelInferRequest(model_name="ints", id="q1")
        req.inputs.add(name="ids", datatype="INT64", shape=[1, 3])
        req.raw_input_contents.append(np.array([[1, 2, 3]], np.int64).tobytes())
        resp = await stub.ModelInfer(req)
        assert resp.model_version == "1" and resp.id == "q1"
        outs = {o.name: i for i, o in enumerate(resp.outputs)}
        total = np.frombuffer(resp.raw_output_contents[outs["total"]], np.int64)
        assert total.tolist() == [6]

        typed = pb.ModelInferRequest(model_name="text")
        t = typed.inputs.add(name="text", datatype="BYTES", shape=[1, 2])
        t.contents.bytes_contents.extend([b"a", "é".encode()])
        resp = await stub.ModelInfer(typed)
        assert resp.raw_output_contents[0] == b"\x01\x00\x00\x00a\x02\x00\x00\x00" + "é".encode()


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (pb.ModelInferRequest(model_name="nope"), grpc.StatusCode.NOT_FOUND),
        (pb.ModelInferRequest(model_name="mlp", model_version="9"), grpc.StatusCode.NOT_FOUND),
        (pb.ModelInferRequest(model_name="mlp"), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_errors_map_to_status_codes(repo, request_, code):
    async with running(repo) as plane, Served(plane) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ModelInfer(request_)
        assert info.value.code() == code
        big = pb.ModelInferRequest(model_name="mlp")
        big.inputs.add(name="x", datatype="FP32", shape=[100_000, 4])
        big.raw_input_contents.append(b"\0" * 1_600_000)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ModelInfer(big)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_repository_rpcs(repo):
    async with running(repo) as plane, Served(plane) as stub:
        index = await stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True))
        assert ("mlp", "2") in {(m.name, m.version) for m in index.models}
        await stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="mlp"))
        assert not (await stub.ModelReady(pb.ModelReadyRequest(name="mlp"))).ready
        await stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="mlp"))
        assert (await stub.ModelReady(pb.ModelReadyRequest(name="mlp"))).ready


async def test_repository_rpcs_need_the_management_token_when_set(repo):
    async with running(repo) as plane, Served(plane, control_token="s3cret") as stub:
        request = pb.RepositoryModelUnloadRequest(model_name="mlp")
        for metadata in (None, (("authorization", "Bearer nope"),)):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.RepositoryModelUnload(request, metadata=metadata)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (await stub.ModelReady(pb.ModelReadyRequest(name="mlp"))).ready
        await stub.RepositoryModelUnload(request, metadata=(("authorization", "Bearer s3cret"),))
        assert not (await stub.ModelReady(pb.ModelReadyRequest(name="mlp"))).ready
