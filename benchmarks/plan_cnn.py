"""``plan`` on the digits CNN with labels: the pick vs fp32, measured on this machine.

    flock /tmp/modelport-bench.lock .venv/bin/python benchmarks/plan_cnn.py [--quick]

The DigitsCNN (examples.digits_cnn) is trained here (seconds), then planned from its PyTorch
source with a fine-tune hook (so structured pruning is a candidate, alone and stacked with
static int8), eval = the 360 held-out test digits with labels, calibration = 256 training
images, budget = 1 point of accuracy, batch 1. The pick is then timed again against fp32
(both with their own session settings; fp32 as ONNX Runtime runs it by default), interleaved,
with many repeats. Goal: at least 2x faster than fp32 within 1 point.
Writes benchmarks/results/plan_cnn.json (and the plan itself under build/bench-plan/cnn).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "bench-plan"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def finetune(module):
    """The fine-tune hook: three epochs on the training split (seconds)."""
    from examples.digits_cnn import load_digits_split, train

    x, y, _, _ = load_digits_split()
    return train(module, x, y, epochs=3, lr=1e-3)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer timing repeats")
    ap.add_argument("--max-drop", type=float, default=0.01, help="accuracy drop (0.01 = 1 point)")
    ap.add_argument("--time-budget", type=float, default=15.0, help="minutes")
    args = ap.parse_args()

    import torch

    from examples.digits_cnn import DigitsCNN, load_digits_split, train
    from modelport.bench import LatencyConfig, compare_latency
    from modelport.convert import Source
    from modelport.metrics import accuracy
    from modelport.optimize.hardware import detect_cpu
    from modelport.optimize.report import run_batched
    from modelport.plan import PlanConfig, plan
    from modelport.runtime import SessionConfig, make_session

    BUILD.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_test, y_test = load_digits_split()
    np.savez(BUILD / "digits_test.npz", x=x_test)
    np.save(BUILD / "digits_labels.npy", y_test)
    np.savez(BUILD / "digits_calib.npz", x=x_train[:256])
    torch.manual_seed(0)
    model = train(DigitsCNN(), x_train, y_train, epochs=8)
    config = PlanConfig(
        max_drop=args.max_drop,
        eval_data=BUILD / "digits_test.npz",
        labels=BUILD / "digits_labels.npy",
        calibration=BUILD / "digits_calib.npz",
        finetune=finetune,
        batch_size=1,
        time_budget_s=60 * args.time_budget,
        repeats=30 if args.quick else 100,
    )
    t0 = time.perf_counter()
    result = plan(
        Source.torch_module(copy.deepcopy(model)),
        BUILD / "cnn",
        config,
        force=True,
        log=lambda m: print(m, flush=True),
    )
    plan_s = time.perf_counter() - t0
    if not result.met:
        print("nothing met the budget; closest:", result.closest)
        return 1
    win = result.winner
    # re-time: fp32 (default session) vs the pick (its session), interleaved, many repeats
    # the fp32 package lived in the plan's work directory; export it again for timing
    from modelport.convert import ConvertConfig, convert

    fp32 = convert(
        Source.torch_module(copy.deepcopy(model)),
        BUILD / "cnn-fp32",
        ConvertConfig(example={"x": x_test[:16]}),
        force=True,
    ).package
    s = win["setting"]
    sessions = [
        ("fp32 (ORT defaults)", make_session(fp32.model_path)),
        (
            f"plan pick: {win['candidate']} ({win['setting_label']})",
            make_session(
                result.chosen.model_path,
                SessionConfig(intra_op_threads=s["threads"], parallel=s["parallel"]),
            ),
        ),
    ]
    rows = []
    for b in (1, 8):
        feed = {"x": x_test[:b]}
        stats = compare_latency(
            sessions, feed, LatencyConfig(warmup=20, repeats=300 if args.quick else 1000)
        )
        for (name, sess), st in zip(sessions, stats, strict=True):
            out = run_batched(sess, {"x": x_test})
            rows.append(
                {
                    "variant": name,
                    "batch_size": b,
                    "p50_ms": st.p50,
                    "speedup": stats[0].p50 / st.p50,
                    "accuracy": accuracy(next(iter(out.values())), y_test),
                }
            )
    cpu = detect_cpu().summary()
    print(f"\nplan on the digits CNN, {cpu}; {plan_s:.0f} s; budget {args.max_drop} accuracy")
    print(f"{'variant':60s} {'batch':>5s} {'p50 ms':>8s} {'speed-up':>8s} {'accuracy':>8s}")
    for r in rows:
        print(
            f"{r['variant']:60s} {r['batch_size']:5d} {r['p50_ms']:8.4f} {r['speedup']:7.2f}x "
            f"{r['accuracy']:8.4f}"
        )
    acc_drop = rows[0]["accuracy"] - rows[1]["accuracy"]
    print(
        f"\npick: {win['candidate']} ({win['setting_label']}): {rows[1]['speedup']:.2f}x at "
        f"batch 1, accuracy drop {100 * acc_drop:.2f} points "
        f"(goal: >= 2x within 1 point: {'MET' if rows[1]['speedup'] >= 2 and acc_drop <= 0.01 else 'NOT MET'})"
    )
    out = ROOT / "benchmarks" / "results" / "plan_cnn.json"
    out.write_text(
        json.dumps(
            {
                "cpu": cpu,
                "plan_seconds": plan_s,
                "max_drop": args.max_drop,
                "winner": win,
                "front": result.front,
                "explanation": result.summary["explanation"],
                "plan_rows": [
                    {
                        k: r[k]
                        for k in (
                            "name",
                            "latency_ms",
                            "speedup",
                            "size_mb",
                            "accuracy_drop",
                            "fidelity_drop",
                            "build_s",
                            "verdict",
                        )
                    }
                    for r in result.rows
                ],
                "attempts": result.summary["attempts"],
                "retimed": rows,
                "accuracy_drop_points": 100 * acc_drop,
            },
            indent=2,
            default=str,
        )
    )
    print(f"wrote {out} and {result.reports['md']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
