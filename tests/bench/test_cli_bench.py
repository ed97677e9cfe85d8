"""``modelport bench`` end to end: in-process and against a small local server."""

from __future__ import annotations

import json

from modelport.cli import main


def test_cli_inprocess(tiny_onnx, tmp_path):
    out = tmp_path / "r.json"
    rc = main(["bench", str(tiny_onnx), str(tiny_onnx), "--batch-sizes", "1,2", "--threads", "1",
               "--warmup", "1", "--repeats", "3", "--json", str(out), "--plot", str(tmp_path / "p.png"),
               "--report", str(tmp_path / "r.md")])  # fmt: skip
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["kind"] == "inprocess" and len(d["rows"]) == 4
    assert (tmp_path / "p.png").exists() and "](p.png)" in (tmp_path / "r.md").read_text()


def test_cli_seconds_mode(tiny_onnx, tmp_path):
    out = tmp_path / "r.json"
    assert (
        main(["bench", str(tiny_onnx), "--seconds", "0.05", "--warmup", "0", "--json", str(out)])
        == 0
    )
    d = json.loads(out.read_text())
    assert d["config"]["latency"]["min_seconds"] == 0.05 and d["rows"][0]["runs"] >= 3


def test_cli_server(http_server, tmp_path):
    out = tmp_path / "s.json"
    rc = main(["bench", "--server", http_server.url, "--model", "mlp", "--protocol", "http-binary",
               "--concurrency", "1,2", "--requests", "12", "--batch-size", "3", "--no-ceiling",
               "--json", str(out)])  # fmt: skip
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["kind"] == "server" and [r["concurrency"] for r in d["rows"]] == [1, 2]
    assert all(r["ok"] == 12 and r["batch_size"] == 3 for r in d["rows"])
    assert d["metadata"]["name"] == "mlp" and d["ceiling"] is None


def test_cli_usage_errors(tiny_onnx, capsys):
    assert main(["bench"]) == 2
    assert main(["bench", str(tiny_onnx), "--server", "http://127.0.0.1:1"]) == 2
    assert main(["bench", "--server", "http://192.168.1.1:8000", "--model", "m"]) == 2
    assert main(["bench", str(tiny_onnx), "--shape", "seq"]) == 2
    assert main(["bench", str(tiny_onnx), "--batch-sizes", "a,b"]) == 2
    err = capsys.readouterr().err
    assert "loopback" in err
    assert "Invalid value for '--shape': expected NAME=SIZE" in err and "got 'seq'" in err
    assert "Invalid value for '--batch-sizes'" in err and "got 'a,b'" in err
