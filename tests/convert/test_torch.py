"""PyTorch sources: factory, object, state_dict + class, TorchScript, ExportedProgram, and the
failure cases (bad module, weights that don't fit, unsupported op, specialization, existing out)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from modelport.convert import ConvertConfig, Source, convert
from modelport.convert.torch import torch_versions
from modelport.data import parse_input_spec
from modelport.errors import ConversionError, UsageError, VerificationError
from modelport.package import ModelPackage
from modelport.runtime import make_session, run_session
from tests.convert import torch_models as tm

X_SPEC = (parse_input_spec("x:batch,4:float32")[0],)


def _run(pkg: ModelPackage, feed: dict) -> dict:
    return run_session(make_session(pkg.model_path), feed)


def test_factory_converts_with_dynamic_batch_and_parity(tmp_path):
    res = convert(
        Source.torch_factory("tests.convert.torch_models:build_mlp"),
        tmp_path / "mlp",
        ConvertConfig(inputs=X_SPEC),
    )
    pkg = res.package
    assert res.report.passed
    assert res.exporter in ("dynamo", "torchscript")
    assert pkg.signature.inputs[0].shape == ("batch", 4)
    assert pkg.signature.outputs[0].shape[0] == "batch"
    labels = [c.label for c in res.report.cases]
    assert labels[0] == "example" and "batch=1" in labels and "batch=4" in labels
    # parity holds on a batch size never seen during export
    x = np.random.default_rng(1).standard_normal((7, 4)).astype(np.float32)
    want = tm.build_mlp()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(_run(pkg, {"x": x})["output"], want, atol=1e-5)


def test_manifest_provenance_and_metadata_props(tmp_path):
    pkg = convert(
        Source.torch_factory("tests.convert.torch_models:build_mlp"),
        tmp_path / "mlp",
        ConvertConfig(inputs=X_SPEC),
    ).package
    manifest = json.loads((tmp_path / "mlp" / "modelport.json").read_text())
    prov = manifest["provenance"]
    assert prov["source_kind"] == "torch"
    assert len(prov["source_sha256"]) == 64
    assert prov["frameworks"]["torch"].startswith("2.")
    assert prov["frameworks"].items() <= torch_versions().items()
    assert torch_versions()["onnx"] == onnx.__version__
    assert prov["modelport_version"]
    assert manifest["verification"]["passed"] is True
    assert manifest["history"][0]["step"] == "convert"
    assert manifest["files"]["model.onnx"]["sha256"]
    props = {p.key: p.value for p in onnx.load(pkg.model_path).metadata_props}
    assert props["modelport.source_kind"] == "torch"
    assert props["modelport.source_sha256"] == prov["source_sha256"]
    assert props["modelport.verified"] == "True"
    # samples: the example inputs and the source model's outputs on them
    inputs, outputs = pkg.samples()
    assert inputs["x"].shape == (2, 4) and outputs["output"].shape == (2, 3)


def test_state_dict_plus_class_with_init_args(tmp_path):
    torch.manual_seed(3)
    model = tm.MLP(inputs=5, hidden=16, outputs=2)
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    res = convert(
        Source.torch_class(
            "tests.convert.torch_models:MLP",
            str(weights),
            {"inputs": 5, "hidden": 16, "outputs": 2},
        ),
        tmp_path / "pkg",
        ConvertConfig(inputs=(parse_input_spec("x:batch,5:float32")[0],)),
    )
    x = np.ones((3, 5), np.float32)
    np.testing.assert_allclose(
        _run(res.package, {"x": x})["output"],
        model(torch.from_numpy(x)).detach().numpy(),
        atol=1e-5,
    )
    assert res.package.manifest["provenance"]["init_args"] == {
        "inputs": 5,
        "hidden": 16,
        "outputs": 2,
    }


def test_weights_that_do_not_fit_the_class(tmp_path):
    weights = tmp_path / "w.pt"
    torch.save(tm.MLP(hidden=32).state_dict(), weights)
    with pytest.raises(ConversionError, match="do not fit .*--init-args"):
        convert(
            Source.torch_class("tests.convert.torch_models:MLP", str(weights)),
            tmp_path / "o",
            ConvertConfig(inputs=X_SPEC),
        )
    assert not (tmp_path / "o").exists()


def test_pickled_full_module_is_refused_by_weights_only(tmp_path):
    weights = tmp_path / "full.pt"
    torch.save(tm.MLP(), weights)  # a pickled module, not a state_dict
    with pytest.raises(ConversionError, match="weights_only=True"):
        convert(
            Source.torch_class("tests.convert.torch_models:MLP", str(weights)),
            tmp_path / "o",
            ConvertConfig(inputs=X_SPEC),
        )


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ("tests.convert.no_such_module:build", "cannot import module"),
        ("tests.convert.torch_models:nope", "has no attribute 'nope'"),
        ("tests.convert.torch_models:not_a_module", "not a torch.nn.Module"),
        ("no_colon_here", "module.path:name"),
    ],
)
def test_bad_module_targets(tmp_path, target, match):
    with pytest.raises((ConversionError, UsageError), match=match):
        convert(Source.torch_factory(target), tmp_path / "o", ConvertConfig(inputs=X_SPEC))
    assert not (tmp_path / "o").exists()


def test_module_object_with_named_dict_outputs_and_two_inputs(tmp_path):
    rng = np.random.default_rng(0)
    example = {
        "ids": rng.integers(0, 50, (2, 5)).astype(np.int64),
        "feats": rng.standard_normal((2, 2)).astype(np.float32),
    }
    res = convert(
        Source.torch_module(tm.build_two_io()),
        tmp_path / "p",
        ConvertConfig(example=example, dynamic={"ids": {1: "sequence"}}),
    )
    sig = res.package.signature
    assert sig.input_names == ["ids", "feats"]
    assert sig.output_names == ["scores", "probs"]
    assert sig.input("ids").shape == ("batch", "sequence")
    # verification covered other sequence lengths, with ids inside the example's range
    assert any(c.label.startswith("sequence=") for c in res.report.cases)
    for label, case in ((c.label, c) for c in res.report.cases):
        assert case.passed, label


def test_eval_mode_is_used_for_export_and_reference(tmp_path):
    model = tm.BatchNormDropout().train()  # the user forgot eval()
    x = np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)
    res = convert(Source.torch_module(model), tmp_path / "p", ConvertConfig(example={"x": x}))
    model.eval()
    np.testing.assert_allclose(
        _run(res.package, {"x": x})["output"],
        model(torch.from_numpy(x)).detach().numpy(),
        atol=1e-5,
    )


def test_data_dependent_branch_is_caught_and_nothing_written(tmp_path):
    x = np.abs(np.random.default_rng(0).standard_normal((2, 4))).astype(np.float32)  # sum > 0
    with pytest.raises(VerificationError) as info:
        convert(
            Source.torch_module(tm.DataDependentBranch()),
            tmp_path / "p",
            ConvertConfig(example={"x": x}),
        )
    assert "does not match the source" in str(info.value)
    assert not info.value.report.passed
    assert not (tmp_path / "p").exists()


def test_allow_mismatch_writes_and_records_failure(tmp_path):
    x = np.abs(np.random.default_rng(0).standard_normal((2, 4))).astype(np.float32)
    res = convert(
        Source.torch_module(tm.DataDependentBranch()),
        tmp_path / "p",
        ConvertConfig(example={"x": x}, allow_mismatch=True),
    )
    manifest = json.loads((tmp_path / "p" / "modelport.json").read_text())
    assert manifest["verification"]["passed"] is False
    assert res.report.failures()


def test_specialized_batch_dim_is_caught(tmp_path):
    x = np.ones((2, 4), np.float32)
    with pytest.raises(VerificationError) as info:
        convert(
            Source.torch_module(tm.FixedBatchReshape()),
            tmp_path / "p",
            ConvertConfig(example={"x": x}),
        )
    failures = "\n".join(info.value.report.failures())
    assert "batch=1" in failures or "fixed it to 2" in failures


def test_unsupported_op_gives_a_clear_error(tmp_path):
    with pytest.raises(ConversionError, match="no exporter could convert") as info:
        convert(
            Source.torch_module(tm.UnsupportedOp()),
            tmp_path / "p",
            ConvertConfig(example={"x": np.ones((2, 3), np.float32)}),
        )
    assert "mystery" in str(info.value)
    assert not (tmp_path / "p").exists()


def test_existing_output_is_refused_unless_force(tmp_path):
    out = tmp_path / "p"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    src = Source.torch_factory("tests.convert.torch_models:build_mlp")
    with pytest.raises(UsageError, match="already exists"):
        convert(src, out, ConvertConfig(inputs=X_SPEC))
    assert (out / "keep.txt").read_text() == "mine"
    convert(src, out, ConvertConfig(inputs=X_SPEC), force=True)
    assert (out / "model.onnx").is_file() and not (out / "keep.txt").exists()


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    import modelport.package as package

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(package, "_write_samples", boom)
    with pytest.raises(KeyboardInterrupt):
        convert(
            Source.torch_factory("tests.convert.torch_models:build_mlp"),
            tmp_path / "p",
            ConvertConfig(inputs=X_SPEC),
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_forced_exporter_is_used_and_recorded(tmp_path, exporter):
    res = convert(
        Source.torch_factory("tests.convert.torch_models:build_mlp"),
        tmp_path / "p",
        ConvertConfig(inputs=X_SPEC, exporter=exporter),
    )
    assert res.exporter == exporter
    assert res.package.manifest["provenance"]["exporter"] == exporter


def test_torchscript_file(tmp_path):
    scripted = torch.jit.script(tm.build_mlp())
    path = tmp_path / "m.pt"
    torch.jit.save(scripted, str(path))
    res = convert(Source.torchscript(str(path)), tmp_path / "p", ConvertConfig(inputs=X_SPEC))
    assert res.report.passed
    assert res.package.manifest["provenance"]["source_kind"] == "torchscript"
    assert res.package.signature.inputs[0].shape == ("batch", 4)


def test_torchscript_bad_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ConversionError, match="not a TorchScript archive"):
        convert(Source.torchscript(str(bad)), tmp_path / "p", ConvertConfig(inputs=X_SPEC))


def test_exported_program_with_dynamic_batch(tmp_path):
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(tm.build_mlp(), (torch.ones(2, 4),), dynamic_shapes=({0: batch},))
    path = tmp_path / "m.pt2"
    torch.export.save(program, str(path))
    res = convert(
        Source.exported_program(str(path)),
        tmp_path / "p",
        ConvertConfig(example={"x": np.ones((2, 4), np.float32)}),
    )
    assert res.report.passed
    assert isinstance(res.package.signature.inputs[0].shape[0], str)
    assert any(c.label.startswith("batch=") for c in res.report.cases)


def test_exported_program_needs_no_example_inputs(tmp_path):
    """A .pt2 holds the inputs it was exported with: it used to be refused without --input or
    --example-inputs ("a PyTorch model needs example inputs"); those saved inputs are used."""
    module = tm.build_mlp().eval()
    x = torch.linspace(-1, 1, 12).reshape(3, 4)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(module, (x,), dynamic_shapes=({0: batch},))
    path = tmp_path / "m.pt2"
    torch.export.save(program, str(path))
    res = convert(Source.exported_program(str(path)), tmp_path / "p")
    assert res.report.passed and res.package.signature.input_names == ["x"]
    assert any("exported with (x [3, 4] float32)" in n for n in res.notes)
    example = next(c for c in res.report.cases if c.label == "example")
    assert list(example.input_shapes["x"]) == [3, 4]
    y = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    (got,) = run_session(make_session(res.package.model_path), {"x": y}).values()
    np.testing.assert_allclose(got, module(torch.from_numpy(y)).detach().numpy(), atol=1e-5)


def test_torchscript_and_state_dict_files_swapped_say_which_flag(tmp_path):
    """A TorchScript file given as --weights used to surface torch.load's weights_only advice;
    a state_dict given as --torchscript, PyTorch's "checkpoint file is corrupted". Both now name
    the file's kind and the flag that takes it."""
    model = tm.MLP().eval()
    state, script = tmp_path / "w.pt", tmp_path / "ts.pt"
    torch.save(model.state_dict(), state)
    torch.jit.save(torch.jit.script(model), str(script))
    cfg = ConvertConfig(inputs=X_SPEC)
    with pytest.raises(ConversionError, match=r"is a TorchScript archive.*--torchscript") as err:
        convert(
            Source.torch_class("tests.convert.torch_models:MLP", str(script)), tmp_path / "a", cfg
        )
    assert "weights_only" not in str(err.value)
    with pytest.raises(ConversionError, match=r"torch\.save file.*--weights") as err:
        convert(Source.torchscript(str(state)), tmp_path / "b", cfg)
    assert "corrupted" not in str(err.value)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_exported_program_example_contradicting_its_fixed_dims_is_refused(tmp_path):
    """--input x:batch,5 for a program exported at [batch, 4] used to fail late, in parity, with
    ONNX Runtime's "Got invalid dimensions ... Expected: 4"; it is refused up front."""
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(tm.build_mlp(), (torch.ones(2, 4),), dynamic_shapes=({0: batch},))
    path = tmp_path / "m.pt2"
    torch.export.save(program, str(path))
    spec = (parse_input_spec("x:batch,5:float32")[0],)
    with pytest.raises(UsageError, match=r"takes x \['s\d+', 4\].*gives \[2, 5\]"):
        convert(Source.exported_program(str(path)), tmp_path / "p", ConvertConfig(inputs=spec))
    assert not (tmp_path / "p").exists()
