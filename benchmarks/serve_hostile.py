"""modelport serve under hostile clients (issue 13): memory, event-loop stalls, slowloris.

Runs a real ``modelport serve`` process on 127.0.0.1 and attacks it with raw sockets:

    batching   the cross-request attack through dynamic batching (A1/V/A2, 12 threads): normal
               answers that come back 200 but wrong (goal 0), attackers' statuses (goal 4xx)
    memory     resting RSS, RSS after one maximal allowed request on a model with a wide
               intermediate (goal: within 1 GB of the start), and the refusal (4xx) of one above
               the limit; also the issue's 100,000-row request with the limit raised, to show that
               arena shrinkage hands the memory back
    stall      /v2/health/live p50/p99 while hostile bodies are processed (gzip bombs, 30 MB of
               empty BYTES elements, a large JSON body); goal p99 < 50 ms
    slowloris  half-sent requests: when the server closes them; and a normal client's p50 with
               1,000 idle sockets open; goals: closed within 60 s, p50 < 50 ms
    grpc       /v2/health/live p50/p99 while hostile gRPC ModelInfer messages are decoded (24 MB
               of typed fp32 contents, 8M empty BYTES contents, 64 MB raw); goal p99 < 50 ms;
               and when the gRPC port closes 50 connections that never send anything

    flock /tmp/modelport-bench.lock python benchmarks/serve_hostile.py [batching memory stall slowloris grpc]

Prints a table and writes benchmarks/results/serve_hostile.json. Loops are bounded; only 127.0.0.1.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
RESULTS = ROOT / "benchmarks" / "results" / "serve_hostile.json"
WIDE = 4096  # the wide intermediate: rows x 4096 floats


# --- the model and the server -----------------------------------------------------------------


def build_wide(repo: Path) -> Path:
    """x FP32 [batch, 64] -> MatMul to [batch, 4096] -> Relu -> MatMul to y [batch, 10]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    sys.path.insert(0, str(ROOT / "src"))
    from modelport.package import base_manifest, opset_of, write_package
    from modelport.signature import Signature

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((64, WIDE)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((WIDE, 10)).astype(np.float32), "w2")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["y"]),
        ],
        "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        [w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    manifest = base_manifest("wide", Signature.from_onnx(model), opset_of(model), {})
    write_package(model, manifest, repo / "wide" / "1", force=True)
    scaled = helper.make_model(
        helper.make_graph(
            [
                helper.make_node("Cast", ["ids"], ["f"], to=TensorProto.FLOAT),
                helper.make_node("Mul", ["f", "scale"], ["out"]),
            ],
            "scaled",
            [
                helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
                helper.make_tensor_value_info("scale", TensorProto.FLOAT, ["batch", 1]),
            ],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "seq"])],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    scaled.ir_version = 8
    write_package(
        scaled,
        base_manifest("scaled", Signature.from_onnx(scaled), 17, {}),
        repo / "scaled" / "1",
        force=True,
    )
    text = repo / "text" / "1"
    string = helper.make_model(
        helper.make_graph(
            [helper.make_node("Identity", ["t"], ["u"])],
            "s",
            [helper.make_tensor_value_info("t", TensorProto.STRING, ["batch"])],
            [helper.make_tensor_value_info("u", TensorProto.STRING, ["batch"])],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    string.ir_version = 8
    write_package(
        string, base_manifest("text", Signature.from_onnx(string), 17, {}), text, force=True
    )
    return repo


def start(repo: Path, *args: str, grpc: bool = False) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [PY, "-c", "import sys; from modelport.cli import main; sys.exit(main())", "serve"]
    cmd += [str(repo), "--http-port", "0", "--no-management", "--log-level", "error"]
    cmd += ["--grpc-port", "0"] if grpc else ["--no-grpc"]
    proc = subprocess.Popen(
        [*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    deadline = time.time() + 180
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("{") and json.loads(line).get("event") == "ready":
            ready = json.loads(line)
            proc.grpc_port = ready.get("grpc_port")  # type: ignore[attr-defined]
            return proc, int(ready["http_port"])
    stop(proc)
    raise RuntimeError("modelport serve did not become ready")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# --- raw HTTP over sockets --------------------------------------------------------------------


def raw_request(port: int, method: str, path: str, body: bytes = b"", headers=None, timeout=120):
    """(status, body) for one request on a fresh connection (``Connection: close``), sent with
    modelport's load client (``modelport.bench.load``); status 0 when the server dropped it."""
    from modelport.bench.load import http_exchange, http_request_bytes

    headers = {**(headers or {}), "Connection": "close"}
    request = http_request_bytes(method, path, "127.0.0.1", body, headers)
    ((status, data, _),) = http_exchange("127.0.0.1", port, [request], timeout)
    return status, data


def v2_binary(rows: int) -> tuple[bytes, dict[str, str]]:
    x = np.ones((rows, 64), np.float32)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [rows, 64],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return head + x.tobytes(), {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }


# --- memory -----------------------------------------------------------------------------------


def bench_memory(repo: Path) -> dict:
    out: dict = {}
    for label, args, rows_ok, rows_refused in (
        ("default limits", (), 1024, [1025, 100_000]),
        (
            "limit raised to 100000 rows",
            ("--max-request-rows", "100000", "--max-tensor-elements", "0"),
            100_000,
            [],
        ),
    ):
        proc, port = start(repo, *args)
        try:
            time.sleep(1.0)
            start_mb = rss_mb(proc.pid)
            body, headers = v2_binary(rows_ok)
            t0 = time.perf_counter()
            status, _ = raw_request(port, "POST", "/v2/models/wide/infer", body, headers)
            took = time.perf_counter() - t0
            time.sleep(1.0)
            after_mb = rss_mb(proc.pid)
            refused = []
            for rows in rows_refused:
                rbody, rheaders = v2_binary(rows)
                rstatus, rtext = raw_request(port, "POST", "/v2/models/wide/infer", rbody, rheaders)
                refused.append({"rows": rows, "status": rstatus, "error": rtext.decode()[:200]})
            time.sleep(0.5)
            final_mb = rss_mb(proc.pid)
        finally:
            stop(proc)
        out[label] = {
            "rows": rows_ok,
            "status": status,
            "seconds": round(took, 2),
            "rss_start_mb": round(start_mb),
            "rss_after_mb": round(after_mb),
            "rss_growth_mb": round(after_mb - start_mb),
            "refused": refused,
            "rss_final_mb": round(final_mb),
        }
    return out


# --- event-loop stalls ------------------------------------------------------------------------


def _probe(port: int, stop_at: float, samples: list[float]) -> None:
    """/v2/health/live over one keep-alive socket, back to back, until ``stop_at``."""
    req = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        while time.time() < stop_at:
            t0 = time.perf_counter()
            s.sendall(req)
            data = b""
            while b"\r\n\r\n" not in data:
                data += s.recv(4096)
            samples.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.002)


def bench_stall(repo: Path, seconds: float = 8.0) -> dict:
    bomb = gzip.compress(b" " * (1 << 30), 9)  # ~1 MB that inflates to 1 GiB
    empty_bytes = b"\x00\x00\x00\x00" * 8_000_000  # 8M empty BYTES elements, 32 MB
    bytes_head = json.dumps(
        {
            "inputs": [
                {
                    "name": "t",
                    "shape": [8_000_000],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(empty_bytes)},
                }
            ]
        }
    ).encode()
    big_json = (
        b'{"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": ['
        + b",".join([b"0.125"] * (20_000_000))
        + b"]}]}"
    )  # ~120 MB of JSON numbers
    attacks = {
        "gzip bomb (1 MB -> 1 GiB) x2 senders": [
            ("/v2/models/wide/infer", bomb, {"Content-Encoding": "gzip"})
        ]
        * 2,
        "8M empty BYTES elements (32 MB)": [
            (
                "/v2/models/text/infer",
                bytes_head + empty_bytes,
                {"Inference-Header-Content-Length": str(len(bytes_head))},
            )
        ],
        f"{len(big_json) >> 20} MB JSON body": [("/v2/models/wide/infer", big_json, {})],
    }
    out: dict = {}
    proc, port = start(repo, "--max-request-mb", "256")
    try:
        base: list[float] = []
        _probe(port, time.time() + 2, base)
        out["idle"] = _summary(base, [])
        for name, senders in attacks.items():
            samples: list[float] = []
            statuses: list[int] = []
            stop_at = time.time() + seconds

            def attack(path, body, headers, stop_at=stop_at, statuses=statuses):
                while time.time() < stop_at:
                    statuses.append(raw_request(port, "POST", path, body, headers)[0])

            threads = [threading.Thread(target=attack, args=s) for s in senders]
            for t in threads:
                t.start()
            _probe(port, stop_at, samples)
            for t in threads:
                t.join(120)
            out[name] = _summary(samples, statuses)
    finally:
        stop(proc)
    return out


def _summary(samples: list[float], statuses: list[int]) -> dict:
    samples = sorted(samples)
    p = lambda q: round(samples[min(len(samples) - 1, int(q * len(samples)))], 2)  # noqa: E731
    return {
        "probes": len(samples),
        "p50_ms": p(0.5),
        "p99_ms": p(0.99),
        "max_ms": round(samples[-1], 2),
        "attack_statuses": sorted(set(statuses)),
        "attacks_sent": len(statuses),
    }


def bench_grpc(repo: Path, seconds: float = 8.0, silent: int = 50) -> dict:
    import grpc

    sys.path.insert(0, str(ROOT / "src"))
    from modelport.serve.grpc.generated import grpc_service_pb2 as pb

    def message(model: str, fill) -> bytes:
        req = pb.ModelInferRequest(model_name=model)
        fill(req)
        return req.SerializeToString()

    def typed(req):
        x = req.inputs.add(name="x", datatype="FP32", shape=[93_750, 64])
        x.contents.fp32_contents.extend(np.full(6_000_000, 0.125, np.float32).tolist())

    def empty_bytes(req):
        t = req.inputs.add(name="t", datatype="BYTES", shape=[8_000_000])
        t.contents.bytes_contents.extend([b""] * 8_000_000)

    def raw(req):
        req.inputs.add(name="x", datatype="FP32", shape=[250_000, 64])
        req.raw_input_contents.append(b"\0" * (250_000 * 64 * 4))

    attacks = {
        "24 MB typed fp32 contents": message("wide", typed),
        "8M empty BYTES contents": message("text", empty_bytes),
        "64 MB raw_input_contents": message("wide", raw),
    }
    out: dict = {}
    proc, port = start(repo, "--max-request-mb", "256", grpc=True)
    gport = proc.grpc_port  # type: ignore[attr-defined]
    try:
        base: list[float] = []
        _probe(port, time.time() + 2, base)
        out["idle"] = _summary(base, [])
        for name, body in attacks.items():
            samples: list[float] = []
            codes: list[int] = []
            stop_at = time.time() + seconds

            def attack(body=body, stop_at=stop_at, codes=codes):
                opts = [("grpc.max_send_message_length", 1 << 30)]
                with grpc.insecure_channel(f"127.0.0.1:{gport}", options=opts) as channel:
                    call = channel.unary_unary(
                        "/inference.GRPCInferenceService/ModelInfer",
                        request_serializer=lambda b: b,
                        response_deserializer=lambda b: b,
                    )
                    while time.time() < stop_at:
                        try:
                            call(body, timeout=120)
                            codes.append(0)
                        except grpc.RpcError as exc:
                            codes.append(exc.code().value[0])

            thread = threading.Thread(target=attack)
            thread.start()
            _probe(port, stop_at, samples)
            thread.join(180)
            out[name] = _summary(samples, codes)  # statuses: grpc status code numbers
            print(f"  {name}: {out[name]}", flush=True)
        t0 = time.time()
        socks = [socket.create_connection(("127.0.0.1", gport), timeout=90) for _ in range(silent)]
        closed = []
        for sk in socks:
            try:
                while sk.recv(4096):
                    pass
            except (TimeoutError, OSError):
                pass
            closed.append(time.time() - t0)
            sk.close()
        out["silent connections"] = {
            "connections": silent,
            "closed_after_s_max": round(max(closed), 1),
        }
    finally:
        stop(proc)
    return out


# --- slowloris --------------------------------------------------------------------------------


def bench_slowloris(repo: Path, idle: int = 1000, half: int = 50, wait_s: float = 75) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < idle + half + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, idle + half + 200), hard))
    out: dict = {}
    proc, port = start(repo)
    try:
        halves = []
        for _ in range(half):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"POST /v2/models/wide/infer HT")  # half a request line, then silence
            halves.append(s)
        t0 = time.time()
        closed_at: dict[int, float] = {}
        deadline = t0 + wait_s
        while len(closed_at) < half and time.time() < deadline:
            for i, s in enumerate(halves):
                if i in closed_at:
                    continue
                s.setblocking(False)
                try:
                    data = s.recv(4096)
                    if data == b"" or data:
                        closed_at[i] = time.time() - t0
                except BlockingIOError:
                    pass
                except OSError:
                    closed_at[i] = time.time() - t0
            time.sleep(0.5)
        out["half_sent"] = {
            "sockets": half,
            "closed": len(closed_at),
            "closed_after_s_max": round(max(closed_at.values()), 1) if closed_at else None,
            "waited_s": wait_s,
        }
        for s in halves:
            s.close()
        idles = []
        for _ in range(idle):
            idles.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        body, headers = v2_binary(1)
        lat = []
        refused = 0
        for _ in range(200):
            t1 = time.perf_counter()
            status, _ = raw_request(port, "POST", "/v2/models/wide/infer", body, headers, 10)
            if status == 200:
                lat.append((time.perf_counter() - t1) * 1000)
            else:
                refused += 1
        out["normal_client_with_idle_sockets"] = {
            "idle_sockets": idle,
            "requests": 200,
            "non_200": refused,
            "p50_ms": round(statistics.median(lat), 2) if lat else None,
        }
        for s in idles:
            s.close()
    finally:
        stop(proc)
    return out


# --- the cross-request attack (issue 13, item 1) ----------------------------------------------


def _v2_json(inputs: dict[str, tuple[str, list[int], list]]) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {"name": n, "datatype": dt, "shape": shape, "data": data}
                for n, (dt, shape, data) in inputs.items()
            ]
        }
    ).encode()


def bench_batching(repo: Path, seconds: float = 20.0, threads: int = 12) -> dict:
    """A1 (ids [1,4], scale [0,1]), V (ids [1,4], scale [1,1] = s), A2 (ids [0,4], scale [1,1] =
    1000) from ``threads`` keep-alive clients for ``seconds``, default settings and with a 300 ms
    queue delay. Counts normal answers that are 200 but wrong."""
    ids = [1, 2, 3, 4]
    a1 = _v2_json({"ids": ("INT64", [1, 4], ids), "scale": ("FP32", [0, 1], [])})
    a2 = _v2_json({"ids": ("INT64", [0, 4], []), "scale": ("FP32", [1, 1], [1000.0])})
    out: dict = {}
    for label, args in (
        ("default settings", ()),
        ("--max-queue-delay-ms 300", ("--max-queue-delay-ms", "300")),
    ):
        proc, port = start(repo, *args)
        counts = {"v_ok": 0, "v_wrong": 0, "v_other": 0, "attack_200": 0, "attack_4xx": 0}
        lock = threading.Lock()
        stop_at = time.time() + seconds

        def client(k: int, port=port, counts=counts, lock=lock, stop_at=stop_at) -> None:
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            i = 0
            while time.time() < stop_at:
                i += 1
                scale = 0.5 + k + (i % 97) / 128  # exact in float32
                v = _v2_json({"ids": ("INT64", [1, 4], ids), "scale": ("FP32", [1, 1], [scale])})
                for tag, body in (("a1", a1), ("v", v), ("a2", a2)):
                    conn.request("POST", "/v2/models/scaled/infer", body)
                    r = conn.getresponse()
                    data = r.read()
                    with lock:
                        if tag != "v":
                            counts["attack_200" if r.status == 200 else "attack_4xx"] += 1
                        elif r.status != 200:
                            counts["v_other"] += 1
                        else:
                            got = np.array(json.loads(data)["outputs"][0]["data"], np.float32)
                            want = np.array(ids, np.float32) * np.float32(scale)
                            exact = got.shape == want.shape and bool(np.all(got == want))
                            counts["v_ok" if exact else "v_wrong"] += 1
            conn.close()

        try:
            ts = [threading.Thread(target=client, args=(k,)) for k in range(threads)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(seconds + 120)
        finally:
            stop(proc)
        out[label] = {"threads": threads, "seconds": seconds, **counts}
    return out


def main() -> int:
    which = sys.argv[1:] or ["batching", "memory", "stall", "slowloris"]
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        repo = build_wide(Path(tmp) / "repo")
        for part in which:
            fn = {
                "batching": bench_batching,
                "memory": bench_memory,
                "stall": bench_stall,
                "slowloris": bench_slowloris,
                "grpc": bench_grpc,
            }[part]
            t0 = time.time()
            results[part] = fn(repo)
            results[part]["_measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t0))
            print(f"== {part}")
            for k, v in results[part].items():
                print(f"  {k}: {v}")
    results["_machine"] = "shared 2-core Xeon (AVX-512/AMX), 24 GiB, other jobs running"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
