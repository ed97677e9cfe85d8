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


def _two_names(path, body):
    """x [unk_in, 4] -> y declared [unk_out, 3], as tf2onnx names a batch axis twice."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32), "w"
    )
    graph = helper.make_graph(
        body,
        "two_names",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["unk_in", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["unk_out", 3])],
        initializer=[w],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_an_output_axis_that_provably_follows_the_batch_is_renamed(tmp_path):
    """Per-row outputs get the input's batch name, so serve batches the model (magika's
    target_label was 'unk__215' beside the input's 'unk__214'); an output whose rows depend on
    each other keeps its own name, and the model stays unbatched."""
    from onnx import helper

    from modelport.serve.model import batching_plan

    per_row = _two_names(tmp_path / "a.onnx", [helper.make_node("MatMul", ["x", "w"], ["y"])])
    res = convert(Source.onnx(str(per_row)), tmp_path / "a")
    sig = res.package.signature
    assert sig.outputs[0].shape == ("unk_in", 3)
    assert batching_plan(sig) == ("unk_in", "")
    assert any("y[0] 'unk_out' -> 'unk_in'" in n for n in res.notes)

    mixing = _two_names(  # y = (x - mean over the batch) @ w: a row's answer depends on the others
        tmp_path / "b.onnx",
        [
            helper.make_node("ReduceMean", ["x"], ["m"], axes=[0], keepdims=1),
            helper.make_node("Sub", ["x", "m"], ["c"]),
            helper.make_node("MatMul", ["c", "w"], ["y"]),
        ],
    )
    res = convert(Source.onnx(str(mixing)), tmp_path / "b")
    sig = res.package.signature
    assert sig.outputs[0].shape == ("unk_out", 3)
    assert batching_plan(sig)[0] is None
