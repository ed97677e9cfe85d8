"""TensorFlow sources: a SavedModel (one signature), a Keras model (.keras, .h5 or in memory), and
a TF Serving model base directory (``BASE/<version>/saved_model.pb``) converted version by version.

Exporter choice, per source (the one used is recorded in provenance["exporter"]):

- Keras, TensorFlow backend: tf2onnx's ``from_function`` on a tf.function that calls the model
  with its own input structure and returns its outputs by name. This is the workaround for the
  Keras 3 breakages of tf2onnx's ``from_keras`` (onnx/tensorflow-onnx#2329, #2348: no
  ``output_names``, dict inputs rejected): an explicit input signature with the model's input
  names, and outputs named after the model's outputs. If that fails, or its graph fails parity,
  Keras' own ``model.export(format="onnx")`` (which names list outputs ``Identity:0``; they are
  renamed). With another Keras backend (JAX, torch) only Keras' own export applies.
- SavedModel: tf2onnx's SavedModel loader, as ``python -m tf2onnx.convert --saved-model`` does
  (handles tags and lookup-table initializers); if that fails, ``from_function`` on the loaded
  signature.

The reference is the framework's own prediction: the Keras model called in inference mode, or
the SavedModel's signature function. Input names are the model's (Keras input names, signature
argument names); a dynamic leading dim is named "batch".
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Feed, conform_feed, generate_feed
from ..errors import ConversionError, UsageError, VerificationError, require
from ..package import file_sha256
from ..progress import Listener, listening, phase, scope
from ..signature import Signature, TensorSpec
from ..verify import VerifyConfig, VerifyReport, verify_model
from .base import ConvertConfig, ConvertResult, DynamicAxes, Exported, Source

__all__ = [
    "convert_keras",
    "convert_savedmodel",
    "convert_savedmodel_repo",
    "import_tensorflow",
    "savedmodel_versions",
]

DEFAULT_OPSET = 17  # tf2onnx's own default is 15; 17 matches the PyTorch path
EXAMPLE_BATCH = 2  # rows of generated example inputs (verification adds batch 1 and 4)
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")

Exporter = Callable[[], Any]  # () -> onnx.ModelProto


# --- importing TensorFlow quietly -----------------------------------------------------------


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: TensorFlow's C++ start-up lines ("oneDNN custom
    operations are on", "Could not find cuda drivers") are written before its logging honours
    TF_CPP_MIN_LOG_LEVEL."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow() -> Any:
    """Import tensorflow with its logging turned down, or raise the missing-extra error."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _stderr_silenced():
        tf = require("tensorflow", "tensorflow")
    tf.get_logger().setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    return tf


def _tf2onnx() -> Any:
    import_tensorflow()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tf2onnx = require("tf2onnx", "tensorflow")
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    return tf2onnx


def _keras() -> Any:
    import_tensorflow()
    return require("keras", "tensorflow")


def _versions() -> dict[str, str]:
    import onnx

    versions = {"tensorflow": import_tensorflow().__version__, "onnx": onnx.__version__}
    for mod in ("keras", "tf2onnx"):
        m = sys.modules.get(mod)
        if m is not None:
            versions[mod] = getattr(m, "__version__", "?")
    return versions


# --- ONNX graph touch-ups shared by both sources --------------------------------------------


def _unsupported_ops(model: Any) -> list[str]:
    """Ops tf2onnx left as TensorFlow ops (it converts with continue_on_error)."""
    import onnx

    bad = []
    for node in model.graph.node:
        if node.domain in ("", "ai.onnx", "ai.onnx.ml") and not onnx.defs.has(
            node.op_type, node.domain
        ):
            bad.append(node.op_type)
    return sorted(set(bad))


def _rename_tensor(model: Any, old: str, new: str) -> None:
    g = model.graph
    for node in g.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    for vi in [*g.input, *g.output, *g.value_info]:
        if vi.name == old:
            vi.name = new


def _reorder(values: Any, names: Sequence[str]) -> None:
    """Order a repeated ValueInfoProto field (graph inputs/outputs) like ``names``."""
    by_name = {v.name: v for v in values}
    if set(by_name) != set(names) or [v.name for v in values] == list(names):
        return
    ordered = []
    for n in names:
        copy_ = type(by_name[n])()
        copy_.CopyFrom(by_name[n])
        ordered.append(copy_)
    del values[:]
    values.extend(ordered)


def _finish_graph(
    model: Any,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dims: Mapping[str, Mapping[int, str]],
    static_batch: int | None,
) -> Any:
    """Name outputs and dims, order inputs and outputs like the model; returns the model
    (edited in place).

    Outputs whose names are not the model's are renamed by position (Keras' own export calls
    list outputs "Identity:0"). Unknown dims of inputs get the names in ``dims``; the leading
    dim of inputs and outputs becomes "batch" (or ``static_batch``).
    """
    g = model.graph
    got = [o.name for o in g.output]
    if set(got) != set(output_names) and len(got) == len(output_names):
        for old, new in zip(got, output_names, strict=True):
            if old != new:
                _rename_tensor(model, old, new)
    _reorder(g.output, output_names)
    _reorder(g.input, input_names)
    extra = [i.name for i in g.input if i.name not in input_names]
    if extra:
        raise ConversionError(
            f"the exported graph asks for inputs the model does not have: {extra} (tensors the "
            "traced call captured, left as graph inputs by the exporter)"
        )
    missing = [n for n in input_names if n not in {i.name for i in g.input}]
    if missing:
        raise ConversionError(
            f"the exported graph's inputs {[i.name for i in g.input]} lack {missing}; "
            "the exporter did not keep the model's input names"
        )
    for vi in g.input:
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.dim_value:
                continue
            if axis == 0 and static_batch:
                d.dim_value = static_batch
            else:
                d.dim_param = dims.get(vi.name, {}).get(axis) or (
                    "batch" if axis == 0 else f"dim_{axis}"
                )
    for vi in g.output:
        tdims = vi.type.tensor_type.shape.dim
        if tdims and not tdims[0].dim_value:
            if static_batch:
                tdims[0].dim_value = static_batch
            else:
                tdims[0].dim_param = "batch"
    return model


def _declared_dims(
    specs: Sequence[TensorSpec], config: ConvertConfig
) -> tuple[dict[str, dict[int, str]], list[str]]:
    """Names for the unknown dims of each input ("batch" for the leading one, user names from
    ``config.dynamic``, else "dim_<axis>", shared across inputs), and notes."""
    notes = []
    names = {s.name for s in specs}
    for n in config.dynamic:
        if n not in names:
            raise UsageError(f"--dynamic names input '{n}', but the inputs are {sorted(names)}")
    dims: dict[str, dict[int, str]] = {}
    for s in specs:
        m: dict[int, str] = {}
        for axis, d in enumerate(s.shape):
            if isinstance(d, str):
                m[axis] = "batch" if axis == 0 else f"dim_{axis}"
        for axis, name in config.dynamic.get(s.name, {}).items():
            if axis not in m:
                raise UsageError(
                    f"--dynamic {s.name}:{axis}: that axis is fixed ({s.shape[axis] if axis < len(s.shape) else 'absent'}) "
                    "in the TensorFlow model; only its unknown dims can be named"
                )
            m[int(axis)] = name
        if m:
            dims[s.name] = m
    if specs and not any(0 in m for m in dims.values()):
        notes.append("the model fixes its batch size; the ONNX graph does too")
    return dims, notes


def _example(
    specs: Sequence[TensorSpec], dims: Mapping[str, Mapping[int, str]], config: ConvertConfig
) -> Feed:
    """The caller's example (float64 -> float32 where the model wants it), or generated inputs."""
    sig = Signature(
        tuple(
            TensorSpec(
                s.name,
                s.dtype,
                tuple(
                    dims.get(s.name, {}).get(a, d) if isinstance(d, str) else d
                    for a, d in enumerate(s.shape)
                ),
            )
            for s in specs
        )
    )
    if config.example is not None:
        missing = [n for n in sig.input_names if n not in config.example]
        if missing:
            raise UsageError(
                f"the example inputs hold {sorted(config.example)}, but the model's inputs are "
                f"{sig.input_names}; key the .npz by input name"
            )
        return conform_feed(
            {n: config.example[n] for n in sig.input_names}, sig, source="the example inputs"
        )
    sizes = {d: (EXAMPLE_BATCH if d == "batch" else 8) for d in sig.symbolic_dims()}
    given = {t.name: t for t in config.inputs}
    unknown = sorted(set(given) - set(sig.input_names))
    if unknown:
        raise UsageError(f"--input names {unknown}, but the model's inputs are {sig.input_names}")
    for spec in sig.inputs:  # --input sizes the model's unknown dims (e.g. an image's 224x224)
        g = given.get(spec.name)
        if g is None:
            continue
        if len(g.shape) != len(spec.shape):
            raise UsageError(
                f"--input {spec.name} has {len(g.shape)} dims; the model's input is "
                f"{list(spec.shape)}"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, g.shape, strict=True)):
            if isinstance(want, str) and isinstance(got, int):
                sizes[want] = got
            elif isinstance(got, int) and got != want:
                raise UsageError(
                    f"--input {spec.name}: axis {axis} is {got}, but the model fixes it at {want}"
                )
    return generate_feed(sig, sizes, ranges=dict(config.input_ranges))


def _export_and_verify(
    exporters: Sequence[tuple[str, Exporter]],
    finish: Callable[[Any], Any],
    reference: Callable[[Feed], Any],
    feed: Feed,
    dims: DynamicAxes,
    vcfg: VerifyConfig,
) -> tuple[Any, str, VerifyReport, list[str], dict[str, float]]:
    """Try each exporter in order; keep the first graph that passes parity (else the one with
    the fewest failures). Returns (model, exporter, report, notes, export seconds by exporter)."""
    notes: list[str] = []
    seconds: dict[str, float] = {}
    best: tuple[Any, str, VerifyReport] | None = None
    last_error: Exception | None = None
    for name, export in exporters:
        t0 = time.perf_counter()
        try:
            with phase("export", detail=name):
                model = finish(export())
                bad = _unsupported_ops(model)
                if bad:
                    raise ConversionError(f"ops with no ONNX conversion: {bad}")
        except Exception as exc:
            last_error = exc
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
            notes.append(f"{name} failed: {type(exc).__name__}: {first[:300]}")
            continue
        finally:
            seconds[name] = round(time.perf_counter() - t0, 3)
        report = verify_model(model, reference, feed, vcfg, declared_dynamic=dims)
        if report.passed:
            return model, name, report, notes, seconds
        notes.append(f"{name}'s graph failed parity ({report.failures()[0]})")
        if best is None or len(report.failures()) < len(best[2].failures()):
            best = (model, name, report)
    if best is not None:
        if len(exporters) > 1:
            notes.append(f"no exporter passed parity; kept {best[1]}'s graph")
        return (*best, notes, seconds)
    raise ConversionError(
        "no exporter could convert the model: "
        + "; ".join(notes)
        + ". If an op is unsupported, try another --opset (tf2onnx supports 14-18 best) or "
        "replace that op in the model.",
    ) from last_error


def _tf_spec_to_tensorspec(name: str, shape: Sequence[Any], dtype: Any) -> TensorSpec:
    tf = import_tensorflow()
    dt = tf.as_dtype(dtype)
    np_dtype = "str" if dt == tf.string else np.dtype(dt.as_numpy_dtype).name
    return TensorSpec(name, np_dtype, tuple("?" if d is None else int(d) for d in shape))


# --- Keras ----------------------------------------------------------------------------------


def load_keras(source: Source) -> tuple[Any, dict[str, Any]]:
    """The Keras model a Source describes, plus provenance facts.

    ``.keras`` files load with Keras' safe_mode (no Lambda-layer code) unless ``source.trust``.
    """
    keras = _keras()
    if source.obj is not None:
        if not isinstance(source.obj, keras.Model):
            raise ConversionError(f"{type(source.obj).__name__} is not a keras.Model")
        return source.obj, {"source_path": f"<in-memory {type(source.obj).__name__}>"}
    path = Path(source.path or "")
    if path.is_dir():
        hint = " It looks like a SavedModel: use --savedmodel." if _has_saved_model(path) else ""
        raise ConversionError(
            f"'{path}' is a directory, not a Keras file (.keras or .h5).{hint}", path=str(path)
        )
    if not path.is_file():
        raise ConversionError(f"Keras model file '{path}' does not exist", path=str(path))
    if path.suffix not in (".keras", ".h5", ".hdf5"):
        raise ConversionError(
            f"'{path}' is not a Keras model file: expected .keras (model.save('m.keras')) or "
            ".h5; for a SavedModel directory use --savedmodel",
            path=str(path),
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keras.models.load_model(str(path), compile=False, safe_mode=not source.trust)
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ""
        if "safe_mode" in str(exc):
            hint = (
                " The file holds Python code (a Lambda layer); load it only if you trust it, "
                "with --trust (Python: Source.keras(path, trust=True))."
            )
        elif "custom" in str(exc).lower() or "Unknown" in str(exc):
            hint = (
                " Custom layers must be importable and registered "
                "(@keras.saving.register_keras_serializable) before loading."
            )
        raise ConversionError(
            f"Keras could not load '{path}': {msg}.{hint}", path=str(path)
        ) from exc
    return model, {"source_path": str(path), "source_sha256": file_sha256(path)}


def _keras_inputs(model: Any) -> tuple[str, list[str], list[Any]]:
    """(structure kind "single"|"list"|"dict", input names, KerasTensors) of a Keras model."""
    try:
        struct = _keras_structure(model, "input")
    except (AttributeError, ValueError) as exc:
        raise ConversionError(
            f"the Keras model {model.name!r} has no defined inputs (it was never built or called); "
            "build it with keras.Input(...) or call it once on data before saving"
        ) from exc
    if isinstance(struct, dict):
        return "dict", list(struct), list(struct.values())
    if isinstance(struct, list | tuple):
        if any(isinstance(t, list | tuple | dict) for t in struct):
            raise ConversionError(
                "nested Keras input structures are not supported; use a flat list or dict"
            )
        return "list", [t.name for t in struct], list(struct)
    return "single", [struct.name], [struct]


def _keras_structure(model: Any, which: str) -> Any:
    """``model.input`` / ``model.output``. Keras 3 raises for a Sequential model that was built
    with ``keras.Input`` but never called; its ``inputs`` / ``outputs`` lists are defined then."""
    try:
        return getattr(model, which)
    except (AttributeError, ValueError):
        tensors = list(getattr(model, which + "s", None) or [])
        if not tensors:
            raise
        return tensors[0] if len(tensors) == 1 else tensors


def _keras_output_names(model: Any, config: ConvertConfig) -> list[str]:
    out = _keras_structure(model, "output")
    if isinstance(out, dict):
        names = list(out)
    else:
        n = len(out) if isinstance(out, list | tuple) else 1
        names = list(getattr(model, "output_names", None) or [])
        if len(names) != n:
            names = ["output"] if n == 1 else [f"output_{i}" for i in range(n)]
    if config.output_names:
        if len(config.output_names) != len(names):
            raise UsageError(
                f"{len(config.output_names)} output names given but the model has {len(names)} outputs"
            )
        names = list(config.output_names)
    return names


def _pack(kind: str, names: Sequence[str], values: Sequence[Any]) -> Any:
    if kind == "dict":
        return dict(zip(names, values, strict=True))
    if kind == "list":
        return list(values)
    return values[0]


def _flatten_outputs(out: Any, names: Sequence[str]) -> dict[str, Any]:
    if isinstance(out, dict):
        return dict(zip(names, out.values(), strict=True))
    if isinstance(out, list | tuple):
        return dict(zip(names, out, strict=True))
    return {names[0]: out}


def keras_reference(model: Any, kind: str, input_names: Sequence[str], output_names: Sequence[str]):
    """feed -> outputs by name: the Keras model called in inference mode (training=False)."""

    def run(feed: Feed) -> dict[str, np.ndarray]:
        out = model(_pack(kind, input_names, [feed[n] for n in input_names]), training=False)
        return {k: np.asarray(v) for k, v in _flatten_outputs(out, output_names).items()}

    return run


def _tf_signature(specs: Sequence[TensorSpec], static_batch: int | None) -> list[Any]:
    tf = import_tensorflow()
    return [
        tf.TensorSpec(
            [
                static_batch if (a == 0 and static_batch) else (None if isinstance(d, str) else d)
                for a, d in enumerate(s.shape)
            ],
            _tf_dtype(s.dtype),
            name=s.name,
        )
        for s in specs
    ]


def _tf_dtype(dtype: str) -> Any:
    """A Signature dtype name as a TensorFlow dtype ("str" is tf.string, numpy has no such name)."""
    tf = import_tensorflow()
    return tf.string if dtype == "str" else tf.as_dtype(dtype)


def _inline_captured_constants(proto: Any, function: Any, signature: Sequence[Any]) -> Any:
    """Turn the graph inputs tf2onnx made of the function's captured constants into initializers.

    ``tf2onnx.convert.from_function`` takes every non-resource input of the concrete function as
    a model input, captured eager tensors included (Keras 3 keeps e.g. a Normalization layer's
    adapted mean and variance as such tensors): the ONNX graph would ask callers for them.
    """
    from onnx import numpy_helper

    tf = import_tensorflow()
    concrete = function.get_concrete_function(*signature)
    values = {}
    for external, internal in concrete.graph.captures:
        if external.dtype != tf.resource and hasattr(external, "numpy"):
            values[internal.name] = external.numpy()
    g = proto.graph
    captured = [vi for vi in g.input if vi.name in values]
    for vi in captured:
        g.input.remove(vi)
        g.initializer.append(numpy_helper.from_array(np.asarray(values[vi.name]), vi.name))
    return proto


def _export_keras_tf2onnx(
    model: Any,
    kind: str,
    specs: Sequence[TensorSpec],
    output_names: Sequence[str],
    static_batch: int | None,
    opset: int,
) -> Any:
    tf = import_tensorflow()
    tf2onnx = _tf2onnx()
    input_names = [s.name for s in specs]
    signature = _tf_signature(specs, static_batch)

    @tf.function(input_signature=signature)
    def serve(*args: Any) -> dict[str, Any]:
        out = model(_pack(kind, input_names, list(args)), training=False)
        return _flatten_outputs(out, output_names)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
    return _inline_captured_constants(proto, serve, signature)


def _export_keras_native(
    model: Any, kind: str, specs: Sequence[TensorSpec], static_batch: int | None, opset: int
) -> Any:
    """Keras' own ONNX export, given the input signature (a freshly loaded model was never
    called, and Keras needs one or the other)."""
    import onnx

    signature = [_pack(kind, [s.name for s in specs], _tf_signature(specs, static_batch))]
    with tempfile.TemporaryDirectory(prefix="modelport-keras-") as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = os.path.join(d, "model.onnx")
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            model.export(
                path, format="onnx", verbose=False, input_signature=signature, opset_version=opset
            )
        return onnx.load(path)


def convert_keras(source: Source, config: ConvertConfig) -> Exported:
    keras = _keras()
    import onnx

    with phase("load"):
        model, prov = load_keras(source)
    kind, input_names, tensors = _keras_inputs(model)
    specs = [_keras_spec(name, t) for name, t in zip(input_names, tensors, strict=True)]
    output_names = _keras_output_names(model, config)
    dims, notes = _declared_dims(specs, config)
    feed = _example(specs, dims, config)
    static_batch = None if config.dynamic_batch else int(np.shape(feed[input_names[0]])[0])
    if static_batch:
        dims = {n: {a: d for a, d in m.items() if a != 0} for n, m in dims.items()}
        dims = {n: m for n, m in dims.items() if m}
    opset = config.opset or DEFAULT_OPSET
    reference = keras_reference(model, kind, input_names, output_names)
    tf2onnx_export = (
        "tf2onnx",
        lambda: _export_keras_tf2onnx(model, kind, specs, output_names, static_batch, opset),
    )
    keras_export = ("keras", lambda: _export_keras_native(model, kind, specs, static_batch, opset))
    backend = keras.backend.backend()
    exporters = [tf2onnx_export, keras_export] if backend == "tensorflow" else [keras_export]
    if backend != "tensorflow":
        notes.append(f"Keras backend '{backend}': only Keras' own ONNX export applies")

    def finish(proto: Any) -> Any:
        return _finish_graph(
            onnx.load_from_string(proto.SerializeToString()),
            input_names,
            output_names,
            dims,
            static_batch,
        )

    try:
        proto, exporter, report, tried, seconds = _export_and_verify(
            exporters, finish, reference, feed, dims, config.verify
        )
    except ConversionError as exc:
        if "LookupTable" not in str(exc):
            raise
        raise ConversionError(
            f"{exc} The model has lookup tables (StringLookup, IntegerLookup, TextVectorization...), "
            "which tf2onnx converts only through its SavedModel loader: export the model with "
            "model.export(DIR) and convert it with --savedmodel DIR."
        ) from exc
    notes.extend(tried)
    prov.update(
        source_kind="keras",
        keras_backend=backend,
        frameworks=_versions(),
        exporter=exporter,
        exporter_detail=(
            "tf2onnx.convert.from_function on the model's call (explicit input signature, named outputs)"
            if exporter == "tf2onnx"
            else "keras Model.export(format='onnx')"
        ),
        export_seconds=seconds,
    )
    return Exported(proto, reference, feed, dims, prov, exporter, notes, report=report)


def _keras_spec(name: str, tensor: Any) -> TensorSpec:
    return _tf_spec_to_tensorspec(name, tuple(tensor.shape), tensor.dtype)


# --- SavedModel -----------------------------------------------------------------------------


def _has_saved_model(path: Path) -> bool:
    return any((path / f).is_file() for f in SAVED_MODEL_FILES)


def savedmodel_versions(base: str | os.PathLike[str]) -> list[str]:
    """The version directories of a TF Serving model base (numeric names), in version order."""
    p = Path(base)
    if not p.is_dir():
        raise ConversionError(f"TF Serving model base '{p}' is not a directory", path=str(p))
    versions = sorted((d.name for d in p.iterdir() if d.is_dir() and d.name.isdigit()), key=int)
    if not versions:
        hint = (
            " It is a SavedModel itself: convert it with --savedmodel."
            if _has_saved_model(p)
            else ""
        )
        raise ConversionError(
            f"'{p}' is not a TF Serving model base directory: it has no numeric version "
            f"directories (expected {p}/<version>/saved_model.pb).{hint}",
            path=str(p),
        )
    empty = [v for v in versions if not _has_saved_model(p / v)]
    if empty:
        raise ConversionError(
            f"version directories {empty} of '{p}' hold no saved_model.pb; TF Serving could not "
            "load them either. Remove them or export the SavedModel there.",
            path=str(p),
        )
    return versions


def _check_savedmodel_dir(path: Path) -> None:
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is a file, not a SavedModel directory"
        raise ConversionError(f"SavedModel '{path}' {what}", path=str(path))
    if _has_saved_model(path):
        return
    versions = [
        d.name for d in path.iterdir() if d.is_dir() and d.name.isdigit() and _has_saved_model(d)
    ]
    if versions:
        versions.sort(key=int)
        raise ConversionError(
            f"'{path}' is a TF Serving model base directory (versions {', '.join(versions)}), not a "
            f"SavedModel. Convert one version with --savedmodel {path / versions[-1]}, or all of "
            f"them with --savedmodel-repo {path} -o REPO/NAME.",
            path=str(path),
        )
    raise ConversionError(
        f"'{path}' is not a SavedModel: it has no saved_model.pb. Export one with "
        "tf.saved_model.save(obj, dir) or Keras' model.export(dir).",
        path=str(path),
    )


def _tags(tag: str) -> list[str]:
    return [t.strip() for t in tag.split(",") if t.strip()]


def _savedmodel_meta(path: Path) -> list[tuple[list[str], list[str]]]:
    """(tags, signature names) of each MetaGraph in the SavedModel, read without loading it."""
    import_tensorflow()
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    pb = path / "saved_model.pb"
    try:
        if pb.is_file():
            sm.ParseFromString(pb.read_bytes())
        else:
            text_format.Parse((path / "saved_model.pbtxt").read_text(), sm)
    except Exception as exc:
        raise ConversionError(
            f"'{path}' holds a saved_model.pb that cannot be parsed: {exc}", path=str(path)
        ) from exc
    return [(list(mg.meta_info_def.tags), sorted(mg.signature_def)) for mg in sm.meta_graphs]


def _check_signature(path: Path, signature_name: str, tag: str) -> None:
    metas = _savedmodel_meta(path)
    wanted = set(_tags(tag))
    match = [sigs for tags, sigs in metas if set(tags) == wanted]
    if not match:
        have = [",".join(tags) for tags, _ in metas]
        raise ConversionError(
            f"SavedModel '{path}' has no MetaGraph tagged '{tag}'; its tag sets are {have}. "
            "Choose one with --tag.",
            path=str(path),
        )
    sigs = [s for s in match[0] if not s.startswith("_")]
    if signature_name not in sigs:
        raise ConversionError(
            f"SavedModel '{path}' has no signature '{signature_name}'; its signatures are {sigs}. "
            "Choose one with --signature.",
            path=str(path),
        )


def _load_signature(
    path: Path, signature_name: str, tag: str
) -> tuple[Any, Any, list[TensorSpec], list[str]]:
    """(loaded object, signature function, input specs by argument name, output names)."""
    tf = import_tensorflow()
    try:
        imported = tf.saved_model.load(str(path), tags=_tags(tag))
    except Exception as exc:
        raise ConversionError(
            f"TensorFlow could not load SavedModel '{path}': {str(exc).strip().splitlines()[0]}",
            path=str(path),
        ) from exc
    fn = imported.signatures[signature_name]
    args, kwargs = fn.structured_input_signature
    if args:
        raise ConversionError(
            f"signature '{signature_name}' takes positional inputs; modelport needs named ones"
        )
    specs = [
        _tf_spec_to_tensorspec(name, tuple(s.shape), s.dtype) for name, s in sorted(kwargs.items())
    ]
    outputs = fn.structured_outputs
    if not isinstance(outputs, dict):
        raise ConversionError(
            f"signature '{signature_name}' does not return a dict of named outputs"
        )
    return imported, fn, specs, list(outputs)


def savedmodel_reference(imported: Any, signature_name: str, input_names: Sequence[str]):
    """feed -> outputs by name: the SavedModel's signature function (the closure keeps the
    loaded object alive; its variables die with it)."""
    tf = import_tensorflow()

    def run(feed: Feed) -> dict[str, np.ndarray]:
        fn = imported.signatures[signature_name]
        out = fn(**{n: tf.constant(feed[n]) for n in input_names})
        return {k: v.numpy() for k, v in out.items()}

    return run


def _export_savedmodel_loader(path: Path, signature_name: str, tag: str, opset: int) -> Any:
    """What ``python -m tf2onnx.convert --saved-model`` does (its loader is internal API)."""
    _tf2onnx()
    from tf2onnx import tf_loader
    from tf2onnx.convert import _convert_common

    graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
        str(path),
        None,
        None,
        tag=_tags(tag),
        signatures=[signature_name],
        return_initialized_tables=True,
        return_tensors_to_rename=True,
    )
    tf = import_tensorflow()
    with tf.device("/cpu:0"):
        proto, _ = _convert_common(
            graph_def,
            name=str(path),
            continue_on_error=True,
            opset=opset,
            input_names=inputs,
            output_names=outputs,
            tensors_to_rename=renames,
            initialized_tables=tables,
        )
    return proto


def _export_savedmodel_function(fn: Any, specs: Sequence[TensorSpec], opset: int) -> Any:
    tf = import_tensorflow()
    tf2onnx = _tf2onnx()
    names = [s.name for s in specs]
    signature = [
        tf.TensorSpec(
            [None if isinstance(d, str) else d for d in s.shape], _tf_dtype(s.dtype), name=s.name
        )
        for s in specs
    ]

    @tf.function(input_signature=signature)
    def serve(*args: Any) -> Any:
        return fn(**dict(zip(names, args, strict=True)))

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
    return _inline_captured_constants(proto, serve, signature)


def convert_savedmodel(source: Source, config: ConvertConfig) -> Exported:
    import onnx

    path = Path(source.path or "")
    _check_savedmodel_dir(path)
    _check_signature(path, source.signature_name, source.tag)
    with phase("load"):
        imported, fn, specs, output_names = _load_signature(path, source.signature_name, source.tag)
    if config.output_names:
        raise UsageError("a SavedModel's outputs keep their signature names; drop --output-names")
    input_names = [s.name for s in specs]
    dims, notes = _declared_dims(specs, config)
    feed = _example(specs, dims, config)
    static_batch = None if config.dynamic_batch else int(np.shape(feed[input_names[0]])[0])
    if static_batch:
        dims = {n: {a: d for a, d in m.items() if a != 0} for n, m in dims.items()}
        dims = {n: m for n, m in dims.items() if m}
    opset = config.opset or DEFAULT_OPSET
    reference = savedmodel_reference(imported, source.signature_name, input_names)

    def finish(proto: Any) -> Any:
        return _finish_graph(
            onnx.load_from_string(proto.SerializeToString()),
            input_names,
            output_names,
            dims,
            static_batch,
        )

    exporters = [
        (
            "tf2onnx",
            lambda: _export_savedmodel_loader(path, source.signature_name, source.tag, opset),
        ),
        ("tf2onnx-function", lambda: _export_savedmodel_function(fn, specs, opset)),
    ]
    proto, exporter, report, tried, seconds = _export_and_verify(
        exporters, finish, reference, feed, dims, config.verify
    )
    notes.extend(tried)
    prov = {
        "source_kind": "savedmodel",
        "source_path": str(path),
        "source_sha256": file_sha256(path),
        "signature_name": source.signature_name,
        "tag": source.tag,
        "frameworks": _versions(),
        "exporter": exporter,
        "exporter_detail": (
            "tf2onnx SavedModel loader (as python -m tf2onnx.convert --saved-model)"
            if exporter == "tf2onnx"
            else "tf2onnx.convert.from_function on the loaded signature"
        ),
        "export_seconds": seconds,
    }
    return Exported(proto, reference, feed, dims, prov, exporter, notes, report=report)


# --- TF Serving model base directory -> modelport repository entry --------------------------


def convert_savedmodel_repo(
    base: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: ConvertConfig | None = None,
    *,
    force: bool = False,
    signature_name: str = "serving_default",
    tag: str = "serve",
    progress: Listener | None = None,
) -> list[ConvertResult]:
    """Convert every version of a TF Serving model base (``BASE/<version>/saved_model.pb``) into
    a modelport repository entry ``out/<version>/`` (each a verified package named after
    ``out``, or ``config.name``).

    All or nothing: versions are converted into a temporary directory beside ``out`` that is
    renamed into place at the end; any failure leaves ``out`` as it was. ``progress`` receives
    a "versions" phase counted over the versions and, inside it, each version's phases (as
    ``convert``'s) with ``scope`` "version N".
    """
    from ..package import ModelPackage, atomic_output_dir
    from . import convert

    config = config or ConvertConfig()
    base_path = Path(base)
    versions = savedmodel_versions(base_path)
    name = config.name or Path(os.path.normpath(os.fspath(out))).name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise UsageError(
            f"repository entry name '{name}' should be letters, digits, '.', '_' or '-'"
        )
    cfg = dataclasses.replace(config, name=name)
    results: list[ConvertResult] = []
    with (
        listening(progress),
        atomic_output_dir(out, force=force) as tmp,
        phase("versions", total=len(versions)) as step,
    ):
        for v in versions:
            source = Source.savedmodel(str(base_path / v), signature_name, tag)
            step.describe(f"version {v}")
            try:
                with scope(f"version {v}"):
                    results.append(convert(source, tmp / v, cfg))
            except (ConversionError, VerificationError) as exc:  # say which version failed
                raise type(exc)(f"version {v}: {exc.message}", **exc.fields) from exc
            step.advance()
    for v, result in zip(versions, results, strict=True):
        result.package = ModelPackage(Path(out) / v, result.package.manifest)
    return results
