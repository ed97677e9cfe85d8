"""Optimization results are checked and shown: onnx.checker on every output (fp16 sorted),
failures refused unless --allow-mismatch, a default fidelity budget, steps that changed nothing
said plainly, and hardware reasons that cite figures only with their source."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelport.cli import main
from modelport.errors import VerificationError
from modelport.optimize.graph import GraphConfig, optimize_graph
from modelport.optimize.quantize import QuantizeConfig, quantize
from modelport.optimize.report import DEFAULT_MAX_DROP, EvalConfig, OptimizeReport

NO_TIMING = EvalConfig(measure_latency=False)


def _save(model, path):
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


@pytest.fixture
def mlp3(tmp_path):
    """The 3-node MLP of issue 18 (Gemm, Relu, Gemm), as a torch export would give it."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((2, 8)).astype(np.float32), "w2"),
        numpy_helper.from_array(rng.standard_normal(2).astype(np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="fc2", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp3",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return _save(model, tmp_path / "mlp3.onnx")


@pytest.fixture
def conv_only(tmp_path):
    """A model whose only compute is a Conv: dynamic int8 has nothing to quantize."""
    w = numpy_helper.from_array(
        np.random.default_rng(1).standard_normal((64, 16, 3, 3)).astype(np.float32), "w"
    )
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64, 6, 6])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return _save(model, tmp_path / "conv.onnx")


def _sorted(model) -> bool:
    known = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer}
    for n in model.graph.node:
        if any(i and i not in known for i in n.input):
            return False
        known.update(n.output)
    return True


def test_fp16_of_a_3_node_mlp_passes_the_checker(mlp3, tmp_path, capsys):
    rc = main(["quantize", str(mlp3), "--mode", "fp16", "--no-latency", "-o", str(tmp_path / "h")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "onnx.checker (full check): passed" in out
    model = onnx.load(tmp_path / "h" / "model.onnx")
    ops = [n.op_type for n in model.graph.node]
    # the converter's input/output Casts come before their consumers now
    assert ops == ["Cast", "Gemm", "Relu", "Gemm", "Cast"]
    assert _sorted(model)
    onnx.checker.check_model(model, full_check=True)


def test_topological_sort_follows_subgraph_references():
    from modelport.optimize.quantize.fp16 import topological_sort

    then = helper.make_graph(
        [helper.make_node("Identity", ["a"], ["t"])],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1])],
    )
    other = helper.make_graph(
        [helper.make_node("Neg", ["a"], ["e"])],
        "else",
        [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1])],
    )
    nodes = [  # the If reads 'a' only from inside its branches; 'a' is produced after it
        helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other),
        helper.make_node("Relu", ["x"], ["a"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    topological_sort(graph)
    assert [n.op_type for n in graph.node] == ["Relu", "If"]


def test_a_checker_failure_is_refused_then_written_with_allow_mismatch(
    mlp3, tmp_path, capsys, monkeypatch
):
    import modelport.optimize.report as report_mod

    monkeypatch.setattr(report_mod, "run_checker", lambda model: "Nodes are not sorted (test)")
    with pytest.raises(VerificationError, match="fails onnx.checker: Nodes are not sorted"):
        quantize(mlp3, tmp_path / "a", QuantizeConfig.dynamic(evaluation=NO_TIMING))
    assert not (tmp_path / "a").exists()

    # the CLI prints the checker's message and exits 1, writing nothing
    rc = main(["quantize", str(mlp3), "--no-latency", "-o", str(tmp_path / "b")])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 1 and "fails onnx.checker: Nodes are not sorted (test)" in err
    assert "--allow-mismatch" in err and not (tmp_path / "b").exists()

    rc = main(
        ["quantize", str(mlp3), "--no-latency", "--allow-mismatch", "-o", str(tmp_path / "c")]
    )
    captured = capsys.readouterr()
    assert rc == 1
    assert "onnx.checker (full check): Nodes are not sorted (test)" in captured.out
    assert "onnx.checker FAILED" in captured.err and "FAILED (wrote" in captured.err
    from modelport.package import ModelPackage

    step = ModelPackage.load(tmp_path / "c").history[-1]["report"]
    assert step["checker"] == "Nodes are not sorted (test)" and step["passed"] is False

    # optimize: the same, and no com.microsoft opset turns the failure into "passed"
    with pytest.raises(VerificationError, match="fails onnx.checker"):
        optimize_graph(mlp3, tmp_path / "d", GraphConfig.ort("basic", evaluation=NO_TIMING))
    _, rep = optimize_graph(
        mlp3,
        tmp_path / "e",
        GraphConfig.ort("basic", evaluation=NO_TIMING, allow_mismatch=True),
    )
    assert rep.checker == "Nodes are not sorted (test)" and not rep.passed


def test_graph_level_all_passes_the_checker_for_real(digits_package, tmp_path):
    """Level 'all' writes com.microsoft.nchwc ops: the real checker passes on them (no rewrite)."""
    _, rep = optimize_graph(
        digits_package, tmp_path / "all", GraphConfig.ort("all", evaluation=NO_TIMING)
    )
    assert rep.checker == "passed" and rep.checker_note == ""


def test_unrun_checks_say_not_run():
    rep = OptimizeReport(step="quantize", config={})
    assert rep.checker == "not run"
    assert rep.passed is False and rep.to_dict()["checker"] == "not run"


def test_default_budget_fails_loudly(mlp3, tmp_path, capsys):
    """Without --max-drop the default budget (0.01) applies; a metric drop beyond it is exit 1."""
    rc = main(
        [
            "quantize",
            str(mlp3),
            "--no-latency",
            "--metric",
            "tests.optimize.test_checks:half_metric",
            "-o",
            str(tmp_path / "q"),
            "--json-file",
            str(tmp_path / "q.json"),
        ]
    )
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert rc == 1
    assert "OUTSIDE THE BUDGET: metric half_metric dropped by 0.5000" in err
    assert "allowed 0.01, the default budget; set --max-drop" in err
    rep = json.loads((tmp_path / "q.json").read_text())
    assert rep["metric"]["budget"] == DEFAULT_MAX_DROP == 0.01
    assert rep["metric"]["budget_source"] == "default" and rep["passed"] is False
    # a budget given explicitly is recorded as given; within it the run passes
    rc = main(
        [
            "quantize",
            str(mlp3),
            "--no-latency",
            "--metric",
            "tests.optimize.test_checks:half_metric",
            "--max-drop",
            "0.6",
            "-o",
            str(tmp_path / "q2"),
        ]
    )
    assert rc == 0
    # the same default applies to optimize
    _, rep2 = optimize_graph(
        mlp3,
        tmp_path / "o",
        GraphConfig.ort("basic", evaluation=EvalConfig(metric=half_metric, measure_latency=False)),
    )
    assert rep2.metric["budget"] == 0.01 and not rep2.passed
    assert any(w.startswith("OUTSIDE THE BUDGET") for w in rep2.warnings)


def half_metric(reference, outputs, feed):
    """1.0 on the reference itself, 0.5 on anything else: a drop of 0.5."""
    same = all(reference[k] is outputs[k] for k in reference)
    return 1.0 if same else 0.5


def test_no_node_quantized_is_said_plainly(conv_only, tmp_path, capsys):
    rc = main(["quantize", str(conv_only), "--no-latency", "-o", str(tmp_path / "q")])
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert rc == 1
    assert "no node was quantized: dynamic int8 quantizes MatMul" in err
    assert "Conv x1" in err and "--mode static --calibration DATA" in err
    _, rep = quantize(conv_only, tmp_path / "q2", QuantizeConfig.dynamic(evaluation=NO_TIMING))
    assert rep.unchanged.startswith("no node was quantized")
    assert rep.size_ratio == pytest.approx(1.0, abs=0.02)
    assert not rep.passed and rep.to_dict()["passed"] is False


def test_hardware_reasons_cite_figures_only_with_a_source():
    from modelport.optimize.hardware import choose_types, detect_cpu

    cpus = [
        detect_cpu("flags : avx2 fma", arch="x86_64"),
        detect_cpu("flags : avx2 avx512f avx512_vnni", arch="x86_64"),
        detect_cpu("Features : asimd asimddp", arch="aarch64"),
        detect_cpu("flags : sse4_2", arch="x86_64"),
    ]
    figure = re.compile(r"\d\.\d+x|\b0\.\d{2,}")
    for cpu in cpus:
        for mode in ("dynamic", "static"):
            reasons = choose_types(cpu, mode).reasons
            assert reasons[0].startswith(f"detected {cpu.summary()}")
            for r in reasons:
                if figure.search(r):
                    assert "measured elsewhere: benchmarks/results/" in r, r
