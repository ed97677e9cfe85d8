"""Existing ONNX files: packaged, checked, opset-converted, and bad files refused."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from modelport.convert import ConvertConfig, Source, convert
from modelport.errors import ConversionError
from modelport.package import ModelPackage


def test_onnx_file_is_packaged_and_verified(tmp_path, tiny_onnx):
    res = convert(Source.onnx(str(tiny_onnx)), tmp_path / "pkg")
    assert res.report.passed and res.report.checker == "passed"
    pkg = ModelPackage.load(tmp_path / "pkg")
    assert pkg.signature.inputs[0].shape == ("batch", 4)
    assert pkg.manifest["provenance"]["source_kind"] == "onnx"
    assert pkg.manifest["provenance"]["source_opset"] == 17
    assert pkg.manifest["opset"] == 17


def test_onnx_opset_conversion_is_verified(tmp_path, tiny_onnx):
    res = convert(Source.onnx(str(tiny_onnx)), tmp_path / "pkg", ConvertConfig(opset=19))
    assert res.report.passed
    model = onnx.load(tmp_path / "pkg" / "model.onnx")
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [19]
    assert "opset converted 17 -> 19" in res.notes


def test_impossible_opset_conversion_is_a_clear_error(tmp_path, tiny_onnx):
    # onnx's converter has no adapter to take Add/Relu below opset 14
    with pytest.raises(ConversionError, match="cannot convert .* from opset 17 to 13"):
        convert(Source.onnx(str(tiny_onnx)), tmp_path / "pkg", ConvertConfig(opset=13))
    assert not (tmp_path / "pkg").exists()


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01 definitely not protobuf" * 10)
    with pytest.raises(ConversionError, match="not an ONNX model"):
        convert(Source.onnx(str(bad)), tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()


def test_missing_onnx_file(tmp_path):
    with pytest.raises(ConversionError, match="does not exist"):
        convert(Source.onnx(str(tmp_path / "nope.onnx")), tmp_path / "pkg")


def test_external_data_on_request(tmp_path, tiny_onnx):
    convert(Source.onnx(str(tiny_onnx)), tmp_path / "pkg", ConvertConfig(external_data=True))
    assert (tmp_path / "pkg" / "model.onnx.data").is_file()
    pkg = ModelPackage.load(tmp_path / "pkg")
    from modelport.runtime import make_session, run_session

    out = run_session(make_session(pkg.model_path), {"x": np.ones((2, 4), np.float32)})
    assert out["y"].shape == (2, 3)
    assert pkg.size_bytes() > (tmp_path / "pkg" / "model.onnx").stat().st_size
