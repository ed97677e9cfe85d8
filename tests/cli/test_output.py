"""Readable output: human numbers and headers, tables whose headers match their rows, verify
saying what it compared, and one spelling per flag (old ones kept as hidden aliases)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from modelport.cli import main
from modelport.cli.ui import fmt, header, table


@pytest.mark.parametrize(
    "value, text",
    [(2790.4, "2,790"), (123.456, "123.5"), (1.0, "1"), (0.99171, "0.9917"), (12.3456, "12.35"),
     (1.2e-07, "1.20e-07"), (0.0, "0"), (None, "-")],
)  # fmt: skip
def test_numbers_are_plain(value, text):
    assert fmt(value) == text
    assert "e+" not in fmt(value)


def test_raw_keys_become_headers():
    assert header("req_s") == "req/s"
    assert header("client_cpu_cores") == "client CPU (cores)"
    assert header("some_new_key") == "some new key"
    t = table(None, ["protocol", "req_s", "client_cpu_cores"], [["grpc", 2790.0, 0.5]])
    assert [c.header for c in t.columns] == ["protocol", "req/s", "client CPU (cores)"]


def test_the_kept_float_table_has_a_header_per_column(capsys):
    from modelport.cli.optimize_cmd import print_report

    kept = [{"name": "/fc1/MatMul", "scope": "fc1", "cost": 0.012, "weights": 4096}]
    report = SimpleNamespace(
        choices=[], step="quantize", rows=lambda: [("size", "1 MB", "0.3 MB", "3x")],
        details={"partial": {"kept": kept, "candidates": 5}}, float_ops={}, warnings=[],
        checker="passed", checker_note="", unchanged="", passed=True, metric={},
    )  # fmt: skip
    print_report(report, "out", None)
    out = capsys.readouterr().out
    header_line = next(ln for ln in out.splitlines() if "node" in ln)
    assert [h.strip() for h in header_line.split("┃")] == [
        "node", "scope", "metric drop alone", "weights"
    ]  # fmt: skip
    assert "/fc1/MatMul" in out and "0.012" in out


def test_fidelity_rows_name_the_measure_and_format_alike():
    from modelport.optimize.report import OptimizeReport

    r = OptimizeReport(step="quantize", config={})
    r.size_before = r.size_after = 1_000_000
    r.fidelity = {"y": {"cos_mean": 1.0, "max_abs_err": 1.03e-4}}
    rows = {row[0]: row for row in r.rows()}
    assert rows["y: cosine, mean"][1:3] == ("1.0000", "1.0000")
    assert rows["y: max abs error"][1:3] == ("0", "1.03e-04")


def test_verify_without_a_source_says_what_it_compared(tiny_onnx, tmp_path, capsys):
    import numpy as np

    from modelport.convert import ConvertConfig, Source, convert

    example = {"x": np.ones((3, 4), np.float32)}  # a given example is stored with its outputs
    pkg = convert(Source.onnx(str(tiny_onnx)), tmp_path / "p", ConvertConfig(example=example))
    pkg = pkg.package
    assert main(["verify", str(pkg.path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "example (vs stored outputs)" in out
    assert "(vs itself (runs))" in out or "(vs itself row by row)" in out
    assert "no source given" in out
    assert main(["verify", str(pkg.path), "--onnx", str(tiny_onnx)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "against the source" in out and "(vs the source)" in out
    assert "stores no samples" not in out


def test_verify_of_a_package_without_samples_says_nothing_was_compared(tiny_onnx, tmp_path, capsys):
    from modelport.convert import ConvertConfig, Source, convert

    pkg = convert(Source.onnx(str(tiny_onnx)), tmp_path / "p", ConvertConfig()).package
    assert not pkg.samples()  # generated inputs are never stored
    assert main(["verify", str(pkg.path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "this package stores no samples" in out and "--example-inputs" in out


@pytest.mark.parametrize("command", ["quantize", "optimize"])
def test_one_spelling_per_flag_old_ones_hidden(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "-o, --output PATH" in out and "--json PATH" in out
    assert "--out " not in out and "--json-file" not in out


def test_old_spellings_still_work(tiny_onnx, tmp_path):
    args = ["optimize", str(tiny_onnx), "--out", str(tmp_path / "o"), "--no-latency"]
    assert main([*args, "--json-file", str(tmp_path / "r.json")]) == 0
    assert (tmp_path / "o" / "model.onnx").is_file() and (tmp_path / "r.json").is_file()


def test_bench_reports_write_large_numbers_plainly(tiny_onnx):
    import json

    from modelport.bench import LatencyConfig, SweepConfig, bench_models
    from modelport.bench.report import to_markdown

    cfg = SweepConfig(batch_sizes=(1,), threads=(1,), latency=LatencyConfig(warmup=0, repeats=2))
    d = json.loads(json.dumps(bench_models([tiny_onnx], cfg).to_dict()))
    d["rows"][0]["throughput_items_s"] = 2790.4
    md = to_markdown(d)
    assert "2,790" in md and "e+03" not in md
