"""The search's rules, on hand-made state: metric functions, skips, latency normalization."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.plan.candidates import Candidate
from modelport.plan.pareto import Budget
from modelport.plan.search import (
    SearchState,
    _renormalize,
    _skip_reason,
    accuracy_metric,
    mean_cosine,
)


def test_mean_cosine_is_the_worst_output_and_1_for_identical():
    ref = {"a": np.array([[1.0, 0.0], [0.0, 1.0]]), "b": np.array([[1.0, 1.0], [1.0, 0.0]])}
    assert mean_cosine(ref, ref, {}) == pytest.approx(1.0)
    got = {"a": ref["a"], "b": np.array([[1.0, 1.0], [0.0, 1.0]])}  # second row orthogonal
    assert mean_cosine(ref, got, {}) == pytest.approx(0.5)
    assert mean_cosine(ref, {"a": ref["a"]}, {}) == 0.0  # a missing output is total loss


def test_accuracy_metric_uses_the_labels_of_the_rows_given():
    m = accuracy_metric(np.array([0, 1, 1]))
    logits = {"y": np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])}
    assert m({}, logits, {"x": np.zeros((3, 1))}) == pytest.approx(2 / 3)
    assert m({}, {"y": logits["y"][:2]}, {"x": np.zeros((2, 1))}) == 1.0


def _row(cand, drop, speedup=1.0, base_ms=10.0):
    return {"candidate": cand, "drop": drop, "speedup": speedup, "baseline_ms_interleaved": base_ms}


def test_partial_is_skipped_when_full_int8_of_its_scheme_meets_the_budget():
    partial = Candidate("int8-partial", "quantize", {"mode": "partial", "partial_base": "dynamic"})
    state = SearchState(
        rows=[_row("int8-dynamic", 0.003)],
        attempts=[
            {"candidate": "int8-dynamic", "mode": "dynamic", "base": None, "status": "measured"}
        ],
    )
    reason = _skip_reason(partial, state, {}, Budget(max_drop=0.005))
    assert reason and "can only be slower" in reason
    assert _skip_reason(partial, state, {}, Budget(max_drop=0.002)) is None  # it does not meet


def test_stacked_candidates_need_a_base_within_the_drop_budget():
    stacked = Candidate("pruned-50+int8-static", "quantize", {"mode": "static"}, base="pruned-50")
    state = SearchState(rows=[_row("pruned-50", 0.03)])
    assert "was not built" in _skip_reason(stacked, state, {}, Budget(max_drop=0.01))
    built = {"pruned-50": object()}
    assert "outside the drop budget" in _skip_reason(stacked, state, built, Budget(max_drop=0.01))
    assert _skip_reason(stacked, state, built, Budget(max_drop=0.05)) is None


def test_latencies_are_normalized_by_the_median_baseline():
    class Ev:
        baseline_ms = None

    rows = [_row("fp32", 0, 1.0, 10.0), _row("a", 0, 2.0, 30.0), _row("b", 0, 4.0, 12.0)]
    ev = Ev()
    _renormalize(rows, ev)
    assert ev.baseline_ms == 12.0
    assert [r["latency_ms"] for r in rows] == [12.0, 6.0, 3.0]


def test_session_for_runs_the_setting_it_names(tiny_onnx):
    from modelport.plan.candidates import SessionSetting
    from modelport.plan.search import session_for

    session = session_for(tiny_onnx, SessionSetting(threads=1), ("cpu",))
    assert session.info.engine == "ort" and session.info.threads == 1
    assert session.info.providers == ("CPUExecutionProvider",)
    out = session.run({"x": np.ones((2, 4), np.float32)})
    assert out["y"].shape == (2, 3)
