"""The partial-quantization search: its result, the time budget (best result so far), and
evaluation in small batches (issue 14)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper

from modelport.optimize.quantize import sensitivity
from modelport.optimize.quantize.sensitivity import eval_batch_rows, search_kept

COST = {"a": 0.5, "b": 0.3, "c": 0.01, "d": 0.01}


def _chain(quantized: bool) -> onnx.ModelProto:
    """x -> a -> b -> c -> d (Relu); quantized: each node reads a fake-quant Identity."""
    nodes, prev = [], "x"
    for n in "abcd":
        src = prev
        if quantized:
            nodes.append(helper.make_node("Identity", [prev], [f"{n}_fq"], name=f"{n}__fq"))
            src = f"{n}_fq"
        nodes.append(helper.make_node("Relu", [src], [f"{n}_out"], name=n))
        prev = f"{n}_out"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", T.FLOAT, [1])],
        [helper.make_tensor_value_info(prev, T.FLOAT, [1])],
    )
    return helper.make_model(graph)


def _evaluate(calls: list[int]):
    def evaluate(model) -> float:
        calls.append(1)
        quantized = {n.name for n in model.graph.node if n.input[0].endswith("_fq")}
        return sum(COST[n] for n in quantized)

    return evaluate


def test_search_keeps_the_fewest_nodes_float():
    calls: list[int] = []
    groups = {n: [n] for n in "abcd"}
    res = search_kept(_chain(False), _chain(True), groups, _evaluate(calls), max_drop=0.05)
    assert sorted(res.kept) == ["a", "b"] and res.final_drop <= 0.05
    assert not res.timed_out and res.evaluations == len(calls)


def test_time_budget_keeps_the_best_result_so_far(monkeypatch):
    clock = iter(range(1000))
    monkeypatch.setattr(sensitivity.time, "monotonic", lambda: float(next(clock)))
    calls: list[int] = []
    groups = {n: [n] for n in "abcd"}
    # the clock ticks once per evaluation: the full model and two nodes alone fit the budget
    res = search_kept(
        _chain(False), _chain(True), groups, _evaluate(calls), max_drop=0.05, deadline=2.5
    )
    assert res.timed_out and len(calls) == res.evaluations == 3
    # nothing measured met the budget: every node stays float (always within it)
    assert sorted(res.kept) == ["a", "b", "c", "d"] and res.final_drop == 0.0
    assert set(res.ranking) == set(groups)


def test_time_budget_with_a_result_within_the_drop(monkeypatch):
    clock = iter(range(1000))
    monkeypatch.setattr(sensitivity.time, "monotonic", lambda: float(next(clock)))
    groups = {n: [n] for n in "abcd"}
    res = search_kept(
        _chain(False), _chain(True), groups, _evaluate([]), max_drop=0.05, deadline=4.5
    )
    # full, a, b, c alone measured: 'c' alone (drop 0.01) is within the budget
    assert res.timed_out and sorted(res.kept) == ["a", "b", "d"] and res.final_drop == 0.01


def test_eval_batches_stay_small_for_large_inputs():
    images = {"x": np.zeros((8, 3, 960, 960), np.float32)}
    assert eval_batch_rows(images) == 1
    rows = {"x": np.zeros((512, 64), np.float32)}
    assert eval_batch_rows(rows) == 64


def test_partial_time_budget_end_to_end(digits_package, tmp_path):
    from modelport.optimize.quantize import QuantizeConfig, quantize
    from modelport.optimize.report import EvalConfig

    cfg = QuantizeConfig.partial(
        max_drop=1e-9,
        partial_base="dynamic",
        smoothing=None,
        evaluation=EvalConfig(measure_latency=False),
        time_budget_s=1e-6,
    )
    pkg, report = quantize(digits_package, tmp_path / "p", cfg)
    part = report.details["partial"]
    assert part["timed_out"] and part["time_budget_s"] == 1e-6
    assert any("time budget" in w for w in report.warnings)
    # out of time before any measurement: everything stays float, and the package is written
    assert len(part["kept"]) == part["candidates"]
    assert not any(n.op_type == "MatMulInteger" for n in pkg.load_onnx().graph.node)


def test_costs_can_be_measured_more_cheaply_but_results_are_judged_on_all_data():
    calls: list[int] = []
    cheap_calls: list[int] = []
    groups = {n: [n] for n in "abcd"}
    res = search_kept(
        _chain(False),
        _chain(True),
        groups,
        _evaluate(calls),
        max_drop=0.05,
        cost_evaluate=_evaluate(cheap_calls),
    )
    # each node alone, then the bracket of how many to keep (1 too few, 2 fit): cheap
    assert len(cheap_calls) == len(groups) + 2
    # the result is judged on all data: everything quantized, 2 kept (fits), then each kept
    # group quantized back (both cost too much)
    assert sorted(res.kept) == ["a", "b"] and len(calls) == res.evaluations - len(cheap_calls)
    assert [k for k, _ in res.trace] == [0, 2, 1, 1]


def test_cost_samples_shrink_only_for_large_inputs():
    from modelport.optimize.quantize.partial import cost_sample_rows

    assert cost_sample_rows({"x": np.zeros((8, 3, 960, 960), np.float32)}) == 2
    assert cost_sample_rows({"x": np.zeros((300, 64), np.float32)}) == 300


def test_progress_bars_show_counts_only_when_asked(monkeypatch, capsys):
    from modelport.progress import progress

    monkeypatch.setenv("MODELPORT_PROGRESS", "1")
    with progress("calibration (minmax), samples", total=16) as bar:
        bar.advance(16)
        with progress("partial: each node quantized alone", total=3) as inner:
            inner.advance(3)
    err = capsys.readouterr().err
    # finished bars: ticked, with their counts (the ETA while running: tests/test_progress.py)
    assert "16/16" in err and "3/3" in err and err.count("✓") == 2
    monkeypatch.setenv("MODELPORT_PROGRESS", "0")
    with progress("quiet", total=2) as bar:
        bar.advance(2)
    assert bar.done == 2 and capsys.readouterr().err == ""


def _long_chain(n: int, quantized: bool) -> onnx.ModelProto:
    """x -> n0 -> n1 -> ... (Relu); quantized: each node reads a fake-quant Identity."""
    nodes, prev = [], "x"
    for i in range(n):
        src = prev
        if quantized:
            nodes.append(helper.make_node("Identity", [prev], [f"n{i}_fq"], name=f"n{i}__fq"))
            src = f"n{i}_fq"
        nodes.append(helper.make_node("Relu", [src], [f"n{i}_out"], name=f"n{i}"))
        prev = f"n{i}_out"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", T.FLOAT, [1])],
        [helper.make_tensor_value_info(prev, T.FLOAT, [1])],
    )
    return helper.make_model(graph)


def test_blocks_find_the_one_sensitive_node_of_many():
    """Above EACH_MAX groups, costs come from blocks of the graph split where they cost: the
    one sensitive node is found and kept float, with far fewer evaluations than nodes."""
    n = 200
    assert n > sensitivity.EACH_MAX
    cost = {f"n{i}": 0.0002 for i in range(n)}
    cost["n137"] = 0.5  # the sensitive node
    calls: list[int] = []

    def evaluate(model) -> float:
        calls.append(1)
        quantized = {x.name for x in model.graph.node if x.input[0].endswith("_fq")}
        return sum(cost[k] for k in quantized)

    groups = {f"n{i}": [f"n{i}"] for i in range(n)}
    res = search_kept(_long_chain(n, False), _long_chain(n, True), groups, evaluate, max_drop=0.05)
    assert res.cost_method == "blocks" and res.ranking[0] == "n137"
    assert res.kept == ["n137"] and res.final_drop <= 0.05
    assert res.evaluations == len(calls) < n // 2
    assert any(b["groups"] == 1 and b["first"] == "n137" for b in res.blocks)


def test_revert_recomputes_an_activation_the_qdq_quantizer_folded(tmp_path):
    """ONNX Runtime's QDQ quantizer drops the Relu after a quantized Conv and gives its output
    name to the Conv: reverting the next Conv to float must apply the Relu again, or that Conv
    reads the values before the Relu (the bug that made every PP-OCRv4 node cost 0)."""
    from onnx import numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from modelport.optimize.quantize.partial import _static_candidates
    from modelport.optimize.quantize.sensitivity import revert_nodes
    from modelport.runtime import make_session

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((4, 8, 3, 3)).astype(np.float32), "w2"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
            helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1]),
        ],
        "convs",
        [helper.make_tensor_value_info("x", T.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", T.FLOAT, [1, 4, 8, 8])],
        inits,
    )
    fp32 = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    fp32.ir_version = 8
    onnx.save(fp32, tmp_path / "fp32.onnx")
    xs = [rng.standard_normal((1, 3, 8, 8)).astype(np.float32) for _ in range(8)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter({"x": x} for x in xs)

        def get_next(self):
            return next(self.it, None)

    quantize_static(
        str(tmp_path / "fp32.onnx"),
        str(tmp_path / "q.onnx"),
        Reader(),
        quant_format=QuantFormat.QDQ,
    )
    q = onnx.load(tmp_path / "q.onnx")
    assert "Relu" not in {n.op_type for n in q.graph.node}  # folded into the range
    assert "conv2" in _static_candidates(q, fp32)[0]
    x = xs[0]
    want = make_session(fp32).run(None, {"x": x})[0]
    quant = make_session(q).run(None, {"x": x})[0]
    got = make_session(revert_nodes(q, fp32, ["conv2"])).run(None, {"x": x})[0]
    # conv2 in float on the (quantized) conv1's output after the Relu: closer than all-int8
    assert np.abs(got - want).max() < np.abs(quant - want).max()
    assert float(np.abs(got - want).max()) < 0.1 * float(np.abs(want).max())


def test_lean_sessions_run_in_priority_order(tiny_onnx):
    """memory_arena=False (calibration and evaluations on large inputs) also runs nodes in ORT's
    priority-based order, which frees each tensor early when a graph has many outputs."""
    import onnxruntime as ort

    from modelport.runtime import SessionConfig, make_session

    lean = make_session(tiny_onnx, SessionConfig(memory_arena=False)).get_session_options()
    assert lean.execution_order == ort.ExecutionOrder.PRIORITY_BASED
    assert not lean.enable_cpu_mem_arena
    default = make_session(tiny_onnx).get_session_options()
    assert default.execution_order == ort.ExecutionOrder.DEFAULT


def test_prune_dead_qdq_after_revert():
    """What a reverted node no longer reads (its input's DequantizeLinear, its int8 weight) is
    removed from the final static partial model; what others still read stays."""
    from onnx import numpy_helper

    from modelport.optimize.quantize.sensitivity import prune_dead_qdq

    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    wq = numpy_helper.from_array(np.ones((2, 2), np.int8), "w_q")
    s = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    z = numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq"),
        helper.make_node("DequantizeLinear", ["w_q", "s", "z"], ["wd"], name="wdq"),
        helper.make_node("MatMul", ["x", "w"], ["a"], name="float_mm"),  # reverted
        helper.make_node("Relu", ["xd"], ["b"], name="still_quantized"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", T.FLOAT, [2, 2])],
        [helper.make_tensor_value_info(o, T.FLOAT, [2, 2]) for o in ("a", "b")],
        [w, wq, s, z],
    )
    m = prune_dead_qdq(helper.make_model(graph))
    assert [n.name for n in m.graph.node] == ["q", "dq", "float_mm", "still_quantized"]
    assert sorted(t.name for t in m.graph.initializer) == ["s", "w", "z"]
