"""The V2 load generator against small local servers (see conftest.py): wire formats, status
counts, bounds, open loop, metadata, the ceiling endpoint. No timing assertions."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from modelport.bench.load import (
    LoadConfig,
    LoadTarget,
    bench_server,
    fetch_metadata,
    measure_ceiling,
    run_load,
)
from modelport.bench.v2 import encode_binary, encode_json, signature_from_metadata
from modelport.errors import ModelportError, UsageError

from .v2_servers import FAIL_EVERY, W

FEED = {"x": np.arange(8, dtype=np.float32).reshape(2, 4)}


@pytest.mark.parametrize("protocol", ["http-json", "http-binary"])
def test_http_closed_loop_counts_statuses_and_sends_the_right_tensors(http_server, protocol):
    http_server.seen.counters.clear()
    http_server.seen.requests.clear()
    target = LoadTarget(http_server.url, "flaky", protocol=protocol)
    row = run_load(target, FEED, LoadConfig(concurrency=4, requests=60, warmup=0))

    errors = 60 // FAIL_EVERY
    assert row["requests"] == 60
    assert row["status_counts"] == {"200": 60 - errors, "503": errors}
    assert (row["ok"], row["errors"]) == (60 - errors, errors)
    assert row["mode"] == "closed" and row["concurrency"] == 4 and row["batch_size"] == 2
    assert row["throughput_items_s"] == pytest.approx(2 * row["throughput_req_s"])
    assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert row["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [2, 3]}]
    wire = "binary" if protocol == "http-binary" else "json"
    assert len(http_server.seen.requests) == 60 - errors
    for kind, shape, x in http_server.seen.requests:
        assert (kind, shape) == (wire, [2, 4])
        np.testing.assert_array_equal(x, FEED["x"])


def test_grpc_closed_loop_counts_status_codes(grpc_server):
    grpc_server.seen.counters.clear()
    grpc_server.seen.requests.clear()
    target = LoadTarget(grpc_server.url, "flaky", protocol="grpc")
    row = run_load(target, FEED, LoadConfig(concurrency=3, requests=30, warmup=0))

    assert row["status_counts"] == {"OK": 24, "UNAVAILABLE": 6}
    assert row["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [2, 3]}]
    assert all(k == "grpc" and s == [2, 4] for k, s, _ in grpc_server.seen.requests)
    np.testing.assert_array_equal(grpc_server.seen.requests[0][2], FEED["x"])


def test_seconds_bound_and_open_loop(http_server):
    target = LoadTarget(http_server.url, "mlp")
    closed = run_load(target, FEED, LoadConfig(concurrency=2, seconds=0.3))
    assert closed["requests"] > 0 and closed["errors"] == 0
    assert closed["duration_s"] < 30  # bounded (a loose bound, not a timing check)

    opened = run_load(target, FEED, LoadConfig(concurrency=4, seconds=0.5, rate=100))
    assert opened["mode"] == "open" and opened["rate"] == 100
    assert 0 < opened["requests"] + opened["dropped"] <= 51  # due times 0, 10 ms, ... < 0.5 s
    assert opened["status_counts"].get("200", 0) == opened["ok"]


def test_chunked_responses_are_read(http_server):
    row = run_load(
        LoadTarget(http_server.url, "chunked"), FEED, LoadConfig(requests=5, concurrency=2)
    )
    assert row["status_counts"] == {"200": 5}
    assert row["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [2, 3]}]


def test_requests_that_hang_are_cut_by_the_timeout(http_server):
    target = LoadTarget(http_server.url, "slow")
    row = run_load(target, FEED, LoadConfig(concurrency=1, requests=2, warmup=0, timeout_s=0.2))
    assert row["status_counts"] == {"timeout": 2}
    assert row["ok"] == 0 and row["p50_ms"] is None


def test_metadata_gives_a_signature(http_server, grpc_server):
    for target in (
        LoadTarget(http_server.url, "mlp"),
        LoadTarget(grpc_server.url, "mlp", protocol="grpc"),
    ):
        sig = signature_from_metadata(fetch_metadata(target))
        assert sig.inputs[0].name == "x" and sig.inputs[0].dtype == "float32"
        assert sig.inputs[0].shape == ("batch", 4)
    with pytest.raises(ModelportError, match="404"):
        fetch_metadata(LoadTarget(http_server.url, "nope"))


def test_bench_server_sweeps_concurrency_and_measures_the_ceiling(http_server):
    target = LoadTarget(http_server.url, "mlp", protocol="http-binary")
    result = bench_server(target, FEED, (1, 2), LoadConfig(requests=20), ceiling=True).to_dict()
    assert result["kind"] == "server"
    assert [r["concurrency"] for r in result["rows"]] == [1, 2]
    assert all(r["ok"] == 20 for r in result["rows"])
    ceiling = result["ceiling"]
    assert ceiling["protocol"] == "http-binary" and ceiling["concurrency"] == 2
    assert ceiling["req_s"] > 0 and ceiling["errors"] == 0
    for r in result["rows"]:
        assert r["fraction_of_ceiling"] == pytest.approx(r["throughput_req_s"] / ceiling["req_s"])
        assert r["throughput_req_s"] == pytest.approx(20 / r["duration_s"])


def test_grpc_ceiling_endpoint():
    c = measure_ceiling("grpc", concurrency=4, seconds=0.3)
    assert c["req_s"] > 0 and c["errors"] == 0


def test_only_loopback_and_valid_configs():
    with pytest.raises(UsageError, match="loopback"):
        LoadTarget("http://10.1.2.3:8000", "m")
    with pytest.raises(UsageError, match="loopback"):
        LoadTarget("http://example.com:8000", "m")
    LoadTarget("http://[::1]:8000", "m")
    LoadTarget("localhost:8001", "m", protocol="grpc")
    with pytest.raises(UsageError, match="protocol"):
        LoadTarget("http://127.0.0.1:8000", "m", protocol="websocket")
    with pytest.raises(UsageError, match="concurrency"):
        LoadConfig(concurrency=0)
    with pytest.raises(UsageError, match="rate"):
        LoadConfig(rate=0)


def test_a_server_that_is_not_there_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ModelportError, match="does not answer"):
        run_load(LoadTarget(f"http://127.0.0.1:{port}", "m"), FEED, LoadConfig(requests=1))


def test_wire_encodings():
    feed = {"x": np.ones((2, 2), np.float32), "ids": np.array([[1, 2]], np.int64)}
    doc = __import__("json").loads(encode_json(feed))
    assert doc["inputs"][1] == {"name": "ids", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}
    body, hlen = encode_binary(feed)
    header = __import__("json").loads(body[:hlen])
    assert [i["parameters"]["binary_data_size"] for i in header["inputs"]] == [16, 16]
    assert header["parameters"] == {"binary_data_output": True}
    assert np.frombuffer(body[hlen + 16 :], "<i8").tolist() == [1, 2]
    assert W.shape == (4, 3)


def test_http_exchange_is_the_one_client_of_the_benchmark_scripts(http_server, monkeypatch):
    """modelport.bench.load's client (keep-alive, chunked, Connection: close, timeout) and the
    benchmark scripts that use it instead of their own sockets."""
    import json
    import sys
    from pathlib import Path
    from urllib.parse import urlsplit

    from modelport.bench.load import http_exchange, http_request_bytes

    port = urlsplit(http_server.url).port
    body = encode_json(FEED)
    json_headers = {"Content-Type": "application/json"}
    req = http_request_bytes("POST", "/v2/models/mlp/infer", "127.0.0.1", body, json_headers)
    assert req.startswith(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert f"Content-Length: {len(body)}\r\n\r\n".encode() + body in req
    chunked = req.replace(b"/mlp/", b"/chunked/")
    answers = http_exchange("127.0.0.1", port, [req, chunked, req])
    assert [a[0] for a in answers] == [200, 200, 200] and all(a[2] > 0 for a in answers)
    got = json.loads(answers[1][1])["outputs"][0]
    np.testing.assert_allclose(np.reshape(got["data"], got["shape"]), FEED["x"] @ W, rtol=1e-6)
    slow = req.replace(b"/mlp/", b"/slow/")
    with pytest.raises(TimeoutError):
        http_exchange("127.0.0.1", port, [slow], timeout_s=0.2)

    root = Path(__file__).resolve().parents[2]
    monkeypatch.syspath_prepend(str(root / "benchmarks"))
    import serve_bench
    import serve_hostile

    status, data = serve_hostile.raw_request(port, "GET", "/v2/models/nope")
    assert status == 404 and b"unknown model" in data
    p50 = serve_bench.latency_p50(port, "/v2/models/mlp/infer", body, json_headers, n=5)
    assert 0 < p50 < 5
    with pytest.raises(RuntimeError, match="request failed: 404"):
        serve_bench.latency_p50(port, "/v2/nothing", body, json_headers, n=1)
    sys.modules.pop("serve_bench", None)
    sys.modules.pop("serve_hostile", None)


def test_the_first_failed_answer_is_reported_and_items_ignore_a_state_axis(
    http_server, grpc_server
):
    """Before: a run where every request got 400 said only 'no request succeeded' (the server's
    reason was never shown), and items/s counted a recurrent state's layers (its axis 0) as
    items: silero-vad's state [2, 1, 128] doubled its items/s."""
    row = run_load(
        LoadTarget(http_server.url, "flaky", protocol="http-json"),
        FEED,
        LoadConfig(concurrency=1, requests=10, warmup=0),
    )
    assert row["first_error"] == "503: busy, try again"
    grow = run_load(
        LoadTarget(grpc_server.url, "flaky", protocol="grpc"),
        FEED,
        LoadConfig(concurrency=1, requests=10, warmup=0),
    )
    assert grow["first_error"] == "UNAVAILABLE: busy, try again"
    ok = run_load(
        LoadTarget(http_server.url, "mlp", protocol="http-json"),
        FEED,
        LoadConfig(concurrency=1, requests=2, warmup=0),
    )
    assert ok["first_error"] is None

    with_state = {**FEED, "state": np.zeros((3, 1, 4), np.float32)}
    row = run_load(
        LoadTarget(http_server.url, "mlp", protocol="http-json"),
        with_state,
        LoadConfig(concurrency=1, requests=2, warmup=0),
    )
    assert row["batch_size"] == 2  # x's rows, not the state's 3 layers
