"""Scale-out on Ray Serve vs the single-process server, on this machine.

    flock /tmp/modelport-bench.lock .venv/bin/python benchmarks/ray_scaling.py [--quick]

Model: an MLP 512-2048-2048-512 (FP32, built with onnx.helper; about 12.6 MFLOP per row), each
request a batch of 8 rows sent as V2 binary tensors, so a request costs milliseconds of ONNX Runtime
work and serving overhead is not all there is. Servers, all on loopback:

- single: ``modelport serve`` (one process, ONNX Runtime on all cores, dynamic batching);
- ray-1 / ray-2: ``modelport serve --ray`` on a local Ray (1 CPU and 1 ORT thread per replica),
  1 and 2 replicas of the model (and of the HTTP ingress) behind Ray Serve's proxy.

Throughput and latency with wrk at 16 connections; the three configurations interleaved over
rounds (Ray is redeployed in place between 1 and 2 replicas), medians and per-round ratios
reported. Writes benchmarks/results/ray_scaling.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_bench import start_modelport, stop, v2_body, wrk_throughput  # noqa: E402


def build_mlp(out: Path, sizes=(512, 2048, 2048, 512)) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    from modelport.package import base_manifest, opset_of, write_package
    from modelport.signature import Signature

    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        w = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]))
        last = i == len(sizes) - 2
        nodes.append(helper.make_node("Relu" if not last else "Identity", [f"m{i}"], [f"h{i}"]))
        prev = f"h{i}"
    nodes[-1].output[0] = "y"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", sizes[-1]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    manifest = base_manifest("mlp", Signature.from_onnx(model), opset_of(model), {})
    write_package(model, manifest, out, force=True)
    return out


def raw_ms(package: Path, x: np.ndarray, threads: int, n: int = 200) -> float:
    from modelport.runtime import SessionConfig, make_session, run_session

    s = make_session(package / "model.onnx", SessionConfig(intra_op_threads=threads))
    for _ in range(20):
        run_session(s, {"x": x})
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        run_session(s, {"x": x})
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs, 1 round")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ray_scaling.json")
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    seconds = 5 if args.quick else 10
    rounds = 1 if args.quick else 2

    work = Path(tempfile.mkdtemp(prefix="mp-ray-bench-"))
    repo = work / "repo"
    pkg = build_mlp(repo / "mlp" / "1")
    x = np.random.default_rng(1).standard_normal((8, 512)).astype(np.float32)
    body, headers = v2_body({"x": x}, binary=True)
    path = "/v2/models/mlp/infer"
    result: dict = {
        "machine": {"cores": os.cpu_count(), "affinity": len(os.sched_getaffinity(0))},
        "model": "MLP 512-2048-2048-512 FP32, 8 rows per request, V2 binary",
        "raw_session_run_ms": {"1_thread": raw_ms(pkg, x, 1), "2_threads": raw_ms(pkg, x, 2)},
        "load": f"wrk, {args.connections} connections, {seconds} s per run, {rounds} round(s)",
        "runs": [],
    }
    print(json.dumps(result["raw_session_run_ms"]))

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    from modelport.serve.ray.config import RayConfig
    from modelport.serve.ray.runner import connect, deploy, undeploy

    base = {"replica_cpus": 1.0, "local_cpus": 4, "object_store_mb": 200}
    ray_port = None
    connect(RayConfig(**base))
    try:
        for r in range(rounds):
            proc, port = start_modelport(repo)
            try:
                wrk_throughput(port, path, body, headers, args.connections, 2)  # warm
                run = wrk_throughput(port, path, body, headers, args.connections, seconds)
            finally:
                stop(proc)
            result["runs"].append({"round": r, "config": "single", **run})
            print(json.dumps(result["runs"][-1]))
            for replicas in (1, 2):
                cfg = RayConfig(**base, replicas=replicas, http_port=ray_port or 0)
                info = deploy(repo, cfg)
                ray_port = int(info["http_url"].rsplit(":", 1)[1])
                wrk_throughput(ray_port, path, body, headers, args.connections, 2)
                run = wrk_throughput(ray_port, path, body, headers, args.connections, seconds)
                result["runs"].append(
                    {"round": r, "config": f"ray-{replicas}", "replicas": info["replicas"], **run}
                )
                print(json.dumps(result["runs"][-1]))
        undeploy("modelport")
    finally:
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()

    summary = {}
    for name in ("single", "ray-1", "ray-2"):
        runs = [x for x in result["runs"] if x["config"] == name]
        summary[name] = {
            "rps_median": statistics.median(x["rps"] for x in runs),
            "p50_ms_median": statistics.median(x["p50_ms"] for x in runs),
            "errors": sum(x["non_2xx"] for x in runs),
        }
    ratios = {}
    for r in range(rounds):
        by = {x["config"]: x["rps"] for x in result["runs"] if x["round"] == r}
        ratios[f"round{r}"] = {
            "ray-1/single": by["ray-1"] / by["single"],
            "ray-2/ray-1": by["ray-2"] / by["ray-1"],
            "ray-2/single": by["ray-2"] / by["single"],
        }
    result["summary"], result["ratios"] = summary, ratios
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"summary": summary, "ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
