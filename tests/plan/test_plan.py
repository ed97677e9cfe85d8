"""plan() and ``modelport plan`` end to end on the digits CNN: the chosen package, the report,
the budget (met and impossible), the time budget, interruption, pruning and shipping."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelport.cli import main
from modelport.errors import UsageError
from modelport.package import ModelPackage, file_sha256
from modelport.plan import PlanConfig, plan


@pytest.fixture(scope="module")
def digits_eval(tmp_path_factory, digits_data):
    d = tmp_path_factory.mktemp("digits-eval")
    _, _, x_test, y_test = digits_data
    np.savez(d / "eval.npz", x=x_test[:200])
    np.save(d / "labels.npy", y_test[:200])
    return d / "eval.npz", d / "labels.npy"


def test_plan_picks_within_the_budget_and_writes_package_and_report(
    tmp_path, digits_package, digits_eval
):
    eval_npz, labels = digits_eval
    before = file_sha256(digits_package.model_path)
    config = PlanConfig(
        max_drop=0.01, eval_data=eval_npz, labels=labels, only=("int8-static",), repeats=5
    )
    result = plan(digits_package, tmp_path / "plan", config)
    assert file_sha256(digits_package.model_path) == before  # the input is untouched
    assert result.met and result.chosen is not None
    # fp32 and int8-static, each with 4 session settings (2 cores) or 2 (1 core)
    assert {r["candidate"] for r in result.rows} == {"fp32", "int8-static"}
    assert len(result.rows) in (4, 8)
    win = result.winner
    assert win["meets_budget"] and win["verdict"].startswith("WINNER")
    assert win["accuracy_drop"] <= 0.01
    assert (
        win["latency_ms"] == min(r["latency_ms"] for r in result.rows if r["meets_budget"])
        or "tie" in json.dumps(result.summary)
        or win["latency_ms"] <= 1.02 * min(r["latency_ms"] for r in result.rows)
    )
    fp32 = next(r for r in result.rows if r["candidate"] == "fp32")
    assert fp32["drop"] == 0.0 and fp32["fidelity_drop"] < 1e-6
    static = next(r for r in result.rows if r["candidate"] == "int8-static")
    assert static["size_mb"] < fp32["size_mb"] / 2  # int8 weights
    assert 0 <= static["fidelity_drop"] < 0.05
    # the chosen package: the winner's model, the plan step in its history, its threads
    chosen = ModelPackage.load(tmp_path / "plan" / "chosen")
    step = chosen.history[-1]
    assert step["step"] == "plan" and step["candidate"] == win["candidate"]
    assert step["session"]["threads"] == win["setting"]["threads"]
    assert chosen.serving.get("intra_op_threads", 0) == win["setting"]["threads"]
    ops = {n.op_type for n in chosen.load_onnx().graph.node}
    assert ("QuantizeLinear" in ops) == (win["candidate"] == "int8-static")
    # reports: every row in the Markdown, the plot embedded in the HTML, plan.json complete
    md = (tmp_path / "plan" / "report.md").read_text()
    assert md.count("| int8-static |") + md.count("| **int8-static** |") == len(result.rows) // 2
    assert "## Not generated" in md and "fp16" in md and "WINNER" in md
    html = (tmp_path / "plan" / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert (tmp_path / "plan" / "pareto.png").stat().st_size > 1000
    summary = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert summary["budget"]["metric"] == "accuracy" and summary["final"]
    assert summary["winner"] == win["name"] and summary["explanation"]
    assert not (tmp_path / "plan" / ".work").exists()  # candidates are not left behind


def test_time_budget_stops_after_the_first_candidate_and_keeps_it(tmp_path, digits_package):
    config = PlanConfig(time_budget_s=1e-3, repeats=3)
    result = plan(digits_package, tmp_path / "plan", config)
    assert result.stopped == "time budget"
    assert {r["candidate"] for r in result.rows} == {"fp32"}
    skipped = [a for a in result.summary["attempts"] if a["status"] == "skipped"]
    assert skipped and all(a["reason"].startswith("time budget") for a in skipped)
    assert result.chosen is not None and result.chosen.history[-1]["candidate"] == "fp32"
    assert "stopped early" in (tmp_path / "plan" / "report.md").read_text()


def test_the_search_counts_candidates_on_one_bar(tmp_path, digits_package, monkeypatch):
    import io

    from modelport import progress as pg

    monkeypatch.setenv("MODELPORT_PROGRESS", "1")  # the live display, on any stream
    out = io.StringIO()
    previous = pg.set_stream(out)
    try:
        result = plan(
            digits_package, tmp_path / "plan", PlanConfig(repeats=3, only=("fp32-graph",))
        )
    finally:
        pg.set_stream(previous)
    n = len(result.summary["attempts"])
    assert n == 2  # fp32 (always) and the one asked for
    final = [ln for ln in out.getvalue().splitlines() if "plan:" in ln][-1]
    assert final.lstrip().startswith("✓") and f"{n}/{n}" in final
    assert pg._live is None


def test_an_interrupted_search_still_leaves_the_best_so_far(tmp_path, digits_package, monkeypatch):
    from modelport.plan import search as search_mod

    real = search_mod.build_candidate

    def build(ctx, cand, base, out):
        if cand.name != "fp32":
            raise KeyboardInterrupt
        return real(ctx, cand, base, out)

    monkeypatch.setattr(search_mod, "build_candidate", build)
    result = plan(digits_package, tmp_path / "plan", PlanConfig(repeats=3))
    assert result.stopped == "interrupted"
    assert result.chosen is not None and result.winner["candidate"] == "fp32"


def test_nothing_meets_an_impossible_budget_cli_exits_1(tmp_path, digits_package, capsys):
    out = tmp_path / "plan"
    rc = main(
        [
            "plan",
            str(digits_package.path),
            "-o",
            str(out),
            "--max-latency-ms",
            "0.000001",
            "--only",
            "fp32-graph",
            "--repeats",
            "3",
        ]
    )
    assert rc == 1
    assert not (out / "chosen").exists()
    text = capsys.readouterr()
    assert "no candidate meets the budget" in text.err
    assert "Closest candidates" in text.out
    summary = json.loads((out / "plan.json").read_text())
    assert not summary["met"] and summary["chosen"] is None
    assert 1 <= len(summary["closest"]) <= 3
    assert "No candidate meets the budget. The closest:" in summary["explanation"][0]
    assert "latency" in (out / "report.md").read_text()


def test_cli_ships_the_chosen_package(tmp_path, digits_package):
    out = tmp_path / "plan"
    rc = main(
        [
            "plan",
            str(digits_package.path),
            "-o",
            str(out),
            "--only",
            "fp32-graph",
            "--repeats",
            "3",
            "--ship",
            "repo",
            "--name",
            "digits-prod",
            "--keep-front",
            "--json",
            str(tmp_path / "p.json"),
        ]
    )
    assert rc == 0
    summary = json.loads((tmp_path / "p.json").read_text())
    assert summary["deployed"]["target"] == "repo"
    entry = [p for p in (out / "deploy" / "repo").rglob("model.onnx")]
    # the model is named after --name in the chosen package and in the shipped artifact
    assert entry == [out / "deploy" / "repo" / "digits-prod" / "1" / "model.onnx"]
    assert ModelPackage.load(out / "chosen").name == "digits-prod"
    assert len(summary["front_packages"]) == len(summary["front"]) >= 1
    for p in summary["front_packages"]:
        assert ModelPackage.load(p).history[-1]["step"] == "plan"
    # the output is not replaced without --force, and is with it
    assert main(["plan", str(digits_package.path), "-o", str(out), "--repeats", "3"]) == 2
    rc = main(
        [
            "plan",
            str(digits_package.path),
            "-o",
            str(out),
            "--repeats",
            "3",
            "--force",
            "--only",
            "fp32-graph",
        ]
    )
    assert rc == 0


def test_pruning_a_torch_source_with_a_finetune_hook(tmp_path, digits_cnn, digits_data):
    import torch

    x_train, y_train, x_test, y_test = digits_data
    calls = []

    def finetune(module):
        from examples.digits_cnn import train

        calls.append(type(module).__name__)
        return train(module, x_train, y_train, epochs=1)

    before = {k: v.clone() for k, v in digits_cnn.state_dict().items()}
    config = PlanConfig(
        max_drop=0.05,
        eval_data={"x": x_test[:200]},
        labels=y_test[:200],
        finetune=finetune,
        only=("pruned-50+int8-static",),
        repeats=3,
    )
    result = plan(digits_cnn, tmp_path / "plan", config)
    assert calls  # the hook ran
    # a source's packages are named after the plan's output, never after a work directory
    assert result.chosen.name == "plan"
    assert all(torch.equal(v, digits_cnn.state_dict()[k]) for k, v in before.items())
    cands = {r["candidate"] for r in result.rows}
    assert cands == {"fp32", "pruned-50", "pruned-50+int8-static"}
    sizes = {r["candidate"]: r["size_mb"] for r in result.rows}
    assert (
        sizes["pruned-50"] < sizes["fp32"] / 2
        and sizes["pruned-50+int8-static"] < sizes["pruned-50"]
    )
    assert result.met


def test_bad_configs_and_targets_are_usage_errors(tmp_path, digits_package):
    with pytest.raises(UsageError, match="target"):
        PlanConfig(target="tpu")
    with pytest.raises(UsageError, match="max_drop"):
        PlanConfig(max_drop=-1)
    with pytest.raises(UsageError, match="labels need the eval data"):
        PlanConfig(labels="l.npy")
    with pytest.raises(UsageError, match="time_budget_s"):
        PlanConfig(time_budget_s=0)
    with pytest.raises(UsageError, match="ship"):
        PlanConfig(ship="s3")
    with pytest.raises(UsageError, match="PyTorch"):
        plan(digits_package, tmp_path / "p", PlanConfig(finetune=lambda m: m))
    with pytest.raises(UsageError, match="not candidates"):
        plan(digits_package, tmp_path / "p2", PlanConfig(only=("int8-nothing",)))
    from modelport.runtime import available_providers

    if "CUDAExecutionProvider" not in available_providers():
        with pytest.raises(UsageError, match="CUDAExecutionProvider"):
            plan(digits_package, tmp_path / "p3", PlanConfig(target="cuda"))
        assert (
            main(["plan", str(digits_package.path), "-o", str(tmp_path / "p4"), "--target", "cuda"])
            == 2
        )


@pytest.mark.parametrize("target", ["repo", "triton", "torchserve", "kserve", "docker"])
def test_the_chosen_package_ships_to_every_target(tmp_path, digits_package, target):
    result = plan(
        digits_package, tmp_path / "plan", PlanConfig(only=("fp32",), repeats=3, ship=target)
    )
    assert result.met and result.deployed is not None
    assert result.deployed.target == target
    assert result.deployed.path.exists() and result.deployed.files
    assert str(tmp_path / "plan" / "deploy" / target) in str(result.deployed.path)
    assert result.summary["deployed"]["checks"] == result.deployed.checks
