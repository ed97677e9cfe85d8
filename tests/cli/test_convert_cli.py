"""The convert / verify / inspect commands, through modelport.cli.main (exit codes 0, 1, 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modelport.cli import main


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert "modelport" in capsys.readouterr().out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "convert" in out and "verify" in out and "inspect" in out


def test_convert_verify_inspect_roundtrip(tmp_path, capsys):
    out = tmp_path / "mlp"
    rc = main(
        [
            "convert",
            "--torch",
            "tests.convert.torch_models:build_mlp",
            "--input",
            "x:batch,4:float32",
            "-o",
            str(out),
            "--json",
            str(tmp_path / "report.json"),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "verified" in text and "batch=4" in text
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verification"]["passed"] is True
    assert main(["verify", str(out)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["signature"]["inputs"][0]["shape"] == ["batch", 4]
    assert d["ops"].get("Gemm", 0) + d["ops"].get("MatMul", 0) == 2
    assert d["parameters"] == 4 * 8 + 8 + 8 * 3 + 3
    assert d["verification"]["passed"] is True
    assert main(["inspect", str(out)]) == 0
    assert "Provenance" in capsys.readouterr().out


MLP = ["--torch", "tests.convert.torch_models:build_mlp", "--input", "x:batch,4:float32"]


def test_convert_writes_one_plain_line_per_phase_off_a_terminal(tmp_path, capsys, monkeypatch):
    """CI logs and pipes: each phase as it starts, one line, no colours or carriage returns;
    the report still goes to stdout."""
    monkeypatch.delenv("MODELPORT_PROGRESS", raising=False)
    assert main(["convert", *MLP, "-o", str(tmp_path / "mlp")]) == 0
    captured = capsys.readouterr()
    phases = [ln for ln in captured.err.splitlines() if ln.startswith("convert: ")]
    cases = json.loads((tmp_path / "mlp" / "modelport.json").read_text())["verification"]
    n = len(cases["cases"])
    assert phases == [
        "convert: load source",
        "convert: run the source on the example",
        "convert: export (dynamo)",
        "convert: check (onnx.checker, shape inference)",
        f"convert: verify ({n} cases)",
        "convert: write package",
    ]
    assert "\x1b" not in captured.err and "\r" not in captured.err
    assert "verified" in captured.out and "convert:" not in captured.out
    # verify: its phases the same way, and its tables after them on stdout
    assert main(["verify", str(tmp_path / "mlp"), *MLP]) == 0
    captured = capsys.readouterr()
    phases = [ln for ln in captured.err.splitlines() if ln.startswith("verify: ")]
    assert phases[:3] == [
        "verify: load source",
        "verify: run the source on the example",
        "verify: export (dynamo)",
    ]
    assert phases[-2:] == [
        "verify: check (onnx.checker, shape inference)",
        f"verify: verify ({n} cases)",
    ]
    assert "against the source" in captured.out and "\x1b" not in captured.err
    monkeypatch.setenv("MODELPORT_PROGRESS", "0")
    assert main(["convert", *MLP, "-o", str(tmp_path / "quiet")]) == 0
    assert "convert:" not in capsys.readouterr().err


def test_progress_reaches_the_terminal_while_library_output_is_captured(
    tmp_path, capsys, monkeypatch
):
    """The live display draws on the command's stderr, not into the capture of other libraries'
    output: conversion phases as rows with their counts, and quantize's calibration bar."""
    monkeypatch.setenv("MODELPORT_PROGRESS", "1")
    assert main(["convert", *MLP, "-o", str(tmp_path / "mlp")]) == 0
    err = capsys.readouterr().err
    n = len(json.loads((tmp_path / "mlp" / "modelport.json").read_text())["verification"]["cases"])
    rows = [ln for ln in err.splitlines() if ln.startswith("✓")]
    assert [r.split()[1] for r in rows] == ["load", "run", "export", "check", "verify", "write"]
    assert f"{n}/{n}" in rows[4]
    np.savez(tmp_path / "cal.npz", x=np.random.default_rng(0).random((32, 4), dtype=np.float32))
    args = [
        "quantize",
        str(tmp_path / "mlp"),
        "--mode",
        "static",
        "--max-drop",
        "1",
        "--calibration",
    ]
    assert main([*args, str(tmp_path / "cal.npz"), "-o", str(tmp_path / "q")]) == 0
    assert "calibration (minmax), samples" in capsys.readouterr().err


def test_verify_against_the_source(tmp_path):
    out = tmp_path / "mlp"
    assert (
        main(
            [
                "convert",
                "--torch",
                "tests.convert.torch_models:build_mlp",
                "--input",
                "x:batch,4:float32",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "verify",
                str(out),
                "--torch",
                "tests.convert.torch_models:build_mlp",
                "--input",
                "x:batch,4:float32",
            ]
        )
        == 0
    )
    # a different source model (other seed) is caught
    assert (
        main(
            [
                "verify",
                str(out),
                "--torch",
                "tests.convert.torch_models:MLP",
                "--input",
                "x:batch,4:float32",
            ]
        )
        == 1
    )


def test_example_inputs_and_dynamic(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "ex.npz",
        ids=rng.integers(0, 50, (2, 5)),
        feats=rng.standard_normal((2, 2)).astype(np.float32),
    )
    rc = main(
        [
            "convert",
            "--torch",
            "tests.convert.torch_models:build_two_io",
            "--example-inputs",
            str(tmp_path / "ex.npz"),
            "--dynamic",
            "ids:1=sequence",
            "-o",
            str(tmp_path / "p"),
        ]
    )
    assert rc == 0
    manifest = json.loads((tmp_path / "p" / "modelport.json").read_text())
    assert manifest["signature"]["inputs"][0]["shape"] == ["batch", "sequence"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["convert", "-o", "X"], "give exactly one source"),
        (["convert", "--torch", "a:b", "--onnx", "m.onnx", "-o", "X"], "give exactly one source"),
        (
            ["convert", "--torch", "tests.convert.torch_models:build_mlp", "-o", "X"],
            "needs example inputs",
        ),
        (
            [
                "convert",
                "--torch",
                "tests.convert.torch_models:build_mlp",
                "--input",
                "x:batch,4:float32",
                "--dynamic",
                "x:one=batch",
                "-o",
                "X",
            ],
            "should be axis=name",
        ),
        (
            [
                "convert",
                "--torch",
                "tests.convert.torch_models:build_mlp",
                "--input",
                "x:batch,4:floaty",
                "-o",
                "X",
            ],
            "unknown dtype",
        ),
        (
            [
                "convert",
                "--torch",
                "tests.convert.torch_models:MLP",
                "--init-args",
                "{bad",
                "-o",
                "X",
            ],
            "not valid JSON",
        ),
        (
            ["convert", "--torch", "nosuchmod:build", "--input", "x:batch,4:float32", "-o", "X"],
            "cannot import module",
        ),
    ],
)
def test_usage_errors_exit_2_with_a_message(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert not (tmp_path / "X").exists()
    assert "Traceback" not in err


def test_parity_failure_exits_1_and_writes_nothing(tmp_path, capsys):
    np.savez(
        tmp_path / "x.npz",
        x=np.abs(np.random.default_rng(0).standard_normal((2, 4))).astype(np.float32),
    )
    out = tmp_path / "p"
    rc = main(
        [
            "convert",
            "--torch",
            "tests.convert.torch_models:DataDependentBranch",
            "--example-inputs",
            str(tmp_path / "x.npz"),
            "-o",
            str(out),
        ]
    )
    assert rc == 1
    captured = capsys.readouterr()
    assert "does not match the source" in captured.err and "FAIL" in captured.out
    assert not out.exists()
    rc = main(
        [
            "convert",
            "--torch",
            "tests.convert.torch_models:DataDependentBranch",
            "--example-inputs",
            str(tmp_path / "x.npz"),
            "-o",
            str(out),
            "--allow-mismatch",
        ]
    )
    assert rc == 1 and (out / "model.onnx").is_file()


def test_existing_output_exit_2(tmp_path, capsys):
    (tmp_path / "p").mkdir()
    rc = main(
        [
            "convert",
            "--torch",
            "tests.convert.torch_models:build_mlp",
            "--input",
            "x:batch,4:float32",
            "-o",
            str(tmp_path / "p"),
        ]
    )
    assert rc == 2 and "--force" in capsys.readouterr().err
