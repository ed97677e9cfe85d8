"""tritonclient (HTTP and gRPC, binary and JSON) against a real ``modelport serve`` process on
free loopback ports; the process is always stopped (SIGTERM, then kill) and must exit cleanly."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from .models import mlp_model, write

pytestmark = pytest.mark.timeout(300)

MODELPORT = str(Path(sys.executable).parent / "modelport")


class Server:
    def __init__(self, repo: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [MODELPORT, "serve", str(repo), "--http-port", "0", "--grpc-port", "0",
             "--no-management", "--shutdown-grace", "5", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.stderr: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.info = self._wait_ready(120)
        self.http = f"127.0.0.1:{self.info['http_port']}"
        self.grpc = f"127.0.0.1:{self.info['grpc_port']}"

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    def _wait_ready(self, timeout: float) -> dict:
        result: dict = {}

        def read() -> None:
            for line in self.proc.stdout:
                if line.startswith("{") and json.loads(line).get("event") == "ready":
                    result.update(json.loads(line))
                    return

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout)
        if not result:
            self.stop()
            raise RuntimeError("server not ready:\n" + "".join(self.stderr[-30:]))
        return result

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def server(repo, digits_package):
    shutil.copytree(digits_package.path, repo / "digits" / "1")
    s = Server(repo, "--poll", "0.3")
    try:
        yield s
    finally:
        s.stop()


def _clients(server):
    import tritonclient.grpc as tg
    import tritonclient.http as th

    return [
        (th, th.InferenceServerClient(server.http)),
        (tg, tg.InferenceServerClient(server.grpc)),
    ]


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_http_and_grpc(server, digits_package, binary):
    inputs, outputs = digits_package.samples()
    name_in = digits_package.signature.input_names[0]
    name_out = digits_package.signature.output_names[0]
    for mod, c in _clients(server):
        kw = {"binary_data": binary} if mod.__name__.endswith("http") else {}
        assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("digits")

        x = inputs[name_in][:4]
        i = mod.InferInput(name_in, list(x.shape), "FP32")
        i.set_data_from_numpy(x, **kw)
        r = c.infer("digits", [i], outputs=[mod.InferRequestedOutput(name_out, **kw)])
        np.testing.assert_allclose(
            r.as_numpy(name_out), outputs[name_out][:4], atol=1e-4, rtol=1e-3
        )

        ids = np.array([[1, 2, 3]], np.int64)
        i = mod.InferInput("ids", [1, 3], "INT64")
        i.set_data_from_numpy(ids, **kw)
        r = c.infer("ints", [i])
        np.testing.assert_array_equal(r.as_numpy("doubled"), ids * 2)
        np.testing.assert_array_equal(r.as_numpy("total"), [[6]])

        flags = np.array([[True, False, False, True]])
        i = mod.InferInput("flags", [1, 4], "BOOL")
        i.set_data_from_numpy(flags, **kw)
        np.testing.assert_array_equal(c.infer("flags", [i]).as_numpy("negated"), ~flags)

        text = np.array([["hello", "wörld"]], dtype=object)
        i = mod.InferInput("text", [1, 2], "BYTES")
        i.set_data_from_numpy(text, **kw)
        assert c.infer("text", [i]).as_numpy("same").tolist() == [[b"hello", "wörld".encode()]]

        x = np.ones((2, 4), np.float32)
        i = mod.InferInput("x", [2, 4], "FP32")
        i.set_data_from_numpy(x, **kw)
        y1 = c.infer("mlp", [i], model_version="1").as_numpy("y")
        y2 = c.infer("mlp", [i]).as_numpy("y")
        np.testing.assert_allclose(y2, 2 * y1, rtol=1e-5)

        with pytest.raises(Exception, match="unknown model"):
            c.infer("nope", [i])
        with pytest.raises(Exception, match="expects FP32"):
            bad = mod.InferInput("x", [2, 4], "FP64")
            bad.set_data_from_numpy(x.astype(np.float64), **kw)
            c.infer("mlp", [bad])
        md = c.get_model_metadata("ints")
        md_inputs = md["inputs"] if isinstance(md, dict) else [
            {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in md.inputs
        ]  # fmt: skip
        assert md_inputs == [{"name": "ids", "datatype": "INT64", "shape": [-1, 3]}]
        c.close()


def test_hot_reload_sigterm_and_no_leak_on_bad_requests(server, repo):
    import tritonclient.http as th

    c = th.InferenceServerClient(server.http)
    write(mlp_model(scale=5.0)[0], repo / "mlp" / "3", "mlp")
    deadline = time.time() + 30
    while "3" not in c.get_model_metadata("mlp")["versions"] and time.time() < deadline:
        time.sleep(0.2)
    assert c.get_model_metadata("mlp")["versions"] == ["1", "2", "3"]
    x = np.ones((1, 4), np.float32)
    i = th.InferInput("x", [1, 4], "FP32")
    i.set_data_from_numpy(x)
    r = c.infer("mlp", [i])
    assert r.get_response()["model_version"] == "3"
    c.close()

    conn = http.client.HTTPConnection(server.http)
    bodies = [b"{garbage", b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1]}]}',
              json.dumps({"inputs": [{"name": "x", "shape": [1, 99], "datatype": "FP32",
                                      "data": [0.0] * 99}]}).encode()]  # fmt: skip

    def hammer(n):
        for k in range(n):
            conn.request("POST", "/v2/models/mlp/infer", bodies[k % len(bodies)])
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 400

    hammer(600)
    before = server.rss_kb()
    hammer(3000)
    assert server.rss_kb() - before < 20_000  # KB: no growth with the number of bad requests
    conn.close()

    assert server.stop() == 0
    log = "".join(server.stderr)
    assert "shutting down" in log and "stopped" in log


def test_bad_repository_path_exits_2(tmp_path):
    r = subprocess.run([MODELPORT, "serve", str(tmp_path / "nope")], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
    assert r.returncode == 2
