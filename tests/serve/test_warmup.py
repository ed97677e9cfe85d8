"""The warm-up runs the package's stored samples when there are some, else generated inputs at
sizes the model takes (integer inputs within the tables they index); a model that only rejects
generated inputs is still served (issue 14)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from modelport.convert import ConvertConfig, Source, convert
from modelport.data import parse_input_spec
from modelport.errors import ModelportError
from modelport.package import ModelPackage
from modelport.serve.config import ModelConfig
from modelport.serve.model import load_model
from tests.convert import onnx_models as om


def _load(path, **kw):
    return load_model(ModelPackage.load(path), "m", 1, ModelConfig(**kw))


@pytest.fixture(scope="module")
def embedding_pkg(tmp_path_factory):
    """The issue's case: nn.Embedding(50, 16) behind an input named ``ids``."""
    out = tmp_path_factory.mktemp("emb") / "pkg"
    specs = (parse_input_spec("ids:batch,6:int64")[0], parse_input_spec("feats:batch,4:float32")[0])
    convert(
        Source.torch_factory("tests.convert.torch_models:build_embedding_ids"),
        out,
        ConvertConfig(inputs=specs),
    )
    return out


def test_embedding_model_warms_up_on_its_samples(embedding_pkg):
    assert ModelPackage.load(embedding_pkg).samples() is not None
    model = _load(embedding_pkg)
    assert model.batchable


def test_embedding_model_without_samples_takes_ids_from_the_graph(embedding_pkg, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(embedding_pkg, bare)
    shutil.rmtree(bare / "samples")
    assert ModelPackage.load(bare).samples() is None
    model = _load(bare)  # generated ids stay within the 50-row table the graph gathers from
    assert model.batchable
    out = model.run({"ids": np.array([[49] * 6]), "feats": np.zeros((1, 4), np.float32)})
    assert out["output"].shape == (1, 3)


def test_detector_warms_up_at_image_sizes(tmp_path):
    # a stride-32 detector: the old warm-up ran it at 1x1 pixels and marked it failed
    convert(Source.onnx(str(om.detector(tmp_path / "det.onnx"))), tmp_path / "pkg")
    assert ModelPackage.load(tmp_path / "pkg").samples() is None
    model = _load(tmp_path / "pkg")
    assert model.batchable


def test_stored_samples_come_first(tmp_path):
    src = om.one_size_only(tmp_path / "fixed.onnx")
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    convert(Source.onnx(str(src)), tmp_path / "pkg", ConvertConfig(example={"x": x}))
    model = _load(tmp_path / "pkg")
    assert model.batchable  # the 8x8 samples ran, merged batch included


def test_generated_inputs_the_model_rejects_do_not_fail_it(tmp_path, caplog):
    convert(Source.onnx(str(om.one_size_only(tmp_path / "fixed.onnx"))), tmp_path / "pkg")
    with caplog.at_level("WARNING", logger="modelport.serve"):
        model = _load(tmp_path / "pkg")
    assert not model.batchable and "generated" in model.batching_note
    assert "could not warm up with generated inputs" in caplog.text
    x = np.ones((1, 3, 8, 8), np.float32)
    np.testing.assert_allclose(model.run({"x": x})["y"], x + 1)


def test_stored_samples_that_fail_fail_the_load(tmp_path):
    x = np.ones((1, 3, 8, 8), np.float32)
    src = om.one_size_only(tmp_path / "fixed.onnx")
    convert(Source.onnx(str(src)), tmp_path / "pkg", ConvertConfig(example={"x": x}))
    np.savez(tmp_path / "pkg" / "samples" / "inputs.npz", x=np.ones((1, 3, 4, 4), np.float32))
    with pytest.raises(ModelportError, match="stored samples"):
        _load(tmp_path / "pkg")
