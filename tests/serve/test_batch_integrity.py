"""Batch integrity (issue 13, item 1): one client cannot read or change another client's answer
through dynamic batching, and models whose inputs lack the batch axis are not batched (#14)."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import threading

import numpy as np
import pytest

from modelport.serve.batcher import Batcher
from modelport.serve.config import ModelConfig
from modelport.serve.http.codec import decode_response, encode_request

from .compat_server import running_server, server_config
from .models import param_model, scaled_model, write


def _post(port: int, path: str, inputs: dict[str, np.ndarray]):
    body, headers = encode_request(inputs)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body, headers)
        r = conn.getresponse()
        data = r.read()
        hl = r.getheader("inference-header-content-length")
        return r.status, data, hl
    finally:
        conn.close()


@pytest.fixture
def scaled_repo(tmp_path):
    root = tmp_path / "repo"
    write(scaled_model(), root / "scaled" / "1", "scaled")
    write(param_model(), root / "param" / "1", "param")
    return root


@pytest.mark.parametrize("execution", ["inline", "thread"])
def test_the_cross_request_attack_gets_400_and_everyone_else_exact_answers(scaled_repo, execution):
    """A1: ids [1,4] with scale [0,1]; V: [1,4] with [1,1] = 0.5; A2: ids [0,4] with scale
    [1,1] = 1000, sent together from several threads while the server waits to fill batches.
    Before the fix A1 got V's scale and V got A2's; now A1 and A2 get 400 and V is exact."""
    cfg = server_config(
        scaled_repo, model_defaults=ModelConfig(max_queue_delay_ms=5, execution=execution)
    )
    path = "/v2/models/scaled/infer"
    ids = np.arange(1, 5, dtype=np.int64).reshape(1, 4)
    a1 = {"ids": ids, "scale": np.zeros((0, 1), np.float32)}
    a2 = {"ids": np.zeros((0, 4), np.int64), "scale": np.full((1, 1), 1000, np.float32)}
    wrong: list = []
    statuses: dict[str, list[int]] = {"a1": [], "a2": [], "v": []}
    lock = threading.Lock()

    def client(k: int, port: int) -> None:
        for i in range(25):
            scale = np.float32(0.5 + k + i / 100)  # every normal answer differs
            v = {"ids": ids, "scale": np.full((1, 1), scale, np.float32)}
            for tag, inputs in (("a1", a1), ("v", v), ("a2", a2)):
                status, data, hl = _post(port, path, inputs)
                with lock:
                    statuses[tag].append(status)
                if tag == "v" and status == 200:
                    out = decode_response(data, int(hl) if hl else None)["out"]
                    if not np.array_equal(out, ids.astype(np.float32) * scale):
                        with lock:
                            wrong.append((out.tolist(), float(scale)))
                elif tag != "v":
                    assert status == 400, data
                    msg = json.loads(data)["error"]
                    assert "'ids' has" in msg and "'scale' has" in msg and "'batch'" in msg

    with running_server(cfg) as info:
        port = info["http_port"]
        threads = [threading.Thread(target=client, args=(k, port)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    assert statuses["v"] == [200] * 150
    assert set(statuses["a1"]) == {400} and set(statuses["a2"]) == {400}
    assert wrong == []


def test_a_model_with_an_input_without_batch_axis_is_not_batched(scaled_repo, caplog):
    """``gain`` [1] is a per-call parameter: merging would apply one request's gain to all."""
    cfg = server_config(scaled_repo, model_defaults=ModelConfig(max_queue_delay_ms=20))
    with caplog.at_level(logging.INFO, "modelport.serve"), running_server(cfg) as info:
        port = info["http_port"]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/v2/models/param/config")
        config = json.loads(conn.getresponse().read())
        conn.close()
        assert config["max_batch_size"] == 0
        assert "input 'gain' has no dynamic batch axis" in config["parameters"]["dynamic_batching"]
        scaled_config = _get_json(port, "/v2/models/scaled/config")
        assert scaled_config["parameters"]["dynamic_batching"] == "on"
        results: dict[int, np.ndarray] = {}
        x = np.arange(6, dtype=np.float32).reshape(2, 3)

        def call(k: int) -> None:
            gain = np.array([k + 1], np.float32)
            status, data, hl = _post(port, "/v2/models/param/infer", {"x": x, "gain": gain})
            assert status == 200, data
            results[k] = decode_response(data, int(hl) if hl else None)["y"]

        threads = [threading.Thread(target=call, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    for k in range(8):
        np.testing.assert_array_equal(results[k], x * (k + 1))
    assert any("dynamic batching is off: input 'gain'" in r.getMessage() for r in caplog.records)


def _get_json(port: int, path: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


# --- the batcher defends itself too (callers other than the data plane) ----------------------


def _scaled_run(feed):
    ids, scale = feed["ids"], feed["scale"]
    if ids.shape[0] != scale.shape[0]:
        raise ValueError("rows differ")
    return {"out": ids.astype(np.float32) * scale}


@pytest.mark.anyio
async def test_batcher_never_merges_a_request_whose_inputs_disagree_on_rows():
    calls = []

    def run(feed):
        calls.append({k: v.shape for k, v in feed.items()})
        return _scaled_run(feed)

    b = Batcher(run, max_batch_size=8, inline=True)
    b.start()
    ids = np.arange(4, dtype=np.int64).reshape(1, 4)
    a1 = b.submit({"ids": ids, "scale": np.zeros((0, 1), np.float32)})
    v = b.submit({"ids": ids, "scale": np.full((1, 1), 0.5, np.float32)})
    a2 = b.submit({"ids": np.zeros((0, 4), np.int64), "scale": np.full((1, 1), 1e3, np.float32)})
    v2 = b.submit({"ids": ids, "scale": np.full((1, 1), 2.0, np.float32)})
    results = await asyncio.gather(a1, v, a2, v2, return_exceptions=True)
    await b.close()
    assert isinstance(results[0], ValueError) and isinstance(results[2], ValueError)
    np.testing.assert_array_equal(results[1]["out"], ids * np.float32(0.5))
    np.testing.assert_array_equal(results[3]["out"], ids * np.float32(2.0))
    # v and v2 were merged; the malformed requests ran alone
    assert {"ids": (2, 4), "scale": (2, 1)} in calls


@pytest.mark.anyio
async def test_a_failed_merged_batch_is_rerun_alone_and_logged(caplog):
    def run(feed):
        if np.any(feed["x"] < 0):
            raise ValueError("negative")
        return {"y": feed["x"] * 2}

    b = Batcher(run, max_batch_size=8, inline=True, name="model m version 1")
    b.start()
    with caplog.at_level(logging.WARNING, "modelport.serve"):
        good = b.submit({"x": np.ones((2, 3), np.float32)})
        bad = b.submit({"x": -np.ones((1, 3), np.float32)})
        results = await asyncio.gather(good, bad, return_exceptions=True)
    await b.close()
    np.testing.assert_array_equal(results[0]["y"], np.full((2, 3), 2, np.float32))
    assert isinstance(results[1], ValueError)
    (line,) = [r.getMessage() for r in caplog.records if "merged batch" in r.getMessage()]
    assert "model m version 1" in line and "2 requests (3 rows)" in line and "negative" in line


@pytest.mark.anyio
async def test_outputs_that_lose_the_batch_axis_are_rerun_alone():
    """A model that sums over the batch: merged, its answer cannot be split, so each request is
    run alone and gets its own (correct) answer instead of a 500."""

    def run(feed):
        return {"s": feed["x"].sum(axis=0)}

    b = Batcher(run, max_batch_size=8, inline=True)
    b.start()
    xs = [np.full((1, 2), i, np.float32) for i in range(3)]
    results = await asyncio.gather(*[b.submit({"x": x}) for x in xs])
    await b.close()
    for x, r in zip(xs, results, strict=True):
        np.testing.assert_array_equal(r["s"], x.sum(axis=0))
