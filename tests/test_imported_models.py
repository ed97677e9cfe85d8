"""ONNX files from other projects, imported without example inputs (``convert --onnx``), then
verified, quantized and benched on generated inputs: shapes of the kinds the trial met in pip
wheels (a text recognizer fixed at height 48, a VAD with a recurrent state and a scalar sample
rate, a model whose work sits in an If branch, a model shipped already int8). Every model is
built here with onnx.helper: nothing is downloaded."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelport.convert import Source, convert
from modelport.data import package_feed, recorded_dims, split_batches
from modelport.errors import InputError, OptimizationError
from modelport.optimize.quantize import QuantizeConfig, quantize
from modelport.optimize.report import EvalConfig
from modelport.verify import verify_package

OPSET = [helper.make_opsetid("", 17)]
FAST = EvalConfig(measure_latency=False)


def _save(graph, path, opset=OPSET):
    model = helper.make_model(graph, opset_imports=opset)
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


def _height_48_recognizer(path):
    """x [batch, 3, h, w] -> y [batch, 4]; h must be 48 (x + a [1, 1, 48, 1] bias), as a text
    recognizer's height is: the first generated size (224 x 224) is refused, 48 x 320 runs."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((1, 1, 48, 1)).astype(np.float32), "bias"),
        numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "w"),
    ]
    nodes = [
        helper.make_node("Add", ["x", "bias"], ["xb"]),
        helper.make_node("ReduceMean", ["xb"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "rec",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "h", "w_dim"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        inits,
    )
    return _save(graph, path, [helper.make_opsetid("", 13)])


def _vad_with_state_and_rate(path):
    """x [batch, samples], state [2, state_1, 4], sr [] (int64 scalar) -> y [batch, 4],
    stateN [2, state_1, 4]: the state's own dim must equal x's batch (a Concat), as in Silero
    VAD v5, so a feed of 2 rows of x with a 1-row state is refused."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((2, 4)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([0, 2], np.int64), "axes"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["h"], axes=[1], keepdims=1),
        helper.make_node("ReduceSum", ["state", "axes"], ["s"], keepdims=0),
        helper.make_node("Unsqueeze", ["s", "one"], ["s1"]),
        helper.make_node("Concat", ["h", "s1"], ["c"], axis=1),
        helper.make_node("MatMul", ["c", "w"], ["y0"]),
        helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["y0", "srf"], ["y"]),
        helper.make_node("Identity", ["state"], ["stateN"]),
    ]
    graph = helper.make_graph(
        nodes,
        "vad",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "samples"]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "state_1", 4]),
            helper.make_tensor_value_info("sr", TensorProto.INT64, []),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "state_1", 4]),
        ],
        inits,
    )
    return _save(graph, path)


def test_split_batches_passes_a_scalar_input_whole():
    feed = {"x": np.zeros((5, 3), np.float32), "sr": np.array(16000, np.int64)}
    parts = list(split_batches(feed, 2))
    assert [p["x"].shape[0] for p in parts] == [2, 2, 1]
    assert all(p["sr"].shape == () and int(p["sr"]) == 16000 for p in parts)


def test_a_model_that_takes_only_some_sizes_is_rerun_at_the_sizes_it_was_converted_at(tmp_path):
    """Before: convert found that 48 x 320 runs, but verify, bench and quantize generated
    224 x 224 again and failed with ONNX Runtime's Add error."""
    pkg = convert(
        Source.onnx(str(_height_48_recognizer(tmp_path / "rec.onnx"))), tmp_path / "rec"
    ).package
    assert recorded_dims(pkg)["h"] == 48
    feed, source = package_feed(pkg, batch=2)
    assert source == "generated inputs" and feed["x"].shape == (2, 3, 48, 320)

    report = verify_package(pkg)
    assert report.passed, report.failures()
    assert all(c.input_shapes["x"][2] == 48 for c in report.cases if c.label == "example")

    _, qreport = quantize(pkg, tmp_path / "rec-int8", QuantizeConfig(evaluation=FAST))
    assert qreport.eval_samples == 8 and qreport.details["quantized_ops"]

    from modelport.optimize.graph import GraphConfig, optimize_graph

    _, greport = optimize_graph(pkg, tmp_path / "rec-opt", GraphConfig(evaluation=FAST))
    assert greport.passed and greport.eval_samples == 8

    from modelport.bench.sweep import SweepConfig, bench_models
    from modelport.runtime.latency import LatencyConfig

    config = SweepConfig(batch_sizes=(1, 2), latency=LatencyConfig(warmup=1, repeats=2))
    result = bench_models([pkg.path], config)
    assert [r["batch_size"] for r in result.rows] == [1, 2]


def test_a_recurrent_model_with_a_scalar_input_verifies_and_quantizes(tmp_path):
    """Before: verify generated its example at batch 2 with the state at 1 row (ORT's Concat
    error), and quantize failed with IndexError slicing the 0-d sample rate."""
    pkg = convert(
        Source.onnx(str(_vad_with_state_and_rate(tmp_path / "vad.onnx"))), tmp_path / "vad"
    ).package
    report = verify_package(pkg)
    assert report.passed, report.failures()

    _, qreport = quantize(pkg, tmp_path / "vad-int8", QuantizeConfig(evaluation=FAST))
    assert qreport.details["quantized_ops"], qreport.unchanged
    assert qreport.eval_samples == 1 and qreport.fidelity  # was 2: the state's axis 0 (layers)


def test_calibration_data_the_model_refuses_is_an_input_error(tmp_path):
    """Before: static quantize of the VAD with 8 rows of x and a 1-row state in one .npz died with
    ONNX Runtime's own exception (exit 3, 'unexpected'); a directory of one-sample files works."""
    pkg = convert(
        Source.onnx(str(_vad_with_state_and_rate(tmp_path / "vad.onnx"))), tmp_path / "vad"
    ).package
    rng = np.random.default_rng(0)

    def sample(rows):
        return {
            "x": rng.standard_normal((rows, 64)).astype(np.float32),
            "state": rng.standard_normal((2, 1, 4)).astype(np.float32),
            "sr": np.array(16000, np.int64),  # a scalar first would have had no rows to count
        }

    np.savez(tmp_path / "calib.npz", **sample(8))
    with pytest.raises(InputError, match="rejected the calibration data.*one sample each"):
        quantize(pkg, tmp_path / "s8", QuantizeConfig.static(str(tmp_path / "calib.npz")))
    (tmp_path / "calib").mkdir()
    for i in range(4):
        np.savez(tmp_path / "calib" / f"{i}.npz", **{"sr": np.array(16000, np.int64), **sample(1)})
    config = dataclasses.replace(
        QuantizeConfig.static(str(tmp_path / "calib")), evaluation=FAST, max_drop=1.0
    )
    _, report = quantize(pkg, tmp_path / "s8-dir", config)
    assert report.details["quantized_ops"]


def _matmul_in_a_branch(path):
    """y = If(flag) then x @ W else x @ W2: the whole model sits in an If, as spox writes a
    sample-rate switch; ORT's quantizer leaves subgraphs alone."""
    rng = np.random.default_rng(0)

    def branch(name, seed):
        w = numpy_helper.from_array(
            np.random.default_rng(seed).standard_normal((4, 3)).astype(np.float32), f"w_{name}"
        )
        return helper.make_graph(
            [
                helper.make_node("Constant", [], [f"w_{name}"], value=w),
                helper.make_node("MatMul", ["x", f"w_{name}"], [f"y_{name}"]),
            ],
            name,
            [],
            [helper.make_tensor_value_info(f"y_{name}", TensorProto.FLOAT, ["batch", 3])],
        )

    thr = numpy_helper.from_array(np.array(rng.standard_normal(), np.float32), "thr")
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0),
        helper.make_node("Greater", ["m", "thr"], ["flag"]),
        helper.make_node(
            "If", ["flag"], ["y"], then_branch=branch("a", 1), else_branch=branch("b", 2)
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "branchy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [thr],
    )
    return _save(graph, path)


def test_a_model_whose_work_is_in_an_if_branch_is_told_so(tmp_path):
    """Before: 'the model has none of them (its ops: If x1)', although its branches hold MatMul."""
    pkg = convert(
        Source.onnx(str(_matmul_in_a_branch(tmp_path / "b.onnx"))), tmp_path / "b"
    ).package
    _, report = quantize(pkg, tmp_path / "b-int8", QuantizeConfig(evaluation=FAST))
    assert not report.passed
    assert "inside control-flow subgraphs (If x1 holding MatMul x2" in report.unchanged


def test_a_model_imported_already_int8_is_refused_without_pointing_at_a_parent(tiny_onnx, tmp_path):
    """Before: 'quantize the float model it came from instead (its package is named in this
    package's history/parent)' for a file that has no parent package."""
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(tiny_onnx), str(tmp_path / "int8.onnx"))
    pkg = convert(Source.onnx(str(tmp_path / "int8.onnx")), tmp_path / "int8").package
    with pytest.raises(OptimizationError, match="imported already quantized") as info:
        quantize(pkg, tmp_path / "again", QuantizeConfig())
    assert "history/parent" not in str(info.value)


def test_an_output_declared_at_the_wrong_rank_is_declared_as_the_model_returns_it(tmp_path):
    """Before: ddddocr's int8 OCR declares its output [1, seqlen] and returns [T, 1, classes];
    the package's signature (served metadata, Triton config) kept the wrong rank."""
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    graph = helper.make_graph(
        [helper.make_node("Unsqueeze", ["x", "axes"], ["y"])],
        "wrong_rank",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "seqlen"])],
        [axes],
    )
    model = helper.make_model(graph, opset_imports=OPSET)
    model.ir_version = 8
    onnx.save(model, tmp_path / "w.onnx")
    result = convert(Source.onnx(str(tmp_path / "w.onnx")), tmp_path / "w")
    (y,) = result.package.signature.outputs
    assert y.shape == ("batch", "y_1", "y_2")  # axis 0 then proven to follow the batch
    assert any("declared [1, 'seqlen'] but the model returns shape" in n for n in result.notes)
    assert verify_package(result.package).passed


def test_torchserve_target_runs_its_handler_on_a_recurrent_model(tmp_path):
    """Before: the .mar handler check generated 2 rows of x with a 1-row state and died with
    ONNX Runtime's exception (exit 3); now one row, and the scalar goes through the handler."""
    from modelport.deploy import package_for

    pkg = convert(
        Source.onnx(str(_vad_with_state_and_rate(tmp_path / "vad.onnx"))), tmp_path / "vad"
    ).package
    result = package_for(pkg, "torchserve", tmp_path / "store")
    check = " ".join(result.checks)
    assert "x [1, 512] float32" in check and "sr [] int64" in check


def test_a_recurrent_model_with_stored_samples_benches_and_keeps_its_rows(tmp_path):
    """Before: bench of the VAD converted with --example-inputs (its stored samples hold the 0-d
    sample rate) failed with "input 'sr' in the data has no sample axis", and eight rows asked
    of its stored samples tiled x to 8 rows beside a 1-row state."""
    from modelport.bench.sweep import SweepConfig, bench_models
    from modelport.runtime.latency import LatencyConfig

    rng = np.random.default_rng(0)
    example = {
        "x": rng.standard_normal((1, 512)).astype(np.float32),
        "state": rng.standard_normal((2, 1, 4)).astype(np.float32),
        "sr": np.array(16000, np.int64),
    }
    from modelport.convert import ConvertConfig

    pkg = convert(
        Source.onnx(str(_vad_with_state_and_rate(tmp_path / "vad.onnx"))),
        tmp_path / "vad",
        ConvertConfig(example=example),
    ).package
    assert pkg.samples() is not None
    feed, _ = package_feed(pkg, batch=8)
    assert feed["x"].shape == (1, 512) and feed["state"].shape == (2, 1, 4)

    config = SweepConfig(batch_sizes=(1,), latency=LatencyConfig(warmup=1, repeats=2))
    (row,) = bench_models([pkg.path], config).rows
    assert row["batch_size"] == 1


def _layernorm_model(opset=13):
    """x [batch, 8] -> LayerNorm written out (ReduceMean, Sub, Pow, ...): ORT's extended level
    fuses it into LayerNormalization, an ONNX op only from opset 17."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        numpy_helper.from_array(np.array(1e-5, np.float32), "eps"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "gamma"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "beta"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mu"], axes=[-1], keepdims=1),
        helper.make_node("Sub", ["x", "mu"], ["d"]),
        helper.make_node("Pow", ["d", "two"], ["d2"]),
        helper.make_node("ReduceMean", ["d2"], ["var"], axes=[-1], keepdims=1),
        helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["sd"]),
        helper.make_node("Div", ["d", "sd"], ["n"]),
        helper.make_node("Mul", ["n", "gamma"], ["g"]),
        helper.make_node("Add", ["g", "beta"], ["y"]),
    ]
    g = helper.make_graph(
        nodes,
        "ln",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def test_graph_optimize_of_an_old_opset_graph_that_ort_fuses_into_layernorm(tmp_path):
    """Before: optimize of PaddleOCR's recognizer (opset 12) failed the checker ('No Op
    registered for LayerNormalization with domain_version of 12') and wrote nothing."""
    from modelport.optimize.graph import GraphConfig, optimize_graph

    onnx.save(_layernorm_model(), tmp_path / "ln.onnx")
    pkg = convert(Source.onnx(str(tmp_path / "ln.onnx")), tmp_path / "ln").package
    new, report = optimize_graph(pkg, tmp_path / "ln-opt", GraphConfig(evaluation=FAST))
    assert report.checker == "passed" and report.passed
    assert any("converted from opset 13 to 17 first" in c for c in report.choices)
    assert sum("level extended" in c for c in report.choices) == 1
    model = new.load_onnx()
    assert [n.op_type for n in model.graph.node] == ["LayerNormalization"]


def test_weights_written_as_constant_nodes_can_be_pruned(tmp_path):
    """Before: paddle2onnx writes every weight as a Constant node, and prune said 'the model has
    no Conv, Gemm or MatMul layer with constant weights to prune' on the OCR classifier."""
    from modelport.optimize.prune import PruneConfig, prune

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((4, 16)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((16, 3)).astype(np.float32), "w2")
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["w1"], value=w1),
            helper.make_node("Constant", [], ["w2"], value=w2),
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["y"]),
        ],
        "paddle_like",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
    )
    pkg = convert(Source.onnx(str(_save(graph, tmp_path / "p.onnx"))), tmp_path / "p").package
    config = PruneConfig.magnitude(0.5, exclude_head=False, latency_repeats=2, max_drop=1.0)
    result = prune(pkg, tmp_path / "p-sparse", config)
    assert any("2 Constant nodes were turned into initializers" in n for n in result.report.notes)
    weights = {
        i.name: numpy_helper.to_array(i) for i in result.package.load_onnx().graph.initializer
    }
    assert (weights["w1"] == 0).mean() == pytest.approx(0.5)


def test_an_openvino_conversion_failure_says_which_ops_and_why():
    """Before: plan's table said 'OpenVINO cannot load the model: FrontEnd API failed with
    OpConversionFailure:' and nothing more for silero-vad (OpenVINO's message, as raised)."""
    from modelport.runtime.engines import _first_line

    text = (
        "Exception from src/inference/src/cpp/core.cpp:84:\n"
        "Check 'false' failed at src/frontends/common_translators/src/unconverted_ops_report.cpp:"
        "151:\nFrontEnd API failed with OpConversionFailure:\nModel wasn't fully converted. Failed "
        "operations detailed log:\n-- Conv-16 with a message:\nWhile validating ONNX node "
        "'<Node(Conv): If_0/Conv_output_0>': Check 'data.get_partial_shape().rank().is_static()' "
        "failed at src/frontends/onnx/frontend/src/op/conv.cpp:38:\nFrontEnd API failed with "
        "GeneralFailure:\nThe input data tensor's rank has to be known (static)\n\n"
        "Summary:\n-- Conversion is failed for: Conv-16, ReduceMean-16\n\n"
    )
    assert _first_line(RuntimeError(text)) == (
        "FrontEnd API failed with OpConversionFailure: Conversion is failed for: Conv-16, "
        "ReduceMean-16 (The input data tensor's rank has to be known (static))"
    )
    assert _first_line(RuntimeError("Exception from x.cpp:1:\nplain reason")) == "plain reason"


def test_plan_times_a_recurrent_model_with_a_scalar_input_on_its_feed_as_it_is(tmp_path):
    """Before: plan of silero-vad died with IndexError (exit 3) tiling the 0-d sample rate to
    the latency batch."""
    from modelport.plan.run import _latency_feed

    pkg = convert(
        Source.onnx(str(_vad_with_state_and_rate(tmp_path / "vad.onnx"))), tmp_path / "vad"
    ).package
    feed, _ = package_feed(pkg, batch=8)
    timed = _latency_feed(pkg, feed, 8, None)
    assert {k: v.shape for k, v in timed.items()} == {k: v.shape for k, v in feed.items()}


def test_nodes_left_out_of_order_around_if_branches_are_resorted():
    """ONNX Runtime's quantizer wrote Silero VAD's 16k op15 export with an If node moved after
    the If whose branch reads its output, so onnx.checker refused the result ('Nodes in a graph
    must be topologically sorted'). quantize now re-sorts the result; here the order is broken
    by hand (a tiny graph does not make ORT do it)."""
    from modelport.optimize.quantize.core import _toposort

    def branch(name, op, src):
        return helper.make_graph(
            [helper.make_node(op, [src], [f"z_{name}"])],
            name,
            [],
            [helper.make_tensor_value_info(f"z_{name}", TensorProto.FLOAT, ["batch", 4])],
        )

    thr = numpy_helper.from_array(np.array(0.0, np.float32), "thr")
    first = helper.make_node(
        "If",
        ["flag"],
        ["yif"],
        then_branch=branch("a", "Relu", "x"),
        else_branch=branch("b", "Neg", "x"),
    )
    second = helper.make_node(  # reads yif only from inside its branches (outer scope)
        "If",
        ["flag"],
        ["y"],
        then_branch=branch("c", "Identity", "yif"),
        else_branch=branch("d", "Neg", "yif"),
    )
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0),
            helper.make_node("Greater", ["m", "thr"], ["flag"]),
            second,
            first,  # out of order, as ORT left it
        ],
        "unsorted",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [thr],
    )
    model = helper.make_model(graph, opset_imports=OPSET)
    model.ir_version = 8
    with pytest.raises(onnx.checker.ValidationError, match="topologically sorted"):
        onnx.checker.check_model(model, full_check=True)
    assert _toposort(model.graph)
    assert [n.output[0] for n in model.graph.node] == ["m", "flag", "yif", "y"]
    onnx.checker.check_model(model, full_check=True)
    assert not _toposort(model.graph)  # already sorted: nothing moves


def test_a_dynamic_int8_model_is_not_batched_and_verifies(tmp_path):
    """Dynamic int8 takes one activation scale over every row of a run, so a row's answer
    depends on the other rows. Before: modelport's own dynamic-int8 packages failed `verify`
    (rows compared one by one: max abs diff 0.07 here, 0.03 on the int8 OCR recognizer), and
    `serve` merged requests, so one client's data changed another's answer (0.02 on the
    recognizer's probabilities), against docs/serve.md's batch integrity."""
    from modelport.deploy.base import serving_settings
    from modelport.deploy.targets import PackageTargetConfig
    from modelport.serve.config import ModelConfig
    from modelport.serve.model import load_model

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 32)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])],
        [w],
    )
    pkg = convert(Source.onnx(str(_save(graph, tmp_path / "mm.onnx"))), tmp_path / "mm").package
    q, _ = quantize(pkg, tmp_path / "mm-int8", QuantizeConfig(evaluation=FAST))
    assert q.batch_coupled_ops() == ["DynamicQuantizeLinear"] and pkg.batch_coupled_ops() == []

    report = verify_package(q)
    assert report.passed, report.failures()
    assert any("rows of a batch are not independent" in n for n in report.notes)

    model = load_model(q, "mm-int8", 1, ModelConfig())
    assert not model.batchable and "quantizes activations at run time" in model.batching_note
    assert load_model(pkg, "mm", 1, ModelConfig()).batchable  # the float model still batches
    assert serving_settings(q, PackageTargetConfig())["max_batch_size"] == 0


def test_inspect_counts_weights_in_constant_nodes_and_if_branches(tmp_path):
    """Before: `modelport inspect` said '0 parameters' for the 10.9 MB PaddleOCR recognizer
    (Constant-node weights) and for Silero VAD (weights inside If branches)."""
    from modelport.describe import describe

    pkg = convert(
        Source.onnx(str(_matmul_in_a_branch(tmp_path / "b.onnx"))), tmp_path / "b"
    ).package
    assert describe(str(pkg.path))["parameters"] == 2 * 4 * 3 + 1  # two branch weights + thr
