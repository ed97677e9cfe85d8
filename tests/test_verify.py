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


def _even_rows_model():
    """y = concat(x[:, :, 0::2], x[:, :, 1::2]) on the channel axis: an odd H has no parity (the
    two halves differ in size and Concat refuses), as a detector refuses sizes not /32."""
    from onnx import TensorProto, helper

    def const(name, v):
        return helper.make_node(
            "Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64, [1], [v])
        )

    nodes = [
        const("ax", 2), const("s0", 0), const("s1", 1), const("end", 1 << 30), const("st", 2),
        helper.make_node("Slice", ["x", "s0", "end", "ax", "st"], ["even"]),
        helper.make_node("Slice", ["x", "s1", "end", "ax", "st"], ["odd"]),
        helper.make_node("Concat", ["even", "odd"], ["y"], axis=1),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "even_rows",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "h", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6, "h2", 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_sizes_the_model_itself_refuses_are_skipped_not_failed(tmp_path):
    """Verifying an imported ONNX file: a generated size its own reference cannot run either is
    a property of the model (skipped, with a note); a size only the converted model fails on is
    still a failure."""
    import onnx

    from modelport.convert import ConvertConfig, Source, convert

    onnx.save(_even_rows_model(), tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 4)).astype(np.float32)
    pkg = convert(
        Source.onnx(str(tmp_path / "m.onnx")), tmp_path / "pkg", ConvertConfig(example={"x": x})
    ).package
    report = verify_package(pkg)
    skipped = [c for c in report.cases if c.skipped]
    assert report.passed, report.failures()
    assert skipped and all(c.input_shapes["x"][2] % 2 for c in skipped)  # h=17: odd
    assert all(not c.input_shapes["x"][2] % 2 for c in report.cases if c.outputs)
    assert any("skipped: the model refuses those sizes" in n for n in report.notes)

    def even_reference(feed):  # a source that runs every size: the failure is the conversion's
        v = feed["x"]
        h = v.shape[2] - v.shape[2] % 2
        return [np.concatenate([v[:, :, 0:h:2], v[:, :, 1:h:2]], axis=1)]

    strict = verify_model(str(pkg.model_path), even_reference, {"x": x})
    assert not strict.passed and any("ONNX Runtime failed" in f for f in strict.failures())


def test_a_model_with_unbatched_state_verifies_without_a_source(tmp_path):
    """A recurrent step (x [N, 4] with a state h [1, 4] -> y [N, 4], hn [1, 4]) is not batched on
    axis 0: verify runs its feeds whole instead of stacking rows of the state."""
    import onnx
    from onnx import TensorProto, helper

    from modelport.convert import Source, convert

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "h"], ["y"]), helper.make_node("Add", ["h", "h"], ["hn"])],
        "step",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4]),
            helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 4]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4]),
            helper.make_tensor_value_info("hn", TensorProto.FLOAT, [1, 4]),
        ],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "s.onnx"
    )
    pkg = convert(Source.onnx(str(tmp_path / "s.onnx")), tmp_path / "pkg").package
    report = verify_package(pkg)
    assert report.passed, report.failures()
    assert any(c.input_shapes["x"][0] > 1 for c in report.cases if c.outputs)
