"""A real ``modelport serve`` process, benched with modelport's own load generator
(``modelport.bench.load``) over HTTP JSON, HTTP binary and gRPC: every request is answered 200 /
OK, and the counts add up exactly."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from modelport.bench.load import LoadConfig, LoadTarget, bench_server, run_load
from tests.serve.models import mlp_model, write
from tests.serve_process import free_port, http_ready, serve_process

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    model, reference = mlp_model()
    write(model, repo / "mlp" / "1", "mlp")
    http, grpc = free_port(), free_port()
    args = [str(repo), "--host", "127.0.0.1", "--http-port", str(http)]
    args += ["--grpc-port", str(grpc), "--no-management", "--max-batch-size", "8"]
    with serve_process(args, http_ready(http)):
        yield http, grpc, reference


FEED = {"x": np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)}


@pytest.mark.parametrize("protocol", ["http-json", "http-binary", "grpc"])
def test_every_request_is_answered_and_counted(served, protocol):
    http, grpc, _ = served
    url = f"grpc://127.0.0.1:{grpc}" if protocol == "grpc" else f"http://127.0.0.1:{http}"
    target = LoadTarget(url, "mlp", protocol=protocol)
    result = bench_server(target, FEED, (1, 4), LoadConfig(requests=40), ceiling=False).to_dict()
    ok = "OK" if protocol == "grpc" else "200"
    assert [r["concurrency"] for r in result["rows"]] == [1, 4]
    for row in result["rows"]:
        assert row["requests"] == 40 and row["ok"] == 40 and row["errors"] == 0
        assert row["status_counts"] == {ok: 40}
        assert row["dropped"] == 0 and row["batch_size"] == 2
        assert row["throughput_req_s"] == pytest.approx(40 / row["duration_s"])
        assert row["throughput_items_s"] == pytest.approx(2 * 40 / row["duration_s"])
        assert row["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [2, 3]}]


def test_an_unknown_model_is_counted_as_404_not_ok(served):
    http, _, _ = served
    row = run_load(LoadTarget(f"http://127.0.0.1:{http}", "nope"), FEED, LoadConfig(requests=5))
    assert row["ok"] == 0 and row["errors"] == 5 and row["status_counts"] == {"404": 5}


def test_the_answers_are_the_models_outputs(served):
    http, _, reference = served
    body = {
        "inputs": [
            {"name": "x", "shape": [2, 4], "datatype": "FP32", "data": FEED["x"].ravel().tolist()}
        ]
    }
    req = urllib.request.Request(
        f"http://127.0.0.1:{http}/v2/models/mlp/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req) as r:
        out = json.loads(r.read())["outputs"][0]
    got = np.asarray(out["data"], np.float32).reshape(out["shape"])
    np.testing.assert_allclose(got, reference(FEED["x"]), rtol=1e-5, atol=1e-5)
