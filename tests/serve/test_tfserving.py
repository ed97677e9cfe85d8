"""TF Serving REST on the main HTTP port, against a real server: status, metadata, predict in the
row and columnar formats, b64, labels, signature names, errors with TF Serving's statuses."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest

from tests.serve.compat_server import running_server, server_config
from tests.serve.models import make_repo, mlp_model

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = make_repo(tmp_path_factory.mktemp("tfs") / "repo")
    (root / "mlp" / "config.json").write_text(
        json.dumps({"version_policy": "all", "version_labels": {"stable": 1, "canary": 2}})
    )
    broken = root / "mlp" / "3"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"not a model")
    with (
        running_server(server_config(root)) as info,
        httpx.Client(base_url=f"http://127.0.0.1:{info['http_port']}", timeout=30) as client,
    ):
        yield client


def mlp(version: int):
    return mlp_model(scale=float(version))[1]


X = np.array([[1, 2, 3, 4], [0.5, -1, 0, 2]], dtype=np.float32)


def test_status_lists_every_version_and_one_by_version_or_label(server):
    r = server.get("/v1/models/mlp")
    assert r.status_code == 200
    rows = r.json()["model_version_status"]
    assert [(x["version"], x["state"]) for x in rows] == [
        ("3", "END"),  # failed to load: TF Serving's END with the reason
        ("2", "AVAILABLE"),
        ("1", "AVAILABLE"),
    ]
    assert rows[0]["status"]["error_code"] == "UNKNOWN"
    assert "ONNX" in rows[0]["status"]["error_message"]
    assert rows[1]["status"] == {"error_code": "OK", "error_message": ""}
    assert [x["version"] for x in server.get("/v1/models/mlp/versions/1").json()[
        "model_version_status"]] == ["1"]  # fmt: skip
    canary = server.get("/v1/models/mlp/labels/canary").json()["model_version_status"]
    assert [x["version"] for x in canary] == ["2"]


def test_metadata_is_a_signature_def(server):
    doc = server.get("/v1/models/mlp/versions/1/metadata").json()
    assert doc["model_spec"] == {"name": "mlp", "signature_name": "", "version": "1"}
    sig = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    x = sig["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in x["tensor_shape"]["dim"]] == ["-1", "4"]
    assert x["tensor_shape"]["dim"][0]["name"] == "batch"
    assert sig["outputs"]["y"]["dtype"] == "DT_FLOAT"
    assert server.get("/v1/models/text/metadata").json()["metadata"]["signature_def"][
        "signature_def"]["serving_default"]["inputs"]["text"]["dtype"] == "DT_STRING"  # fmt: skip


def test_predict_row_format_uses_the_latest_version(server):
    r = server.post("/v1/models/mlp:predict", json={"instances": X.tolist()})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["predictions"], mlp(2)(X), rtol=1e-5, atol=1e-5)


def test_predict_columnar_format_by_version_and_label(server):
    for path, v in [("/versions/1", 1), ("/labels/stable", 1), ("/labels/canary", 2)]:
        body = {"signature_name": "serving_default", "inputs": {"x": X.tolist()}}
        r = server.post(f"/v1/models/mlp{path}:predict", json=body)
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["outputs"], mlp(v)(X), rtol=1e-5, atol=1e-5)
    # a one-input model takes the bare tensor as "inputs" too
    r = server.post("/v1/models/mlp/versions/1:predict", json={"inputs": X.tolist()})
    np.testing.assert_allclose(r.json()["outputs"], mlp(1)(X), rtol=1e-5, atol=1e-5)


def test_named_instances_and_several_outputs(server):
    body = {"instances": [{"ids": [1, 2, 3]}, {"ids": [4, 5, 6]}]}
    r = server.post("/v1/models/ints:predict", json=body)
    assert r.json() == {
        "predictions": [
            {"doubled": [2, 4, 6], "total": [6]},
            {"doubled": [8, 10, 12], "total": [15]},
        ]
    }
    r = server.post("/v1/models/ints:predict", json={"inputs": {"ids": [[1, 2, 3]]}})
    assert r.json() == {"outputs": {"doubled": [[2, 4, 6]], "total": [[6]]}}


def test_b64_and_string_inputs(server):
    hello = base64.b64encode("héllo".encode()).decode()
    body = {"instances": [["plain", {"b64": hello}]]}
    r = server.post("/v1/models/text:predict", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [["plain", "héllo"]]}
    r = server.post("/v1/models/text:predict", json={"instances": [["a", {"b64": "%%%"}]]})
    assert r.status_code == 400 and "base64" in r.json()["error"]


def test_bools_and_a_model_without_batch_axis(server):
    r = server.post("/v1/models/flags:predict", json={"instances": [[True, False, True, False]]})
    assert r.json() == {"predictions": [[False, True, False, True]]}
    r = server.post("/v1/models/fixed:predict", json={"inputs": [[1, 2], [3, 4]]})
    assert r.json() == {"outputs": [[2.0, 3.0], [4.0, 5.0]]}


def test_nan_and_infinity_literals_are_accepted(server):
    body = b'{"inputs": {"x": [[NaN, 1, Infinity, -Infinity]]}}'
    r = server.post("/v1/models/mlp:predict", content=body)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "path, body, status, words",
    [
        ("/v1/models/nope:predict", {"instances": [[1]]}, 404, "unknown model"),
        ("/v1/models/mlp/versions/7:predict", {"instances": [[1] * 4]}, 404, "no version 7"),
        ("/v1/models/mlp/labels/beta:predict", {"instances": [[1] * 4]}, 404, "no version label"),
        ("/v1/models/mlp:predict", {"instances": [[1] * 4], "inputs": [[1] * 4]}, 400, "not both"),
        ("/v1/models/mlp:predict", {}, 400, "either 'instances'"),
        ("/v1/models/mlp:predict", {"instances": [[1, 2, 3]]}, 400, "shape"),
        ("/v1/models/mlp:predict", {"instances": [[1, 2, 3, 4], [1]]}, 400, "cannot be read"),
        ("/v1/models/mlp:predict", {"signature_name": "other", "inputs": [[1] * 4]}, 400,
         "signature"),
        ("/v1/models/ints:predict", {"instances": [{"ids": [1, 2, 3]}, {"idz": [1, 2, 3]}]}, 400,
         "same input names"),
        ("/v1/models/mlp:classify", {"examples": []}, 501, "predict"),
        ("/v1/models/mlp/versions/01:predict", {"instances": [[1] * 4]}, 400, "invalid model version"),
        ("/v1/models/mlp/labels/..:predict", {"instances": [[1] * 4]}, 400, "invalid version label"),
        ("/v1/models/.hidden:predict", {"instances": [[1] * 4]}, 400, "invalid model name"),
    ],
)  # fmt: skip
def test_errors_are_tf_serving_shaped(server, path, body, status, words):
    r = server.post(path, json=body)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"}
    assert words in r.json()["error"]


def test_bad_json_and_too_large_bodies(tmp_path):
    root = make_repo(tmp_path / "repo")
    with running_server(server_config(root, max_request_bytes=4096)) as info:
        base = f"http://127.0.0.1:{info['http_port']}"
        r = httpx.post(base + "/v1/models/mlp:predict", content=b"{not json", timeout=30)
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
        big = {"instances": [[1.0, 2.0, 3.0, 4.0]] * 400}
        r = httpx.post(base + "/v1/models/mlp:predict", json=big, timeout=30)
        assert r.status_code == 429  # TF Serving maps RESOURCE_EXHAUSTED to 429
        assert "limit" in r.json()["error"]
        assert httpx.get(base + "/v1/models", timeout=30).json()["models"] == sorted(
            ["mlp", "ints", "flags", "text", "fixed"]
        )


def test_version_labels_are_checked_in_the_config():
    from modelport.serve.config import ModelConfig

    assert ModelConfig(version_labels={"stable": "1"}).version_labels == {"stable": 1}
    for bad in ({"../x": 1}, {"stable": -1}, {"stable": "01"}, ["stable"]):
        with pytest.raises(Exception, match="version_labels"):
            ModelConfig(version_labels=bad)
