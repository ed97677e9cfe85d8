"""describe (``modelport inspect``) reads the typed manifest and names a malformed field."""

from __future__ import annotations

import json

from modelport.cli import main
from modelport.describe import describe


def _package(tmp_path, tiny_onnx):
    from modelport.convert import Source, convert

    return convert(Source.onnx(str(tiny_onnx)), tmp_path / "tiny").package


def test_describe_summarises_the_manifest(tmp_path, tiny_onnx):
    pkg = _package(tmp_path, tiny_onnx)
    d = describe(str(pkg.path))
    m = json.loads((pkg.path / "modelport.json").read_text())
    assert d["provenance"] == m["provenance"] and d["history"] == m["history"]
    assert d["serving"] == {}
    v = d["verification"]
    assert v["passed"] is True and v["cases"] == len(m["verification"]["cases"])
    assert v["atol"] == m["verification"]["atol"] and set(v["max_abs_diff"]) == {"y"}


def test_inspect_names_the_bad_field_and_exits_2(tmp_path, tiny_onnx, capsys):
    pkg = _package(tmp_path, tiny_onnx)
    path = pkg.path / "modelport.json"
    m = json.loads(path.read_text())
    m["history"][0]["step"] = ["convert"]
    path.write_text(json.dumps(m))
    assert main(["inspect", str(pkg.path)]) == 2
    err = capsys.readouterr().err
    assert "history[0].step' must be a string" in err and "Traceback" not in err
