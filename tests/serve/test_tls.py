"""TLS when certificate files are given: HTTPS on the inference and management ports, gRPC over
TLS (V2 and TF Serving), and plain-text clients refused. The certificate is made at test time."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from modelport.serve.config import ManagementConfig, TLSConfig
from tests.serve.compat_server import running_server, self_signed_cert, server_config
from tests.serve.models import make_repo

pytestmark = pytest.mark.timeout(240)

MGMT_TOKEN = "management-token-0123456789abcdef"


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    made = self_signed_cert(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("openssl is not available to make a test certificate")
    return made


@pytest.fixture(scope="module")
def server(tmp_path_factory, cert):
    try:
        import tensorflow_serving.apis.prediction_service_pb2_grpc  # noqa: F401

        tf_port = 0
    except ImportError:
        tf_port = None
    config = server_config(
        make_repo(tmp_path_factory.mktemp("tls-repo") / "repo"),
        grpc_port=0,
        tfserving_grpc_port=tf_port,
        tls=TLSConfig(*cert),
        management=ManagementConfig(port=0, token=MGMT_TOKEN),
    )
    with running_server(config) as info:
        yield info


def test_https_inference_and_management(server, cert):
    with httpx.Client(verify=str(cert[0]), timeout=30) as client:
        base = f"https://localhost:{server['http_port']}"
        r = client.post(base + "/v1/models/mlp:predict", json={"instances": [[1, 2, 3, 4]]})
        assert r.status_code == 200 and len(r.json()["predictions"][0]) == 3
        assert client.get(base + "/v2/health/ready").status_code == 200
        r = client.get(
            f"https://127.0.0.1:{server['management_port']}/models",
            headers={"authorization": f"Bearer {MGMT_TOKEN}"},
        )
        assert r.status_code == 200 and r.json()["models"]


def test_plain_http_and_unknown_certificates_are_refused(server):
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{server['http_port']}/v2/health/ready", timeout=10)
    with pytest.raises(httpx.ConnectError):  # our self-signed certificate is not trusted
        httpx.get(f"https://127.0.0.1:{server['http_port']}/v2/health/ready", timeout=10)


def test_grpc_over_tls(server, cert):
    import grpc
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(
        f"localhost:{server['grpc_port']}", ssl=True, root_certificates=str(cert[0])
    )
    inp = grpcclient.InferInput("x", [1, 4], "FP32")
    inp.set_data_from_numpy(np.ones((1, 4), np.float32))
    assert client.infer("mlp", [inp]).as_numpy("y").shape == (1, 3)
    client.close()

    plain = f"127.0.0.1:{server['grpc_port']}"
    with grpc.insecure_channel(plain) as channel, pytest.raises(grpc.FutureTimeoutError):
        grpc.channel_ready_future(channel).result(timeout=3)


def test_tfserving_grpc_over_tls(server, cert):
    if not server["tfserving_grpc_port"]:
        pytest.skip("tensorflow-serving-api is not installed")
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    creds = grpc.ssl_channel_credentials(root_certificates=cert[0].read_bytes())
    with grpc.secure_channel(f"localhost:{server['tfserving_grpc_port']}", creds) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.name = "ints"
        reply = stub.GetModelStatus(req, timeout=30)
        assert [s.version for s in reply.model_version_status] == [1]


def test_tls_files_must_exist(tmp_path):
    with pytest.raises(Exception, match="is not a file"):
        TLSConfig(tmp_path / "nope.pem", tmp_path / "nope.key")
