"""``verify`` through a chosen engine: parity measured on the engine the package is served with,
at the tolerances of its precision, with what ran in the report; bad engine specs are exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelport.cli import main
from modelport.package import ModelPackage
from modelport.runtime import EngineConfig, native_precisions
from modelport.verify import PRECISION_TOLERANCES, VerifyConfig, verify_package

pytest.importorskip("openvino")  # part of modelport[all]


@pytest.fixture
def package(tmp_path, tiny_onnx):
    from modelport.convert import ConvertConfig, Source, convert

    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    return convert(
        Source.onnx(str(tiny_onnx)), tmp_path / "pkg", ConvertConfig(example={"x": x})
    ).package


def _bf16() -> bool:
    return "bf16" in native_precisions("openvino")


def test_openvino_parity_is_measured_on_openvino_against_stored_outputs_and_ort(package):
    report = verify_package(package, engine=EngineConfig(engine="openvino", cache_dir=""))
    assert report.passed, report.failures()
    (entry,) = report.engines
    assert entry["engine"] == "openvino" and entry["ran"]["engine"] == "openvino"
    assert entry["ran"]["precision"] == "fp32" and (entry["atol"], entry["rtol"]) == (1e-4, 1e-3)
    assert (
        "stored outputs" in entry["compared_with"] and "ONNX Runtime fp32" in entry["compared_with"]
    )
    assert {c.engine for c in report.cases} == {"openvino"}
    d = report.to_dict()
    assert d["engines"][0]["ran"]["engine"] == "openvino"
    assert all(c["engine"] == "openvino" for c in d["cases"])


def test_default_verification_reports_no_engine(package):
    d = verify_package(package).to_dict()
    assert "engines" not in d and all("engine" not in c for c in d["cases"])


def test_a_tampered_model_fails_on_the_chosen_engine_and_names_it(package):
    import onnx

    model = onnx.load(package.model_path)
    arr = onnx.numpy_helper.to_array(model.graph.initializer[0]).copy() + 1.0
    model.graph.initializer[0].CopyFrom(
        onnx.numpy_helper.from_array(arr, model.graph.initializer[0].name)
    )
    onnx.save(model, package.model_path)
    report = verify_package(
        ModelPackage.load(package.path), engine=EngineConfig(engine="openvino", cache_dir="")
    )
    assert not report.passed
    text = "\n".join(report.failures())
    assert "output 'y' at x[2, 4]; on openvino" in text  # the example vs the stored outputs


@pytest.mark.skipif(not _bf16(), reason="no native bf16 on this CPU")
def test_bf16_is_held_to_bf16_tolerances_which_the_report_states(package):
    bf16 = EngineConfig(engine="openvino", precision="bf16", cache_dir="")
    report = verify_package(package, engine=bf16)
    assert report.passed, report.failures()
    assert (report.atol, report.rtol) == PRECISION_TOLERANCES["bf16"]
    (entry,) = report.engines
    assert entry["ran"]["precision"] == "bf16" and "bf16 default" in entry["tolerance"]
    assert all(o.atol == PRECISION_TOLERANCES["bf16"][0] for c in report.cases for o in c.outputs)
    # held to fp32's tolerances, the same bf16 run fails: the tolerance is what decides
    strict = verify_package(package, VerifyConfig(precision_tolerances={}), engine=bf16)
    assert not strict.passed and strict.engines[0]["tolerance"] == "as given"


def test_cli_verifies_on_several_engines_in_one_report(package, tmp_path, capsys):
    out = tmp_path / "v.json"
    rc = main(["verify", str(package.path), "--engine", "ort,openvino", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "on ort: ran ort" in text and "on openvino: ran openvino" in text
    d = json.loads(out.read_text())
    assert d["passed"] and [e["engine"] for e in d["engines"]] == ["ort", "openvino"]
    assert {c["engine"] for c in d["cases"]} == {"ort", "openvino"}
    assert [e["ran"]["engine"] for e in d["engines"]] == ["ort", "openvino"]


def test_cli_engine_package_runs_what_the_serving_section_names(package, tmp_path):
    manifest = json.loads((package.path / "modelport.json").read_text())
    manifest["serving"] = {"engine": "openvino", "precision": "fp32", "intra_op_threads": 1}
    (package.path / "modelport.json").write_text(json.dumps(manifest))
    out = tmp_path / "v.json"
    assert main(["verify", str(package.path), "--engine", "package", "--json", str(out)]) == 0
    (entry,) = json.loads(out.read_text())["engines"]
    assert entry["ran"]["engine"] == "openvino" and entry["ran"]["threads"] == 1


@pytest.mark.skipif(not _bf16(), reason="no native bf16 on this CPU")
def test_cli_atol_given_applies_to_bf16_too(package, tmp_path):
    out = tmp_path / "v.json"
    rc = main(
        [
            "verify",
            str(package.path),
            "--engine",
            "openvino:bf16",
            "--atol",
            "1e-6",
            "--rtol",
            "0",
            "--json",
            str(out),
        ]  # fmt: skip
    )
    assert rc == 1  # bf16 cannot meet 1e-6
    d = json.loads(out.read_text())
    assert (d["engines"][0]["atol"], d["engines"][0]["rtol"]) == (1e-6, 0.0)


@pytest.mark.parametrize(
    "spec, words",
    [
        ("tpu", "engine 'tpu' is not one of"),
        ("ort:bf16", "ONNX Runtime's CPU provider has no bf16"),
        ("openvino:int4", "precision 'int4' is not one of"),
        ("openvino:", "give a precision after ':'"),
        (",", "no engine given"),
    ],
)
def test_cli_refuses_bad_engine_specs_with_exit_2(package, spec, words, capsys):
    assert main(["verify", str(package.path), "--engine", spec]) == 2
    assert words in capsys.readouterr().err


def test_cli_refuses_a_precision_this_cpu_lacks(package, monkeypatch, capsys):
    monkeypatch.setenv("MODELPORT_DISABLE_PRECISIONS", "bf16")  # a CPU without bf16
    assert main(["verify", str(package.path), "--engine", "openvino:bf16"]) == 2
    err = capsys.readouterr().err
    assert "bf16 does not run natively on this CPU" in err and "use 'openvino' (fp32)" in err
