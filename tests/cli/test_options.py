"""Options that do not apply are refused (exit 2, naming the option and the mode it needs), from
one table per command; every entry of every table is exercised here."""

from __future__ import annotations

import click
import pytest

from modelport.cli import main
from modelport.cli.bench_cmd import APPLIES as BENCH
from modelport.cli.bench_cmd import MODES as BENCH_MODES
from modelport.cli.bench_cmd import bench
from modelport.cli.convert_cmd import CONVERT_APPLIES, SOURCE_LABELS, convert
from modelport.cli.options import refuse_inapplicable
from modelport.cli.quantize_cmd import MODES as QUANTIZE_MODES
from modelport.cli.quantize_cmd import applies, quantize
from modelport.errors import UsageError

# a value to give each option in the tables (flags: None)
VALUES = {
    # bench
    "batch_sizes": "1,2", "threads": "1", "providers": "cpu", "engines": "ort", "warmup": "1", "repeats": "2", "block_ms": "5",
    "shapes": "seq=4", "data": "{onnx}", "plot": "{tmp}/p.png", "report": "{tmp}/r.md",
    "model": "m", "model_version": "1", "protocol": "grpc", "requests": "5", "rate": "10",
    "batch_size": "8", "package": "{onnx}", "timeout": "3", "no_ceiling": None,
    "concurrency": "2", "http_client": "httpx",
    # quantize
    "calibration": "{onnx}", "calibration_method": "entropy", "calibration_samples": "8",
    "weight_type": "uint8", "activation_type": "uint8", "per_channel": None,
    "reduce_range": None, "partial_base": "dynamic", "granularity": "layer",
    "smoothing": "0.5", "keep_io_types": None, "rank_by": None, "engine": "ort",
    # convert
    "exporter": "dynamo", "output_names": "z", "dynamic": "x:0=batch", "static": None,
    "task": "feature-extraction", "signature_name": "serve2", "tag": "serve",
    "trust": None, "weights": "{onnx}", "init_args": "{{}}",
}  # fmt: skip
BENCH_ARGS = {"inprocess": ["{onnx}"], "server": ["--server", "http://127.0.0.1:9"],
              "ceiling": ["--ceiling"]}  # fmt: skip
SOURCE_ARGS = {
    "torch_target": ["--torch", "m:f"], "torchscript": ["--torchscript", "{onnx}"],
    "exported_program": ["--exported-program", "{onnx}"], "hf_dir": ["--hf", "{tmp}"],
    "onnx_file": ["--onnx", "{onnx}"], "savedmodel": ["--savedmodel", "{tmp}"],
    "keras_file": ["--keras", "{onnx}"], "sklearn_file": ["--sklearn", "{onnx}"],
    "savedmodel_repo": ["--savedmodel-repo", "{tmp}"],
}  # fmt: skip


def _flag(command: click.Command, name: str) -> str:
    (param,) = [p for p in command.params if p.name == name]
    return max(param.opts, key=len)


def _option(command: click.Command, name: str) -> list[str]:
    value = VALUES[name]
    return [_flag(command, name)] + ([] if value is None else [value])


def _cases(command, table, modes):
    options = {p.name for p in command.params}
    for name, allowed in table.items():
        if name not in options:  # a library field without a command-line option (rank_by, ...)
            continue
        for mode in modes:
            yield pytest.param(command, name, mode, mode in allowed, id=f"{name}-{mode}")


def _argv(command, name, mode, tmp, onnx):
    if command is bench:
        args = ["bench", *BENCH_ARGS[mode]]
    elif command is quantize:
        args = ["quantize", "{onnx}", "-o", "{tmp}/q", "--mode", mode]
    else:
        args = ["convert", *SOURCE_ARGS[mode], "-o", "{tmp}/c"]
    return [a.format(tmp=tmp, onnx=onnx) for a in args + _option(command, name)]


CASES = [
    *_cases(bench, BENCH, BENCH_MODES),
    *_cases(quantize, applies(), QUANTIZE_MODES),
    *_cases(convert, CONVERT_APPLIES, SOURCE_LABELS),
]


@pytest.mark.parametrize("command, name, mode, allowed", CASES)
def test_the_tables(tmp_path, tiny_onnx, capsys, command, name, mode, allowed):
    """Refused (exit 2, naming the option and the modes it needs) exactly where the table says;
    where it applies, the option gets past the check."""
    argv = _argv(command, name, mode, tmp_path, tiny_onnx)
    table = {bench: BENCH, quantize: applies(), convert: CONVERT_APPLIES}[command]
    labels = {bench: BENCH_MODES, quantize: QUANTIZE_MODES, convert: SOURCE_LABELS}[command]
    if allowed:
        ctx = command.make_context(argv[0], argv[1:])
        refuse_inapplicable(ctx, table, mode, labels)  # does not raise
        return
    assert main(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{_flag(command, name)} applies only with" in err, err
    assert f"not with {labels[mode]}" in err


def test_every_in_process_or_server_option_is_in_the_bench_table():
    """An option whose help says "In-process:" or "Server:" must be in the table (so a new one
    cannot be silently ignored in the other mode)."""
    for p in bench.params:
        text = getattr(p, "help", "") or ""
        if text.startswith(("In-process:", "Server:")):
            assert p.name in BENCH, p.name


def test_every_table_entry_is_an_option_or_a_library_field():
    from modelport.optimize.quantize import QuantizeConfig

    fields = set(QuantizeConfig.__dataclass_fields__)
    assert set(applies()) <= fields
    assert set(BENCH) <= {p.name for p in bench.params}
    assert set(CONVERT_APPLIES) <= {p.name for p in convert.params}


def test_defaults_are_not_refused(tmp_path, tiny_onnx):
    """Only what was typed counts: a default of an option that does not apply is no reason."""
    ctx = quantize.make_context("quantize", [str(tiny_onnx), "-o", "x", "--mode", "fp16"])
    refuse_inapplicable(ctx, applies(), "fp16", QUANTIZE_MODES)
    ctx = bench.make_context("bench", ["--server", "http://h:1", "--model", "m"])
    refuse_inapplicable(ctx, BENCH, "server", BENCH_MODES)


def test_fp16_history_records_only_what_applies():
    from modelport.optimize.quantize import QuantizeConfig

    d = QuantizeConfig(mode="fp16", weight_type="uint8", calibration_method="entropy").describe()
    assert "weight_type" not in d and "calibration_method" not in d and "granularity" not in d
    assert d["keep_io_types"] is True and d["mode"] == "fp16"
    d = QuantizeConfig(mode="dynamic").describe()
    assert "weight_type" in d and "keep_io_types" not in d and "calibration" not in d


def test_bench_batch_size_in_process_is_batch_sizes(tiny_onnx, tmp_path, capsys):
    out = tmp_path / "b.json"
    args = ["bench", str(tiny_onnx), "--batch-size", "8", "--repeats", "2", "--warmup", "0"]
    assert main([*args, "--json", str(out)]) == 0
    import json

    rows = json.loads(out.read_text())["rows"]
    assert [r["batch_size"] for r in rows] == [8]
    assert main([*args, "--batch-sizes", "1,2"]) == 2
    assert "not both" in capsys.readouterr().err


def test_refusal_names_a_hint(capsys):
    assert main(["bench", "--server", "http://127.0.0.1:9", "--batch-sizes", "4"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--batch-size N sets the rows of each request" in err
    with pytest.raises(UsageError):
        ctx = bench.make_context("bench", ["--server", "u", "--threads", "2"])
        refuse_inapplicable(ctx, BENCH, "server", BENCH_MODES)


@pytest.mark.parametrize(
    "args, flag, needs",
    [
        (["optimize", "{onnx}", "-o", "{tmp}/o", "--model-type", "gpt2"], "--model-type",
         "--transformers"),
        (["optimize", "{onnx}", "-o", "{tmp}/o", "--num-heads", "4"], "--num-heads",
         "--transformers"),
        (["optimize", "{onnx}", "-o", "{tmp}/o", "--hidden-size", "8"], "--hidden-size",
         "--transformers"),
        (["prune", "{onnx}", "-o", "{tmp}/p", "--sparsity", "0.5", "--importance", "l2"],
         "--importance", "--method structured"),
        (["prune", "{onnx}", "-o", "{tmp}/p", "--sparsity", "0.5", "--round-to", "8"],
         "--round-to", "--method structured"),
    ],
)  # fmt: skip
def test_optimize_and_prune_tables(tmp_path, tiny_onnx, capsys, args, flag, needs):
    from modelport.cli.optimize_cmd import OPTIMIZE_APPLIES, OPTIMIZE_MODES, optimize
    from modelport.cli.prune_cmd import PRUNE_APPLIES, PRUNE_MODES, prune

    argv = [a.format(tmp=tmp_path, onnx=tiny_onnx) for a in args]
    assert main(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{flag} applies only with {needs}" in err, err
    # and where it applies, it passes the check
    command, table, labels, mode, extra = {
        "optimize": (optimize, OPTIMIZE_APPLIES, OPTIMIZE_MODES, "transformers", ["--transformers"]),
        "prune": (prune, PRUNE_APPLIES, PRUNE_MODES, "structured", ["--method", "structured"]),
    }[argv[0]]  # fmt: skip
    ctx = command.make_context(argv[0], argv[1:] + extra)
    refuse_inapplicable(ctx, table, mode, labels)


@pytest.mark.parametrize(
    "args, flag, needs, got",
    [
        (["prune", "{onnx}", "-o", "{tmp}/p", "--sparsity", "0.5", "--task", "feature-extraction"],
         "--task", "--hf", "a PACKAGE"),
        (["plan", "{onnx}", "-o", "{tmp}/pl", "--trust"], "--trust", "--keras or --sklearn",
         "a PACKAGE"),
        (["verify", "{onnx}", "--weights", "{onnx}"], "--weights", "--torch", "a PACKAGE"),
        (["verify", "{onnx}", "--onnx", "{onnx}", "--tag", "x"], "--tag",
         "--savedmodel or --savedmodel-repo", "--onnx"),
        (["prune", "-o", "{tmp}/p", "--sparsity", "0.5", "--hf", "{tmp}", "--weights", "{onnx}"],
         "--weights", "--torch", "--hf"),
    ],
)  # fmt: skip
def test_source_options_of_prune_plan_verify(tmp_path, tiny_onnx, capsys, args, flag, needs, got):
    argv = [a.format(tmp=tmp_path, onnx=tiny_onnx) for a in args]
    assert main(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{flag} applies only with {needs}, not with {got}" in err, err
