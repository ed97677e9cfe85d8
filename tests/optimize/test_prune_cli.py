"""``modelport prune`` through modelport.cli.main: packages and PyTorch sources, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modelport.cli import main
from modelport.package import ModelPackage


def test_prune_package_magnitude(digits_package, digits_data, tmp_path, capsys):
    _, _, x_test, y_test = digits_data
    np.save(tmp_path / "x.npy", x_test)
    np.save(tmp_path / "y.npy", y_test)
    rc = main(
        [
            "prune",
            str(digits_package.path),
            "--method",
            "magnitude",
            "--sparsity",
            "0.8",
            "--eval",
            str(tmp_path / "x.npy"),
            "--labels",
            str(tmp_path / "y.npy"),
            "--repeats",
            "3",
            "-o",
            str(tmp_path / "out"),
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    captured = capsys.readouterr()
    text, err = captured.out, " ".join(captured.err.split())
    # 80% of the weights zeroed without fine-tuning costs far more than the default budget of
    # 1 point of accuracy: a loud warning and exit code 1, the package still written and marked
    assert rc == 1, text + err
    flat = " ".join(text.split())
    assert "Layers" in text and "gzip" in text
    assert "does not make a dense runtime faster" in flat and "still multiply the zeros" in flat
    assert "WARNING: OUTSIDE THE BUDGET: accuracy dropped by" in err
    assert "allowed 0.01, the default budget; set --max-drop" in err
    assert "FAILED (wrote" in err
    report = json.loads((tmp_path / "r.json").read_text())["report"]
    assert report["step"] == "prune"
    assert report["details"]["global_sparsity"] == pytest.approx(0.8, abs=0.01)
    acc = report["accuracy"]
    assert acc["before"] > 0.95 and acc["after"] < acc["before"] - 0.01
    assert f"(drop {100 * acc['drop']:.2f} points)" in flat  # shown in points, stored as a fraction
    assert report["metric"]["budget"] == 0.01 and report["metric"]["budget_source"] == "default"
    assert report["passed"] is False and report["checker"] == "passed"
    step = ModelPackage.load(tmp_path / "out").history[-1]
    assert step["step"] == "prune" and step["passed"] is False


def test_prune_max_drop_sets_the_budget(digits_package, digits_data, tmp_path, capsys):
    _, _, x_test, y_test = digits_data
    np.save(tmp_path / "x.npy", x_test)
    np.save(tmp_path / "y.npy", y_test)
    args = ["prune", str(digits_package.path), "--sparsity", "0.3", "--repeats", "2"]
    args += ["--eval", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy")]
    rc = main(
        [*args, "--max-drop", "0.99", "-o", str(tmp_path / "a"), "--json", str(tmp_path / "a.json")]
    )
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    assert "OUTSIDE" not in out.err and "passed (checker, budget)" in out.out
    report = json.loads((tmp_path / "a.json").read_text())["report"]
    assert report["metric"] == {**report["metric"], "budget": 0.99, "budget_source": "given"}
    assert report["passed"] is True
    assert main([*args, "--max-drop", "-1", "-o", str(tmp_path / "b")]) == 2
    assert "max_drop=-1.0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sparsity", "1.0"], "outside [0, 1)"),
        (["--sparsity", "0.5", "--exclude", "nope"], "features.0"),
        (["--sparsity", "0.5", "--finetune", "examples.resnet_digits:finetune"], "PyTorch"),
    ],
)
def test_prune_bad_input_exits_2(digits_package, tmp_path, capsys, args, message):
    rc = main(["prune", str(digits_package.path), "-o", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.replace("\n", " ")
    assert rc == 2 and message in err
    assert not (tmp_path / "out").exists()


def test_prune_torch_source_structured_with_finetune(digits_cnn, digits_data, tmp_path, capsys):
    _, _, x_test, y_test = digits_data
    torch.save(digits_cnn.state_dict(), tmp_path / "w.pt")
    np.savez(tmp_path / "x.npz", x=x_test[:16])
    np.savez(tmp_path / "eval.npz", x=x_test)
    np.save(tmp_path / "y.npy", y_test)
    rc = main(
        [
            "prune",
            "--torch",
            "examples.digits_cnn:DigitsCNN",
            "--weights",
            str(tmp_path / "w.pt"),
            "--example-inputs",
            str(tmp_path / "x.npz"),
            "--method",
            "structured",
            "--sparsity",
            "0.5",
            "--finetune",
            "examples.resnet_digits:finetune",
            "--eval",
            str(tmp_path / "eval.npz"),
            "--labels",
            str(tmp_path / "y.npy"),
            "--repeats",
            "3",
            "-o",
            str(tmp_path / "out"),
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    pkg = ModelPackage.load(tmp_path / "out")
    assert [h["step"] for h in pkg.history] == ["convert", "prune"]
    assert pkg.name == "out"  # named after -o, not after the temporary "source" directory
    step = pkg.history[-1]
    assert step["finetune"] == "examples.resnet_digits:finetune"
    assert step["report"]["details"]["params"]["ratio"] > 3
    assert step["report"]["accuracy"]["drop"] < 0.05
    assert pkg.manifest["provenance"]["source_class"] == "examples.digits_cnn:DigitsCNN"
    assert "fine-tune" in text


def test_prune_needs_a_model(tmp_path, capsys):
    assert main(["prune", "--sparsity", "0.5", "-o", str(tmp_path / "o")]) == 2
    assert "PACKAGE" in capsys.readouterr().err


def test_prune_onnx_file_structured(tiny_onnx, tmp_path, capsys):
    rc = main(
        [
            "prune",
            "--onnx",
            str(tiny_onnx),
            "--method",
            "structured",
            "--sparsity",
            "0.5",
            "--importance",
            "l2",
            "--repeats",
            "3",
            "--max-drop",
            "1",
            "-o",
            str(tmp_path / "out"),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    # w1 lost half of its output channels; w2 was not a target (the head) but lost the matching
    # input rows: the table says so instead of "no"
    rows = {line.split()[0]: line.split()[2] for line in captured.out.splitlines() if "│" in line}
    assert rows["w1"] == "yes" and rows["w2"] == "inputs"
    dims = {
        i.name: list(i.dims)
        for i in ModelPackage.load(tmp_path / "out").load_onnx().graph.initializer
    }
    assert dims["w1"] == [4, 4] and dims["w2"] == [4, 3]


def test_prune_writes_one_plain_line_per_phase_off_a_terminal(
    tiny_onnx, tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("MODELPORT_PROGRESS", raising=False)
    args = [
        "prune",
        str(tiny_onnx),
        "--method",
        "magnitude",
        "--sparsity",
        "0.5",
        "--max-drop",
        "1",
    ]
    assert main([*args, "--repeats", "3", "-o", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert [ln for ln in err.splitlines() if ln.startswith("prune: ")] == [
        "prune: prune (magnitude)",
        "prune: check (onnx.checker, shape inference)",
        "prune: measure (size, latency, fidelity)",
        "prune: write package",
    ]
    assert "\x1b" not in err and "\r" not in err
