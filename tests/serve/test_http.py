"""The V2 REST adapter in-process (httpx ASGITransport): routes, binary extension, errors."""

import gzip

import httpx
import numpy as np
import orjson
import pytest

from modelport.serve.http.app import HTTP_APIS, HttpSettings, build_app
from modelport.serve.http.codec import decode_response, encode_request

from .conftest import running

pytestmark = pytest.mark.anyio


def client(plane, max_request_bytes=1 << 20, address="127.0.0.1", control_token=None):
    settings = HttpSettings(max_request_bytes=max_request_bytes, control_token=control_token)
    app = build_app(plane, settings, apis=("v2",))
    transport = httpx.ASGITransport(app=app, client=(address, 1234))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def infer(c, model, inputs, binary=True, path=None):
    body, headers = encode_request(inputs, binary=binary, binary_outputs=binary)
    r = await c.post(path or f"/v2/models/{model}/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    hl = r.headers.get("inference-header-content-length")
    return decode_response(r.content, int(hl) if hl else None)


def test_route_registry_is_a_plain_dict():
    assert HTTP_APIS["v2"] == "modelport.serve.http.v2:routes"


async def test_health_and_metadata(repo):
    async with running(repo) as plane, client(plane) as c:
        assert (await c.get("/v2/health/live")).status_code == 200
        assert (await c.get("/v2/health/ready")).status_code == 200
        md = (await c.get("/v2")).json()
        assert md["name"] == "modelport" and "binary_tensor_data" in md["extensions"]
        m = (await c.get("/v2/models/mlp")).json()
        assert m["versions"] == ["1", "2"] and m["platform"] == "onnxruntime_onnx"
        assert m["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
        assert (await c.get("/v2/models/mlp/versions/1/ready")).status_code == 200
        assert (await c.get("/v2/models/mlp/versions/9/ready")).status_code == 400
        cfg = (await c.get("/v2/models/mlp/config")).json()
        assert cfg["max_batch_size"] == 32 and cfg["input"][0]["dims"] == [4]
        plane.draining = True
        assert (await c.get("/v2/health/ready")).status_code == 400


@pytest.mark.parametrize("binary", [True, False])
async def test_infer_every_test_model(repo, binary):
    async with running(repo) as plane, client(plane) as c:
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        y1 = (await infer(c, "mlp", {"x": x}, binary, "/v2/models/mlp/versions/1/infer"))["y"]
        y2 = (await infer(c, "mlp", {"x": x}, binary))["y"]
        np.testing.assert_allclose(y2, 2 * y1, rtol=1e-5)
        ids = np.array([[1, 2, 3], [4, 5, 6]], np.int64)
        out = await infer(c, "ints", {"ids": ids}, binary)
        np.testing.assert_array_equal(out["doubled"], ids * 2)
        np.testing.assert_array_equal(out["total"], [[6], [15]])
        flags = np.array([[True, False, True, True]])
        np.testing.assert_array_equal(
            (await infer(c, "flags", {"flags": flags}, binary))["negated"], ~flags
        )
        text = np.array([["a", "héllo"]], dtype=object)
        same = (await infer(c, "text", {"text": text}, binary))["same"]
        assert [s if isinstance(s, str) else s.decode() for s in same.ravel()] == ["a", "héllo"]


async def test_requested_outputs_and_gzip(repo):
    async with running(repo) as plane, client(plane) as c:
        doc = {
            "id": "abc",
            "inputs": [{"name": "ids", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}],
            "outputs": [{"name": "total"}],
        }
        r = await c.post("/v2/models/ints/infer", content=gzip.compress(orjson.dumps(doc)),
                         headers={"content-encoding": "gzip"})  # fmt: skip
        assert r.status_code == 200
        body = r.json()
        assert body["id"] == "abc" and [o["name"] for o in body["outputs"]] == ["total"]
        assert body["outputs"][0]["data"] == [6]


def v2(name, shape, datatype, data):
    return orjson.dumps(
        {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}
    )


@pytest.mark.parametrize(
    ("path", "body", "status", "match"),
    [
        ("/v2/models/nope/infer", v2("x", [1, 4], "FP32", [1, 2, 3, 4]), 404, "unknown model"),
        ("/v2/models/mlp/versions/7/infer", v2("x", [1, 4], "FP32", [1, 2, 3, 4]), 404, "no version 7"),
        ("/v2/models/mlp/versions/x/infer", v2("x", [1, 4], "FP32", [1, 2, 3, 4]), 404, "integer"),
        ("/v2/models/mlp/infer", v2("z", [1, 4], "FP32", [1, 2, 3, 4]), 400, "no input named 'z'"),
        ("/v2/models/mlp/infer", v2("x", [1, 4], "FP64", [1, 2, 3, 4]), 400, "expects FP32"),
        ("/v2/models/mlp/infer", v2("x", [1, 5], "FP32", [1, 2, 3, 4, 5]), 400, "expects \\[-1, 4\\]"),
        ("/v2/models/mlp/infer", v2("x", [4], "FP32", [1, 2, 3, 4]), 400, "shape"),
        ("/v2/models/mlp/infer", b'{"inputs": [', 400, "does not parse"),
        ("/v2/models/fixed/infer", v2("x", [3, 2], "FP32", [1] * 6), 400, "expects \\[2, 2\\]"),
        ("/v2/models/ints/infer", orjson.dumps({"inputs": [{"name": "ids", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}], "outputs": [{"name": "nope"}]}), 400, "no output named"),
        ("/v2/nothing", b"", 404, "no route"),
    ],
)  # fmt: skip
async def test_errors_have_status_and_message(repo, path, body, status, match):
    import re

    async with running(repo) as plane, client(plane) as c:
        r = await c.post(path, content=body)
        assert r.status_code == status, r.text
        assert re.search(match, r.json()["error"])
        # the server keeps serving after every bad request
        out = await infer(c, "mlp", {"x": np.ones((1, 4), np.float32)})
        assert out["y"].shape == (1, 3)


async def test_binary_framing_and_size_limits(repo):
    async with running(repo) as plane, client(plane, max_request_bytes=4096) as c:
        body, headers = encode_request({"x": np.ones((1, 4), np.float32)})
        r = await c.post("/v2/models/mlp/infer", content=body[:-3], headers=headers)
        assert r.status_code == 400 and "binary" in r.json()["error"]
        headers["inference-header-content-length"] = "banana"
        r = await c.post("/v2/models/mlp/infer", content=body, headers=headers)
        assert r.status_code == 400 and "integer" in r.json()["error"]
        big, headers = encode_request({"x": np.ones((512, 4), np.float32)})
        r = await c.post("/v2/models/mlp/infer", content=big, headers=headers)
        assert r.status_code == 413 and "limit" in r.json()["error"]
        bomb = gzip.compress(b" " * 100_000)
        r = await c.post("/v2/models/mlp/infer", content=bomb, headers={"content-encoding": "gzip"})
        assert r.status_code == 413


async def test_repository_extension_is_loopback_only(repo):
    async with running(repo) as plane:
        async with client(plane) as c:
            index = (await c.post("/v2/repository/index")).json()
            assert {"name": "mlp", "version": "2", "state": "READY", "reason": ""} in index
            assert (await c.post("/v2/repository/models/mlp/unload")).status_code == 200
            assert (await c.get("/v2/models/mlp/ready")).status_code == 400
            r = await c.post("/v2/models/mlp/infer", content=v2("x", [1, 4], "FP32", [1, 2, 3, 4]))
            assert r.status_code == 503 and "unloaded" in r.json()["error"]
            assert (await c.post("/v2/repository/models/mlp/load")).status_code == 200
            assert (await c.get("/v2/models/mlp/ready")).status_code == 200
            r = await c.post(
                "/v2/repository/models/mlp/load", json={"parameters": {"config": "{}"}}
            )
            assert r.status_code == 501
        async with client(plane, address="10.1.2.3") as c:
            r = await c.post("/v2/repository/models/mlp/unload")
            assert r.status_code == 403 and "loopback" in r.json()["error"]
            assert (await c.get("/v2/models/mlp/ready")).status_code == 200


async def test_repository_extension_needs_the_management_token_when_set(repo):
    async with running(repo) as plane, client(plane, control_token="s3cret") as c:
        r = await c.post("/v2/repository/models/mlp/unload")
        assert r.status_code == 403 and "management token" in r.json()["error"]
        r = await c.post("/v2/repository/index", headers={"authorization": "Bearer wrong"})
        assert r.status_code == 403
        assert (await c.get("/v2/models/mlp/ready")).status_code == 200  # inference stays open
        r = await c.post("/v2/repository/index", headers={"authorization": "Bearer s3cret"})
        assert r.status_code == 200 and r.json()


async def test_metrics(repo):
    async with running(repo) as plane, client(plane) as c:
        await infer(c, "mlp", {"x": np.ones((3, 4), np.float32)})
        await c.post("/v2/models/nope/infer", content=v2("x", [1, 4], "FP32", [1, 2, 3, 4]))
        text = (await c.get("/metrics")).text
        assert (
            'modelport_inference_requests_total{model="mlp",status="success",version="2"} 1.0'
            in text
        )
        assert (
            'modelport_inference_requests_total{model="(unknown)",status="not_found",version=""} 1.0'
            in text
        )
        assert 'modelport_batch_size_bucket{le="4",model="mlp",version="2"} 1.0' in text
        assert 'modelport_model_state{model="mlp",state="READY",version="1"} 1.0' in text
        assert "modelport_queue_duration_seconds_count" in text
        assert 'modelport_inflight_requests{model="mlp"} 0.0' in text
