from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from modelport.errors import PackageError, UsageError
from modelport.package import ModelPackage, atomic_output_dir, derive_package


def test_bare_onnx_file_loads_as_package(tiny_onnx):
    pkg = ModelPackage.load(tiny_onnx)
    assert pkg.model_path == tiny_onnx
    assert pkg.signature.input_names == ["x"]
    assert pkg.manifest["provenance"]["source_kind"] == "onnx"


def test_not_a_package(tmp_path):
    with pytest.raises(PackageError, match="does not exist"):
        ModelPackage.load(tmp_path / "nope")
    (tmp_path / "d").mkdir()
    with pytest.raises(PackageError, match="no model.onnx"):
        ModelPackage.load(tmp_path / "d")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(PackageError, match="neither"):
        ModelPackage.load(tmp_path / "f.txt")


def test_corrupt_manifest(tmp_path, tiny_onnx):
    from modelport.convert import Source, convert

    convert(Source.onnx(str(tiny_onnx)), tmp_path / "p")
    (tmp_path / "p" / "modelport.json").write_text("{not json")
    with pytest.raises(PackageError, match="cannot read the manifest"):
        ModelPackage.load(tmp_path / "p")


def test_atomic_output_dir_keeps_old_on_failure(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_output_dir(out, force=True) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("fail midway")
    assert (out / "old.txt").read_text() == "old" and not (out / "new.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    with pytest.raises(UsageError, match="already exists"), atomic_output_dir(out):
        pass


def test_derive_package_appends_history_keeps_samples_and_parent(tmp_path, tiny_onnx):
    from modelport.convert import ConvertConfig, Source, convert

    x = np.ones((2, 4), np.float32)
    parent = convert(
        Source.onnx(str(tiny_onnx)), tmp_path / "p", ConvertConfig(example={"x": x})
    ).package
    before = (tmp_path / "p" / "modelport.json").read_text()
    model = parent.load_onnx()
    child = derive_package(parent, model, tmp_path / "c", {"step": "noop", "config": {"a": 1}})
    assert [h["step"] for h in child.history] == ["convert", "noop"]
    assert child.manifest["parent"]["sha256"] == parent.manifest["files"]["model.onnx"]["sha256"]
    assert child.samples() is not None
    np.testing.assert_array_equal(child.samples()[1]["y"], parent.samples()[1]["y"])
    assert (tmp_path / "p" / "modelport.json").read_text() == before  # parent untouched
    props = {p.key: p.value for p in onnx.load(child.model_path).metadata_props}
    assert props["modelport.steps"] == "convert,noop"
    assert json.loads((tmp_path / "c" / "modelport.json").read_text())["history"][1]["config"] == {
        "a": 1
    }


def test_json_default_writes_numpy_and_paths_as_json():
    from pathlib import Path

    from modelport.package import json_default

    data = {"n": np.int64(3), "f": np.float32(0.5), "a": np.arange(3), "p": Path("a/b")}
    assert json.loads(json.dumps(data, default=json_default)) == {
        "n": 3,
        "f": 0.5,
        "a": [0, 1, 2],
        "p": "a/b",
    }
    with pytest.raises(TypeError, match="not JSON serializable: object"):
        json.dumps({"x": object()}, default=json_default)
