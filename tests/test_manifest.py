"""The typed manifest: exact round trips of real packages, unknown keys kept, bad fields named."""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
import pytest

from modelport.errors import PackageError
from modelport.manifest import FileRecord, Manifest, Parent, Provenance, Step, Verification
from modelport.package import ModelPackage, derive_package, file_sha256
from modelport.signature import Signature


def _round_trips(pkg: ModelPackage) -> dict:
    """The manifest on disk comes back from the types unchanged, key order included."""
    on_disk = json.loads((pkg.path / "modelport.json").read_text())
    back = Manifest.from_dict(on_disk).to_dict()
    assert back == on_disk
    assert json.dumps(back, indent=2) == json.dumps(on_disk, indent=2)
    return on_disk


@pytest.fixture
def onnx_package(tmp_path, tiny_onnx):
    from modelport.convert import Source, convert

    return convert(Source.onnx(str(tiny_onnx)), tmp_path / "tiny").package


def test_onnx_package_round_trips_and_reads_typed(onnx_package):
    _round_trips(onnx_package)
    spec = onnx_package.spec
    assert spec.name == "tiny" and spec.opset == onnx_package.manifest["opset"]
    assert spec.signature == onnx_package.signature
    assert isinstance(spec.provenance, Provenance) and spec.provenance.source_kind == "onnx"
    assert spec.provenance.frameworks is not None and "onnx" in spec.provenance.frameworks
    assert isinstance(spec.verification, Verification) and spec.verification.passed
    assert spec.verification.checker == "passed" and spec.verification.cases
    assert spec.steps == ["convert"] and spec.history[0].get("verified") is True
    assert spec.model_sha256 == file_sha256(onnx_package.model_path)
    assert spec.files is not None and spec.files["model.onnx"] == FileRecord(
        spec.model_sha256, onnx_package.model_path.stat().st_size
    )


def test_sklearn_package_round_trips(tmp_path):
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from modelport.convert import ConvertConfig, Source, convert

    x, y = load_digits(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(x, y)
    pkg = convert(
        Source.sklearn(model), tmp_path / "skl", ConvertConfig(example={"input": x[:20]})
    ).package
    on_disk = _round_trips(pkg)
    prov = pkg.spec.provenance
    assert prov is not None and prov.source_kind == "sklearn" and prov.exporter == "skl2onnx"
    # source-specific facts are kept as they are
    assert prov.extra["estimator"] == on_disk["provenance"]["estimator"]


@pytest.mark.slow
def test_torch_package_round_trips(tmp_path):
    from modelport.convert import ConvertConfig, Source, convert
    from modelport.data import parse_input_spec

    pkg = convert(
        Source.torch_factory("tests.convert.torch_models:build_mlp"),
        tmp_path / "mlp",
        ConvertConfig(inputs=(parse_input_spec("x:batch,4:float32")[0],)),
    ).package
    _round_trips(pkg)
    prov = pkg.spec.provenance
    assert prov is not None and prov.source_kind == "torch"
    assert prov.frameworks is not None and prov.frameworks["torch"].startswith("2.")


def test_hf_package_round_trips_with_processing(minilm_package):
    on_disk = _round_trips(minilm_package)
    spec = minilm_package.spec
    assert spec.processing == on_disk["processing"]
    assert spec.files is not None and "processing/tokenizer.json" in spec.files
    assert spec.provenance is not None and spec.provenance.extra["task"] == "feature-extraction"


def test_derived_package_round_trips_and_records_its_parent(tmp_path, onnx_package):
    child = derive_package(
        onnx_package, onnx_package.load_onnx(), tmp_path / "child", {"step": "test", "k": 1}
    )
    on_disk = _round_trips(child)
    spec = child.spec
    assert spec.steps == ["convert", "test"] and spec.history[-1].get("k") == 1
    assert spec.parent == Parent(str(onnx_package.path), onnx_package.spec.model_sha256)
    assert list(on_disk)[-1] == "parent"  # appended, as before the types
    assert spec.provenance == onnx_package.spec.provenance


def _with_unknown_keys(manifest: dict) -> dict:
    m = copy.deepcopy(manifest)
    m["future_section"] = {"x": [1, 2]}
    m["provenance"]["new_fact"] = "kept"
    m["history"][0]["future_field"] = {"a": None}
    m["verification"]["extra_check"] = True
    m["files"]["model.onnx"]["md5"] = "abc"
    m["signature"]["inputs"][0]["doc"] = "pixels"
    return m


def test_unknown_keys_load_and_survive_a_derivation(tmp_path, onnx_package):
    path = onnx_package.path / "modelport.json"
    newer = _with_unknown_keys(json.loads(path.read_text()))
    path.write_text(json.dumps(newer, indent=2))
    pkg = ModelPackage.load(onnx_package.path)
    assert pkg.spec.to_dict() == newer
    assert pkg.spec.extra == {"future_section": {"x": [1, 2]}}
    assert pkg.spec.history[0].get("future_field") == {"a": None}

    child = derive_package(pkg, pkg.load_onnx(), tmp_path / "child", {"step": "test"})
    got = child.manifest
    assert got["future_section"] == {"x": [1, 2]}
    assert got["provenance"]["new_fact"] == "kept"
    assert got["history"][0]["future_field"] == {"a": None}
    assert got["verification"]["extra_check"] is True
    assert got["signature"]["inputs"][0]["doc"] == "pixels"  # same signature: kept as read
    assert "md5" not in got["files"]["model.onnx"]  # a rewritten file gets a fresh record


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda m: m.update(opset="17"), r"'opset' must be an integer, got '17' \(str\)"),
        (lambda m: m.update(name=3), r"'name' must be a string, got 3"),
        (lambda m: m["history"][0].update(step=3), r"'history\[0\]\.step' must be a string"),
        (lambda m: m["history"][0].pop("step"), r"'history\[0\]\.step' is missing"),
        (lambda m: m.update(history={"step": "x"}), r"'history' must be a list"),
        (
            lambda m: m["provenance"]["frameworks"].update(onnx=1.2),
            r"'provenance\.frameworks\.onnx' must be a version string",
        ),
        (
            lambda m: m["files"]["model.onnx"].update(bytes="10"),
            r"'files\['model\.onnx'\]\.bytes' must be an integer",
        ),
        (
            lambda m: m["verification"].update(passed="yes"),
            r"'verification\.passed' must be true or false",
        ),
        (
            lambda m: m["signature"]["inputs"][0].update(shape="batch,4"),
            r"'signature\.inputs\[0\]\.shape' must be a list",
        ),
        (
            lambda m: m["signature"]["inputs"][0].update(shape=[None, 4]),
            r"'signature\.inputs\[0\]\.shape\[0\]' must be a size or a dimension name",
        ),
        (lambda m: m.update(serving=[]), r"'serving' must be an object, got \[\]"),
        (lambda m: m.update(parent={"sha256": None}), r"'parent\.path' is missing"),
    ],
)
def test_a_bad_field_is_refused_with_its_name(onnx_package, corrupt, message):
    path = onnx_package.path / "modelport.json"
    manifest = json.loads(path.read_text())
    corrupt(manifest)
    with pytest.raises(PackageError, match=message):
        Manifest.from_dict(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(PackageError, match=message) as info:
        ModelPackage.load(onnx_package.path)
    assert str(path) in str(info.value) and info.value.path == str(path)


def test_write_package_refuses_a_bad_manifest_and_writes_nothing(tmp_path, onnx_package):
    from modelport.package import write_package

    manifest = copy.deepcopy(onnx_package.manifest)
    manifest["opset"] = "seventeen"
    with pytest.raises(PackageError, match="'opset' must be an integer"):
        write_package(onnx_package.load_onnx(), manifest, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_manifest_built_in_code_writes_what_base_manifest_wrote(tiny_onnx):
    from modelport.package import base_manifest, opset_of

    model = onnx.load(str(tiny_onnx))
    sig = Signature.from_onnx(model)
    base = base_manifest("m", sig, opset_of(model), {"source_kind": "onnx"})
    built = Manifest(
        signature=sig,
        name="m",
        opset=opset_of(model),
        provenance=Provenance(
            source_kind="onnx",
            modelport_version=base["provenance"]["modelport_version"],
            created=base["provenance"]["created"],
        ),
    )
    assert built.to_dict() == base
    assert Manifest.from_dict(base) == built
    step = Step("quantize", time="t", extra={"report": {"size_ratio": np.float32(0.25)}})
    assert step.to_dict() == {"step": "quantize", "time": "t", "report": {"size_ratio": 0.25}}


def test_a_null_read_stays_null_and_a_section_set_to_none_is_left_out(onnx_package):
    import dataclasses

    manifest = copy.deepcopy(onnx_package.manifest)
    manifest["provenance"]["source_sha256"] = None  # as convert --hf writes without weights
    spec = Manifest.from_dict(manifest)
    assert spec.to_dict()["provenance"]["source_sha256"] is None
    assert spec.provenance is not None and spec.provenance.source_sha256 is None
    gone = dataclasses.replace(spec, files=None, verification=None).to_dict()
    assert "files" not in gone
    assert gone["verification"] is None  # read as an object, now none: null, as base_manifest
