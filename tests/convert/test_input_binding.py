"""Inputs reach forward() by parameter name (issue 14): example inputs in any order, keyword-only
parameters, generated integer inputs within the range of the embedding they feed, explicit
ranges, and a clear error when the model rejects generated inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modelport.cli import main
from modelport.convert import ConvertConfig, Source, convert
from modelport.convert.torch import bind_inputs
from modelport.data import parse_input_spec
from modelport.errors import InputError, UsageError
from modelport.package import ModelPackage
from modelport.runtime import make_session, run_session
from tests.convert import torch_models as tm


def _run(pkg: ModelPackage, feed: dict) -> dict:
    return run_session(make_session(pkg.model_path), feed)


def test_npz_keys_in_the_other_order_bind_by_name(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "ba.npz"
    # keys saved b first, then a: the order must not decide which parameter each feeds
    np.savez(
        path,
        b=rng.standard_normal((3, 4)).astype(np.float32),
        a=rng.standard_normal((3, 4)).astype(np.float32),
    )
    from modelport.data import load_feed

    example = load_feed(path)
    assert list(example) == ["b", "a"]
    res = convert(
        Source.torch_module(tm.Subtract()), tmp_path / "pkg", ConvertConfig(example=example)
    )
    assert res.report.passed
    pkg = res.package
    assert pkg.signature.input_names == ["a", "b"]  # forward()'s order and names
    a, b = np.full((1, 4), 10, np.float32), np.ones((1, 4), np.float32)
    np.testing.assert_allclose(_run(pkg, {"a": a, "b": b})["output"], np.full((1, 4), 8.0))
    # the stored samples are bound by name too
    inputs, outputs = pkg.samples()
    np.testing.assert_allclose(outputs["output"], inputs["a"] - 2 * inputs["b"], rtol=1e-6)


def test_keyword_only_parameter_is_passed_by_keyword(tmp_path):
    rng = np.random.default_rng(1)
    example = {
        "meta": rng.standard_normal((3, 1)).astype(np.float32),
        "image": rng.standard_normal((3, 4)).astype(np.float32),
    }
    module = tm.KeywordOnly()
    res = convert(Source.torch_module(module), tmp_path / "pkg", ConvertConfig(example=example))
    assert res.report.passed
    assert res.package.signature.input_names == ["image", "meta"]
    image = rng.standard_normal((5, 4)).astype(np.float32)
    meta = rng.standard_normal((5, 1)).astype(np.float32)
    want = module(torch.from_numpy(image), meta=torch.from_numpy(meta)).detach().numpy()
    got = _run(res.package, {"image": image, "meta": meta})["output"]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_binding_rules():
    class PosOnly(torch.nn.Module):
        def forward(self, x, /, y=None, *, z=None):
            return x

    b = bind_inputs(tm.Subtract(), ["b", "a"])
    assert b.names == ("a", "b") and b.direct
    # a gap before a positional-or-keyword parameter: the rest go by keyword
    b = bind_inputs(PosOnly(), ["z", "x"])
    assert b.names == ("x", "z") and b.positional == 1 and b.keywords == ("z",)
    # names that match no parameter: by position, with a note saying so
    b = bind_inputs(tm.Subtract(), ["first", "second"])
    assert b.names == ("first", "second") and b.direct and "by position" in b.note
    with pytest.raises(UsageError, match=r"\['c'\] match no parameter of forward\(a, b\)"):
        bind_inputs(tm.Subtract(), ["a", "c"])
    with pytest.raises(UsageError, match=r"needs \['b'\]"):
        bind_inputs(tm.Subtract(), ["a"])
    with pytest.raises(UsageError, match=r"needs \['meta'\]"):
        bind_inputs(tm.KeywordOnly(), ["image"])


def test_single_input_under_another_name_still_converts(tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    res = convert(
        Source.torch_factory("tests.convert.torch_models:build_mlp"),
        tmp_path / "pkg",
        ConvertConfig(example={"features": x}),
    )
    assert res.report.passed and res.package.signature.input_names == ["features"]


def test_embedding_input_named_ids_is_generated_within_the_table(tmp_path):
    specs = (parse_input_spec("ids:batch,6:int64")[0], parse_input_spec("feats:batch,4:float32")[0])
    res = convert(
        Source.torch_factory("tests.convert.torch_models:build_embedding_ids"),
        tmp_path / "pkg",
        ConvertConfig(inputs=specs),
    )
    assert res.report.passed
    ids = res.package.samples()[0]["ids"]
    assert ids.min() >= 0 and ids.max() < 50
    assert ids.max() >= 10  # drawn over the table, not a tiny default range


def test_explicit_range_and_its_syntax(tmp_path):
    spec, rng = parse_input_spec("ids:batch,6:int64:0..50")
    assert spec.shape == ("batch", 6) and spec.dtype == "int64" and rng == (0.0, 50.0)
    for bad, msg in [("ids:batch,6:int64:50", "not a range"), ("ids:b:int64:5..5", "empty")]:
        with pytest.raises(UsageError, match=msg):
            parse_input_spec(bad)
    # the module changes ids before the lookup, so only the given range keeps it valid
    res = convert(
        Source.torch_factory("tests.convert.torch_models:build_shifted_embedding_ids"),
        tmp_path / "pkg",
        ConvertConfig(
            inputs=(spec, parse_input_spec("feats:batch,4:float32")[0]),
            input_ranges={"ids": (0, 49)},
        ),
    )
    assert res.report.passed
    ids = res.package.samples()[0]["ids"]
    assert ids.min() >= 0 and ids.max() < 49


def test_rejected_generated_inputs_name_the_input_and_the_fix(tmp_path):
    specs = (parse_input_spec("ids:batch,6:int64")[0], parse_input_spec("feats:batch,4:float32")[0])
    with pytest.raises(InputError) as err:
        convert(
            Source.torch_factory("tests.convert.torch_models:build_shifted_embedding_ids"),
            tmp_path / "pkg",
            ConvertConfig(inputs=specs),
        )
    msg = err.value.message
    assert "'ids'" in msg and "--example-inputs" in msg and "ids:batch,6:int64:LOW..HIGH" in msg
    assert not (tmp_path / "pkg").exists()


def test_cli_rejected_generated_inputs_exit_2_without_traceback(tmp_path, capsys):
    rc = main(
        [
            "convert",
            "--torch",
            "tests.convert.torch_models:build_shifted_embedding_ids",
            "--input",
            "ids:batch,6:int64",
            "--input",
            "feats:batch,4:float32",
            "-o",
            str(tmp_path / "pkg"),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 2
    text = captured.out + captured.err
    assert "Traceback" not in text and "--example-inputs" in text and "ids" in text
    rc = main(
        [
            "convert",
            "--torch",
            "tests.convert.torch_models:build_shifted_embedding_ids",
            "--input",
            "ids:batch,6:int64:0..49",
            "--input",
            "feats:batch,4:float32",
            "-o",
            str(tmp_path / "pkg"),
        ]
    )
    assert rc == 0, capsys.readouterr()
