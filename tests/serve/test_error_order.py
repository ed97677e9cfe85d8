"""The inference routes resolve the model before they read or parse the body: a request for a
model (or version) that is not served is a 404 whatever its body holds, on every HTTP API family,
and the body size limit still refuses a too-large body without reading it. Raw requests against a
real server."""

from __future__ import annotations

import http.client
import json
import socket

import pytest

from tests.serve.compat_server import running_server, server_config
from tests.serve.models import labelled_mlp, make_repo

pytestmark = pytest.mark.timeout(180)

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    root = make_repo(tmp_path_factory.mktemp("order") / "repo")
    labelled_mlp(root / "animals" / "1")
    with running_server(server_config(root, max_request_bytes=LIMIT)) as info:
        yield info["http_port"]


def post(port: int, path: str, body: bytes) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body, {"content-type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def message(doc: dict) -> str:
    return doc.get("error") or doc.get("message") or ""  # TorchServe: {"code", "type", "message"}


NOT_SERVED = [
    # (path, words in the answer)
    ("/v2/models/nope/infer", "unknown model 'nope'"),
    ("/v2/models/nope/versions/9/infer", "unknown model 'nope'"),
    ("/v2/models/mlp/versions/9/infer", "no version 9"),
    ("/v1/models/nope:predict", "unknown model 'nope'"),
    ("/v1/models/nope:classify", "unknown model 'nope'"),
    ("/v1/models/nope/versions/9:predict", "unknown model 'nope'"),
    ("/v1/models/mlp/versions/9:predict", "no version 9"),
    ("/v1/models/animals/versions/9:classify", "no version 9"),
    ("/predictions/nope", "unknown model 'nope'"),
    ("/predictions/mlp/9", "no version 9"),
]


@pytest.mark.parametrize("body", [b"{not json", b'{"inputs": 7}', b"\x93NUMPY garbage"])
@pytest.mark.parametrize(("path", "words"), NOT_SERVED)
def test_a_model_that_is_not_served_is_a_404_whatever_the_body(port, path, words, body):
    status, doc = post(port, path, body)
    assert status == 404, doc
    assert words in message(doc)


def test_a_served_model_still_gets_the_body_error(port):
    status, doc = post(port, "/v2/models/mlp/infer", b"{not json")
    assert status == 400 and "does not parse" in doc["error"]
    status, doc = post(port, "/v1/models/animals:classify", b"{not json")
    assert status == 400 and "not valid JSON" in doc["error"]


def test_refusals_before_the_body_are_counted_in_the_metrics(port):
    post(port, "/v2/models/nope/infer", b"{not json")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    line = next(
        x
        for x in text.splitlines()
        if x.startswith(
            'modelport_inference_requests_total{model="(unknown)",status="not_found",version=""}'
        )
    )
    assert float(line.split()[-1]) >= 1


def _head_then_wait(port: int, path: str, declared: int | None, sent: bytes) -> bytes:
    """Send the headers (Content-Length ``declared``, or chunked when None) and ``sent`` of the
    body, never the rest; the server's answer (it must not wait for the rest)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        length = (
            f"Content-Length: {declared}\r\n"
            if declared is not None
            else "Transfer-Encoding: chunked\r\n"
        )
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{length}\r\n".encode()
        )
        s.sendall(sent)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


@pytest.mark.parametrize(
    ("path", "status"),
    # TF Serving REST answers RESOURCE_EXHAUSTED with 429 (its http_server.cc table)
    [("/v2/models/mlp/infer", 413), ("/v1/models/mlp:predict", 429), ("/predictions/mlp", 413)],
)
def test_a_too_large_body_is_still_refused_without_being_read(port, path, status):
    want = b"HTTP/1.1 %d " % status
    # declared too large: refused from the header, with only a few bytes of the body sent
    answer = _head_then_wait(port, path, 10 * LIMIT, b"[" * 100)
    assert answer.startswith(want), answer
    # chunked: refused once the limit is passed, the end of the body never sent
    chunk = b" " * 4096
    sent = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * (LIMIT // 4096 + 2)
    answer = _head_then_wait(port, path, None, sent)
    assert answer.startswith(want), answer


def test_a_too_large_body_for_a_model_that_is_not_served_is_a_404_unread(port):
    answer = _head_then_wait(port, "/v2/models/nope/infer", 10 * LIMIT, b"[" * 100)
    assert answer.startswith(b"HTTP/1.1 404"), answer


def test_the_connection_keeps_serving_after_an_unread_body(port):
    # the 404 is answered before the body is read: the server must skip it, not parse it as
    # the next request
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for path, body, status in [
            ("/v2/models/nope/infer", b"{not json" * 1000, 404),
            ("/predictions/nope", b"[1, 2, 3, 4]", 404),
            ("/v2/models/mlp/infer", _V2_BODY, 200),
            ("/v1/models/nope:predict", b'{"instances": [[1, 2, 3, 4]]}', 404),
            ("/v2/models/mlp/infer", _V2_BODY, 200),
        ]:
            conn.request("POST", path, body, {"content-type": "application/json"})
            r = conn.getresponse()
            assert r.status == status, r.read()
            doc = json.loads(r.read())
            if status == 200:
                assert doc["outputs"][0]["shape"] == [1, 3]
    finally:
        conn.close()


_V2_BODY = json.dumps(
    {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
).encode()


@pytest.fixture(scope="module")
def grpc_port(tmp_path_factory):
    root = make_repo(tmp_path_factory.mktemp("order_grpc") / "repo")
    with running_server(server_config(root, grpc_port=0)) as info:
        yield info["grpc_port"]


def _bad_infer(name: str, version: str):
    from modelport.serve.grpc.generated import grpc_service_pb2 as pb

    req = pb.ModelInferRequest(model_name=name, model_version=version)
    req.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    req.raw_input_contents.append(b"123")  # 3 bytes where [1, 4] FP32 needs 16
    return req


@pytest.mark.parametrize(
    ("name", "version", "code", "words"),
    [
        ("nope", "", "NOT_FOUND", "unknown model 'nope'"),
        ("mlp", "9", "NOT_FOUND", "no version 9"),
        ("mlp", "", "INVALID_ARGUMENT", "3 raw bytes"),  # a served model: the tensor's error
    ],
)
def test_grpc_infer_resolves_the_model_before_its_tensors(grpc_port, name, version, code, words):
    import grpc

    from modelport.serve.grpc.generated import grpc_service_pb2_grpc as pb_grpc

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(_bad_infer(name, version), timeout=30)
        assert info.value.code() == getattr(grpc.StatusCode, code)
        assert words in info.value.details()
        (reply,) = stub.ModelStreamInfer(iter([_bad_infer(name, version)]), timeout=30)
        assert words in reply.error_message
