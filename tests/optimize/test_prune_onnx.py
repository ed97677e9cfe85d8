"""Pruning ONNX packages: magnitude on any model's initializers, structured on plain chains."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelport.errors import OptimizationError, UsageError
from modelport.optimize.prune import PruneConfig, prune
from modelport.optimize.prune.onnx import find_layers
from modelport.optimize.report import OptimizeReport
from modelport.package import ModelPackage, file_sha256
from modelport.runtime import make_session, run_session

FAST = {"latency_repeats": 3}


def _layer_shapes(pkg: ModelPackage) -> dict[str, list[int]]:
    model = pkg.load_onnx()
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    return {layer.name: inits[layer.weight] for layer in find_layers(model)}


def _save(tmp_path, nodes, inits, in_shape, out_shape, name="m"):
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return path


def test_magnitude_reaches_sparsity_and_only_compresses(digits_package, digits_data, tmp_path):
    _, _, x_test, y_test = digits_data
    sha = file_sha256(digits_package.model_path)
    r = prune(
        digits_package,
        tmp_path / "sparse",
        PruneConfig.magnitude(0.8, **FAST),
        eval_data={"x": x_test},
        labels=y_test,
    )
    rows = {row["name"]: row for row in r.report.details["layers"]}
    assert set(rows) == {"features.0", "features.3", "head.1", "head.3"}
    for name in ("features.0", "features.3", "head.1"):
        assert rows[name]["pruned"] and rows[name]["sparsity"] == pytest.approx(0.8, abs=0.01)
        assert rows[name]["shape_after"] == rows[name]["shape_before"]
    assert rows["head.3"]["pruned"] is False and rows["head.3"]["sparsity"] == 0.0  # head excluded
    assert r.report.details["global_sparsity"] == pytest.approx(0.8, abs=0.01)
    size = r.report.details["size_bytes"]
    assert size["raw_after"] == pytest.approx(size["raw_before"], rel=0.01)  # zeros still stored
    assert size["gzip_after"] < 0.5 * size["gzip_before"]  # ...but they compress
    assert r.report.details["params"]["after"] == r.report.details["params"]["before"]
    assert [row["batch_size"] for row in r.report.latency] == [1, 8]
    assert r.report.size_before == size["raw_before"] and r.report.size_after == size["raw_after"]
    assert "dense" in r.report.notes[0] and "do" in r.report.notes[0]
    # the reported accuracies are those of the two models on the eval data, recomputed here
    from modelport.runtime import make_session, run_session

    for key, model in (("before", digits_package.model_path), ("after", r.package.model_path)):
        logits = run_session(make_session(model), {"x": x_test})["output"]
        want = float(np.mean(np.argmax(logits, axis=1) == y_test))
        assert r.report.accuracy[key] == pytest.approx(want, abs=1e-9)
    assert r.report.accuracy["before"] > 0.95
    # the same report type and units as quantize and graph: drops are fractions
    assert isinstance(r.report, OptimizeReport) and r.report.step == "prune"
    acc = r.report.accuracy
    assert acc["drop"] == pytest.approx(acc["before"] - acc["after"])
    assert r.report.metric["drop"] == acc["drop"] and r.report.eval_source == "given data"
    assert "top1_agreement" in r.report.fidelity["output"]
    # the package: history holds the report, samples kept, parent untouched
    pkg = ModelPackage.load(tmp_path / "sparse")
    step = pkg.history[-1]
    assert (
        step["step"] == "prune"
        and step["report"]["details"]["global_sparsity"] == r.report.details["global_sparsity"]
    )
    assert pkg.samples() is not None
    assert file_sha256(digits_package.model_path) == sha
    w = numpy_helper.to_array(
        next(i for i in pkg.load_onnx().graph.initializer if i.name == "head.1.weight")
    )
    assert np.mean(w == 0) == pytest.approx(0.8, abs=0.01)


def test_magnitude_global_scope(digits_package, tmp_path):
    r = prune(digits_package, tmp_path / "g", PruneConfig.magnitude(0.6, scope="global", **FAST))
    assert r.report.details["global_sparsity"] == pytest.approx(0.6, abs=0.005)
    per_layer = [row["sparsity"] for row in r.report.details["layers"] if row["pruned"]]
    assert max(per_layer) - min(per_layer) > 0.05  # one threshold, so layers differ
    assert any("no eval data" in n for n in r.report.notes)


def test_structured_digits_cnn_shrinks_channels(digits_package, digits_data, tmp_path):
    _, _, x_test, y_test = digits_data
    r = prune(
        digits_package,
        tmp_path / "half",
        PruneConfig.structured(0.5, **FAST),
        eval_data={"x": x_test},
        labels=y_test,
    )
    shapes = _layer_shapes(ModelPackage.load(tmp_path / "half"))
    assert shapes["features.0"] == [16, 1, 3, 3]
    assert shapes["features.3"] == [32, 16, 3, 3]
    assert shapes["head.1"] == [32, 512]  # flatten: 32 channels x 4 x 4 features
    assert shapes["head.3"] == [10, 32]
    assert r.report.details["params"]["ratio"] > 3.5
    assert (
        r.report.details["size_bytes"]["raw_after"]
        < r.report.details["size_bytes"]["raw_before"] / 3
    )
    pkg = ModelPackage.load(tmp_path / "half")
    out = run_session(make_session(str(pkg.model_path)), {"x": x_test[:5]})
    assert out["output"].shape == (5, 10)
    assert r.report.fidelity["output"]["top1_agreement"] > 0.3


def test_structured_keeps_the_output_layer_even_with_the_head_included(tiny_onnx, tmp_path):
    prune(str(tiny_onnx), tmp_path / "h", PruneConfig.structured(0.5, exclude_head=False, **FAST))
    dims = {
        i.name: list(i.dims)
        for i in ModelPackage.load(tmp_path / "h").load_onnx().graph.initializer
    }
    assert dims["w2"] == [4, 3]  # 3 outputs kept, inputs follow the pruned hidden layer


def test_structured_mlp_chain(tiny_onnx, tmp_path):
    r = prune(
        str(tiny_onnx), tmp_path / "mlp", PruneConfig.structured(0.5, importance="l2", **FAST)
    )
    model = ModelPackage.load(tmp_path / "mlp").load_onnx()
    dims = {i.name: list(i.dims) for i in model.graph.initializer}
    assert dims == {"w1": [4, 4], "b1": [4], "w2": [4, 3]}
    # the kept hidden units are those with the largest L2 norm of their w1 column
    w1 = numpy_helper.to_array(onnx.load(tiny_onnx).graph.initializer[0])
    kept = np.sort(np.argsort(-np.linalg.norm(w1, axis=0))[:4])
    got = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "w1"))
    np.testing.assert_array_equal(got, w1[:, kept])
    assert r.report.details["params"]["after"] == 4 * 4 + 4 + 4 * 3


def test_structured_conv_bn_chain(tmp_path):
    rng = np.random.default_rng(0)
    c = 8
    inits = {
        "w1": rng.standard_normal((c, 1, 3, 3)),
        "s": rng.random(c) + 0.5,
        "b": rng.standard_normal(c),
        "m": rng.standard_normal(c),
        "v": rng.random(c) + 0.5,
        "w2": rng.standard_normal((c, c, 3, 3)),
        "k": rng.standard_normal((c, 1, 1)),
        "wf": rng.standard_normal((c * 16, 5)),
        "shape": np.array([-1, c * 16]),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "s", "b", "m", "v"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c2", "k"], ["c3"]),
        helper.make_node("MaxPool", ["c3"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Reshape", ["p", "shape"], ["f"]),
        helper.make_node("MatMul", ["f", "wf"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "convbn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])],
        [
            numpy_helper.from_array(v.astype(np.int64 if k == "shape" else np.float32), k)
            for k, v in inits.items()
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "convbn.onnx")
    prune(str(tmp_path / "convbn.onnx"), tmp_path / "out", PruneConfig.structured(0.5, **FAST))
    pruned = ModelPackage.load(tmp_path / "out").load_onnx()
    dims = {i.name: list(i.dims) for i in pruned.graph.initializer}
    assert dims["w1"] == [4, 1, 3, 3] and dims["s"] == [4] and dims["v"] == [4]
    assert dims["w2"] == [4, 4, 3, 3] and dims["k"] == [4, 1, 1] and dims["wf"] == [64, 5]
    shape = numpy_helper.to_array(next(i for i in pruned.graph.initializer if i.name == "shape"))
    assert shape.tolist() == [-1, 64]
    y = run_session(make_session(pruned), {"x": np.ones((3, 1, 8, 8), np.float32)})["y"]
    assert y.shape == (3, 5)


def _residual_mlp(tmp_path):
    rng = np.random.default_rng(0)
    inits = {
        "w1": rng.standard_normal((4, 8)),
        "w2": rng.standard_normal((4, 8)),
        "w3": rng.standard_normal((8, 3)),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["a"], name="mm1"),
        helper.make_node("MatMul", ["x", "w2"], ["b"], name="mm2"),
        helper.make_node("Add", ["a", "b"], ["s"], name="residual_add"),
        helper.make_node("MatMul", ["s", "w3"], ["y"], name="mm3"),
    ]
    return _save(tmp_path, nodes, inits, ["batch", 4], ["batch", 3], "residual")


def test_structured_onnx_names_the_blocking_op(tmp_path):
    path = _residual_mlp(tmp_path)
    with pytest.raises(OptimizationError) as exc:
        prune(str(path), tmp_path / "out", PruneConfig.structured(0.5, **FAST))
    assert "op Add 'residual_add'" in str(exc.value) and exc.value.op == "Add"
    assert exc.value.layer == "w1"
    assert not (tmp_path / "out").exists()
    # magnitude pruning works on the same graph
    r = prune(str(path), tmp_path / "mag", PruneConfig.magnitude(0.5, **FAST))
    assert r.report.details["global_sparsity"] == pytest.approx(0.5, abs=0.02)


def test_structured_onnx_rejects_grouped_conv(tmp_path):
    rng = np.random.default_rng(0)
    inits = {
        "w1": rng.standard_normal((4, 1, 3, 3)),
        "w2": rng.standard_normal((4, 2, 3, 3)),
        "w3": rng.standard_normal((4, 3)),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], name="c1"),
        helper.make_node("Conv", ["a", "w2"], ["b"], pads=[1, 1, 1, 1], group=2, name="grouped"),
        helper.make_node("GlobalAveragePool", ["b"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "w3"], ["y"]),
    ]
    path = _save(tmp_path, nodes, inits, ["batch", 1, 8, 8], ["batch", 3], "grouped")
    with pytest.raises(OptimizationError, match="grouped convolution") as exc:
        prune(str(path), tmp_path / "out", PruneConfig.structured(0.5, **FAST))
    # both blocked layers are named in one error, with the excludes that get past them
    assert exc.value.layer == "w1" and "'w2'" in str(exc.value)
    assert "--exclude w1 --exclude w2" in str(exc.value)


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, float("nan")])
def test_bad_sparsity(bad):
    with pytest.raises(UsageError, match=r"outside \[0, 1\)"):
        PruneConfig.magnitude(bad)


def test_unknown_layer_lists_the_valid_ones(digits_package, tmp_path):
    with pytest.raises(UsageError) as exc:
        prune(digits_package, tmp_path / "x", PruneConfig.magnitude(0.5, exclude=("nope",), **FAST))
    assert "'nope'" in str(exc.value) and "features.3" in str(exc.value)


def test_exclude_leaves_a_layer_alone(digits_package, tmp_path):
    r = prune(
        digits_package, tmp_path / "x", PruneConfig.magnitude(0.5, exclude=("features.0",), **FAST)
    )
    rows = {row["name"]: row for row in r.report.details["layers"]}
    assert rows["features.0"]["sparsity"] == 0.0 and rows["features.3"][
        "sparsity"
    ] == pytest.approx(0.5, abs=0.01)
    assert r.report.details["excluded"] == ["features.0", "head.3"]
    json.dumps(r.report.to_dict())  # the report is JSON-ready


def test_finetune_needs_a_torch_source(digits_package, tmp_path):
    with pytest.raises(UsageError, match="PyTorch"):
        prune(digits_package, tmp_path / "x", PruneConfig.magnitude(0.5), finetune=lambda m: m)


def test_labels_must_match_eval_rows(digits_package, digits_data, tmp_path):
    from modelport.errors import InputError

    _, _, x_test, y_test = digits_data
    with pytest.raises(InputError, match="359 labels for 360 eval rows"):
        prune(
            digits_package,
            tmp_path / "x",
            PruneConfig.magnitude(0.5, **FAST),
            eval_data={"x": x_test},
            labels=y_test[:-1],
        )


def test_structured_global_scope_and_round_to(digits_package, tmp_path):
    r = prune(digits_package, tmp_path / "g", PruneConfig.structured(0.5, scope="global", **FAST))
    rows = {row["name"]: row for row in r.report.details["layers"] if row["pruned"]}
    kept = {n: row["shape_after"][0] for n, row in rows.items()}
    total_before = sum(row["shape_before"][0] for row in rows.values())
    assert sum(kept.values()) == pytest.approx(total_before * 0.5, abs=1)  # half of all channels
    assert all(k >= 1 for k in kept.values())
    r = prune(digits_package, tmp_path / "r", PruneConfig.structured(0.6, round_to=8, **FAST))
    assert all(
        row["shape_after"][0] % 8 == 0 for row in r.report.details["layers"] if row["pruned"]
    )


def test_prune_reports_its_phases(tiny_onnx, tmp_path):
    from modelport.progress import Event

    events: list[Event] = []
    prune(
        str(tiny_onnx), tmp_path / "p", PruneConfig.magnitude(0.5, **FAST), progress=events.append
    )
    started = [(e.phase, e.detail) for e in events if e.state == "start"]
    assert started == [("prune", "magnitude"), ("check", ""), ("measure", ""), ("write", "")]
    assert [e.state for e in events if e.state != "start"] == ["end"] * 4
