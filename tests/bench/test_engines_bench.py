"""bench compares engines side by side, interleaved, and records what ran."""

from __future__ import annotations

import json

import pytest

from modelport.cli import main
from modelport.errors import UsageError

pytest.importorskip("openvino")


def test_cli_engines_side_by_side(tiny_onnx, tmp_path):
    out = tmp_path / "r.json"
    rc = main(["bench", str(tiny_onnx), "--engine", "ort,openvino", "--threads", "1",
               "--warmup", "1", "--repeats", "3", "--json", str(out)])  # fmt: skip
    assert rc == 0
    d = json.loads(out.read_text())
    rows = {r["variant"]: r for r in d["rows"]}
    assert set(rows) == {"tiny [ort]", "tiny [openvino]"}
    assert rows["tiny [openvino]"]["ran"]["engine"] == "openvino"
    assert rows["tiny [openvino]"]["ran"]["threads"] == 1
    assert rows["tiny [ort]"]["ran"]["providers"] == ["CPUExecutionProvider"]
    assert rows["tiny [ort]"]["speedup_vs_first"] == 1.0  # the first variant is the baseline
    assert rows["tiny [openvino]"]["speedup_vs_first"] > 0
    assert len(d["groups"]) == 1  # both engines in one interleaved run


def test_engine_specs_are_checked():
    from modelport.bench import SweepConfig

    with pytest.raises(UsageError, match="not one of"):
        SweepConfig(engines=("tensorrt",))
    with pytest.raises(UsageError, match="no bf16 kernels"):
        SweepConfig(engines=("ort:bf16",))
