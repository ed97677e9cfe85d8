"""Bearer-token auth for inference, off by default: every HTTP API family and both gRPC APIs with
no, wrong and right tokens; health checks stay open; the management token is a separate secret."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from modelport.serve.auth import bearer_ok
from modelport.serve.config import ManagementConfig
from tests.serve.compat_server import running_server, server_config
from tests.serve.models import make_repo

pytestmark = pytest.mark.timeout(240)

TOKEN = "inference-token-0123456789abcdef"
MGMT_TOKEN = "management-token-0123456789abcdef"
X = [[1.0, 2.0, 3.0, 4.0]]
V2_BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": X[0]}]}

# (method, path, json body) of one inference call per HTTP API family
CALLS = [
    ("POST", "/v2/models/mlp/infer", V2_BODY),
    ("GET", "/v2/models/mlp", None),
    ("POST", "/v1/models/mlp:predict", {"instances": X}),
    ("GET", "/v1/models/mlp/metadata", None),
    ("POST", "/predictions/mlp", X),
    ("GET", "/metrics", None),
]
OPEN = ["/v2/health/live", "/v2/health/ready", "/ping"]


def test_bearer_ok():
    t = b"s3cret-s3cret-s3cret"
    assert bearer_ok(b"Bearer s3cret-s3cret-s3cret", t)
    assert bearer_ok("bearer  s3cret-s3cret-s3cret ", t)
    for bad in (None, b"", b"Bearer", b"Bearer ", b"Basic s3cret-s3cret-s3cret", b"s3cret",
                b"Bearer s3cret-s3cret-s3cre", b"Bearer s3cret-s3cret-s3cretX"):  # fmt: skip
        assert not bearer_ok(bad, t), bad


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("auth") / "repo")


def test_auth_is_off_by_default(repo):
    with running_server(server_config(repo)) as info:
        base = f"http://127.0.0.1:{info['http_port']}"
        for method, path, body in CALLS:
            r = httpx.request(method, base + path, json=body, timeout=30)
            assert r.status_code == 200, (path, r.text)


@pytest.fixture(scope="module")
def secured(repo):
    grpc_ok = True
    try:
        import tensorflow_serving.apis.prediction_service_pb2_grpc  # noqa: F401
    except ImportError:
        grpc_ok = False
    config = server_config(
        repo,
        grpc_port=0,
        tfserving_grpc_port=0 if grpc_ok else None,
        auth_token=TOKEN,
        management=ManagementConfig(port=0, token=MGMT_TOKEN),
    )
    with running_server(config) as info:
        yield info


def test_http_calls_need_the_token(secured):
    base = f"http://127.0.0.1:{secured['http_port']}"
    for method, path, body in CALLS:
        for headers in ({}, {"authorization": "Bearer nope-nope-nope-nope"},
                        {"authorization": f"Bearer {MGMT_TOKEN}"}):  # fmt: skip
            r = httpx.request(method, base + path, json=body, headers=headers, timeout=30)
            assert r.status_code == 401, (path, headers, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer")
            if path.startswith("/predictions"):
                assert r.json()["type"] == "UnauthorizedException"
            else:
                assert "bearer" in r.json()["error"].lower()
        r = httpx.request(
            method, base + path, json=body, headers={"authorization": f"Bearer {TOKEN}"}, timeout=30
        )
        assert r.status_code == 200, (path, r.text)


def test_health_checks_stay_open(secured):
    base = f"http://127.0.0.1:{secured['http_port']}"
    for path in OPEN:
        assert httpx.get(base + path, timeout=30).status_code == 200, path


def test_the_two_tokens_do_not_open_each_others_doors(secured):
    mgmt = f"http://127.0.0.1:{secured['management_port']}"
    r = httpx.get(mgmt + "/models", headers={"authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert r.status_code == 401
    r = httpx.get(mgmt + "/models", headers={"authorization": f"Bearer {MGMT_TOKEN}"}, timeout=30)
    assert r.status_code == 200


def test_v2_grpc_needs_the_token(secured):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{secured['grpc_port']}")
    assert client.is_server_live() and client.is_server_ready()  # health stays open
    inp = grpcclient.InferInput("x", [1, 4], "FP32")
    inp.set_data_from_numpy(np.asarray(X, dtype=np.float32))
    for headers in (None, {"authorization": "Bearer wrong-wrong-wrong-wrong"}):
        with pytest.raises(InferenceServerException, match="(?i)unauthenticated|bearer"):
            client.infer("mlp", [inp], headers=headers)
        with pytest.raises(InferenceServerException):
            client.get_model_metadata("mlp", headers=headers)
    result = client.infer("mlp", [inp], headers={"authorization": f"Bearer {TOKEN}"})
    assert result.as_numpy("y").shape == (1, 3)
    client.close()


def test_tfserving_grpc_needs_the_token(secured):
    if not secured["tfserving_grpc_port"]:
        pytest.skip("tensorflow-serving-api is not installed")
    import grpc
    from tensorflow.core.framework import tensor_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    req = predict_pb2.PredictRequest()
    req.model_spec.name = "mlp"
    tp = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    tp.tensor_shape.dim.add(size=1)
    tp.tensor_shape.dim.add(size=4)
    tp.float_val.extend(X[0])
    req.inputs["x"].CopyFrom(tp)
    with grpc.insecure_channel(f"127.0.0.1:{secured['tfserving_grpc_port']}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for metadata in (None, [("authorization", f"Bearer {MGMT_TOKEN}")]):
            with pytest.raises(grpc.RpcError) as info:
                stub.Predict(req, metadata=metadata, timeout=30)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        reply = stub.Predict(req, metadata=[("authorization", f"Bearer {TOKEN}")], timeout=30)
        assert list(reply.outputs["y"].tensor_shape.dim)[1].size == 3


def test_short_inference_tokens_are_rejected(repo):
    with pytest.raises(Exception, match="at least 16"):
        server_config(repo, auth_token="short")
