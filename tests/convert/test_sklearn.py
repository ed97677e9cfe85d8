"""scikit-learn sources: a StandardScaler + LogisticRegression pipeline and a RandomForest trained
on digits, float32-vs-float64 parity, label ties, the --trust rule for pickles, and bad inputs."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelport.cli import main
from modelport.convert import ConvertConfig, Source, convert
from modelport.convert.sklearn import LABEL_TIE_TOLERANCE, explain_label_ties
from modelport.errors import ConversionError, InputError, UsageError, VerificationError
from modelport.package import ModelPackage
from modelport.runtime import make_session, run_session
from modelport.verify import VerifyConfig


@pytest.fixture(scope="module")
def digits64():
    """(x_train, y_train, x_test, y_test) as scikit-learn gives them: float64 pixels 0..16."""
    x, y = load_digits(return_X_y=True)
    return x[:1400], y[:1400], x[1400:], y[1400:]


@pytest.fixture(scope="module")
def pipeline(digits64):
    x, y, _, _ = digits64
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x, y)


@pytest.fixture(scope="module")
def forest(digits64):
    x, y, _, _ = digits64
    return RandomForestClassifier(n_estimators=40, random_state=0).fit(x, y)


def _ops(pkg: ModelPackage) -> list[str]:
    return [n.op_type for n in pkg.load_onnx().graph.node]


def _worst(report, output: str) -> float:
    return max(o.max_abs_diff for c in report.cases for o in c.outputs if o.name == output)


def test_pipeline_cli_from_joblib_with_trust(tmp_path, pipeline, digits64):
    _, _, x_test, y_test = digits64
    joblib.dump(pipeline, tmp_path / "pipe.joblib")
    np.savez(tmp_path / "digits.npz", input=x_test)  # float64, as scikit-learn users have it
    out, report_json = tmp_path / "pipe", tmp_path / "report.json"
    code = main(
        [
            "convert",
            "--sklearn",
            str(tmp_path / "pipe.joblib"),
            "--trust",
            "--example-inputs",
            str(tmp_path / "digits.npz"),
            "-o",
            str(out),
            "--json",
            str(report_json),
        ]
    )
    assert code == 0
    pkg = ModelPackage.load(out)
    sig = pkg.signature
    assert [(t.name, t.dtype, t.shape) for t in sig.inputs] == [("input", "float32", ("batch", 64))]
    assert [(t.name, t.dtype, t.shape) for t in sig.outputs] == [
        ("label", "int64", ("batch",)),
        ("probabilities", "float32", ("batch", 10)),
    ]
    ops = _ops(pkg)
    assert "ZipMap" not in ops and "Scaler" in ops and "LinearClassifier" in ops
    prov = pkg.manifest["provenance"]
    assert prov["exporter"] == "skl2onnx" and prov["source_kind"] == "sklearn"
    assert prov["estimator"] == "Pipeline(StandardScaler, LogisticRegression)"
    assert len(prov["source_sha256"]) == 64 and "skl2onnx" in prov["frameworks"]
    # parity: the float32 graph against scikit-learn in float64, on real digits
    got = run_session(make_session(pkg.model_path), {"input": x_test.astype(np.float32)})
    np.testing.assert_array_equal(got["label"], pipeline.predict(x_test))
    np.testing.assert_allclose(got["probabilities"], pipeline.predict_proba(x_test), atol=1e-5)
    assert (got["label"] == y_test).mean() > 0.9
    verification = json.loads(report_json.read_text())["verification"]
    assert verification["passed"]
    labels = [o for c in verification["cases"] for o in c["outputs"] if o["name"] == "label"]
    assert all(o["atol"] == 0 and o["rtol"] == 0 and o["mismatched"] == 0 for o in labels)
    notes = " ".join(verification["notes"])
    assert "float32 ONNX vs float64 scikit-learn" in notes and "atol=0.0001" in notes
    assert "rounded to float32" in notes  # the float64 example was measured end to end too


def test_random_forest_api_parity_and_ties(tmp_path, forest, digits64):
    _, _, x_test, _ = digits64
    res = convert(Source.sklearn(forest), tmp_path / "rf", ConvertConfig(example={"input": x_test}))
    assert res.report.passed and res.exporter == "skl2onnx"
    assert "TreeEnsembleClassifier" in _ops(res.package) and "ZipMap" not in _ops(res.package)
    assert _worst(res.report, "probabilities") < 1e-5
    got = run_session(make_session(res.package.model_path), {"input": x_test.astype(np.float32)})
    ref_proba = forest.predict_proba(x_test)
    bad, ties = explain_label_ties(got["label"], forest.predict(x_test), ref_proba, forest.classes_)
    assert bad == ties  # every label that differs is a float32 tie

    # Far from the training data many rows tie exactly (trees vote 0.3 / 0.3): float32 sums
    # break those ties differently; they are accepted and reported, nothing else is.
    noise = np.random.default_rng(0).standard_normal((1500, 64)) * 5 + 5
    res = convert(
        Source.sklearn(forest), tmp_path / "rf-noise", ConvertConfig(example={"input": noise})
    )
    assert res.report.passed
    tie_notes = [n for n in res.report.notes if "tie within" in n]
    assert tie_notes, res.report.notes
    accepted = int(tie_notes[0].split()[0])
    assert accepted > 0


def test_explain_label_ties_only_excuses_real_ties():
    proba = np.array([[0.5, 0.5, 0.0], [0.6, 0.4, 0.0], [0.4, 0.4 - LABEL_TIE_TOLERANCE / 2, 0.2]])
    classes = np.array([3, 5, 7])
    ref = np.array([3, 3, 3])
    assert explain_label_ties(np.array([5, 3, 5]), ref, proba, classes) == (2, 2)
    assert explain_label_ties(np.array([3, 5, 3]), ref, proba, classes) == (1, 0)  # 0.4 < 0.6
    assert explain_label_ties(np.array([3, 3, 7]), ref, proba, classes) == (1, 0)


def test_regressor_reference_matches_column_output(tmp_path, digits64):
    x, y, x_test, _ = digits64
    reg = LinearRegression().fit(x, y.astype(np.float64))
    res = convert(
        Source.sklearn(reg), tmp_path / "reg", ConvertConfig(example={"input": x_test[:50]})
    )
    assert res.report.passed
    assert res.package.signature.outputs[0].shape == ("batch", 1)
    got = run_session(
        make_session(res.package.model_path), {"input": x_test[:50].astype(np.float32)}
    )
    np.testing.assert_allclose(got["variable"][:, 0], reg.predict(x_test[:50]), atol=1e-3)


class _Marker:
    """Unpickling this creates a file: the proof that loading a pickle runs code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_pickle_without_trust_is_refused_and_not_loaded(tmp_path, capsys):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "model.pkl"
    evil.write_bytes(pickle.dumps(_Marker(str(marker))))
    code = main(["convert", "--sklearn", str(evil), "-o", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--trust" in err and "runs Python code" in err
    assert not marker.exists() and not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match="--trust"):
        convert(Source.sklearn(str(evil)), tmp_path / "out")
    # and why: with --trust the file's code does run (here it only creates the marker)
    with pytest.raises(ConversionError, match="not a scikit-learn estimator"):
        convert(Source.sklearn(str(evil), trust=True), tmp_path / "out")
    assert marker.exists()


def test_bad_sklearn_inputs(tmp_path, pipeline):
    with pytest.raises(ConversionError, match="does not exist"):
        convert(Source.sklearn(str(tmp_path / "missing.joblib"), trust=True), tmp_path / "a")
    not_a_model = tmp_path / "list.joblib"
    joblib.dump([1, 2, 3], not_a_model)
    with pytest.raises(ConversionError, match="not a scikit-learn estimator"):
        convert(Source.sklearn(str(not_a_model), trust=True), tmp_path / "b")
    with pytest.raises(ConversionError, match="not fitted"):
        convert(Source.sklearn(LogisticRegression()), tmp_path / "c")
    with pytest.raises(InputError, match=r"expects \[rows, 64\]"):
        convert(
            Source.sklearn(pipeline),
            tmp_path / "d",
            ConvertConfig(example={"input": np.ones((3, 5))}),
        )
    assert not any((tmp_path / n).exists() for n in "abcd")


def test_column_transformer_by_name_is_refused_with_the_way_out(tmp_path):
    """A DataFrame pipeline whose ColumnTransformer picks columns by name used to fail inside
    skl2onnx ("Unable to find column name 'age' among names ['input']") with a hint about missing
    converters; the error now says what the model needs and two ways to convert it."""
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "age": rng.normal(40, 10, 60),
            "income": rng.normal(5e4, 1e4, 60),
            "city": rng.choice(["paris", "rome", "oslo"], 60),
        }
    )
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
        ]
    )
    model = make_pipeline(pre, GradientBoostingClassifier(n_estimators=3))
    model.fit(df, (df.age > 40).astype(int))
    with pytest.raises(ConversionError) as err:
        convert(Source.sklearn(model), tmp_path / "named")
    msg = str(err.value)
    assert "picks columns by name (age, income, city; text columns: city)" in msg
    assert "('city', StringTensorType([None, 1]))" in msg and "--onnx" in msg
    assert "no converter" not in msg
    assert not (tmp_path / "named").exists()

    # the first way out: the same model selecting column positions on a numeric array converts
    x = df[["age", "income"]].to_numpy()
    by_position = make_pipeline(
        ColumnTransformer([("num", StandardScaler(), [0, 1])]),
        GradientBoostingClassifier(n_estimators=3),
    ).fit(x, (df.age > 40).astype(int))
    res = convert(Source.sklearn(by_position), tmp_path / "positions")
    assert res.report.passed


def test_one_hot_column_by_position_verifies_on_generated_rows(tmp_path):
    """A category column (0/1/2) one-hot encoded by position: the generated normal rows put 2.25
    there, which scikit-learn calls unknown but ONNX's OneHotEncoder reads as 2, and a correct
    model failed verification ("2/32 elements outside atol"). Generated rows now draw that
    column from the categories, and the reference reads it as ONNX does (said in a note)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(40, 10, 200), rng.normal(5e4, 1e4, 200), rng.integers(0, 3, 200)]
    y = x[:, 1] / 1000 + 5 * x[:, 2]
    pre = ColumnTransformer(
        [("num", StandardScaler(), [0, 1]), ("cat", OneHotEncoder(handle_unknown="ignore"), [2])]
    )
    model = make_pipeline(pre, RandomForestRegressor(n_estimators=5, max_depth=5, random_state=0))
    model.fit(x, y)
    res = convert(Source.sklearn(model), tmp_path / "rf")
    assert res.report.passed, res.report.failures()
    assert any("column(s) [2] feed a OneHotEncoder" in n for n in res.notes)
    rows = np.array([[35.0, 4.2e4, 2.0], [52.0, 6.1e4, 0.0]])
    (got,) = run_session(
        make_session(res.package.model_path), {"input": rows.astype(np.float32)}
    ).values()
    np.testing.assert_allclose(np.ravel(got), model.predict(rows), rtol=1e-5)


def test_parity_failure_advice_fits_the_source(tmp_path, pipeline):
    """A scikit-learn parity failure used to advise "--exporter torchscript|dynamo", an option
    the CLI refuses for --sklearn."""
    x = np.random.default_rng(0).standard_normal((8, 64))
    cfg = ConvertConfig(example={"input": x}, verify=VerifyConfig(atol=0.0, rtol=0.0))
    with pytest.raises(VerificationError) as err:
        convert(Source.sklearn(pipeline), tmp_path / "p", cfg)
    assert "Loosen --atol/--rtol" in str(err.value) and "--exporter" not in str(err.value)
