"""Pruning a small ResNet-style CNN (residual blocks, BatchNorm) trained on the 8x8 digits.

    flock /tmp/modelport-bench.lock .venv/bin/python benchmarks/prune_resnet.py [--quick]

Variants, each measured against the fp32 original with modelport's prune report (interleaved
ONNX Runtime latency at batch 1 and 8, parameters, size raw and gzip, accuracy on the 360 held-out
digits):

- structured 50% of the channels (torch-pruning, L1, head excluded), no fine-tune
- structured 50% + a short fine-tune (examples.resnet_digits:finetune)
- unstructured magnitude 80% on the ONNX package (no fine-tune): the honest case, same latency
- unstructured magnitude 80% on the PyTorch model + the same fine-tune

Goal (issue 5): structured 50% + fine-tune gives >= 1.7x lower latency and >= 2x fewer parameters
with an accuracy drop of at most 1 point. Writes benchmarks/results/prune_resnet.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "bench-prune"
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=24)
    ap.add_argument("--upsample", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=4, help="training epochs of the original")
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=300, help="timed runs per model and batch size")
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "prune_resnet.json"))
    args = ap.parse_args()
    if args.quick:
        args.repeats = 30

    import torch

    from examples.resnet_digits import ResNetDigits, accuracy, load_digits_split, train
    from examples.resnet_digits import finetune as resnet_finetune
    from modelport.convert import ConvertConfig, Source, convert
    from modelport.optimize.prune import PruneConfig, prune

    torch.set_num_threads(2)
    x_train, y_train, x_test, y_test = load_digits_split()
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = train(ResNetDigits(args.width, args.upsample), x_train, y_train, epochs=args.epochs)
    train_s = time.perf_counter() - t0
    print(
        f"trained ResNetDigits(width={args.width}, upsample={args.upsample}) in {train_s:.1f} s: "
        f"test accuracy {accuracy(model, x_test, y_test):.4f}"
    )

    def finetune(m: torch.nn.Module) -> torch.nn.Module:
        return resnet_finetune(m, epochs=args.finetune_epochs)

    finetune.__module__, finetune.__qualname__ = "examples.resnet_digits", "finetune"
    BUILD.mkdir(parents=True, exist_ok=True)
    example = {"x": x_test[:16]}
    eval_data = {"x": x_test}
    pkg = convert(
        Source.torch_module(model), BUILD / "original", ConvertConfig(example=example), force=True
    ).package
    variants = [
        ("structured 50%", Source.torch_module(model), PruneConfig.structured(0.5), None),
        (
            "structured 50% + fine-tune",
            Source.torch_module(model),
            PruneConfig.structured(0.5),
            finetune,
        ),
        ("magnitude 80% (ONNX)", pkg, PruneConfig.magnitude(0.8), None),
        (
            "magnitude 80% + fine-tune",
            Source.torch_module(model),
            PruneConfig.magnitude(0.8),
            finetune,
        ),
    ]
    results = []
    for name, src, config, ft in variants:
        import dataclasses

        config = dataclasses.replace(config, latency_repeats=args.repeats)
        t0 = time.perf_counter()
        r = prune(
            src,
            BUILD / name.replace(" ", "_").replace("%", "").replace("+", "ft"),
            config,
            example=example if not hasattr(src, "manifest") else None,
            eval_data=eval_data,
            labels=y_test,
            finetune=ft,
            force=True,
        )
        seconds = time.perf_counter() - t0
        rep, d = r.report, r.report.details
        row = {
            "variant": name,
            "seconds": round(seconds, 1),
            "global_sparsity": d["global_sparsity"],
            "params_before": d["params"]["before"],
            "params_after": d["params"]["after"],
            "param_ratio": d["params"]["ratio"],
            "nonzero_after": d["params"]["nonzero_after"],
            "raw_bytes_before": d["size_bytes"]["raw_before"],
            "raw_bytes_after": d["size_bytes"]["raw_after"],
            "gzip_bytes_before": d["size_bytes"]["gzip_before"],
            "gzip_bytes_after": d["size_bytes"]["gzip_after"],
            "accuracy_before": rep.accuracy["before"],
            "accuracy_after": rep.accuracy["after"],
            "accuracy_drop_points": 100.0 * rep.accuracy["drop"],
            **{
                f"batch_{lr['batch_size']}_{m}": lr[k]
                for lr in rep.latency
                for m, k in (
                    ("before_p50_ms", "before_ms"),
                    ("after_p50_ms", "after_ms"),
                    ("speedup", "speedup"),
                )
            },
        }
        results.append(row)
        print(f"{name}: done in {seconds:.1f} s")

    cols = [
        "variant",
        "param_ratio",
        "batch_1_before_p50_ms",
        "batch_1_after_p50_ms",
        "batch_1_speedup",
        "batch_8_before_p50_ms",
        "batch_8_after_p50_ms",
        "batch_8_speedup",
        "raw_bytes_after",
        "gzip_bytes_after",
        "accuracy_after",
        "accuracy_drop_points",
    ]
    print()
    print(
        f"original: {results[0]['params_before']:,} params, raw {results[0]['raw_bytes_before']:,} B, "
        f"gzip {results[0]['gzip_bytes_before']:,} B, accuracy {results[0]['accuracy_before']:.4f}"
    )
    print(" | ".join(cols))
    for row in results:
        print(
            " | ".join(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in cols)
        )
    goal = results[1]
    ok = (
        goal["batch_8_speedup"] >= 1.7
        and goal["param_ratio"] >= 2
        and goal["accuracy_drop_points"] <= 1.0
    )
    print(
        f"\ngoal (structured 50% + fine-tune: >=1.7x latency at batch 8, >=2x params, drop <= 1 pt): "
        f"{'met' if ok else 'NOT met'}"
    )
    out = {
        "model": f"ResNetDigits(width={args.width}, upsample={args.upsample})",
        "train_seconds": round(train_s, 1),
        "train_epochs": args.epochs,
        "finetune_epochs": args.finetune_epochs,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__,
        "goal_met": ok,
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
