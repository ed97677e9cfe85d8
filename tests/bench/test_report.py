"""Tables, Markdown/HTML reports and plots of both kinds of result."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelport.bench import (
    LatencyConfig,
    LoadConfig,
    LoadTarget,
    SweepConfig,
    bench_models,
    bench_server,
)
from modelport.bench.plot import plot_result
from modelport.bench.report import result_table, to_html, to_markdown, write_report

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def inprocess_result(tmp_path_factory):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("m") / "relu.onnx"
    onnx.save(model, path)
    cfg = SweepConfig(batch_sizes=(1, 4), threads=(1,), latency=LatencyConfig(warmup=0, repeats=3))
    return json.loads(json.dumps(bench_models([path, path], cfg).to_dict()))  # as read from --json


@pytest.fixture(scope="module")
def server_result(http_server):
    target = LoadTarget(http_server.url, "flaky")
    feed = {"x": np.ones((1, 4), np.float32)}
    res = bench_server(target, feed, (1, 2), LoadConfig(requests=10, warmup=0), ceiling=False)
    return json.loads(json.dumps(res.to_dict()))


def test_tables(inprocess_result, server_result):
    cols, rows = result_table(inprocess_result)
    assert cols[0] == "model" and len(rows) == 4 and rows[1][cols.index("speed-up")] is not None
    assert rows[0][cols.index("engine")] == "ort fp32"  # what ran, read back from the engine
    cols, rows = result_table(server_result)
    assert "status" in cols and len(rows) == 2
    assert "503: " in rows[0][cols.index("status")]


def test_markdown_and_html(inprocess_result, server_result, tmp_path):
    md = to_markdown(inprocess_result, "plot.png")
    assert "![In-process benchmark](plot.png)" in md
    assert md.count("\n| relu | ort fp32 | cpu") == 2
    assert md.count("\n| relu#2 | ort fp32 | cpu") == 2
    assert "interleaved" in md
    html = to_html(server_result, PNG + b"fake")
    assert "data:image/png;base64," in html and "<table>" in html

    out = write_report(server_result, tmp_path / "r" / "server.md")
    assert (tmp_path / "r" / "server.png").read_bytes().startswith(PNG)
    assert "](server.png)" in out.read_text()
    out = write_report(inprocess_result, tmp_path / "inproc.html")
    assert "data:image/png;base64,iVBOR" in out.read_text()


def test_plots(inprocess_result, server_result, tmp_path):
    for name, res in (("a.png", inprocess_result), ("b.png", server_result)):
        path = plot_result(res, tmp_path / name)
        assert path.read_bytes().startswith(PNG)
