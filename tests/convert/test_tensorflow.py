"""TensorFlow sources: a Keras CNN trained briefly on digits (.keras and .h5), the SavedModel
exported from it in the TF Serving layout (one version, and the whole base as a repository
entry), a Keras model with two named inputs, Keras' own exporter as the fallback, and bad inputs.

TensorFlow is slow to import and each conversion costs a second or so: the models are trained
once per module and the number of conversions is kept small."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from modelport.cli import main
from modelport.convert import ConvertConfig, Source, convert
from modelport.convert.tensorflow import convert_savedmodel_repo, import_tensorflow
from modelport.errors import ConversionError, UsageError
from modelport.package import ModelPackage
from modelport.runtime import make_session, run_session

if not all(importlib.util.find_spec(m) for m in ("tensorflow", "keras", "tf2onnx")):
    pytest.skip(
        "needs the tensorflow extra: pip install 'modelport[tensorflow]'", allow_module_level=True
    )

import_tensorflow()  # quietly, before keras pulls it in
import keras  # noqa: E402


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[..., None]  # NHWC, as Keras wants
    return x[:1400], d.target[:1400], x[1400:], d.target[1400:]


def _cnn():
    inp = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(16, 3, padding="same")(inp)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(32, activation="relu")(h)
    return keras.Model(inp, keras.layers.Dense(10, activation="softmax", name="probs")(h))


@pytest.fixture(scope="module")
def digits():
    return _digits()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits):
    """The CNN trained for 2 epochs, saved as .keras and .h5, and exported as a SavedModel in
    the TF Serving layout: BASE/1 after 2 epochs, BASE/2 after one more."""
    x, y, x_test, y_test = digits
    keras.utils.set_random_seed(0)
    model = _cnn()
    model.compile(
        keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    d = tmp_path_factory.mktemp("keras")
    model.save(d / "cnn.keras")
    model.save(d / "cnn.h5")
    base = d / "serving" / "digits"
    model.export(str(base / "1"), format="tf_saved_model", verbose=False)
    v1_probs = np.asarray(model(x_test, training=False))
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    model.export(str(base / "2"), format="tf_saved_model", verbose=False)
    np.savez(d / "digits.npz", image=x_test)
    return {
        "dir": d,
        "base": base,
        "v1_probs": v1_probs,
        "accuracy": model.evaluate(x_test, y_test, verbose=0)[1],
    }


@pytest.fixture(scope="module")
def two_inputs():
    """Two named inputs (a dict) and two outputs (a list)."""
    keras.utils.set_random_seed(1)
    pixels, meta = keras.Input((64,), name="pixels"), keras.Input((3,), name="meta")
    h = keras.layers.Concatenate()([keras.layers.Dense(16, activation="relu")(pixels), meta])
    digit = keras.layers.Dense(10, activation="softmax", name="digit")(h)
    score = keras.layers.Dense(1, name="score")(h)
    return keras.Model({"pixels": pixels, "meta": meta}, [digit, score])


def _run(pkg: ModelPackage, feed: dict) -> dict:
    return run_session(make_session(pkg.model_path), feed)


def _worst(report) -> float:
    return max(o.max_abs_diff for c in report.cases for o in c.outputs)


def test_keras_cnn_cli(tmp_path, trained, digits):
    _, _, x_test, y_test = digits
    out, report_json = tmp_path / "cnn", tmp_path / "report.json"
    code = main(
        [
            "convert",
            "--keras",
            str(trained["dir"] / "cnn.keras"),
            "--example-inputs",
            str(trained["dir"] / "digits.npz"),
            "-o",
            str(out),
            "--json",
            str(report_json),
        ]
    )
    assert code == 0
    pkg = ModelPackage.load(out)
    assert [(t.name, t.shape) for t in pkg.signature.inputs] == [("image", ("batch", 8, 8, 1))]
    assert [(t.name, t.shape) for t in pkg.signature.outputs] == [("probs", ("batch", 10))]
    prov = pkg.manifest["provenance"]
    assert prov["exporter"] == "tf2onnx" and prov["source_kind"] == "keras"
    assert {"tensorflow", "keras", "tf2onnx", "onnx"} <= set(prov["frameworks"])
    ops = {n.op_type for n in pkg.load_onnx().graph.node}
    assert "Conv" in ops and "MaxPool" in ops and "BatchNormalization" not in ops  # folded
    report = json.loads(report_json.read_text())
    assert report["verification"]["passed"]
    # the ONNX model classifies the test digits exactly as Keras does
    keras_model = keras.models.load_model(trained["dir"] / "cnn.keras")
    want = np.asarray(keras_model(x_test, training=False))
    got = _run(pkg, {"image": x_test})["probs"]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert (got.argmax(1) == want.argmax(1)).all()
    assert (got.argmax(1) == y_test).mean() > 0.8


def test_keras_h5(tmp_path, trained):
    res = convert(Source.keras(str(trained["dir"] / "cnn.h5")), tmp_path / "h5")
    assert res.report.passed and res.exporter == "tf2onnx"
    assert _worst(res.report) < 1e-5
    assert {c.label for c in res.report.cases} >= {"example", "batch=1"}


def test_keras_sequential_built_with_an_input_but_never_called(tmp_path):
    """Keras 3 raises on ``model.input`` for such a Sequential; its ``inputs`` are defined."""
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    model.save(tmp_path / "seq.keras")
    res = convert(Source.keras(str(tmp_path / "seq.keras")), tmp_path / "seq")
    assert res.report.passed
    sig = res.package.signature
    assert [list(i.shape)[1:] for i in sig.inputs] == [[8, 8, 1]]
    x = np.random.default_rng(0).standard_normal((3, 8, 8, 1)).astype(np.float32)
    (got,) = run_session(make_session(res.package.model_path), {sig.inputs[0].name: x}).values()
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=1e-5)


def test_two_named_inputs(tmp_path, two_inputs):
    res = convert(Source.keras(two_inputs), tmp_path / "two")
    assert res.report.passed
    sig = res.package.signature
    assert [(t.name, t.shape) for t in sig.inputs] == [
        ("pixels", ("batch", 64)),
        ("meta", ("batch", 3)),
    ]
    assert [(t.name, t.shape) for t in sig.outputs] == [
        ("digit", ("batch", 10)),
        ("score", ("batch", 1)),
    ]
    rng = np.random.default_rng(3)
    feed = {
        "pixels": rng.random((7, 64), dtype=np.float32),
        "meta": rng.random((7, 3), dtype=np.float32),
    }
    digit, score = two_inputs(feed, training=False)
    got = _run(res.package, feed)
    np.testing.assert_allclose(got["digit"], np.asarray(digit), atol=1e-5)
    np.testing.assert_allclose(got["score"], np.asarray(score), atol=1e-5)


def test_keras_normalization_layer_constants_stay_in_the_graph(tmp_path):
    """Keras 3 keeps an adapted Normalization's mean/variance as tensors the traced call captures;
    tf2onnx's from_function made them graph inputs, and convert stopped with a KeyError."""
    rng = np.random.default_rng(0)
    norm = keras.layers.Normalization()
    norm.adapt(rng.random((20, 3), dtype=np.float32) * 10)
    inp = keras.Input((3,), name="num")
    model = keras.Model(inp, keras.layers.Dense(2, name="out")(norm(inp)))
    model.save(tmp_path / "norm.keras")
    res = convert(Source.keras(str(tmp_path / "norm.keras")), tmp_path / "norm")
    assert res.report.passed and res.exporter == "tf2onnx"
    assert res.package.signature.input_names == ["num"]
    x = rng.random((5, 3), dtype=np.float32) * 10
    got = _run(res.package, {"num": x})
    np.testing.assert_allclose(got["out"], model.predict(x, verbose=0), atol=1e-5)


def test_keras_own_export_leaving_captured_inputs_is_an_exporter_failure(tmp_path, monkeypatch):
    """Keras' own ONNX export also leaves a Normalization's captured constants as graph inputs;
    when tf2onnx had failed, convert crashed with KeyError (exit 3). Now that exporter's failure is
    reported by name."""
    import modelport.convert.tensorflow as tfconv

    def broken(*args, **kwargs):
        raise RuntimeError("simulated tf2onnx breakage")

    monkeypatch.setattr(tfconv, "_export_keras_tf2onnx", broken)
    norm = keras.layers.Normalization()
    norm.adapt(np.random.default_rng(0).random((20, 3), dtype=np.float32))
    inp = keras.Input((3,), name="num")
    keras.Model(inp, keras.layers.Dense(2)(norm(inp))).save(tmp_path / "norm.keras")
    with pytest.raises(ConversionError, match=r"keras failed: .*inputs the model does not have"):
        convert(Source.keras(str(tmp_path / "norm.keras")), tmp_path / "norm")
    assert not (tmp_path / "norm").exists()


def test_keras_input_option_sizes_unknown_dims(tmp_path):
    """--input img:batch,20,24,3:float32 was silently ignored for --keras: an image model with
    unknown height/width was exported and verified on generated 8x8 images."""
    from modelport.data import parse_input_spec

    inp = keras.Input((None, None, 3), name="img")
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inp)
    model = keras.Model(inp, keras.layers.GlobalAveragePooling2D(name="feat")(h))
    model.save(tmp_path / "img.keras")
    spec = parse_input_spec("img:batch,20,24,3:float32")[0]
    res = convert(
        Source.keras(str(tmp_path / "img.keras")), tmp_path / "p", ConvertConfig(inputs=(spec,))
    )
    assert res.report.passed
    example = next(c for c in res.report.cases if c.label == "example")
    assert list(example.input_shapes["img"]) == [2, 20, 24, 3]
    bad = parse_input_spec("img:batch,20,24,4:float32")[0]
    with pytest.raises(UsageError, match="axis 3 is 4, but the model fixes it at 3"):
        convert(
            Source.keras(str(tmp_path / "img.keras")), tmp_path / "q", ConvertConfig(inputs=(bad,))
        )


def test_keras_string_lookup_points_to_savedmodel(tmp_path):
    """A string input used to fail with TensorFlow's "Cannot convert 'str' to a DType"; the lookup
    table it feeds converts only through tf2onnx's SavedModel loader, and the error says so."""
    cat = keras.Input((1,), dtype="string", name="cat")
    lookup = keras.layers.StringLookup(vocabulary=["a", "b"], output_mode="one_hot")
    model = keras.Model(cat, keras.layers.Dense(2)(lookup(cat)))
    model.save(tmp_path / "lookup.keras")
    with pytest.raises(ConversionError, match=r"LookupTable.*model\.export\(DIR\).*--savedmodel"):
        convert(Source.keras(str(tmp_path / "lookup.keras")), tmp_path / "lookup")
    assert not (tmp_path / "lookup").exists()


def test_keras_own_export_is_the_fallback(tmp_path, two_inputs, monkeypatch):
    import modelport.convert.tensorflow as tfconv

    def broken(*args, **kwargs):
        raise RuntimeError("simulated tf2onnx breakage")

    monkeypatch.setattr(tfconv, "_export_keras_tf2onnx", broken)
    res = convert(Source.keras(two_inputs), tmp_path / "fallback")
    assert res.report.passed and res.exporter == "keras"
    assert res.package.manifest["provenance"]["exporter"] == "keras"
    assert any("tf2onnx failed" in n and "simulated" in n for n in res.notes)
    # Keras' exporter calls list outputs Identity:0 ...; they carry the model's names here
    assert res.package.signature.output_names == ["digit", "score"]
    assert res.package.signature.input_names == ["pixels", "meta"]


def test_savedmodel_version_cli(tmp_path, trained, digits):
    _, _, x_test, _ = digits
    out = tmp_path / "sm"
    assert main(["convert", "--savedmodel", str(trained["base"] / "1"), "-o", str(out)]) == 0
    pkg = ModelPackage.load(out)
    assert [(t.name, t.shape) for t in pkg.signature.inputs] == [("image", ("batch", 8, 8, 1))]
    assert pkg.signature.output_names == ["output_0"]
    prov = pkg.manifest["provenance"]
    assert prov["exporter"] == "tf2onnx" and prov["signature_name"] == "serving_default"
    assert prov["tag"] == "serve" and len(prov["source_sha256"]) == 64
    np.testing.assert_allclose(
        _run(pkg, {"image": x_test})["output_0"], trained["v1_probs"], atol=1e-5
    )


def test_savedmodel_repo_cli(tmp_path, trained, digits, capsys, monkeypatch):
    monkeypatch.delenv("MODELPORT_PROGRESS", raising=False)
    _, _, x_test, _ = digits
    repo = tmp_path / "repo"
    code = main(
        [
            "convert",
            "--savedmodel-repo",
            str(trained["base"]),
            "-o",
            str(repo / "digits"),
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    assert code == 0
    # progress off a terminal: one line per phase, each version's phases named by its version
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("convert")]
    assert lines[0] == "convert: versions (2 versions)"
    for v in ("1", "2"):
        mine = [ln.split(": ", 1)[1] for ln in lines if ln.startswith(f"convert version {v}: ")]
        assert mine[0] == "load source" and mine[-1] == "write package"
        assert "export (tf2onnx)" in mine and any(m.startswith("verify (") for m in mine)
    assert sorted(os.listdir(repo)) == ["digits"]  # no temporary directories left behind
    assert sorted(os.listdir(repo / "digits")) == ["1", "2"]
    probs = {}
    for v in ("1", "2"):
        pkg = ModelPackage.load(repo / "digits" / v)
        assert pkg.name == "digits" and pkg.manifest["verification"]["passed"]
        assert pkg.manifest["provenance"]["source_path"].endswith(os.path.join("digits", v))
        probs[v] = _run(pkg, {"image": x_test})["output_0"]
    np.testing.assert_allclose(probs["1"], trained["v1_probs"], atol=1e-5)
    assert np.abs(probs["2"] - probs["1"]).max() > 1e-3  # version 2 has its own weights
    versions = json.loads((tmp_path / "r.json").read_text())["versions"]
    assert [v["version"] for v in versions] == ["1", "2"]
    # an existing entry is only replaced with --force
    assert (
        main(["convert", "--savedmodel-repo", str(trained["base"]), "-o", str(repo / "digits")])
        == 2
    )


def test_repo_failure_leaves_nothing(tmp_path, trained):
    base = tmp_path / "base"
    shutil.copytree(trained["base"] / "1", base / "1")
    (base / "2").mkdir()
    (base / "2" / "saved_model.pb").write_bytes(b"not a protobuf")
    out = tmp_path / "repo" / "digits"
    with pytest.raises(ConversionError, match="version 2: .*cannot be parsed"):
        convert_savedmodel_repo(base, out)
    assert not out.exists() and os.listdir(tmp_path / "repo") == []


def test_bad_savedmodel_inputs(tmp_path, trained, capsys):
    base, v1 = trained["base"], trained["base"] / "1"
    (tmp_path / "empty").mkdir()
    cases = [
        (["--savedmodel", str(tmp_path / "empty")], "not a SavedModel: it has no saved_model.pb"),
        (["--savedmodel", str(base)], "--savedmodel-repo"),
        (
            ["--savedmodel", str(v1), "--signature", "nope"],
            "no signature 'nope'; its signatures are",
        ),
        (["--savedmodel", str(v1), "--tag", "gpu"], "no MetaGraph tagged 'gpu'"),
        (["--savedmodel-repo", str(v1)], "It is a SavedModel itself"),
        (["--savedmodel-repo", str(base), "--keras", "m.keras"], "source of its own"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main(["convert", *args, "-o", str(tmp_path / "out")]) == 2, args
        assert message in capsys.readouterr().err.replace("\n", " "), args
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConversionError, match="serving_default"):
        convert(Source.savedmodel(str(v1), signature_name="nope"), tmp_path / "out")


def test_bad_keras_inputs(tmp_path, trained):
    with pytest.raises(ConversionError, match="use --savedmodel"):
        convert(Source.keras(str(trained["base"] / "1")), tmp_path / "a")
    with pytest.raises(ConversionError, match="does not exist"):
        convert(Source.keras(str(tmp_path / "missing.keras")), tmp_path / "b")
    (tmp_path / "model.txt").write_text("hello")
    with pytest.raises(ConversionError, match="expected .keras"):
        convert(Source.keras(str(tmp_path / "model.txt")), tmp_path / "c")
    with pytest.raises(UsageError, match="--dynamic names input 'x'"):
        convert(
            Source.keras(str(trained["dir"] / "cnn.keras")),
            tmp_path / "d",
            ConvertConfig(dynamic={"x": {1: "h"}}),
        )


def test_converter_modules_import_lightly():
    code = (
        "import sys, modelport.convert.tensorflow, modelport.convert.sklearn;"
        "print(','.join(m for m in ('tensorflow', 'keras', 'tf2onnx', 'sklearn', 'skl2onnx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
