"""plan across engines: OpenVINO candidates when installed, bf16 only where native, the chosen
engine recorded in the package's serving section and run as measured by bench."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.plan import PlanConfig, plan
from modelport.plan.candidates import ModelProfile, generate_candidates

pytest.importorskip("openvino")

TRANSFORMER = ModelProfile({"MatMul": 36, "Softmax": 6}, 1_000_000, 0, True, False, "transformer")


def _names(openvino, **kw):
    cands, skipped = generate_candidates(
        TRANSFORMER, calibration=True, eval_data=True, max_drop=0.001, openvino=openvino, **kw
    )
    return {c.name: c for c in cands}, dict(skipped)


def test_openvino_candidates_follow_the_native_precisions():
    with_bf16, _ = _names(("fp32", "bf16"))
    assert {"ov-fp32", "ov-bf16", "ov-int8-bf16", "ov-int8-bf16-partial"} <= set(with_bf16)
    assert with_bf16["ov-bf16"].engine == "openvino" and with_bf16["ov-bf16"].precision == "bf16"
    assert with_bf16["ov-int8-bf16"].options["model_type"] == "transformer"
    without, skipped = _names(("fp32",))
    assert not any("bf16" in c.precision for c in without.values())
    assert {"ov-fp32", "ov-int8-fp32", "ov-int8-fp32-partial"} <= set(without)
    assert "native bf16" in skipped["ov-bf16"]
    none, skipped = _names(None)
    assert not any(c.engine == "openvino" for c in none.values())
    assert "pip install 'modelport[openvino]'" in skipped["ov-*"]
    cuda, _ = generate_candidates(TRANSFORMER, target="cuda", openvino=("fp32", "bf16"))
    assert not any(c.engine == "openvino" for c in cuda)


@pytest.fixture(scope="module")
def digits_eval(tmp_path_factory, digits_data):
    d = tmp_path_factory.mktemp("digits-eval-ov")
    _, _, x_test, y_test = digits_data
    np.savez(d / "eval.npz", x=x_test[:120])
    np.save(d / "labels.npy", y_test[:120])
    return d / "eval.npz", d / "labels.npy"


def test_plan_without_bf16_never_offers_it_and_records_the_engine(
    tmp_path, digits_package, digits_eval, monkeypatch
):
    """A CPU without bf16 (simulated): no bf16 candidate or row; the pick's engine, precision
    and threads land in the serving section; bench --engine package runs exactly that."""
    from modelport.bench import LatencyConfig, SweepConfig, bench_models
    from modelport.package import ModelPackage

    monkeypatch.setenv("MODELPORT_DISABLE_PRECISIONS", "bf16")
    eval_npz, labels = digits_eval
    config = PlanConfig(
        max_drop=0.01,
        eval_data=eval_npz,
        labels=labels,
        only=("ov-fp32", "ov-int8-fp32", "int8-static"),
        repeats=5,
        batch_size=8,
    )
    result = plan(digits_package, tmp_path / "plan", config)
    engines = {(r["candidate"], r["engine"]) for r in result.rows}
    assert ("ov-fp32", "openvino") in engines and ("fp32", "ort") in engines
    assert not any("bf16" in r["precision"] for r in result.rows)
    assert not any("bf16" in c["name"] for c in result.summary["candidates"])
    assert "bf16" not in result.summary["machine"]["engines"]["openvino"]
    int8 = [r for r in result.rows if r["candidate"] == "ov-int8-fp32"]
    assert int8 and int8[0]["precision"] == "int8+fp32"  # read back from OpenVINO
    assert int8[0]["accuracy_drop"] < 0.05
    md = (tmp_path / "plan" / "report.md").read_text()
    assert "openvino int8+fp32" in md  # report rows name the engine that ran
    assert result.met
    win = result.winner
    chosen = ModelPackage.load(tmp_path / "plan" / "chosen")
    assert chosen.serving["engine"] == win["setting"]["engine"]
    assert chosen.serving["precision"] == win["setting"]["precision"]
    assert chosen.serving.get("intra_op_threads", 0) == win["setting"]["threads"]
    assert chosen.history[-1]["ran"]["engine"] == win["engine"]
    bench = bench_models(
        [chosen],
        SweepConfig(
            batch_sizes=(8,),
            engines=("package",),
            threads=(win["setting"]["threads"],),
            latency=LatencyConfig(warmup=1, repeats=3),
        ),
    )
    ran = bench.rows[0]["ran"]
    assert (ran["engine"], ran["precision"]) == (win["engine"], win["precision"])
