"""Why the digits ResNet goal (2.5x over ONNX Runtime fp32 at batch 8) is out of reach here.

    flock /tmp/modelport-bench.lock python benchmarks/engines_resnet_floor.py [--repeats 400]

Times the digits ResNet (examples/resnet_digits.py, converted by modelport) at batch 1 and batch 8
through modelport's engine sessions, all variants interleaved in one process:
ORT fp32 (2 threads = the baseline, as modelport runs ONNX Runtime: intra-op spinning off; the
same with spinning on, ONNX Runtime's own default; 1 thread), ORT static int8 (``modelport quantize --mode
static``, 1 and 2 threads), OpenVINO bf16 (AMX, 1 and 2 threads). Each batch size is timed twice:
in ~20 ms blocks of consecutive runs (``LatencyConfig.block_ms=20``: how ``bench``/``plan`` time
now, and how a busy server runs one model) and alternating every run (``block_ms=0``: how they
timed before). The batch-1 time is each engine's floor for this 10-layer graph: the per-call and
per-layer cost that does not shrink with fewer images. The goal needs batch 8 in
``baseline / 2.5``; when that is at or below a variant's own batch-1 time, no precision change
on that engine can reach it. Prints a table, writes benchmarks/results/engines_resnet_floor.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=400)
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/engines_resnet_floor.json"))
    args = ap.parse_args()

    from examples.resnet_digits import build_trained, load_digits_split
    from modelport.bench.machine import machine_info
    from modelport.convert import ConvertConfig, Source, convert
    from modelport.optimize.quantize import QuantizeConfig, quantize
    from modelport.runtime import EngineConfig, SessionConfig, engine_available, load_engine
    from modelport.runtime.latency import LatencyConfig, interleave, session_runner

    x_train, _, x_test, _ = load_digits_split()
    work = Path(tempfile.mkdtemp(prefix="resnet-floor-"))
    fp32 = convert(
        Source.torch_module(copy.deepcopy(build_trained())),
        work / "fp32",
        ConvertConfig(example={"x": x_test[:16]}),
        force=True,
    ).package
    int8, _ = quantize(fp32, work / "int8", QuantizeConfig.static({"x": x_train[:256]}))
    variants = {
        "ORT fp32, 2 threads (baseline)": (fp32.model_path, EngineConfig(threads=2)),
        "ORT fp32, 2 threads, spinning on (ORT's default)": (
            fp32.model_path,
            EngineConfig(threads=2, session=SessionConfig(allow_spinning=True)),
        ),
        "ORT fp32, 1 thread": (fp32.model_path, EngineConfig(threads=1)),
        "ORT static int8, 2 threads": (int8.model_path, EngineConfig(threads=2)),
        "ORT static int8, 1 thread": (int8.model_path, EngineConfig(threads=1)),
        "ORT static int8, 2 threads, spinning on": (
            int8.model_path,
            EngineConfig(threads=2, session=SessionConfig(allow_spinning=True)),
        ),
    }
    if engine_available("openvino"):
        for t in (1, 2):
            variants[f"OpenVINO bf16, {t} thread{'s' if t > 1 else ''}"] = (
                fp32.model_path,
                EngineConfig(engine="openvino", precision="bf16", threads=t, cache_dir=""),
            )
    sessions = {n: load_engine(p, c) for n, (p, c) in variants.items()}
    ran = {n: s.info.label() for n, s in sessions.items()}
    base = next(iter(sessions))
    results: dict[str, dict[str, dict[str, float]]] = {}
    for batch in (1, 8):
        feed = {"x": np.ascontiguousarray(x_test[:batch])}
        for mode, block in (("blocks", 20.0), ("alternating", 0.0)):
            run = interleave(
                [(n, session_runner(s, feed)) for n, s in sessions.items()],
                LatencyConfig(warmup=20, repeats=args.repeats, block_ms=block),
            )
            results[f"b{batch} {mode}"] = {
                n: {"p50_ms": float(np.median(t)), "runs": len(t)} for n, t in run.times_ms.items()
            }
    target = results["b8 blocks"][base]["p50_ms"] / 2.5
    print(f"digits ResNet, batch-8 target for 2.5x: {target:.3f} ms (ORT fp32 2 threads / 2.5)\n")
    print("| variant | b1 p50 ms (floor) | b8 p50 ms, blocks | speed-up | b8 p50 ms, alternating "
          "| speed-up |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    rows = []
    for n in sessions:
        b1 = results["b1 blocks"][n]["p50_ms"]
        b8 = results["b8 blocks"][n]["p50_ms"]
        alt = results["b8 alternating"][n]["p50_ms"]
        sp = results["b8 blocks"][base]["p50_ms"] / b8
        sp_alt = results["b8 alternating"][base]["p50_ms"] / alt
        rows.append({"variant": n, "ran": ran[n], "b1_ms": b1, "b8_ms": b8, "b8_speedup": sp,
                     "b8_alternating_ms": alt, "b8_alternating_speedup": sp_alt,
                     "floor_above_target": b1 >= target})  # fmt: skip
        print(f"| {n} | {b1:.3f} | {b8:.3f} | {sp:.2f}x | {alt:.3f} | {sp_alt:.2f}x |")
    out = {"machine": machine_info(), "load_average": os.getloadavg(), "target_ms": target,
           "rows": rows, "raw": results}  # fmt: skip
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"\nload average {os.getloadavg()[0]:.2f}; wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
