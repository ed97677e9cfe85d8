"""``package --target triton`` carries a package's processing: an ensemble of a Python-backend
preprocess, the ONNX graph and a Python-backend postprocess. There is no Triton server here: the
configs are parsed as Triton's ModelConfig, the wiring is checked, and model.py runs under a stub
of ``triton_python_backend_utils`` against the real packages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import modelport.processing as mp
from modelport.deploy import package_for
from modelport.deploy import triton_python_stub as pb
from modelport.deploy.triton_ensemble import check_ensemble, run_ensemble, write_ensemble
from modelport.errors import VerificationError
from modelport.package import ModelPackage

ROOT = Path(__file__).resolve().parents[2]
SENTENCES = (ROOT / "benchmarks" / "data" / "sentences.txt").read_text().splitlines()
TEMPLATE = ROOT / "src" / "modelport" / "deploy" / "templates" / "triton_model.py"


def _config(path: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _texts(texts) -> np.ndarray:
    arr = np.empty((len(texts), 1), dtype=object)  # BYTES [n, 1], as Triton hands them over
    arr[:, 0] = [t.encode() for t in texts]
    return arr


@pytest.fixture(scope="module")
def minilm_repo(tmp_path_factory, minilm_package):
    out = tmp_path_factory.mktemp("triton")
    return package_for(minilm_package, "triton", out), out


def test_minilm_ensemble_layout(minilm_repo):
    r, out = minilm_repo
    name = "minilm"
    assert r.path == out / name
    assert sorted(p.name for p in out.iterdir()) == [
        name,
        f"{name}_postprocess",
        f"{name}_preprocess",
        f"{name}_raw",
    ]
    assert (out / name / "1").is_dir() and not any((out / name / "1").iterdir())
    ens = _config(out / name / "config.pbtxt")
    assert ens.platform == "ensemble" and ens.max_batch_size == 8
    assert [(t.name, list(t.dims)) for t in ens.input] == [("text", [1])]
    assert [(t.name, list(t.dims)) for t in ens.output] == [("embedding", [384])]
    steps = ens.ensemble_scheduling.step
    assert [s.model_name for s in steps] == [
        f"{name}_preprocess",
        f"{name}_raw",
        f"{name}_postprocess",
    ]
    assert dict(steps[2].input_map) == {
        "last_hidden_state": "raw_last_hidden_state",
        "attention_mask": "pre_attention_mask",  # mean pooling needs the request's mask
    }
    for half, step in (("preprocess", "pre"), ("postprocess", "post")):
        cfg = _config(out / f"{name}_{half}" / "config.pbtxt")
        assert cfg.backend == "python"
        assert cfg.parameters["modelport_step"].string_value == step
        version = out / f"{name}_{half}" / "1"
        assert (version / "model.py").read_bytes() == TEMPLATE.read_bytes()
        assert (version / "processing" / "tokenizer.json").is_file()
    raw = _config(out / f"{name}_raw" / "config.pbtxt")
    assert raw.backend == "onnxruntime" and (out / f"{name}_raw" / "1" / "model.onnx").is_file()
    assert any("ensemble ran on a sample" in c and "match modelport.load" in c for c in r.checks)
    assert any("the bare graph is 'minilm_raw'" in n for n in r.notes)


def test_minilm_ensemble_answers_like_modelport_load(minilm_repo, minilm_package):
    _, out = minilm_repo
    texts = SENTENCES[:6] + ["a", "A much longer sentence " * 20]
    got = run_ensemble(out, "minilm", {"text": _texts(texts)})["embedding"]
    ref = mp.load(minilm_package.path)(texts)["embedding"]
    assert got.shape == (8, 384) and got.dtype == np.float32
    assert np.abs(got - ref).max() <= 1e-5


def test_preprocess_model_answers_each_request(minilm_repo):
    from modelport.deploy.triton_ensemble import _python_model  # noqa: PLC2701

    _, out = minilm_repo
    folder = out / "minilm_preprocess"
    model = _python_model(folder, _config(folder / "config.pbtxt"), "1")
    short = pb.InferenceRequest([pb.Tensor("text", _texts(["hi there"]))])
    long = pb.InferenceRequest([pb.Tensor("text", _texts(["hi", "a longer text, padded"]))])
    bad = np.empty((1, 1), dtype=object)
    bad[0, 0] = b"\xff\xfe"
    broken = pb.InferenceRequest([pb.Tensor("text", bad)])
    r1, r2, r3 = model.execute([short, long, broken])
    ids1 = pb.get_output_tensor_by_name(r1, "input_ids").as_numpy()
    ids2 = pb.get_output_tensor_by_name(r2, "input_ids").as_numpy()
    mask2 = pb.get_output_tensor_by_name(r2, "attention_mask").as_numpy()
    assert ids1.dtype == np.int64 and ids1.shape[0] == 1
    assert ids2.shape[0] == 2 and ids2.shape[1] > ids1.shape[1]  # padded to its own longest row
    assert mask2[0].sum() < mask2[1].sum() == ids2.shape[1]
    assert r3.has_error() and "UTF-8" in r3.error().message() and not r1.has_error()


def _labelled(tiny_onnx, tmp_path) -> ModelPackage:
    from modelport.convert import ConvertConfig, Source, convert
    from modelport.processing.config import ProcessingConfig

    cfg = ConvertConfig(processing=ProcessingConfig(labels=("cat", "dog", "bird")))
    return convert(Source.onnx(str(tiny_onnx)), tmp_path / "labelled", cfg).package


def test_a_labelled_classifier_gets_a_postprocess_only(tiny_onnx, tmp_path):
    pkg = _labelled(tiny_onnx, tmp_path)
    r = package_for(pkg, "triton", tmp_path / "triton")
    assert sorted(p.name for p in (tmp_path / "triton").iterdir()) == [
        "labelled",
        "labelled_postprocess",
        "labelled_raw",
    ]
    ens = _config(r.path / "config.pbtxt")
    assert [t.name for t in ens.input] == ["x"]
    assert {t.name: t.data_type for t in ens.output}.keys() == {"label", "score"}
    x = (np.random.default_rng(1).standard_normal((16, 4)) * 3).astype(np.float32)
    got = run_ensemble(tmp_path / "triton", "labelled", {"x": x})
    ref = mp.load(pkg.path)({"x": x})
    assert got["label"].shape == (16, 1) and got["label"].dtype == object
    assert list(got["label"][:, 0]) == list(ref["label"])
    assert len(set(ref["label"])) > 1  # the check sees different classes
    assert np.allclose(got["score"][:, 0], ref["score"], atol=1e-6)


def test_a_miswired_ensemble_is_refused(tiny_onnx, tmp_path):
    from modelport.deploy.base import PackageTargetConfig, serving_settings

    pkg = _labelled(tiny_onnx, tmp_path)
    repo = tmp_path / "stage"
    repo.mkdir()
    write_ensemble(pkg, "m", serving_settings(pkg, PackageTargetConfig()), 1, repo)
    assert any("wiring is consistent" in c for c in check_ensemble(repo, "m", pkg))
    ens = repo / "m" / "config.pbtxt"
    good = ens.read_text()
    ens.write_text(good.replace('value: "raw_y"', 'value: "raw_z"', 1))
    with pytest.raises(
        VerificationError, match="m_postprocess reads 'raw_y', which nothing produces"
    ):
        check_ensemble(repo, "m", pkg)
    ens.write_text(good.replace('key: "label"', 'key: "labels"'))
    with pytest.raises(VerificationError, match="maps output 'labels', which the model lacks"):
        check_ensemble(repo, "m", pkg)
    post = repo / "m_postprocess" / "config.pbtxt"
    ens.write_text(good)
    post.write_text(post.read_text().replace("TYPE_FP32", "TYPE_FP16", 1))
    with pytest.raises(VerificationError, match="differ in data type"):
        check_ensemble(repo, "m", pkg)


def test_an_existing_model_folder_is_refused(tiny_onnx, tmp_path):
    from modelport.errors import UsageError

    pkg = _labelled(tiny_onnx, tmp_path)
    (tmp_path / "triton" / "labelled_raw").mkdir(parents=True)
    with pytest.raises(UsageError, match="labelled_raw"):
        package_for(pkg, "triton", tmp_path / "triton")
    assert sorted(p.name for p in (tmp_path / "triton").iterdir()) == ["labelled_raw"]
