"""scikit-learn sources: a fitted estimator or pipeline, in memory or in a joblib/pickle file.

Converted with skl2onnx. The ONNX graph takes one float32 tensor ``[batch, n_features_in_]``;
classifiers return ``label`` and ``probabilities`` as plain tensors (ZipMap off), so any ONNX
client can read them.

Precision: scikit-learn computes in float64, the ONNX graph in float32. The reference is the
estimator's own ``predict`` / ``predict_proba`` (``transform``, ``decision_function``) on the
same inputs as float64, so verification measures exactly the float32-vs-float64 difference:

- continuous outputs (probabilities, scores, regression values) use the configured
  ``atol``/``rtol`` (1e-4 / 1e-3 by default; float32 arithmetic lands around 1e-7..1e-5);
- labels must match exactly, except in rows where scikit-learn's own float64 probabilities
  make the ONNX label a tie with the top class (within ``LABEL_TIE_TOLERANCE``): float32 cannot
  order such classes, so either answer is right. Those rows are counted and reported.

The differences and the tolerances used are written into the verification report's notes.
Unpickling runs code from the file, so a file is only loaded with ``trust=True`` (``--trust``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Feed
from ..errors import ConversionError, InputError, UsageError, require
from ..package import file_sha256
from ..progress import phase
from ..signature import Signature
from ..verify import VerifyConfig, VerifyReport, make_cases, verify_model
from .base import ConvertConfig, Exported, Source

__all__ = [
    "LABEL_TIE_TOLERANCE",
    "convert_sklearn",
    "explain_label_ties",
    "load_estimator",
    "sklearn_reference",
]

DEFAULT_INPUT_NAME = "input"
EXAMPLE_ROWS = 32  # rows of generated example inputs when none are given
# Two classes whose float64 probabilities differ by no more than this are a tie at float32
# precision (about 8 float32 ulps at 1.0): an ONNX label that picks either one is accepted.
LABEL_TIE_TOLERANCE = 1e-6


def load_estimator(source: Source) -> tuple[Any, dict[str, Any]]:
    """The fitted estimator a scikit-learn Source describes, plus provenance facts."""
    if source.obj is not None:
        return source.obj, {"source_path": f"<in-memory {type(source.obj).__name__}>"}
    path = Path(source.path or "")
    if not path.is_file():
        raise ConversionError(f"scikit-learn model file '{path}' does not exist", path=str(path))
    if not source.trust:
        raise UsageError(
            f"refusing to load '{path}': a joblib/pickle file runs Python code while it is "
            "loaded, so it can do anything a program can. Load it only if you made it or trust "
            "where it came from, and then pass --trust (Python: Source.sklearn(path, trust=True)).",
            path=str(path),
        )
    joblib = require("joblib", "sklearn")
    try:
        est = joblib.load(path)  # reads plain pickles too
    except Exception as exc:
        raise ConversionError(
            f"cannot load '{path}' with joblib/pickle: {type(exc).__name__}: {exc}. Save the "
            "fitted model with joblib.dump(model, path) (or pickle.dump) using the same "
            "scikit-learn version.",
            path=str(path),
        ) from exc
    return est, {"source_path": str(path), "source_sha256": file_sha256(path)}


def _describe(est: Any) -> str:
    steps = getattr(est, "steps", None)
    if steps:
        return f"{type(est).__name__}({', '.join(type(s).__name__ for _, s in steps)})"
    return type(est).__name__


def _columns_by_name(est: Any) -> tuple[list[str], set[str]]:
    """(columns a ColumnTransformer inside ``est`` selects by name, those an encoder reads as
    text); empty when every ColumnTransformer selects by position."""
    from sklearn.compose import ColumnTransformer

    named: list[str] = []
    text: set[str] = set()
    todo, seen = [est], set()
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ColumnTransformer):
            for _, trans, cols in getattr(e, "transformers_", e.transformers):
                cols = [cols] if isinstance(cols, str) else list(np.atleast_1d(cols))
                names = [str(c) for c in cols if isinstance(c, str)]
                named.extend(c for c in names if c not in named)
                cats = getattr(trans, "categories_", None) or []
                if names and any(np.asarray(c).dtype.kind in "OUS" for c in cats):
                    text.update(names)
                todo.append(trans)
        for _, step in getattr(e, "steps", None) or []:
            todo.append(step)
        for item in getattr(e, "transformer_list", None) or []:
            todo.append(item[1])
    return named, text


def _refuse_named_columns(est: Any) -> None:
    named, text = _columns_by_name(est)
    if not named:
        return
    columns = [str(c) for c in getattr(est, "feature_names_in_", named)]
    types = ", ".join(
        f"('{c}', {'StringTensorType' if c in text else 'FloatTensorType'}([None, 1]))"
        for c in columns
    )
    raise ConversionError(
        f"{_describe(est)} was fitted on a DataFrame and its ColumnTransformer picks columns by "
        f"name ({', '.join(named)}"
        + (f"; text columns: {', '.join(sorted(text))}" if text else "")
        + "): it needs one named input per column, but modelport converts a scikit-learn model "
        "to one float32 input [batch, n_features]. Either refit it with the ColumnTransformer "
        "selecting column positions on a numeric array, or convert it with skl2onnx yourself, "
        f"one input per column (skl2onnx.to_onnx(model, initial_types=[{types}])), and "
        "package that file with modelport convert --onnx."
    )


def _classifiers(est: Any) -> list[Any]:
    """The estimator and every sub-estimator that is a classifier (they get zipmap=False)."""
    from sklearn.base import BaseEstimator, is_classifier

    found, seen = [], set()
    todo = [est]
    while todo:
        e = todo.pop()
        if id(e) in seen or not isinstance(e, BaseEstimator):
            continue
        seen.add(id(e))
        if is_classifier(e):
            found.append(e)
        todo.extend(v for v in e.get_params(deep=False).values() if isinstance(v, BaseEstimator))
        for _, step in getattr(e, "steps", None) or []:
            todo.append(step)
    return found


def _takes_zipmap(est: Any) -> bool:
    """Whether skl2onnx's converter for ``est`` has the zipmap option (LinearSVC's has not)."""
    try:
        from skl2onnx._supported_operators import sklearn_operator_name_map
        from skl2onnx.common._registration import get_converter

        allowed = get_converter(sklearn_operator_name_map[type(est)]).get_allowed_options()
    except Exception:  # private helpers moved, or a converter registered by the user
        return True
    return allowed is None or "zipmap" in allowed


def _reference_methods(est: Any, output_names: Sequence[str]) -> list[tuple[str, str]]:
    """(ONNX output name, estimator method) in output order, from the estimator's type."""
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(est):
        second = "predict_proba" if hasattr(est, "predict_proba") else "decision_function"
        methods = ["predict", second]
    elif is_regressor(est):
        methods = ["predict"]
    elif getattr(est, "_estimator_type", None) == "clusterer" and hasattr(est, "transform"):
        methods = ["predict", "transform"]
    elif hasattr(est, "transform"):
        methods = ["transform"]
    else:
        methods = ["predict"]
    if len(methods) != len(output_names):
        raise ConversionError(
            f"the ONNX graph of {_describe(est)} has outputs {list(output_names)}, which modelport "
            f"cannot pair with the estimator's {methods}; only classifiers, regressors, "
            "clusterers and transformers are verified automatically"
        )
    return list(zip(output_names, methods, strict=True))


def sklearn_reference(
    est: Any, input_name: str, outputs: Sequence[tuple[str, str]], specs: Mapping[str, Any]
) -> Callable[[Feed], dict[str, np.ndarray]]:
    """feed -> outputs by ONNX name, from the estimator's own methods on float64 inputs.

    ``specs`` (ONNX output name -> TensorSpec) lets a 1-D result meet a ``[batch, 1]`` output
    (regressors), a binary decision function meet skl2onnx's two score columns, and integer
    class labels of another width (int32, uint8) meet the graph's int64 labels.
    """

    def run(feed: Feed) -> dict[str, np.ndarray]:
        x = np.asarray(feed[input_name], dtype=np.float64)
        result = {}
        for name, method in outputs:
            value = np.asarray(getattr(est, method)(x))
            spec = specs.get(name)
            shape: tuple[int | str, ...] = spec.shape if spec is not None else ()
            if value.ndim == 1 and len(shape) == 2:
                if shape[1] == 2 and method == "decision_function":
                    value = np.stack([-value, value], axis=1)
                else:
                    value = value.reshape(-1, 1)
            if spec is not None and method == "predict" and value.dtype.kind in "iub":
                want = np.dtype(spec.dtype)
                if want.kind == "i" and value.dtype != want:
                    value = value.astype(want)
            result[name] = value
        return result

    return run


def _initial_feed(
    config: ConvertConfig, input_name: str, n_features: int
) -> tuple[Feed, Any, list[str]]:
    """(float32 example, the float64 original when one was given, notes)."""
    if config.example is None:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((EXAMPLE_ROWS, n_features)).astype(np.float32)
        return (
            {input_name: x},
            None,
            [
                f"no example inputs given: verified on {EXAMPLE_ROWS} random normal rows; give "
                "--example-inputs with real rows to measure parity on your data"
            ],
        )
    if input_name not in config.example:
        raise InputError(
            f"the example inputs hold {list(config.example)}, but the model's input is "
            f"'{input_name}'; key the .npz by '{input_name}'"
        )
    original = np.asarray(config.example[input_name])
    if original.ndim != 2 or original.shape[1] != n_features:
        raise InputError(
            f"example input '{input_name}' has shape {list(original.shape)}; the estimator "
            f"expects [rows, {n_features}]",
            input=input_name,
        )
    if original.dtype.kind not in "fiub":
        raise InputError(f"example input '{input_name}' has dtype {original.dtype}; give numbers")
    x = original.astype(np.float32)
    keep = original if original.dtype != np.float32 else None
    return {input_name: x}, keep, []


def _category_columns(est: Any) -> dict[int, np.ndarray]:
    """Input column -> the numeric categories a OneHotEncoder reading it straight from the
    input knows (first in the model, or in a ColumnTransformer selecting columns by position)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    first = est
    while getattr(first, "steps", None):
        first = first.steps[0][1]
    found: dict[int, np.ndarray] = {}
    parts = (
        [(t, c) for _, t, c in getattr(first, "transformers_", [])]
        if isinstance(first, ColumnTransformer)
        else [(first, list(range(int(getattr(first, "n_features_in_", 0)))))]
    )
    for trans, cols in parts:
        cats = getattr(trans, "categories_", None) if isinstance(trans, OneHotEncoder) else None
        idx = np.atleast_1d(cols)
        if cats is None or idx.dtype.kind not in "iu" or len(idx) != len(cats):
            continue
        for col, values in zip(idx, cats, strict=True):
            values = np.asarray(values)
            if values.dtype.kind in "iufb" and values.size:
                found[int(col)] = values[~np.isnan(values.astype(np.float64))]
    return found


def _integer_categories(
    reference: Callable[[Feed], dict[str, np.ndarray]], input_name: str, columns: list[int]
) -> Callable[[Feed], dict[str, np.ndarray]]:
    """``reference`` given the categorical ``columns`` truncated to integers, as ONNX reads them."""

    def run(feed: Feed) -> dict[str, np.ndarray]:
        x = np.array(feed[input_name], dtype=np.float64)
        x[:, columns] = np.trunc(x[:, columns])
        return reference({**feed, input_name: x})

    return run


def _draw_categories(est: Any, x: np.ndarray) -> list[str]:
    """Generated rows: columns an encoder reads get its known categories, in place.

    Normal draws there (2.25 in a column of 0/1/2) are unknown to scikit-learn's encoder, but
    ONNX's OneHotEncoder casts them to integers (2): verification would fail a correct model.
    """
    columns = _category_columns(est)
    rng = np.random.default_rng(1)
    for col, values in columns.items():
        if values.size and col < x.shape[1]:
            x[:, col] = rng.choice(values, size=x.shape[0])
    if not columns:
        return []
    return [
        f"generated rows: column(s) {sorted(columns)} drawn from their encoder's categories "
        "(other values are unknown to it)"
    ]


def _name_batch_dims(model: Any, static: int | None) -> None:
    for vi in [*model.graph.input, *model.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            if static:
                dims[0].dim_value = static
            else:
                dims[0].dim_param = "batch"


def _dedupe_opsets(model: Any) -> None:
    """skl2onnx may list the same opset import twice; keep one of each domain (the highest)."""
    best: dict[str, int] = {}
    for imp in model.opset_import:
        best[imp.domain] = max(best.get(imp.domain, 0), imp.version)
    if len(best) != len(model.opset_import):
        del model.opset_import[:]
        for domain, version in best.items():
            entry = model.opset_import.add()
            entry.domain, entry.version = domain, version


def explain_label_ties(
    onnx_labels: np.ndarray,
    ref_labels: np.ndarray,
    ref_proba: np.ndarray,
    classes: np.ndarray,
    tolerance: float = LABEL_TIE_TOLERANCE,
) -> tuple[int, int]:
    """(mismatched rows, those explained by a tie): a mismatch is a tie when the ONNX label's
    float64 probability is within ``tolerance`` of the row's highest probability."""
    bad = np.nonzero(np.asarray(onnx_labels) != np.asarray(ref_labels))[0]
    index = {c.item() if hasattr(c, "item") else c: i for i, c in enumerate(classes)}
    ties = 0
    for row in bad:
        label = onnx_labels[row]
        col = index.get(label.item() if hasattr(label, "item") else label)
        if col is not None and ref_proba[row, col] >= ref_proba[row].max() - tolerance:
            ties += 1
    return len(bad), ties


def _accept_ties(
    model: Any, est: Any, report: VerifyReport, feed: Feed, input_name: str, config: VerifyConfig
) -> int:
    """Re-run the cases whose label output failed; mark them passed when every differing row is
    a float32 tie. Returns the number of tied rows accepted."""
    from ..runtime import make_session, run_session

    failing = {
        c.label
        for c in report.cases
        if any(o.name == "label" and not o.passed and not o.note for o in c.outputs)
    }
    if not failing or not hasattr(est, "predict_proba") or not hasattr(est, "classes_"):
        return 0
    session = make_session(model)
    accepted = 0
    cases = dict(make_cases(Signature.from_onnx(model), feed, config))
    for case in report.cases:
        if case.label not in failing or case.label not in cases:
            continue
        x = cases[case.label][input_name]
        got = run_session(session, {input_name: x})["label"]
        x64 = x.astype(np.float64)
        bad, ties = explain_label_ties(got, est.predict(x64), est.predict_proba(x64), est.classes_)
        for o in case.outputs:
            if o.name == "label" and bad and bad == ties:
                o.passed, o.mismatched = True, 0
                o.note = f"{ties} of {o.total} labels differ at float32 ties (accepted)"
                accepted += ties
    return accepted


def _precision_notes(report: VerifyReport, tie_rows: int) -> list[str]:
    worst: dict[str, list[Any]] = {}
    for case in report.cases:
        for o in case.outputs:
            w = worst.setdefault(o.name, [0.0, 0, 0, o.atol, o.rtol])
            w[0] = max(w[0], o.max_abs_diff)
            w[1] += o.mismatched
            w[2] += o.total
    parts = []
    for name, (diff, bad, total, atol, rtol) in worst.items():
        if atol == 0 and rtol == 0:
            parts.append(
                f"{name} must match exactly: {bad}/{total} differ"
                + (f" (+{tie_rows} at ties, accepted)" if tie_rows else "")
            )
        else:
            parts.append(f"{name} max |diff| {diff:.3g} (atol={atol:g}, rtol={rtol:g})")
    notes = ["float32 ONNX vs float64 scikit-learn on the same inputs: " + "; ".join(parts)]
    if tie_rows:
        notes.append(
            f"{tie_rows} label(s) differ where the top probabilities tie within "
            f"{LABEL_TIE_TOLERANCE:g} in float64: float32 cannot order them, so they are accepted"
        )
    return notes


def _input_rounding_note(
    model: Any,
    est: Any,
    reference: Callable[[Feed], dict[str, np.ndarray]],
    original: Any,
    input_name: str,
) -> str:
    """Parity end to end when the caller's data is float64: sklearn on the original values vs
    ONNX on the values rounded to float32 (what a float32 serving path sees)."""
    from ..runtime import make_session, run_session

    got = run_session(make_session(model), {input_name: original.astype(np.float32)})
    ref = reference({input_name: original})
    parts = []
    for name, r in ref.items():
        g = got[name]
        if r.dtype.kind in "fc" or g.dtype.kind == "f":
            parts.append(f"{name} max |diff| {float(np.max(np.abs(g - r), initial=0.0)):.3g}")
        else:
            text = f"{name} agree {int(np.sum(g == r))}/{r.size}"
            if name == "label" and hasattr(est, "predict_proba") and hasattr(est, "classes_"):
                bad, ties = explain_label_ties(
                    g, r, est.predict_proba(original.astype(np.float64)), est.classes_
                )
                if bad:
                    text += f" ({ties} of the {bad} differences at float64 probability ties)"
            parts.append(text)
    return (
        f"example inputs were {original.dtype}; with them rounded to float32 for ONNX and "
        f"scikit-learn given the originals: " + "; ".join(parts)
    )


def convert_sklearn(source: Source, config: ConvertConfig) -> Exported:
    with phase("load"):
        require("sklearn", "sklearn")
        skl2onnx = require("skl2onnx", "sklearn")
        import onnx
        from skl2onnx.common.data_types import FloatTensorType

        est, prov = load_estimator(source)
    from sklearn.base import BaseEstimator

    if not isinstance(est, BaseEstimator):
        raise ConversionError(
            f"{source.describe()} holds a {type(est).__module__}.{type(est).__name__}, not a "
            "scikit-learn estimator or pipeline"
        )
    n_features = getattr(est, "n_features_in_", None)
    if n_features is None:
        raise ConversionError(
            f"{_describe(est)} has no n_features_in_: it is not fitted (or fitted on data "
            "scikit-learn could not count). Fit it before converting."
        )
    _refuse_named_columns(est)
    if len(config.input_names) > 1:
        raise UsageError(
            f"a scikit-learn model has one input; got names {list(config.input_names)}"
        )
    input_name = (
        config.input_names
        or (
            tuple(config.example)
            if config.example and len(config.example) == 1
            else (DEFAULT_INPUT_NAME,)
        )
    )[0]
    feed, original, notes = _initial_feed(config, input_name, int(n_features))
    if config.example is None:
        notes.extend(_draw_categories(est, feed[input_name]))
    static = None if config.dynamic_batch else int(feed[input_name].shape[0])
    options = {id(c): {"zipmap": False} for c in _classifiers(est) if _takes_zipmap(c)}
    try:
        with phase("export", detail="skl2onnx"):
            model = skl2onnx.convert_sklearn(
                est,
                initial_types=[(input_name, FloatTensorType([static, int(n_features)]))],
                options=options or None,
                target_opset=config.opset,
            )
    except Exception as exc:
        hint = ""
        if "shape calculator" in str(exc) or "converter" in str(exc).lower():
            hint = (
                " skl2onnx has no converter for one of its steps: register one with "
                "skl2onnx.update_registered_converter (onnxmltools has LightGBM/XGBoost)."
            )
        raise ConversionError(
            f"skl2onnx could not convert {_describe(est)}: {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}.{hint}"
        ) from exc
    model = onnx.load_from_string(model.SerializeToString())
    _dedupe_opsets(model)
    _name_batch_dims(model, static)
    if any(n.op_type == "ZipMap" for n in model.graph.node):
        notes.append("the graph still has a ZipMap (a classifier skl2onnx gave no zipmap option)")
    sig = Signature.from_onnx(model)
    outputs = _reference_methods(est, sig.output_names)
    reference = sklearn_reference(est, input_name, outputs, {o.name: o for o in sig.outputs})
    categorical = sorted(_category_columns(est))
    if categorical:
        reference = _integer_categories(reference, input_name, categorical)
        notes.append(
            f"column(s) {categorical} feed a OneHotEncoder: ONNX's OneHotEncoder reads them as "
            "integers (2.25 -> category 2, -0.3 -> 0) where scikit-learn calls such values unknown; "
            "the reference is given them the same way. Send whole category values."
        )
    exact = {
        name: (0.0, 0.0)
        for name, method in outputs
        if method == "predict"
        and (name == "label" or sig.output(name).dtype.startswith(("int", "str")))
    }
    vcfg = dataclasses.replace(
        config.verify, output_tolerances={**exact, **config.verify.output_tolerances}
    )
    dynamic = {} if static else {input_name: {0: "batch"}}
    report = verify_model(model, reference, feed, vcfg, declared_dynamic=dynamic)
    ties = _accept_ties(model, est, report, feed, input_name, vcfg) if "label" in exact else 0
    report.notes.extend(_precision_notes(report, ties))
    if original is not None:
        try:
            report.notes.append(_input_rounding_note(model, est, reference, original, input_name))
        except Exception as exc:  # a convenience figure; the verification stands without it
            notes.append(f"float64 input comparison skipped: {exc}")
    import sklearn

    prov.update(
        source_kind="sklearn",
        estimator=_describe(est),
        frameworks={
            "scikit-learn": sklearn.__version__,
            "skl2onnx": skl2onnx.__version__,
            "onnx": onnx.__version__,
        },
        exporter="skl2onnx",
        options={"zipmap": False} if options else {},
        precision="float32 ONNX graph; scikit-learn reference in float64",
    )
    return Exported(
        model, reference, feed, dynamic, prov, "skl2onnx", notes, verify_config=vcfg, report=report
    )
