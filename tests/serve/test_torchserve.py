"""TorchServe's inference API on the main HTTP port, against a real server: /ping, predictions
from JSON (list or named inputs) and .npy bytes, one example or a batch, TorchServe error bodies."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest

from tests.serve.compat_server import running_server, server_config
from tests.serve.models import make_repo, mlp_model

pytestmark = pytest.mark.timeout(180)

X = np.array([[1, 2, 3, 4], [0.5, -1, 0, 2]], dtype=np.float32)
LATEST = mlp_model(scale=2.0)[1]  # the repository's mlp serves versions 1 and 2; 2 is the default


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = make_repo(tmp_path_factory.mktemp("ts") / "repo")
    with running_server(server_config(root)) as info:
        base = f"http://127.0.0.1:{info['http_port']}"
        with httpx.Client(base_url=base, timeout=30) as client:
            yield client


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_ping(server):
    r = server.get("/ping")
    assert r.status_code == 200 and r.json() == {"status": "Healthy"}


def test_a_batch_as_a_nested_list(server):
    r = server.post("/predictions/mlp", json=X.tolist())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    np.testing.assert_allclose(r.json(), LATEST(X), rtol=1e-5, atol=1e-5)


def test_one_example_gets_one_answer(server):
    # TorchServe clients send one example; the batch axis is added and taken off again
    r = server.post("/predictions/mlp", json=X[0].tolist())
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json(), LATEST(X[:1])[0], rtol=1e-5, atol=1e-5)


def test_a_version_in_the_path(server):
    for v in (1, 2):
        r = server.post(f"/predictions/mlp/{v}", json=X.tolist())
        want = mlp_model(scale=float(v))[1](X)
        np.testing.assert_allclose(r.json(), want, rtol=1e-5, atol=1e-5)


def test_npy_bytes(server):
    r = server.post(
        "/predictions/mlp",
        content=npy(X.astype(np.float64)),  # cast to the model's FP32
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json(), LATEST(X), rtol=1e-5, atol=1e-5)
    r = server.post("/predictions/text", content=npy(np.array([["a", "b"]])))
    assert r.json() == [["a", "b"]]


def test_named_inputs_and_several_outputs(server):
    r = server.post("/predictions/ints", json={"ids": [1, 2, 3]})
    assert r.json() == {"doubled": [2, 4, 6], "total": [6]}
    r = server.post("/predictions/ints", json={"ids": [[1, 2, 3], [1, 1, 1]]})
    assert r.json() == {"doubled": [[2, 4, 6], [2, 2, 2]], "total": [[6], [3]]}


def test_strings_and_fixed_shapes(server):
    assert server.post("/predictions/text", json=["x", "y"]).json() == ["x", "y"]
    assert server.post("/predictions/fixed", json=[[1, 2], [3, 4]]).json() == [[2, 3], [4, 5]]


@pytest.mark.parametrize(
    "path, kwargs, status, kind, words",
    [
        ("/predictions/nope", {"json": [1]}, 404, "ModelNotFoundException", "unknown model"),
        ("/predictions/mlp/9", {"json": [1, 2, 3, 4]}, 404, "ModelNotFoundException", "version"),
        ("/predictions/mlp", {"json": [1, 2, 3]}, 400, "BadRequestException", "shape"),
        ("/predictions/mlp", {"json": {"z": [1, 2, 3, 4]}}, 400, "BadRequestException", "no input"),
        ("/predictions/mlp", {"content": b"\x89PNG..."}, 400, "BadRequestException", ".npy"),
        ("/predictions/mlp", {"content": b"\x93NUMPYjunk"}, 400, "BadRequestException", ".npy"),
        ("/predictions/ints", {"json": [["a", "b", "c"]]}, 400, "BadRequestException", "INT64"),
        ("/predictions/mlp/..a", {"json": [1, 2, 3, 4]}, 400, "BadRequestException", "version"),
        ("/predictions/.env", {"json": [1, 2, 3, 4]}, 400, "BadRequestException", "model name"),
    ],
)  # fmt: skip
def test_errors_are_torchserve_shaped(server, path, kwargs, status, kind, words):
    r = server.post(path, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"code", "type", "message"}
    assert body["code"] == status and body["type"] == kind
    assert words in body["message"]


def test_body_size_limit(tmp_path):
    root = make_repo(tmp_path / "repo")
    with running_server(server_config(root, max_request_bytes=2048)) as info:
        base = f"http://127.0.0.1:{info['http_port']}"
        r = httpx.post(base + "/predictions/mlp", content=npy(np.zeros((200, 4))), timeout=30)
        assert r.status_code == 413
        assert r.json()["type"] == "RequestEntityTooLargeException"
