"""Dynamic batching: merging, splitting, limits, failures and draining."""

import asyncio

import numpy as np
import pytest

from modelport.errors import InputError
from modelport.serve.batcher import Batcher
from modelport.serve.errors import QueueFullError

pytestmark = pytest.mark.anyio


def recording_model(calls):
    def run(feed):
        x = feed["x"]
        calls.append(x.shape[0])
        if np.any(x < 0):
            raise InputError("negative input")
        return {"y": x * 2, "n": x.sum(axis=1, keepdims=True)}

    return run


@pytest.mark.parametrize("inline", [True, False])
async def test_concurrent_requests_are_merged_and_split_back(inline):
    calls = []
    batches = []
    b = Batcher(
        recording_model(calls), max_batch_size=8, inline=inline,
        on_batch=lambda rows, waits: batches.append((rows, len(waits))),
    )  # fmt: skip
    b.start()
    xs = [np.full((1, 3), i, np.float32) for i in range(8)]
    futs = [b.submit({"x": x}) for x in xs]
    results = await asyncio.gather(*futs)
    await b.close()
    assert calls == [8]  # one call for all eight
    assert batches == [(8, 8)]
    for i, r in enumerate(results):
        np.testing.assert_array_equal(r["y"], xs[i] * 2)
        assert r["n"].shape == (1, 1) and r["n"][0, 0] == 3 * i


async def test_max_batch_size_and_shapes_limit_merging():
    calls = []
    b = Batcher(recording_model(calls), max_batch_size=4, inline=True)
    b.start()
    futs = [b.submit({"x": np.ones((1, 3), np.float32)}) for _ in range(6)]
    futs.append(b.submit({"x": np.ones((2, 5), np.float32)}))  # another shape: its own batch
    futs.append(b.submit({"x": np.ones((9, 3), np.float32)}))  # bigger than max: runs alone
    await asyncio.gather(*futs)
    await b.close()
    assert sorted(calls) == sorted([4, 2, 2, 9])


async def test_no_batching_runs_one_request_per_call():
    calls = []
    b = Batcher(recording_model(calls), max_batch_size=1, inline=False, instances=2)
    b.start()
    await asyncio.gather(*[b.submit({"x": np.ones((1, 3), np.float32)}) for _ in range(5)])
    await b.close()
    assert calls == [1] * 5


async def test_a_bad_request_fails_alone_in_a_merged_batch():
    calls = []
    b = Batcher(recording_model(calls), max_batch_size=8, inline=True)
    b.start()
    good = [b.submit({"x": np.ones((1, 3), np.float32)}) for _ in range(3)]
    bad = b.submit({"x": -np.ones((1, 3), np.float32)})
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    await b.close()
    assert all(isinstance(r, dict) for r in results[:3])
    assert isinstance(results[3], InputError)
    assert calls[0] == 4  # tried merged first, then one by one


async def test_outputs_without_a_batch_axis_run_each_request_alone():
    calls = []

    def run(feed):
        calls.append(feed["x"].shape[0])
        return {"y": np.zeros(3)}

    b = Batcher(run, max_batch_size=8, inline=True)
    b.start()
    results = await asyncio.gather(
        *[b.submit({"x": np.ones((1, 3))}) for _ in range(2)], return_exceptions=True
    )
    await b.close()
    assert calls == [2, 1, 1]  # merged, not splittable, so each ran alone
    assert all(isinstance(r, dict) and r["y"].shape == (3,) for r in results)


async def test_full_queue_is_refused_at_once_and_cancelled_work_is_skipped():
    calls = []
    b = Batcher(recording_model(calls), max_batch_size=1, max_queue_size=2, inline=True)
    b.start()
    f1 = b.submit({"x": np.ones((1, 3), np.float32)})
    f2 = b.submit({"x": np.ones((1, 3), np.float32)})
    with pytest.raises(QueueFullError):
        b.submit({"x": np.ones((1, 3), np.float32)})
    f2.cancel()  # a client that went away before its turn
    await f1
    await asyncio.sleep(0.01)
    await b.close()
    assert calls == [1]


async def test_queue_delay_waits_for_company():
    calls = []
    b = Batcher(recording_model(calls), max_batch_size=4, max_queue_delay_s=0.05, inline=False)
    b.start()
    f1 = b.submit({"x": np.ones((1, 3), np.float32)})
    await asyncio.sleep(0.01)
    f2 = b.submit({"x": np.ones((1, 3), np.float32)})
    await asyncio.gather(f1, f2)
    await b.close()
    assert calls == [2]


@pytest.mark.parametrize("inline", [True, False])
async def test_close_drains_queued_requests(inline):
    calls = []
    b = Batcher(recording_model(calls), max_batch_size=2, inline=inline)
    b.start()
    futs = [b.submit({"x": np.ones((1, 3), np.float32)}) for _ in range(5)]
    await b.close()
    assert all(f.done() and not f.exception() for f in futs)
    assert sum(calls) == 5
