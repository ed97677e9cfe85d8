"""quantize measures on the engine the result will be served with (--engine, else the input
package's serving section), records what ran, and refuses what that engine cannot do."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelport.cli import main
from modelport.errors import UsageError
from modelport.optimize.quantize import QuantizeConfig, quantize

pytest.importorskip("openvino")  # part of modelport[all]


@pytest.fixture
def package(tmp_path, tiny_onnx):
    from modelport.convert import ConvertConfig, Source, convert

    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    return convert(
        Source.onnx(str(tiny_onnx)), tmp_path / "pkg", ConvertConfig(example={"x": x})
    ).package


@pytest.fixture
def calib(tmp_path):
    path = tmp_path / "calib.npz"
    np.savez(path, x=np.random.default_rng(1).standard_normal((64, 4)).astype(np.float32))
    return path


def _serving(package, serving):
    manifest = json.loads((package.path / "modelport.json").read_text())
    manifest["serving"] = serving
    (package.path / "modelport.json").write_text(json.dumps(manifest))
    from modelport.package import ModelPackage

    return ModelPackage.load(package.path)


def test_static_measured_on_openvino_and_served_with_it(package, calib, tmp_path):
    cfg = QuantizeConfig.static(calib, engine="openvino", evaluation=_quick())
    new, report = quantize(package, tmp_path / "q", cfg)
    ran = report.details["engine"]
    assert ran["before"]["engine"] == ran["after"]["engine"] == "openvino"
    assert ran["before"]["precision"] == "fp32" and ran["after"]["precision"] == "int8+fp32"
    assert any(c.startswith("measured on openvino") for c in report.choices)
    assert new.serving["engine"] == "openvino" and new.serving["precision"] == "fp32"
    step = new.history[-1]
    assert step["report"]["details"]["engine"]["after"]["engine"] == "openvino"


def test_default_is_the_input_packages_serving_section(package, calib, tmp_path):
    pkg = _serving(package, {"engine": "openvino", "intra_op_threads": 1})
    new, report = quantize(pkg, tmp_path / "q", QuantizeConfig.static(calib, evaluation=_quick()))
    after = report.details["engine"]["after"]
    assert after["engine"] == "openvino" and after["threads"] == 1
    assert new.serving["engine"] == "openvino"  # inherited


def test_an_ordinary_package_is_measured_on_onnx_runtime(package, calib, tmp_path):
    _, report = quantize(package, tmp_path / "q", QuantizeConfig.static(calib, evaluation=_quick()))
    assert report.details["engine"]["after"]["engine"] == "ort"
    assert report.details["engine"]["after"]["precision"] == "int8+fp32"


def test_dynamic_int8_that_openvino_runs_in_float_is_flagged(package, tmp_path):
    pkg = _serving(package, {"engine": "openvino"})
    _, report = quantize(pkg, tmp_path / "q", QuantizeConfig.dynamic(evaluation=_quick()))
    assert report.details["engine"]["after"]["precision"] == "fp32"
    assert any("ran the int8 model in fp32" in w for w in report.warnings)


def test_partial_with_an_openvino_serving_section_warns_it_measured_on_ort(package, tmp_path):
    pkg = _serving(package, {"engine": "openvino"})
    cfg = QuantizeConfig.partial(max_drop=0.5, partial_base="dynamic", evaluation=_quick())
    _, report = quantize(pkg, tmp_path / "q", cfg)
    assert "engine" not in report.details
    assert any("measured on ONNX Runtime (partial" in w for w in report.warnings)


def test_the_library_refuses_what_the_engine_cannot_do():
    with pytest.raises(UsageError, match="OpenVINO runs ONNX Runtime's dynamic int8 ops"):
        QuantizeConfig.dynamic(engine="openvino:bf16")
    with pytest.raises(UsageError, match="partial's search measures its candidates on ONNX"):
        QuantizeConfig.partial(engine="ort")
    with pytest.raises(UsageError, match="engine 'tpu' is not one of"):
        QuantizeConfig.fp16(engine="tpu")


@pytest.mark.parametrize(
    "args, words",
    [
        (["--mode", "partial", "--max-drop", "0.1", "--engine", "openvino"],
         "--engine applies only with --mode dynamic, --mode static or --mode fp16"),
        (["--mode", "dynamic", "--engine", "openvino"], "in float (read back: fp32)"),
        (["--mode", "dynamic", "--engine", "ort,openvino"], "this command runs one engine"),
        (["--mode", "dynamic", "--engine", "ort:bf16"], "no bf16 kernels"),
    ],
)  # fmt: skip
def test_cli_refusals_exit_2(package, tmp_path, args, words, capsys):
    assert main(["quantize", str(package.path), "-o", str(tmp_path / "q"), *args]) == 2
    assert words in " ".join(capsys.readouterr().err.split())


def _quick():
    from modelport.optimize.report import EvalConfig

    return EvalConfig(repeats=2, batch_sizes=(1,))
