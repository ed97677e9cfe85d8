"""Issue 15's digits-ResNet goal, investigated: which engine/precision/int8 scheme is >= 2.5x faster
than ONNX Runtime fp32 at batch 8 within 0.5 accuracy points?

    flock /tmp/modelport-bench.lock python benchmarks/engines_resnet.py [--rounds 6] [--repeats 40]

Builds the fp32 model (examples/resnet_digits.py, via modelport convert), then variants:
ORT static int8 (QDQ vs QOperator, per-channel vs per-tensor, reduce_range on/off, graph
optimization all vs extended), OpenVINO fp32/bf16 (LATENCY vs THROUGHPUT hint, 1 vs 2 threads,
dynamic vs static batch-8 shape), NNCF int8 on OpenVINO (defaults; first and last layers in
ignored_scope; nncf.quantize_with_accuracy_control). Every variant's accuracy is measured on the
whole digits test split; latency at batch 8 is timed A/B/A/B: rounds of ``repeats`` runs of every
variant in turn, in one process, reporting the median of per-round ratios to ORT fp32 (the
machine is shared: absolute times are not comparable between runs, ratios within a run are).
Writes benchmarks/results/engines_resnet.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "engines-resnet"
sys.path.insert(0, str(ROOT))


def build_fp32():
    from examples.resnet_digits import build_trained, load_digits_split
    from modelport.convert import ConvertConfig, Source, convert

    x_train, y_train, x_test, y_test = load_digits_split()
    pkg = BUILD / "fp32"
    if not (pkg / "model.onnx").exists():
        convert(
            Source.torch_module(copy.deepcopy(build_trained())),
            pkg,
            ConvertConfig(example={"x": x_test[:16]}),
            force=True,
        )
    return pkg / "model.onnx", x_train, y_train, x_test, y_test


def ort_static(fp32: Path, calib: np.ndarray, name: str, **kw) -> Path:
    """ONNX Runtime's quantize_static with the given options (preprocessed input, minmax)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = BUILD / f"{name}.onnx"
    if out.exists():
        return out
    pre = BUILD / "pre.onnx"
    if not pre.exists():
        quant_pre_process(str(fp32), str(pre))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"x": calib[i : i + 8]} for i in range(0, len(calib), 8)])

        def get_next(self):
            return next(self.it, None)

    fmt = QuantFormat.QOperator if kw.pop("qoperator", False) else QuantFormat.QDQ
    quantize_static(
        str(pre),
        str(out),
        Reader(),
        quant_format=fmt,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        **kw,
    )
    return out


def nncf_int8(
    fp32: Path,
    calib: np.ndarray,
    name: str,
    ignore_first_last: bool = False,
    accuracy_control: tuple | None = None,
) -> Path:
    import nncf
    import onnx

    out = BUILD / f"{name}.onnx"
    if out.exists():
        return out
    model = onnx.load(str(fp32))
    ds = nncf.Dataset([{"x": calib[i : i + 1]} for i in range(len(calib))])
    kw = {"subset_size": len(calib)}
    if ignore_first_last:
        convs = [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
        kw["ignored_scope"] = nncf.IgnoredScope(names=[convs[0], convs[-1]])
    if accuracy_control is not None:
        x_val, y_val, validate = accuracy_control
        val = nncf.Dataset([{"x": x_val[i : i + 8]} for i in range(0, len(x_val), 8)])
        q = nncf.quantize_with_accuracy_control(
            model,
            ds,
            val,
            validation_fn=validate,
            max_drop=0.005,
            drop_type=nncf.DropType.ABSOLUTE,
            subset_size=len(calib),
        )
    else:
        q = nncf.quantize(model, ds, **kw)
    onnx.save(q, str(out))
    return out


class OrtRunner:
    def __init__(self, path: Path, threads: int = 2, level: str = "all") -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        }[level]
        so.log_severity_level = 4
        self.s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.ran = f"ort {level}"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.s.run(None, {"x": x})[0]


class OvRunner:
    def __init__(
        self,
        path: Path,
        precision: str = "f32",
        threads: int = 2,
        hint: str = "LATENCY",
        static_batch: int | None = None,
        streams: int | None = None,
        pinning: bool | None = None,
    ) -> None:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(path))
        if static_batch:
            model.reshape({"x": [static_batch, 1, 8, 8]})
        props = {
            "INFERENCE_PRECISION_HINT": precision,
            "PERFORMANCE_HINT": hint,
            "INFERENCE_NUM_THREADS": threads,
        }
        if streams:
            props["NUM_STREAMS"] = streams
        if pinning is not None:  # OpenVINO pins its threads to cores by default on Linux
            props["ENABLE_CPU_PINNING"] = pinning
        self.c = core.compile_model(model, "CPU", props)
        self.req = self.c.create_infer_request()
        seen = set()
        for op in self.c.get_runtime_model().get_ops():
            rt = op.get_rt_info()
            if "layerType" in rt and rt["layerType"].astype(str) in (
                "Convolution",
                "FullyConnected",
            ):
                seen.add(rt["runtimePrecision"].astype(str))
        self.ran = (
            f"ov {'+'.join(sorted(seen))} {hint} streams={self.c.get_property('NUM_STREAMS')}"
            f" pinning={self.c.get_property('ENABLE_CPU_PINNING')}"
        )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.req.infer({"x": x}, share_inputs=True, share_outputs=True)[0]


class EngineRunner:
    """Through modelport's own EngineSession (what serve/bench/plan run)."""

    def __init__(self, path: Path, engine: str, precision: str = "fp32", threads: int = 2) -> None:
        from modelport.runtime import EngineConfig, load_engine

        self.s = load_engine(
            path, EngineConfig(engine=engine, precision=precision, threads=threads, cache_dir="")
        )
        self.out = self.s.output_names[0]
        self.ran = "modelport " + self.s.info.label()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.s.run({"x": x})[self.out]


def accuracy(run, x: np.ndarray, y: np.ndarray) -> float:
    preds = []
    for i in range(0, len(x), 8):
        xb = x[i : i + 8]
        if len(xb) < 8:  # static-shape variants take batch 8 only
            xb = np.concatenate([xb, np.repeat(xb[-1:], 8 - len(xb), 0)])
            preds.append(np.asarray(run(xb))[: len(x) - i].argmax(1))
        else:
            preds.append(np.asarray(run(xb)).argmax(1))
    return float((np.concatenate(preds) == y).mean())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--only", default="", help="comma-separated variant names (fp32 always)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "engines_resnet.json"))
    args = ap.parse_args()
    BUILD.mkdir(parents=True, exist_ok=True)
    fp32, x_train, y_train, x_test, y_test = build_fp32()
    calib = x_train[:256]
    x8 = x_test[:8]

    x_val, y_val = x_train[256:768], y_train[256:768]

    def validate(model, data):
        """Accuracy on held-out training images, on OpenVINO bf16 (how it is served)."""
        import openvino as ov

        core = ov.Core()
        if hasattr(model, "SerializeToString"):
            model = core.read_model(model.SerializeToString())
        c = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
        xs = [d["x"] for d in data]
        out = np.concatenate([c({"x": xb})[0] for xb in xs])
        return float((out.argmax(1) == y_val[: len(out)]).mean())

    def q_default(name, **kw):
        return lambda: ort_static(fp32, calib, name, **kw)

    # name -> (builder of the model file, runner factory)
    V = {
        "ort-fp32": (lambda: fp32, lambda p: OrtRunner(p)),
        "ort-fp32-1t": (lambda: fp32, lambda p: OrtRunner(p, threads=1)),
        "ort-fp32-extended": (lambda: fp32, lambda p: OrtRunner(p, level="extended")),
        "ort-int8-qdq-pc": (q_default("qdq_pc", per_channel=True), lambda p: OrtRunner(p)),
        "ort-int8-qdq-pc-1t": (
            q_default("qdq_pc", per_channel=True),
            lambda p: OrtRunner(p, threads=1),
        ),
        "ort-int8-qdq-pc-rr": (
            q_default("qdq_pc_rr", per_channel=True, reduce_range=True),
            lambda p: OrtRunner(p),
        ),
        "ort-int8-qdq-pt": (q_default("qdq_pt", per_channel=False), lambda p: OrtRunner(p)),
        "ort-int8-qop-pc": (
            q_default("qop_pc", per_channel=True, qoperator=True),
            lambda p: OrtRunner(p),
        ),
        "ort-int8-qop-pt": (
            q_default("qop_pt", per_channel=False, qoperator=True),
            lambda p: OrtRunner(p),
        ),
        "ort-int8-qdq-pc-extended": (
            q_default("qdq_pc", per_channel=True),
            lambda p: OrtRunner(p, level="extended"),
        ),
        "ov-fp32": (lambda: fp32, lambda p: OvRunner(p)),
        "ov-fp32-static8": (lambda: fp32, lambda p: OvRunner(p, static_batch=8)),
        "ov-bf16": (lambda: fp32, lambda p: OvRunner(p, "bf16")),
        "ov-bf16-static8": (lambda: fp32, lambda p: OvRunner(p, "bf16", static_batch=8)),
        "ov-bf16-static8-tput": (
            lambda: fp32,
            lambda p: OvRunner(p, "bf16", hint="THROUGHPUT", static_batch=8, streams=1),
        ),
        "ov-bf16-static8-1t": (
            lambda: fp32,
            lambda p: OvRunner(p, "bf16", threads=1, static_batch=8),
        ),
        "ov-bf16-1t": (lambda: fp32, lambda p: OvRunner(p, "bf16", threads=1)),
        "ov-bf16-1t-nopin": (lambda: fp32, lambda p: OvRunner(p, "bf16", threads=1, pinning=False)),
        "mp-ov-bf16-1t": (lambda: fp32, lambda p: EngineRunner(p, "openvino", "bf16", threads=1)),
        "ov-bf16-static8-nopin": (
            lambda: fp32,
            lambda p: OvRunner(p, "bf16", static_batch=8, pinning=False),
        ),
        "ov-bf16-static8-1t-nopin": (
            lambda: fp32,
            lambda p: OvRunner(p, "bf16", threads=1, static_batch=8, pinning=False),
        ),
        "ov-int8-nncf-acc-static8-nopin": (
            lambda: nncf_int8(fp32, calib, "nncf_acc", accuracy_control=(x_val, y_val, validate)),
            lambda p: OvRunner(p, "bf16", static_batch=8, pinning=False),
        ),
        "ov-int8-nncf-acc-static8-1t-nopin": (
            lambda: nncf_int8(fp32, calib, "nncf_acc", accuracy_control=(x_val, y_val, validate)),
            lambda p: OvRunner(p, "bf16", threads=1, static_batch=8, pinning=False),
        ),
        "ov-int8-nncf": (lambda: nncf_int8(fp32, calib, "nncf"), lambda p: OvRunner(p, "bf16")),
        "ov-int8-nncf-static8": (
            lambda: nncf_int8(fp32, calib, "nncf"),
            lambda p: OvRunner(p, "bf16", static_batch=8),
        ),
        "ov-int8-nncf-static8-1t": (
            lambda: nncf_int8(fp32, calib, "nncf"),
            lambda p: OvRunner(p, "bf16", threads=1, static_batch=8),
        ),
        "ov-int8-nncf-ign-static8": (
            lambda: nncf_int8(fp32, calib, "nncf_ign", ignore_first_last=True),
            lambda p: OvRunner(p, "bf16", static_batch=8),
        ),
        "ov-int8-nncf-acc-static8": (
            lambda: nncf_int8(fp32, calib, "nncf_acc", accuracy_control=(x_val, y_val, validate)),
            lambda p: OvRunner(p, "bf16", static_batch=8),
        ),
        "ort-int8-qop-pt-1t": (
            q_default("qop_pt", per_channel=False, qoperator=True),
            lambda p: OrtRunner(p, threads=1),
        ),
        "ort-int8-qop-pc-1t": (
            q_default("qop_pc", per_channel=True, qoperator=True),
            lambda p: OrtRunner(p, threads=1),
        ),
        "ort-int8-qdq-pt-1t": (
            q_default("qdq_pt", per_channel=False),
            lambda p: OrtRunner(p, threads=1),
        ),
        "ov-int8-nncf-ign-static8-1t": (
            lambda: nncf_int8(fp32, calib, "nncf_ign", ignore_first_last=True),
            lambda p: OvRunner(p, "bf16", threads=1, static_batch=8),
        ),
        "ov-int8-nncf-acc-static8-1t": (
            lambda: nncf_int8(fp32, calib, "nncf_acc", accuracy_control=(x_val, y_val, validate)),
            lambda p: OvRunner(p, "bf16", threads=1, static_batch=8),
        ),
        "ort-int8-nncf": (lambda: nncf_int8(fp32, calib, "nncf"), lambda p: OrtRunner(p)),
        "mp-ort-fp32": (lambda: fp32, lambda p: EngineRunner(p, "ort")),
        "mp-ov-bf16": (lambda: fp32, lambda p: EngineRunner(p, "openvino", "bf16")),
    }
    names = list(V)
    if args.only:
        names = ["ort-fp32"] + [n for n in args.only.split(",") if n != "ort-fp32"]
    runners, info = {}, {}
    for n in names:
        t0 = time.perf_counter()
        try:
            path = V[n][0]()
            r = V[n][1](path)
            r(x8)
        except Exception as exc:  # one failed variant must not end the run
            print(f"{n}: FAILED {type(exc).__name__}: {str(exc).splitlines()[0][:200]}", flush=True)
            info[n] = {"error": str(exc)[:400]}
            continue
        acc = accuracy(r, x_test, y_test)
        runners[n] = r
        info[n] = {
            "ran": r.ran,
            "accuracy": acc,
            "build_load_s": round(time.perf_counter() - t0, 1),
            "file": str(path.relative_to(ROOT)),
        }
        print(f"{n}: {r.ran} accuracy {acc:.4f}", flush=True)
    # interleaved timing: every round runs every variant `repeats` times in turn
    times = {n: [] for n in runners}
    for r in runners.values():
        for _ in range(5):
            r(x8)
    for rnd in range(args.rounds):
        order = list(runners) if rnd % 2 == 0 else list(reversed(runners))
        for n in order:
            r = runners[n]
            ts = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                r(x8)
                ts.append(time.perf_counter() - t0)
            times[n].append(statistics.median(ts) * 1e3)
    base = times["ort-fp32"]
    acc0 = info["ort-fp32"]["accuracy"]
    rows = []
    for n in runners:
        ratios = [b / t for b, t in zip(base, times[n], strict=True)]
        rows.append(
            {
                "variant": n,
                **info[n],
                "p50_ms_rounds": [round(t, 3) for t in times[n]],
                "speedup_median": statistics.median(ratios),
                "speedup_min": min(ratios),
                "speedup_max": max(ratios),
                "accuracy_drop_points": 100 * (acc0 - info[n]["accuracy"]),
            }
        )
    rows.sort(key=lambda r: -r["speedup_median"])
    print(
        "\n| variant | what ran | p50 ms (median of rounds) | speed-up vs ORT fp32 (median [min-max] of rounds) | accuracy | drop (pt) |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['ran']} | {statistics.median(r['p50_ms_rounds']):.3f} | "
            f"{r['speedup_median']:.2f}x [{r['speedup_min']:.2f}-{r['speedup_max']:.2f}] | "
            f"{r['accuracy']:.4f} | {r['accuracy_drop_points']:+.2f} |"
        )
    failed = {n: v for n, v in info.items() if "error" in v}
    from modelport.bench.machine import machine_info

    Path(args.out).write_text(
        json.dumps(
            {
                "rows": rows,
                "failed": failed,
                "machine": machine_info(),
                "argv": sys.argv[1:],
                "load": os.getloadavg(),
            },
            indent=2,
            default=str,
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
