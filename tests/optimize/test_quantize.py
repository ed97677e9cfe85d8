"""Quantization on the digits CNN and tiny in-memory models: structure, numbers, bad input."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import onnx
import pytest

from modelport.errors import InputError, OptimizationError, UsageError
from modelport.optimize.quantize import QuantizeConfig, quantize
from modelport.optimize.report import EvalConfig

NO_TIMING = EvalConfig(measure_latency=False)


def ops(pkg) -> Counter:
    return Counter(n.op_type for n in pkg.load_onnx().graph.node)


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory, digits_data):
    x_train, _, x_test, y_test = digits_data
    d = tmp_path_factory.mktemp("digits-data")
    np.savez(d / "calib.npz", x=x_train[:128])
    np.savez(d / "test.npz", x=x_test)
    np.save(d / "labels.npy", y_test)
    return d


@pytest.fixture(scope="module")
def static_result(tmp_path_factory, digits_package, digits_files):
    ev = EvalConfig(
        data=digits_files / "test.npz",
        labels=digits_files / "labels.npy",
        batch_sizes=(1, 8),
        repeats=3,
    )
    cfg = QuantizeConfig.static(digits_files / "calib.npz", evaluation=ev)
    out = tmp_path_factory.mktemp("q") / "static"
    return quantize(digits_package, out, cfg)


def test_static_is_qdq_and_keeps_accuracy(static_result, digits_package):
    pkg, report = static_result
    counts = ops(pkg)
    assert counts["QuantizeLinear"] >= 4 and counts["DequantizeLinear"] >= 8
    assert counts["Conv"] == 2  # QDQ format: the float op stays, between DQ and Q
    assert report.accuracy["before"] > 0.95
    assert report.accuracy["drop"] <= 0.01
    assert report.fidelity["output"]["top1_agreement"] >= 0.98
    assert report.size_ratio > 3.0
    assert report.details["calibration"]["samples"] == 128
    assert report.checker == "passed"
    # measured at both batch sizes, and the report is in the manifest
    assert [r["batch_size"] for r in report.latency] == [1, 8]
    step = pkg.history[-1]
    assert (
        step["step"] == "quantize"
        and step["report"]["accuracy"]["after"] == report.accuracy["after"]
    )
    assert pkg.manifest["parent"]["path"] == str(digits_package.path)


def test_inputs_are_not_modified(static_result, digits_package):
    from modelport.package import file_sha256

    want = digits_package.manifest["files"]["model.onnx"]["sha256"]
    assert file_sha256(digits_package.model_path) == want


def test_static_calibration_methods_and_iterable(digits_package, digits_data, tmp_path):
    x_train = digits_data[0]
    batches = ({"x": x_train[i : i + 16]} for i in range(0, 64, 16))  # a generator: streamed
    cfg = QuantizeConfig.static(batches, "percentile", evaluation=NO_TIMING)
    pkg, report = quantize(digits_package, tmp_path / "pct", cfg)
    assert report.details["calibration"] == {
        **report.details["calibration"],
        "method": "percentile",
        "samples": 64,
    }
    assert ops(pkg)["QuantizeLinear"] >= 4
    assert report.fidelity["output"]["top1_agreement"] >= 0.95


def test_dynamic_on_cnn_quantizes_only_the_dense_layers(digits_package, tmp_path):
    pkg, report = quantize(
        digits_package, tmp_path / "dyn", QuantizeConfig.dynamic(evaluation=NO_TIMING)
    )
    counts = ops(pkg)
    assert counts["MatMulInteger"] == 2 and counts["DynamicQuantizeLinear"] == 2
    assert "ConvInteger" not in counts  # slow / unsupported on CPU: convs stay float
    assert report.float_ops.get("Conv") == 2
    assert report.fidelity["output"]["top1_agreement"] >= 0.98
    # the user is told why the convolutions stayed float and what quantizes them
    assert any("2 convolution(s) stay float" in c and "--mode static" in c for c in report.choices)


def test_fp16_keeps_float32_io(digits_package, tmp_path):
    pkg, report = quantize(
        digits_package, tmp_path / "fp16", QuantizeConfig.fp16(evaluation=NO_TIMING)
    )
    model = pkg.load_onnx()
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    assert casts, "float32 inputs/outputs need Casts at the graph's edges"
    first = next(n for n in model.graph.node if "x" in n.input)
    assert first.op_type == "Cast"  # the input is cast to fp16 right away
    halves = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert len(halves) >= 4
    assert report.fidelity["output"]["cos_mean"] > 0.9999
    assert pkg.signature.inputs[0].dtype == "float32"


def test_partial_with_labels_keeps_nodes_until_budget(digits_package, digits_files, tmp_path):
    ev = EvalConfig(data=digits_files / "test.npz", measure_latency=False)
    cfg = QuantizeConfig.partial(max_drop=1e-6, evaluation=ev, partial_base="dynamic")
    pkg, report = quantize(digits_package, tmp_path / "partial", cfg)
    part = report.details["partial"]
    assert part["scheme"] == "dynamic"
    assert part["final_drop"] <= 1e-6
    kept = [k["name"] for k in part["kept"]]
    assert kept, "a budget this tight must keep some node float"
    counts = ops(pkg)
    assert counts["MatMulInteger"] == 2 - len(kept)  # the kept nodes stay float ops
    # with a budget this tight both dense layers stay float: the result is the float model, and
    # the report says so plainly instead of passing
    assert sorted(kept) == ["node_linear", "node_linear_1"]
    assert report.unchanged.startswith("no node was quantized: partial quantization kept all 2")
    assert report.size_ratio == pytest.approx(1.0, abs=0.01)
    assert not report.passed


def test_exclude_keeps_named_node_float(digits_package, tmp_path):
    pre = quantize(digits_package, tmp_path / "all", QuantizeConfig.dynamic(evaluation=NO_TIMING))[
        0
    ]
    names = [n.name for n in pre.load_onnx().graph.node if n.op_type == "MatMulInteger"]
    assert len(names) == 2
    # exclude the first Gemm/MatMul of the float graph by its name
    first_dense = next(
        n.name for n in digits_package.load_onnx().graph.node if n.op_type in ("Gemm", "MatMul")
    )
    pkg, _ = quantize(
        digits_package,
        tmp_path / "ex",
        QuantizeConfig.dynamic(exclude=(first_dense,), evaluation=NO_TIMING),
    )
    assert ops(pkg)["MatMulInteger"] == 1


# --- bad input -------------------------------------------------------------------------------


def test_already_quantized_is_refused(static_result, tmp_path):
    pkg, _ = static_result
    with pytest.raises(OptimizationError, match="already quantized"):
        quantize(pkg, tmp_path / "again", QuantizeConfig.dynamic(evaluation=NO_TIMING))


def test_calibration_with_wrong_name_names_the_input(digits_package, tmp_path):
    np.savez(tmp_path / "bad.npz", image=np.zeros((4, 1, 8, 8), np.float32))
    with pytest.raises(InputError, match="'x'|image"):
        quantize(digits_package, tmp_path / "o", QuantizeConfig.static(tmp_path / "bad.npz"))
    assert not (tmp_path / "o").exists()


def test_calibration_with_wrong_dtype_or_shape(digits_package, tmp_path):
    np.savez(tmp_path / "int.npz", x=np.zeros((4, 1, 8, 8), np.int64))
    with pytest.raises(InputError, match="x"):
        quantize(digits_package, tmp_path / "o1", QuantizeConfig.static(tmp_path / "int.npz"))
    np.savez(tmp_path / "shape.npz", x=np.zeros((4, 1, 9, 9), np.float32))
    with pytest.raises(InputError, match="x"):
        quantize(digits_package, tmp_path / "o2", QuantizeConfig.static(tmp_path / "shape.npz"))


def test_eval_data_mismatch_is_an_input_error(digits_package, tmp_path):
    np.savez(tmp_path / "ev.npz", pixels=np.zeros((4, 1, 8, 8), np.float32))
    cfg = QuantizeConfig.dynamic(
        evaluation=EvalConfig(data=tmp_path / "ev.npz", measure_latency=False)
    )
    with pytest.raises(InputError, match="x|pixels"):
        quantize(digits_package, tmp_path / "o", cfg)


def test_bad_data_fails_before_any_slow_step(digits_package, tmp_path, monkeypatch):
    """A wrong calibration or evaluation file is reported before pre-processing runs (which
    takes tens of seconds on a real model), not after it."""
    from modelport.optimize.quantize import core

    def slow_step(*args, **kwargs):
        raise AssertionError("pre-processing ran before the data was checked")

    monkeypatch.setattr(core, "preprocess", slow_step)
    np.savez(tmp_path / "bad.npz", image=np.zeros((4, 1, 8, 8), np.float32))
    with pytest.raises(InputError, match="image"):
        quantize(digits_package, tmp_path / "o1", QuantizeConfig.static(tmp_path / "bad.npz"))
    cfg = QuantizeConfig.dynamic(
        evaluation=EvalConfig(data=tmp_path / "bad.npz", measure_latency=False)
    )
    with pytest.raises(InputError, match="image"):
        quantize(digits_package, tmp_path / "o2", cfg)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_config_validation():
    with pytest.raises(UsageError, match="calibration"):
        QuantizeConfig(mode="static")
    with pytest.raises(UsageError, match="max_drop"):
        QuantizeConfig(mode="partial")
    with pytest.raises(UsageError, match="mode"):
        QuantizeConfig(mode="int4")
    with pytest.raises(UsageError, match="uint8"):
        QuantizeConfig.dynamic(activation_type="int8")
    with pytest.raises(UsageError, match="module:function"):
        EvalConfig(metric="nocolon")
    cfg = QuantizeConfig.dynamic()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.mode = "static"  # type: ignore[misc]


def test_existing_output_is_refused(digits_package, tmp_path):
    (tmp_path / "exists").mkdir()
    with pytest.raises(UsageError, match="already exists"):
        quantize(digits_package, tmp_path / "exists", QuantizeConfig.dynamic(evaluation=NO_TIMING))


def test_tiny_mlp_dynamic_and_custom_metric(tiny_onnx, tmp_path):
    calls = []

    def worst_abs(reference, outputs, feed):
        calls.append(len(feed["x"]))
        return 1.0 - float(np.max(np.abs(reference["y"] - outputs["y"])))

    ev = EvalConfig(metric=worst_abs, measure_latency=False)
    pkg, report = quantize(tiny_onnx, tmp_path / "tiny", QuantizeConfig.dynamic(evaluation=ev))
    assert ops(pkg)["MatMulInteger"] == 2
    assert report.metric["name"] == "worst_abs" and calls
    assert report.metric["drop"] < 0.5
    assert any("generated" in w or "samples" in w for w in report.warnings)  # no eval data given


def test_cli_quantize_static(digits_package, digits_files, tmp_path):
    import json

    from modelport.cli import main

    out = tmp_path / "cli"
    rc = main(
        [
            "quantize",
            str(digits_package.path),
            "-o",
            str(out),
            "--mode",
            "static",
            "--calibration",
            str(digits_files / "calib.npz"),
            "--eval",
            str(digits_files / "test.npz"),
            "--labels",
            str(digits_files / "labels.npy"),
            "--repeats",
            "2",
            "--json-file",
            str(tmp_path / "r.json"),
        ]
    )
    assert rc == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["accuracy"]["drop"] <= 0.01 and data["size_ratio"] > 3
    assert json.loads((out / "modelport.json").read_text())["history"][-1]["step"] == "quantize"
    # bad calibration data: usage/input error, exit code 2, nothing written
    np.savez(tmp_path / "bad.npz", y=np.zeros((2, 1, 8, 8), np.float32))
    rc = main(
        [
            "quantize",
            str(digits_package.path),
            "-o",
            str(tmp_path / "cli2"),
            "--mode",
            "static",
            "--calibration",
            str(tmp_path / "bad.npz"),
        ]
    )
    assert rc == 2 and not (tmp_path / "cli2").exists()


def test_calibration_streams_in_chunks(digits_package, digits_data, tmp_path):
    """Batches reach ONNX Runtime's calibrator a chunk at a time and ranges are merged."""
    from modelport.optimize.calibration import calibrate_ranges, iter_batches

    x = digits_data[0][:40]
    d = tmp_path / "calib"
    d.mkdir()
    for i in range(4):  # a directory of files, read one at a time
        np.savez(d / f"part{i}.npz", x=x[i * 10 : (i + 1) * 10])
    sig = digits_package.signature
    sizes = [len(b["x"]) for b in iter_batches(d, sig, batch_size=4, limit=30)]
    assert sum(sizes) == 30 and max(sizes) <= 4
    one, n1 = calibrate_ranges(
        digits_package.model_path, d, sig, batch_size=4, chunk=1, work_dir=tmp_path
    )
    all_, n2 = calibrate_ranges(
        digits_package.model_path, {"x": x}, sig, batch_size=4, chunk=100, work_dir=tmp_path
    )
    assert n1 == n2 == 40
    for name in all_:
        np.testing.assert_allclose(
            np.asarray(one[name].range_value, dtype=np.float64),
            np.asarray(all_[name].range_value, dtype=np.float64),
            rtol=1e-6,
        )


def test_partial_static_reverts_qdq_nodes(digits_package, digits_files, tmp_path):
    """Static-based partial: nodes are reverted to float inside ONNX Runtime's QDQ model."""
    ev = EvalConfig(data=digits_files / "test.npz", measure_latency=False)
    cfg = QuantizeConfig.partial(
        max_drop=1e-5, evaluation=ev, calibration=digits_files / "calib.npz"
    )
    pkg, report = quantize(digits_package, tmp_path / "pstatic", cfg)
    part = report.details["partial"]
    assert part["scheme"] == "static QDQ" and part["candidates"] >= 4
    assert part["drop_all_quantized"] > 1e-5  # the budget is tighter than full int8
    assert part["final_drop"] <= 1e-5
    kept = {k["name"] for k in part["kept"]}
    # one disagreeing image out of 360 is a drop of 0.0028: meeting 1e-5 keeps every node float,
    # and the report says that nothing was quantized instead of passing
    assert len(kept) == part["candidates"] == 6
    assert report.unchanged.startswith("no node was quantized: partial quantization kept all 6")
    assert not report.passed
    model = pkg.load_onnx()
    dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    for node in model.graph.node:
        if node.name in kept:  # a kept node reads no dequantized tensor
            assert not (set(node.input) & dq_out), node.name


def test_cli_partial_and_smoothing_option(digits_package, digits_files, tmp_path):
    from modelport.cli import main

    rc = main(
        [
            "quantize",
            str(digits_package.path),
            "-o",
            str(tmp_path / "p"),
            "--mode",
            "partial",
            "--partial-base",
            "dynamic",
            "--max-drop",
            "0.5",
            "--eval",
            str(digits_files / "test.npz"),
            "--no-latency",
        ]
    )
    assert rc == 0
    rc = main(["quantize", str(digits_package.path), "-o", str(tmp_path / "s"), "--smoothing", "x"])
    assert rc == 2 and not (tmp_path / "s").exists()
