"""Interleaved in-process latency: the order runs happen in, compatibility of compare_latency,
and memory readings. No timing assertions."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.bench import LatencyConfig, compare_latency, interleave, measure_session
from modelport.bench.memory import measure_memory, peak_rss_bytes, reset_peak, rss_bytes
from modelport.errors import UsageError


def test_interleave_alternates_the_order_and_records_it():
    calls: list[str] = []
    runners = [(n, lambda n=n: calls.append(n)) for n in ("a", "b", "c")]
    run = interleave(runners, LatencyConfig(warmup=2, repeats=4, block_ms=0))

    assert run.blocks == {"a": 1, "b": 1, "c": 1}
    assert calls[:6] == ["a", "b", "c"] * 2  # warm-up rounds, not recorded
    assert run.order == ["a", "b", "c", "c", "b", "a"] * 2
    assert calls[6:] == run.order
    assert run.rounds == 4
    assert {n: len(t) for n, t in run.times_ms.items()} == {"a": 4, "b": 4, "c": 4}
    assert all(t >= 0 for ts in run.times_ms.values() for t in ts)


def test_interleave_runs_sub_block_models_in_blocks(monkeypatch):
    """A model faster than block_ms runs ~block_ms of consecutive calls per turn, each timed on
    its own; a slower one runs once per turn. A fake clock makes the durations exact."""
    import modelport.runtime.latency as latency

    clock = [0.0]
    monkeypatch.setattr(latency.time, "perf_counter", lambda: clock[0])
    calls: list[str] = []

    def runner(name: str, ms: float):
        def run() -> None:
            calls.append(name)
            clock[0] += ms / 1000.0

        return (name, run)

    runners = [runner("fast", 0.5), runner("slow", 30.0), runner("mid", 4.0)]
    run = interleave(runners, LatencyConfig(warmup=3, repeats=5, block_ms=20))

    assert run.blocks == {"fast": 40, "slow": 1, "mid": 5}
    # at least MIN_BLOCK_ROUNDS turns each, even though 'fast' had its 5 runs after one turn
    assert run.rounds == latency.MIN_BLOCK_ROUNDS
    assert {n: len(t) for n, t in run.times_ms.items()} == {
        "fast": 40 * run.rounds, "slow": run.rounds, "mid": 5 * run.rounds,
    }  # fmt: skip
    assert run.times_ms["fast"][:3] == pytest.approx([0.5, 0.5, 0.5])
    # turns alternate direction; every block is consecutive
    first_round = ["fast"] * 40 + ["slow"] + ["mid"] * 5
    assert calls[9:][: len(first_round)] == first_round
    assert calls[9 + len(first_round) :][:6] == ["mid"] * 5 + ["slow"]


def test_interleave_min_seconds_and_errors():
    run = interleave([("a", lambda: None)], LatencyConfig(warmup=0, repeats=1, min_seconds=0.01))
    assert run.rounds > 1 and len(run.times_ms["a"]) == run.rounds
    assert LatencyConfig.timed(2.0).min_seconds == 2.0
    with pytest.raises(UsageError, match="unique"):
        interleave([("a", lambda: None), ("a", lambda: None)])
    with pytest.raises(UsageError):
        LatencyConfig(repeats=0)
    with pytest.raises(UsageError):
        LatencyConfig(min_seconds=-1)
    with pytest.raises(UsageError):
        LatencyConfig(block_ms=-1)


def test_compare_latency_keeps_its_api(tiny_onnx):
    from modelport.runtime import SessionConfig, make_session

    s1 = make_session(tiny_onnx, SessionConfig(intra_op_threads=1))
    s2 = make_session(tiny_onnx, SessionConfig(intra_op_threads=1))
    feed = {"x": np.ones((3, 4), np.float32)}
    stats = compare_latency({"a": s1, "b": s2}, feed, LatencyConfig(warmup=1, repeats=5))
    assert [s.name for s in stats] == ["a", "b"]
    assert all(s.batch_size == 3 and len(s.times_ms) >= 5 for s in stats)
    d = stats[0].to_dict()
    for key in (
        "name",
        "batch_size",
        "runs",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "mean_ms",
        "throughput_items_s",
    ):
        assert key in d
    assert d["p50_ms"] <= d["p99_ms"]
    assert d["throughput_items_s"] == pytest.approx(d["batch_size"] * 1000.0 / d["p50_ms"])
    # pairs and per-model feeds, as before
    stats = compare_latency([("a", s1), ("b", s2)], {"a": feed, "b": {"x": feed["x"][:1]}},
                            LatencyConfig(warmup=0, repeats=2))  # fmt: skip
    assert [s.batch_size for s in stats] == [3, 1]
    assert measure_session(s1, feed, LatencyConfig(warmup=0, repeats=3), name="m").name == "m"


def test_memory_readings_follow_an_allocation():
    assert rss_bytes() > 0 and peak_rss_bytes() >= rss_bytes() * 0.5
    # Linux lets a process restart its peak RSS through /proc/self/clear_refs; elsewhere False
    import os

    clear_refs = "/proc/self/clear_refs"
    assert reset_peak() is (os.path.exists(clear_refs) and os.access(clear_refs, os.W_OK))
    keep, mem = measure_memory(lambda: np.ones(40_000_000 // 8))  # 40 MB, touched
    assert mem.grown >= 30_000_000
    assert mem.peak_extra >= mem.grown * 0.9
    transient, mem2 = measure_memory(lambda: float(np.ones(40_000_000 // 8).sum()))
    if mem2.peak_reset:  # the peak covers the 40 MB that were freed again
        assert mem2.peak_extra >= 30_000_000 and mem2.grown < 30_000_000
    assert set(mem.to_dict()) >= {"grown_bytes", "peak_extra_bytes", "peak_rss_bytes", "peak_reset"}
    del keep, transient
