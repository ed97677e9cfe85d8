"""Importing ONNX files written elsewhere (issue 14): no invented sizes, named dims, generated
inputs at sizes a model of its kind takes, and a model that rejects them is still imported."""

from __future__ import annotations

import onnx
import pytest

from modelport.cli import main
from modelport.convert import ConvertConfig, Source, convert
from modelport.data import generate_feed, graph_value_ranges, guess_dims
from modelport.errors import VerificationError
from modelport.signature import Signature, TensorSpec
from tests.convert import onnx_models as om


def test_detector_with_unnamed_dims_imports_without_example_inputs(tmp_path):
    src = om.detector(tmp_path / "det.onnx", dims=("", "?", "None"))
    res = convert(Source.onnx(str(src)), tmp_path / "pkg")
    assert res.report.passed
    pkg = res.package
    assert pkg.signature.inputs[0].shape == ("batch", 3, "height", "width")
    # the smoke run used an image size a stride-32 detector takes (1x1 or 2x2 would fail)
    assert res.report.cases[0].input_shapes == {"x": [1, 3, 224, 224]}
    assert pkg.samples() is None  # generated data is not stored as if it were real
    text = " ".join(res.notes)
    assert "'?' -> 'height'" in text and "--example-inputs" in text


def test_classifier_with_none_and_question_mark_dims(tmp_path):
    res = convert(Source.onnx(str(om.unnamed_classifier(tmp_path / "c.onnx"))), tmp_path / "pkg")
    assert res.report.passed
    sig = res.package.signature
    assert sig.inputs[0].shape == ("batch", 8)
    assert sig.outputs[0].shape == ("batch", 4)  # inferred from the input once it has a name


def test_integer_ranges_come_from_the_graph(tmp_path):
    model = onnx.load(str(om.lookup(tmp_path / "l.onnx", rows=50, depth=7)))
    assert graph_value_ranges(model) == {"ids": (0.0, 50.0), "cls": (0.0, 7.0)}
    res = convert(Source.onnx(str(tmp_path / "l.onnx")), tmp_path / "pkg")
    assert res.report.passed


def test_guess_dims_by_kind():
    sig = Signature(
        (
            TensorSpec("image", "float32", ("n", 3, "h", "w")),
            TensorSpec("ids", "int64", ("n", "seq")),
            TensorSpec("audio", "float32", ("n", "samples")),
        )
    )
    assert guess_dims(sig) == {"n": 1, "h": 224, "w": 224, "seq": 128, "samples": 512}
    feed = generate_feed(sig, guess_dims(sig, batch=2), ranges={"ids": (5, 9)})
    assert feed["image"].shape == (2, 3, 224, 224)
    assert feed["ids"].min() >= 5 and feed["ids"].max() <= 8


def test_model_that_rejects_generated_inputs_is_imported_with_a_note(tmp_path, capfd):
    src = om.one_size_only(tmp_path / "fixed.onnx")
    rc = main(["convert", "--onnx", str(src), "-o", str(tmp_path / "pkg")])
    out, err = capfd.readouterr()
    assert rc == 0
    assert "could not smoke-test" in out and "--example-inputs" in out
    assert "Traceback" not in out + err
    assert "[E:onnxruntime" not in out + err  # ORT's own log lines stay off the terminal
    assert (tmp_path / "pkg" / "model.onnx").is_file()


def test_opset_conversion_that_cannot_run_needs_real_inputs(tmp_path):
    src = om.one_size_only(tmp_path / "fixed.onnx")
    with pytest.raises(VerificationError, match="--example-inputs"):
        convert(Source.onnx(str(src)), tmp_path / "pkg", ConvertConfig(opset=18))
    assert not (tmp_path / "pkg").exists()


@pytest.mark.parametrize("name", ["light_squeezenet", "light_resnet50"])
def test_models_shipped_by_the_onnx_package_import_warm_up_and_answer_alike(name, tmp_path):
    """Models nobody here wrote: the 'light' CNNs of onnx's backend test data (no download)."""
    from pathlib import Path

    import numpy as np

    from modelport.package import ModelPackage
    from modelport.runtime import make_session, run_session
    from modelport.serve.config import ModelConfig
    from modelport.serve.model import load_model

    src = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"{name}.onnx"
    if not src.is_file():
        pytest.skip(f"this onnx build does not ship {src.name}")
    res = convert(Source.onnx(str(src)), tmp_path / "pkg")
    assert res.report.passed and res.report.checker == "passed"
    served = load_model(ModelPackage.load(tmp_path / "pkg"), name, 1, ModelConfig())
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    feed = {served.signature.inputs[0].name: x}
    want = run_session(make_session(str(src)), feed)
    got = served.run(feed)
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], v)
