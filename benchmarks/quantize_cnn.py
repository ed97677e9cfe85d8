"""Static int8 quantization of CNNs trained on digits, measured on this machine.

    flock /tmp/modelport-bench.lock .venv/bin/python benchmarks/quantize_cnn.py [--quick]

Models: the small DigitsCNN (8x8 input) and a ResNet-style CNN (examples.resnet_digits, input
upsampled so the convolutions carry real work). Each is trained here (seconds to a minute),
converted, statically quantized (QDQ, calibrated on 256 training images) with each calibration
method, and measured by ``quantize`` itself: interleaved latency at batch 1 and 8, accuracy on
the 360 held-out test images, size. Writes benchmarks/results/quantize_cnn.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "bench-quantize"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def trained(name: str, args: argparse.Namespace):
    import torch

    from examples.digits_cnn import DigitsCNN, load_digits_split, train
    from examples.resnet_digits import ResNetDigits

    x, y, _, _ = load_digits_split()
    if name == "digits-cnn":
        model, epochs = DigitsCNN(), 8
    else:
        model, epochs = ResNetDigits(width=args.width, upsample=args.upsample), args.epochs
    ckpt = BUILD / f"{name}-w{args.width}-u{args.upsample}-e{epochs}.pt"
    if ckpt.is_file():
        model.load_state_dict(torch.load(ckpt, weights_only=True))
        return model.eval()
    torch.manual_seed(0)
    model = train(model, x, y, epochs=epochs)
    torch.save(model.state_dict(), ckpt)
    return model.eval()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--upsample", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()

    from examples.digits_cnn import load_digits_split
    from modelport.convert import ConvertConfig, Source, convert
    from modelport.optimize.hardware import detect_cpu
    from modelport.optimize.quantize import QuantizeConfig, quantize
    from modelport.optimize.report import EvalConfig

    BUILD.mkdir(parents=True, exist_ok=True)
    x_train, _, x_test, y_test = load_digits_split()
    np.savez(BUILD / "digits_calib.npz", x=x_train[:256])
    np.savez(BUILD / "digits_test.npz", x=x_test)
    np.save(BUILD / "digits_labels.npy", y_test)
    ev = EvalConfig(
        data=BUILD / "digits_test.npz",
        labels=BUILD / "digits_labels.npy",
        batch_sizes=(1, 8),
        repeats=30 if args.quick else 100,
    )
    rows = []
    for name in ("digits-cnn", "resnet-digits"):
        model = trained(name, args)
        pkg = convert(
            Source.torch_module(copy.deepcopy(model)),
            BUILD / f"{name}-fp32",
            ConvertConfig(example={"x": x_test[:16]}),
            force=True,
        ).package
        variants = [
            ("static minmax", QuantizeConfig.static(BUILD / "digits_calib.npz", evaluation=ev))
        ]
        if not args.quick:
            variants += [
                (
                    "static entropy",
                    QuantizeConfig.static(BUILD / "digits_calib.npz", "entropy", evaluation=ev),
                ),
                (
                    "static percentile",
                    QuantizeConfig.static(BUILD / "digits_calib.npz", "percentile", evaluation=ev),
                ),
                (
                    "static minmax per-tensor",
                    QuantizeConfig.static(
                        BUILD / "digits_calib.npz", evaluation=ev, per_channel=False
                    ),
                ),
            ]
        for label, cfg in variants:
            _, rep = quantize(pkg, BUILD / f"{name}-{label.replace(' ', '-')}", cfg, force=True)
            row = {
                "model": name,
                "variant": label,
                "size_fp32": rep.size_before,
                "size_int8": rep.size_after,
                "size_ratio": rep.size_ratio,
                "acc_fp32": rep.accuracy["before"],
                "acc_int8": rep.accuracy["after"],
                "acc_drop_points": 100 * rep.accuracy["drop"],
                "warnings": rep.warnings,
            }
            for r in rep.latency:
                row[f"b{r['batch_size']}_fp32_ms"] = r["before_ms"]
                row[f"b{r['batch_size']}_int8_ms"] = r["after_ms"]
                row[f"b{r['batch_size']}_speedup"] = r["speedup"]
            rows.append(row)
            print(f"  {name} {label}: done", flush=True)
    cpu = detect_cpu().summary()
    print(f"\nstatic int8 (QDQ) on {cpu}; accuracy on 360 held-out digits; interleaved p50")
    print(
        f"{'model':14s} {'variant':26s} {'b1 fp32':>8s} {'b1 x':>6s} {'b8 fp32':>8s} {'b8 int8':>8s} "
        f"{'b8 x':>6s} {'acc fp32':>9s} {'acc int8':>9s} {'drop pt':>8s} {'smaller':>8s}"
    )
    for r in rows:
        print(
            f"{r['model']:14s} {r['variant']:26s} {r['b1_fp32_ms']:8.3f} {r['b1_speedup']:6.2f} "
            f"{r['b8_fp32_ms']:8.3f} {r['b8_int8_ms']:8.3f} {r['b8_speedup']:6.2f} "
            f"{r['acc_fp32']:9.4f} {r['acc_int8']:9.4f} {r['acc_drop_points']:8.2f} "
            f"{r['size_ratio']:7.2f}x"
        )
    out = ROOT / "benchmarks" / "results" / "quantize_cnn.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"cpu": cpu, "width": args.width, "upsample": args.upsample, "rows": rows},
            indent=2,
            default=str,
        )
    )
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
