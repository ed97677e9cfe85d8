from __future__ import annotations

import numpy as np

from modelport.package import ModelPackage
from modelport.signature import Signature, TensorSpec
from modelport.verify import VerifyConfig, compare_outputs, make_cases, verify_model, verify_package


def test_compare_outputs_counts_elements_outside_tolerance():
    ref = {"y": np.array([[1.0, 2.0, 3.0]], np.float32)}
    got = {"y": np.array([[1.0, 2.0005, 3.5]], np.float32)}
    (p,) = compare_outputs(got, ref, VerifyConfig(atol=1e-4, rtol=1e-3))
    assert p.mismatched == 1 and p.total == 3 and not p.passed
    assert abs(p.max_abs_diff - 0.5) < 1e-6
    (p,) = compare_outputs(got, ref, VerifyConfig(atol=0.6, rtol=0))
    assert p.passed


def test_compare_outputs_shape_and_missing():
    ref = {"y": np.zeros((2, 3)), "z": np.zeros(2)}
    res = {p.name: p for p in compare_outputs({"y": np.zeros((3, 2))}, ref, VerifyConfig())}
    assert not res["y"].passed and "shape" in res["y"].note
    assert not res["z"].passed and "missing" in res["z"].note


def test_per_output_tolerances():
    cfg = VerifyConfig(atol=0, rtol=0, output_tolerances={"y": (0.1, 0.0)})
    (p,) = compare_outputs({"y": np.array([1.05])}, {"y": np.array([1.0])}, cfg)
    assert p.passed


def test_make_cases_vary_batch_and_other_dims_within_integer_range():
    sig = Signature((TensorSpec("ids", "int64", ("batch", "sequence")),))
    example = {"ids": np.array([[3, 7, 9, 4]] * 2, np.int64)}
    cases = make_cases(
        sig, example, VerifyConfig(batch_sizes=(1, 4), dim_sizes={"sequence": (2, 9)})
    )
    shapes = {label: feed["ids"].shape for label, feed in cases}
    assert shapes["example"] == (2, 4)
    assert shapes["batch=1"] == (1, 4) and shapes["batch=4"] == (2 * 2, 4)
    assert shapes["sequence=9"] == (2, 9)
    for _, feed in cases:
        assert feed["ids"].min() >= 3 and feed["ids"].max() <= 9


def test_verify_model_against_numpy_reference(tiny_onnx):
    import onnx

    model = onnx.load(tiny_onnx)
    w = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}

    def reference(feed):
        return [np.maximum(feed["x"] @ w["w1"] + w["b1"], 0) @ w["w2"]]

    report = verify_model(model, reference, {"x": np.ones((2, 4), np.float32)})
    assert report.passed and report.checker == "passed"

    def wrong(feed):
        return [np.maximum(feed["x"] @ w["w1"], 0) @ w["w2"]]  # forgot the bias

    report = verify_model(model, wrong, {"x": np.ones((2, 4), np.float32)})
    assert not report.passed and "output 'y'" in report.failures()[0]


def test_verify_package_without_source_detects_tampering(tmp_path, tiny_onnx):
    from modelport.convert import ConvertConfig, Source, convert

    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    pkg = convert(
        Source.onnx(str(tiny_onnx)), tmp_path / "pkg", ConvertConfig(example={"x": x})
    ).package
    assert pkg.samples() is not None  # real inputs given: stored with the source's outputs
    assert verify_package(pkg).passed
    # change a weight after packaging: the stored source outputs and the sha256 both disagree
    import onnx

    model = onnx.load(pkg.model_path)
    arr = onnx.numpy_helper.to_array(model.graph.initializer[0]).copy() + 1.0
    model.graph.initializer[0].CopyFrom(
        onnx.numpy_helper.from_array(arr, model.graph.initializer[0].name)
    )
    onnx.save(model, pkg.model_path)
    report = verify_package(ModelPackage.load(tmp_path / "pkg"))
    assert not report.passed
    text = "\n".join(report.failures())
    assert "sha256" in text and "output 'y' at x[2, 4]" in text


def test_verify_derived_package_checks_consistency_not_source_outputs(tmp_path, tiny_onnx):
    import onnx

    from modelport.convert import ConvertConfig, Source, convert
    from modelport.package import derive_package

    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    parent = convert(
        Source.onnx(str(tiny_onnx)), tmp_path / "pkg", ConvertConfig(example={"x": x})
    ).package
    model = parent.load_onnx()
    arr = onnx.numpy_helper.to_array(model.graph.initializer[0]) * 0.5  # an "optimization"
    model.graph.initializer[0].CopyFrom(
        onnx.numpy_helper.from_array(arr, model.graph.initializer[0].name)
    )
    child = derive_package(parent, model, tmp_path / "child", {"step": "quantize"})
    report = verify_package(child)
    assert report.passed
    assert any("derived package (quantize)" in n for n in report.notes)
