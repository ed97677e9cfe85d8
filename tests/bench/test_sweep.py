"""In-process sweeps: result structure, ratios against the first model, interleaving recorded,
inputs from data or the signature, errors for dims that cannot work."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from modelport.bench import LatencyConfig, SweepConfig, bench_models
from modelport.bench.sweep import make_feed
from modelport.errors import UsageError
from modelport.signature import Signature, TensorSpec

FAST = LatencyConfig(warmup=1, repeats=4, block_ms=0)  # one run per turn: exact counts


def test_two_models_two_batch_sizes(tiny_onnx, tmp_path):
    other = tmp_path / "other.onnx"
    shutil.copy(tiny_onnx, other)
    cfg = SweepConfig(batch_sizes=(1, 4), threads=(1,), latency=FAST)
    d = bench_models([tiny_onnx, other], cfg).to_dict()

    assert d["kind"] == "inprocess"
    assert [v["name"] for v in d["variants"]] == ["tiny", "other"]
    assert [(r["variant"], r["batch_size"]) for r in d["rows"]] == [
        ("tiny", 1), ("other", 1), ("tiny", 4), ("other", 4)]  # fmt: skip
    for r in d["rows"]:
        assert r["runs"] == 4 and r["threads"] == 1 and r["provider"] == "cpu"
        assert r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["throughput_items_s"] == pytest.approx(r["batch_size"] / (r["p50_ms"] / 1000))
        assert r["load_s"] > 0 and r["peak_rss_bytes"] > 0 and r["size_bytes"] > 0
    first = [r for r in d["rows"] if r["variant"] == "tiny"]
    assert all(r["speedup_vs_first"] == 1.0 and r["size_ratio_vs_first"] == 1.0 for r in first)
    for base, r in zip(d["rows"][::2], d["rows"][1::2], strict=True):
        assert r["speedup_vs_first"] == pytest.approx(base["p50_ms"] / r["p50_ms"])
    assert [(g["batch_size"], g["rounds"]) for g in d["groups"]] == [(1, 4), (4, 4)]
    assert d["groups"][0]["order"] == ["tiny", "other", "other", "tiny"] * 2
    assert d["groups"][0]["blocks"] == {"tiny": 1, "other": 1}
    assert [(x["variant"], x["threads"]) for x in d["loads"]] == [("tiny", 1), ("other", 1)]
    assert list(d["config"]["batch_sizes"]) == [1, 4]
    assert d["machine"]["cpu_count"] >= 1


def test_same_name_twice_and_thread_sweep(tiny_onnx):
    cfg = SweepConfig(batch_sizes=(2,), threads=(1, 2), latency=FAST)
    d = bench_models([tiny_onnx, tiny_onnx], cfg).to_dict()
    assert [r["variant"] for r in d["rows"]] == ["tiny", "tiny#2"] * 2
    assert [r["threads"] for r in d["rows"]] == [1, 1, 2, 2]
    assert len(d["loads"]) == 4 and len(d["groups"]) == 2


def test_data_is_cut_or_tiled_to_the_batch(tiny_onnx, tmp_path):
    x = np.arange(12, dtype=np.float64).reshape(3, 4)  # float64 is cast to the model's float32
    np.savez(tmp_path / "x.npz", x=x)
    d = bench_models([tiny_onnx], SweepConfig(batch_sizes=(2, 5), latency=FAST,
                                              data=str(tmp_path / "x.npz"))).to_dict()  # fmt: skip
    assert [r["batch_size"] for r in d["rows"]] == [2, 5]
    sig = Signature((TensorSpec("x", "float32", ("batch", 4)),))
    feed = make_feed(sig, 5, data={"x": x.astype(np.float32)})
    assert feed["x"].shape == (5, 4)
    np.testing.assert_array_equal(feed["x"][3:], x[:2])


def test_generated_inputs_take_dims_by_name():
    sig = Signature((TensorSpec("ids", "int64", ("batch", "sequence")),
                     TensorSpec("mask", "int64", ("batch", "sequence"))))  # fmt: skip
    feed = make_feed(sig, 3, {"sequence": 7})
    assert feed["ids"].shape == (3, 7) and feed["mask"].shape == (3, 7)


def test_dims_that_cannot_work(tiny_onnx, tmp_path):
    with pytest.raises(UsageError, match="no input has a symbolic dim 'sequence'"):
        bench_models([tiny_onnx], SweepConfig(dims=(("sequence", 8),), latency=FAST))
    with pytest.raises(UsageError, match="batch dim"):
        bench_models([tiny_onnx], SweepConfig(dims=(("batch", 8),), latency=FAST))
    with pytest.raises(UsageError, match="batch_sizes"):
        SweepConfig(batch_sizes=(0,))
    with pytest.raises(UsageError, match="at least one"):
        bench_models([], SweepConfig())


def test_fixed_batch_model_is_refused_other_batch_sizes(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "fixed.onnx")
    with pytest.raises(UsageError, match="fixed batch size of 2"):
        bench_models([tmp_path / "fixed.onnx"], SweepConfig(batch_sizes=(1,), latency=FAST))
    d = bench_models([tmp_path / "fixed.onnx"], SweepConfig(batch_sizes=(2,), latency=FAST))
    assert d.rows[0]["batch_size"] == 2


@pytest.mark.slow
def test_real_model_package(digits_package):
    """The trained digits CNN package, benched against itself: real sessions, real sizes."""
    d = bench_models([digits_package.path, digits_package.model_path],
                     SweepConfig(batch_sizes=(1, 8), threads=(1,), latency=FAST)).to_dict()  # fmt: skip
    assert len(d["rows"]) == 4
    assert all(r["size_ratio_vs_first"] == 1.0 for r in d["rows"])
    assert d["loads"][0]["grown_bytes"] >= 0
