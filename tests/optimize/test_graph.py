"""Graph optimization: ORT offline levels and the transformers fusions (MiniLM: see
test_quantize_minilm.py, which shares the fused model with quantization)."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.errors import UsageError
from modelport.optimize.graph import GraphConfig, optimize_graph
from modelport.optimize.report import EvalConfig


def test_ort_level_keeps_outputs_and_reports(digits_package, tmp_path):
    cfg = GraphConfig.ort("extended", evaluation=EvalConfig(batch_sizes=(1, 4), repeats=2))
    pkg, report = optimize_graph(digits_package, tmp_path / "opt", cfg)
    assert report.fidelity["output"]["cos_min"] > 0.99999
    assert report.fidelity["output"]["top1_agreement"] == 1.0
    assert [r["batch_size"] for r in report.latency] == [1, 4]
    assert report.size_after > 0 and report.checker == "passed"
    assert pkg.history[-1]["step"] == "optimize"
    # a slower (or equal) result is said plainly, never hidden
    for r in report.latency:
        if r["speedup"] < 1.02:
            assert any("did not make the model faster" in w for w in report.warnings)


def test_basic_level_on_tiny_model(tiny_onnx, tmp_path):
    pkg, report = optimize_graph(
        tiny_onnx,
        tmp_path / "tiny",
        GraphConfig.ort("basic", evaluation=EvalConfig(measure_latency=False)),
    )
    assert report.metric["drop"] < 1e-6
    x = np.ones((2, 4), np.float32)
    from modelport.runtime import make_session, run_session

    assert run_session(make_session(pkg.model_path), {"x": x})["y"].shape == (2, 3)


def test_graph_config_validation():
    with pytest.raises(UsageError, match="level"):
        GraphConfig(level="max")
    with pytest.raises(UsageError, match="nothing to do"):
        GraphConfig(level=None, transformers=False)
    assert GraphConfig.fusion().level is None and GraphConfig.fusion().transformers


def test_cli_optimize(digits_package, tmp_path):
    from modelport.cli import main

    rc = main(
        [
            "optimize",
            str(digits_package.path),
            "-o",
            str(tmp_path / "o"),
            "--level",
            "basic",
            "--no-latency",
        ]
    )
    assert rc == 0 and (tmp_path / "o" / "model.onnx").is_file()
    assert (
        main(["optimize", str(digits_package.path), "-o", str(tmp_path / "o"), "--level", "basic"])
        == 2
    )
