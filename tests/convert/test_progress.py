"""Conversion reports its phases through the library callback (``convert(..., progress=...)``,
``verify_model(..., progress=...)``): in the order they happen, verification counted case by case
up to the number of cases in the report, a failed phase marked failed."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from modelport.convert import ConvertConfig, Source, convert
from modelport.errors import ConversionError
from modelport.progress import Event
from modelport.verify import verify_model


def _started(events: list[Event]) -> list[str]:
    return [e.phase for e in events if e.state == "start"]


def _verify_counts(events: list[Event]) -> tuple[list[int], set[int | None]]:
    steps = [e for e in events if e.phase == "verify" and e.state in ("step", "end")]
    return [e.done for e in steps], {e.total for e in steps}


def test_verify_model_counts_its_cases(tiny_onnx):
    model = onnx.load(tiny_onnx)
    w = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}

    def reference(feed):
        return [np.maximum(feed["x"] @ w["w1"] + w["b1"], 0) @ w["w2"]]

    events: list[Event] = []
    report = verify_model(
        model, reference, {"x": np.ones((2, 4), np.float32)}, progress=events.append
    )
    assert report.passed
    assert _started(events) == ["check", "verify"]
    done, totals = _verify_counts(events)
    n = len(report.cases)
    assert n > 1 and totals == {n}
    assert done == sorted(done) and done[-1] == n
    # each case is named while it runs, in the report's order
    running = [e.detail for e in events if e.phase == "verify" and e.state == "step"]
    labels = [c.label for c in report.cases]
    assert [d for d in dict.fromkeys(running) if d in labels] == labels
    assert events[-1].state == "end" and events[-1].detail == ""  # no case failed


def test_a_failing_case_is_counted_and_named_at_the_end(tiny_onnx):
    events: list[Event] = []
    report = verify_model(
        onnx.load(tiny_onnx),
        lambda feed: [np.zeros((len(feed["x"]), 3), np.float32)],  # wrong everywhere
        {"x": np.ones((2, 4), np.float32)},
        progress=events.append,
    )
    assert not report.passed
    assert events[-1].phase == "verify" and events[-1].state == "end"
    assert events[-1].done == len(report.cases)
    assert events[-1].detail == f"{len(report.cases)} failed"


def test_onnx_import_reports_load_inference_check_verify_write(tiny_onnx, tmp_path):
    events: list[Event] = []
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    result = convert(
        Source.onnx(str(tiny_onnx)),
        tmp_path / "pkg",
        ConvertConfig(example={"x": x}),
        progress=events.append,
    )
    assert _started(events) == ["load", "infer", "load", "check", "verify", "write"]
    assert [e.state for e in events if e.phase == "write"] == ["start", "end"]
    done, totals = _verify_counts(events)
    assert totals == {len(result.report.cases)} and done[-1] == len(result.report.cases)
    assert all(e.scope == "" for e in events)


def test_onnx_import_without_inputs_counts_the_smoke_run(tiny_onnx, tmp_path):
    events: list[Event] = []
    convert(Source.onnx(str(tiny_onnx)), tmp_path / "pkg", progress=events.append)
    assert _started(events) == ["load", "infer", "load", "smoke", "check", "verify", "write"]
    smoke = [e for e in events if e.phase == "smoke"]
    assert smoke[-1].state == "end" and smoke[-1].done == 1  # the first size ran
    assert smoke[0].total is not None and smoke[0].total >= 1


def test_sklearn_reports_the_export_and_a_failed_phase(tmp_path):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 5))
    est = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    events: list[Event] = []
    convert(Source.sklearn(est), tmp_path / "skl", progress=events.append)
    assert _started(events) == ["load", "export", "check", "verify", "write"]
    assert next(e for e in events if e.phase == "export").detail == "skl2onnx"

    class Unfitted(LogisticRegression):
        pass

    events.clear()
    with pytest.raises(ConversionError):
        convert(Source.sklearn(Unfitted()), tmp_path / "bad", progress=events.append)
    assert [e.phase for e in events] == ["load", "load"]  # loaded; refused before exporting
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_torch_conversion_reports_every_phase_in_order(tmp_path):
    from modelport.signature import TensorSpec

    events: list[Event] = []
    result = convert(
        Source.torch_factory("tests.convert.torch_models:build_mlp"),
        tmp_path / "mlp",
        ConvertConfig(inputs=(TensorSpec("x", "float32", ("batch", 4)),)),
        progress=events.append,
    )
    assert _started(events) == ["load", "reference", "export", "check", "verify", "write"]
    export = [e for e in events if e.phase == "export"]
    assert [e.state for e in export] == ["start", "end"] and export[0].detail == result.exporter
    done, totals = _verify_counts(events)
    assert totals == {len(result.report.cases)} and done[-1] == len(result.report.cases)
    assert all(e.seconds >= 0 for e in events)
