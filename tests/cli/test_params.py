"""The shared value syntaxes (cli/params.py): one parser each, the same answer in every command."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from modelport.cli import main
from modelport.cli.params import (
    DIM_SIZE,
    DIM_SIZES,
    DYNAMIC_AXES,
    INPUT_SPEC,
    INT_LIST,
    INT_LIST_OR_EMPTY,
    REPLICA_CPUS,
)
from modelport.data import parse_input_spec
from modelport.errors import UsageError


def _convert(param_type: click.ParamType, text: str):
    return param_type.convert(text, None, None)


def test_values_parse_to_what_the_api_takes():
    assert _convert(INT_LIST, "1, 8,32") == (1, 8, 32)
    assert _convert(INT_LIST_OR_EMPTY, "") == ()
    assert _convert(DIM_SIZE, " sequence = 128") == ("sequence", 128)
    assert _convert(DIM_SIZES, "sequence=16,128") == ("sequence", (16, 128))
    assert _convert(DYNAMIC_AXES, "input_ids:0=batch,1=sequence") == (
        "input_ids",
        {0: "batch", 1: "sequence"},
    )
    spec, rng = _convert(INPUT_SPEC, "ids:batch,6:int64:0..50")
    assert (spec.name, spec.dtype, spec.shape, rng) == ("ids", "int64", ("batch", 6), (0.0, 50.0))
    assert _convert(INPUT_SPEC, "x:batch,3")[0].dtype == "float32"
    assert _convert(REPLICA_CPUS, "0.5") == 0.5 and _convert(REPLICA_CPUS, "auto") == "auto"


@pytest.mark.parametrize(
    "param_type, text, words",
    [
        (INT_LIST, "1,x", "expected comma-separated integers, e.g. 1,8,32; got '1,x'"),
        (INT_LIST, "", "is empty"),
        (DIM_SIZE, "seq", "expected NAME=SIZE (a symbolic dim and its size)"),
        (DIM_SIZE, "=8", "got '=8'"),
        (DIM_SIZE, "seq=x", "got 'seq=x'"),
        (DIM_SIZE, "seq=0", "sizes must be >= 1"),
        (DIM_SIZES, "seq=16,x", "expected NAME=SIZE[,SIZE]"),
        (DYNAMIC_AXES, "ids", "expected input:axis=name"),
        (DYNAMIC_AXES, "ids:x=seq", "'x=seq' should be axis=name"),
        (INPUT_SPEC, "x", "'x': expected name:shape:dtype[:LOW..HIGH]"),
        (INPUT_SPEC, "x:4:floaty", "unknown dtype 'floaty'"),
        (INPUT_SPEC, "x:0,4", "fixed dims must be >= 1"),
        (INPUT_SPEC, "ids:4:int64:9..1", "is empty"),
        (REPLICA_CPUS, "-1", "must be >= 0"),
    ],
)
def test_bad_values_say_what_was_expected(param_type, text, words):
    with pytest.raises(click.BadParameter) as err:
        _convert(param_type, text)
    assert words in err.value.message


def test_the_api_parser_names_what_it_parses():
    with pytest.raises(UsageError, match=r"^input spec 'x:4:floaty': unknown dtype"):
        parse_input_spec("x:4:floaty")
    with pytest.raises(UsageError, match=r"^--input 'x': expected"):
        parse_input_spec("x", what="--input")


# every option of the NAME=SIZE syntax, in every command that has one
NAME_SIZE_OPTIONS = [
    ["bench", "{onnx}", "--shape"],
    ["plan", "{onnx}", "-o", "{tmp}/p", "--latency-dim"],
    ["optimize", "{onnx}", "-o", "{tmp}/o", "--latency-dim"],
    ["quantize", "{onnx}", "-o", "{tmp}/q", "--latency-dim"],
    ["convert", "--onnx", "{onnx}", "-o", "{tmp}/c", "--verify-dim"],
    ["verify", "{onnx}", "--verify-dim"],
]


@pytest.mark.parametrize("argv", NAME_SIZE_OPTIONS, ids=lambda a: f"{a[0]} {a[-1]}")
def test_name_size_is_refused_alike_everywhere(argv, tiny_onnx, tmp_path, capsys):
    args = [a.format(onnx=tiny_onnx, tmp=tmp_path) for a in argv]
    assert main([*args, "sequence"]) == 2
    err = capsys.readouterr().err
    assert f"Invalid value for '{argv[-1]}': expected NAME=SIZE" in err
    assert "got 'sequence'" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, option",
    [
        (["bench", "{onnx}", "--batch-sizes", "1,b"], "--batch-sizes"),
        (["bench", "--server", "http://127.0.0.1:1", "--concurrency", "1,b"], "--concurrency"),
        (["optimize", "{onnx}", "-o", "{tmp}/o", "--batch-sizes", "1,b"], "--batch-sizes"),
        (["prune", "{onnx}", "-o", "{tmp}/p", "--batch-sizes", "1,b"], "--batch-sizes"),
        (["verify", "{onnx}", "--verify-batch-sizes", "1,b"], "--verify-batch-sizes"),
        (["convert", "--onnx", "{onnx}", "-o", "{tmp}/c", "--input", "x:4:floaty"], "--input"),
        (["convert", "--onnx", "{onnx}", "-o", "{tmp}/c", "--dynamic", "x"], "--dynamic"),
    ],
)
def test_other_shared_syntaxes_name_the_option_and_value(argv, option, tiny_onnx, tmp_path, capsys):
    args = [a.format(onnx=tiny_onnx, tmp=tmp_path) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"Invalid value for '{option}'" in err and args[-1] in err


def test_help_shows_the_syntax():
    from modelport.cli import cli

    out = CliRunner().invoke(cli, ["convert", "--help"]).output
    assert "--input NAME:SHAPE:DTYPE[:LOW..HIGH]" in out
    assert "--dynamic INPUT:AXIS=NAME,..." in out
    assert "--verify-dim NAME=SIZE[,SIZE]" in out
    out = CliRunner().invoke(cli, ["serve", "--help"]).output
    assert "--replica-cpus CPUS|auto" in out
