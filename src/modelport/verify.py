"""Verification: onnx.checker plus numerical parity against a reference on several inputs.

Parity is checked on the example inputs and on generated inputs at other batch sizes and other
sizes of every other dynamic dimension, so that a graph that silently specialized to the example
(a dim fixed by tracing, a data-dependent branch baked in) is caught here and not in production.
Generated integer inputs stay in the range seen in the example (token ids, masks).

An element is "bad" when ``|onnx - ref| > atol + rtol * |ref|`` (numpy.isclose semantics).

Parity is measured through an engine (``runtime.load_engine``): ONNX Runtime by default, or the
one the package will be served with (``engine=EngineConfig(engine="openvino", precision="bf16")``).
A bf16 or fp16 engine is held to that precision's tolerances (``PRECISION_TOLERANCES``: about five
units in the last place of bf16's 8-bit mantissa), stated in the report with what actually ran.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .data import Feed
from .errors import InputError, UsageError, VerificationError
from .progress import Listener, Phase, listening, phase
from .signature import Signature

if TYPE_CHECKING:
    import onnx

    from .package import ModelPackage
    from .runtime import EngineConfig

__all__ = [
    "PRECISION_TOLERANCES",
    "CaseReport",
    "OutputParity",
    "VerifyConfig",
    "VerifyReport",
    "check_model",
    "compare_outputs",
    "make_cases",
    "merge_reports",
    "verify_model",
    "verify_package",
]

Reference = Callable[[Feed], Mapping[str, np.ndarray] | Sequence[np.ndarray]]

# (atol, rtol) a reduced-precision engine is held to unless the caller says otherwise: bf16 keeps 8
# bits of mantissa (unit roundoff 2**-8 = 0.0039), so 2e-2 is about five of its ulps; measured on
# all-MiniLM-L6-v2 (OpenVINO bf16 on AMX vs ONNX Runtime fp32): max abs diff 0.012 on values up to
# 5.8, 8e-5 of the elements beyond 1e-2 + 1e-2*|ref|, none beyond 2e-2 + 2e-2*|ref|
PRECISION_TOLERANCES: dict[str, tuple[float, float]] = {"bf16": (2e-2, 2e-2), "fp16": (1e-2, 1e-2)}


@dataclass(frozen=True)
class VerifyConfig:
    """What parity means.

    atol, rtol: per-element tolerance (``|a-b| <= atol + rtol*|b|``); defaults fit fp32 exports.
    batch_sizes: batch sizes to try besides the example's (1 and one larger size by default).
    dim_sizes: sizes to try per named dynamic dim (e.g. {"sequence": (16, 128)}); dims not named
        get two sizes derived from the example.
    seed: seed for generated inputs.
    output_tolerances: per-output (atol, rtol) overrides.
    precision_tolerances: (atol, rtol) for an engine running at a reduced precision ("bf16",
        "fp16"), in place of atol/rtol; empty = atol/rtol for every engine.
    """

    atol: float = 1e-4
    rtol: float = 1e-3
    batch_sizes: tuple[int, ...] = (1, 4)
    dim_sizes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    seed: int = 0
    output_tolerances: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    batch_dim: str = "batch"
    precision_tolerances: Mapping[str, tuple[float, float]] = field(
        default_factory=lambda: dict(PRECISION_TOLERANCES)
    )

    def __post_init__(self) -> None:
        if self.atol < 0 or self.rtol < 0:
            raise UsageError(f"atol and rtol must be >= 0 (got atol={self.atol}, rtol={self.rtol})")
        if any(b < 1 for b in self.batch_sizes):
            raise UsageError(f"batch sizes must be >= 1 (got {list(self.batch_sizes)})")

    def for_precision(self, precision: str) -> VerifyConfig:
        """This config with the tolerances for an engine running at ``precision``."""
        if precision not in self.precision_tolerances:
            return self
        atol, rtol = self.precision_tolerances[precision]
        return dataclasses.replace(self, atol=atol, rtol=rtol)

    def tolerance(self, output: str) -> tuple[float, float]:
        # a pair, also when the config came from JSON/YAML as a list
        atol, rtol = self.output_tolerances.get(output, (self.atol, self.rtol))
        return atol, rtol


@dataclass
class OutputParity:
    name: str
    shape: list[int]
    ref_shape: list[int]
    dtype: str
    ref_dtype: str
    max_abs_diff: float
    max_rel_diff: float
    mismatched: int
    total: int
    atol: float
    rtol: float
    passed: bool
    note: str = ""


@dataclass
class CaseReport:
    label: str
    input_shapes: dict[str, list[int]]
    outputs: list[OutputParity]
    error: str | None = None
    engine: str = ""  # the engine spec it ran on, when one was chosen ("openvino:bf16")
    # why a generated case was not compared: the model and its reference both refuse these
    # sizes (a detector that takes multiples of 32, say), so there is no parity to check there
    skipped: str = ""

    @property
    def passed(self) -> bool:
        return self.error is None and all(o.passed for o in self.outputs)


@dataclass
class VerifyReport:
    checker: str  # "passed" or the checker's message
    cases: list[CaseReport]
    atol: float
    rtol: float
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    # with a chosen engine: per engine, the spec, what ran (EngineInfo), its tolerances and what
    # its cases were compared with
    engines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.checker == "passed" and bool(self.cases) and all(c.passed for c in self.cases)

    def failures(self) -> list[str]:
        out = []
        if self.checker != "passed":
            out.append(f"onnx.checker: {self.checker}")
        for c in self.cases:
            shapes = ", ".join(f"{k}{v}" for k, v in c.input_shapes.items())
            if c.engine:
                shapes = f"{shapes}; on {c.engine}" if shapes else f"on {c.engine}"
            if c.error:
                out.append(f"case '{c.label}' ({shapes}): {c.error}")
            for o in c.outputs:
                if not o.passed:
                    why = o.note or (
                        f"{o.mismatched}/{o.total} elements outside atol={o.atol:g} rtol={o.rtol:g}, "
                        f"max abs diff {o.max_abs_diff:.3g}"
                    )
                    out.append(f"output '{o.name}' at {shapes}: {why}")
        return out

    def to_dict(self) -> dict[str, Any]:
        d = {
            "passed": self.passed,
            "checker": self.checker,
            "atol": self.atol,
            "rtol": self.rtol,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
            "cases": [
                {
                    "label": c.label,
                    "input_shapes": c.input_shapes,
                    "passed": c.passed,
                    "error": c.error,
                    **({"skipped": c.skipped} if c.skipped else {}),
                    "outputs": [asdict(o) for o in c.outputs],
                    **({"engine": c.engine} if c.engine else {}),
                }
                for c in self.cases
            ],
        }
        if self.engines:
            d["engines"] = [dict(e) for e in self.engines]
        return d


def check_model(model_or_path: Any) -> str:
    """Run the full onnx.checker; return "passed" or the checker's message."""
    import onnx

    try:
        onnx.checker.check_model(model_or_path, full_check=True)
    except Exception as exc:  # ValidationError, InferenceError
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return "passed"


def compare_outputs(
    got: Mapping[str, np.ndarray],
    ref: Mapping[str, np.ndarray],
    config: VerifyConfig,
) -> list[OutputParity]:
    """Per-output parity of ``got`` (ONNX) against ``ref`` (the source model)."""
    results = []
    for name, r in ref.items():
        atol, rtol = config.tolerance(name)
        r = np.asarray(r)
        if name not in got:
            results.append(
                OutputParity(
                    name,
                    [],
                    list(r.shape),
                    "-",
                    str(r.dtype),
                    np.inf,
                    np.inf,
                    int(r.size),
                    int(r.size),
                    atol,
                    rtol,
                    False,
                    "missing in ONNX outputs",
                )
            )
            continue
        g = np.asarray(got[name])
        parity = functools.partial(
            OutputParity,
            name=name,
            shape=list(g.shape),
            ref_shape=list(r.shape),
            dtype=str(g.dtype),
            ref_dtype=str(r.dtype),
            atol=atol,
            rtol=rtol,
        )
        if g.shape != r.shape:
            results.append(
                parity(
                    max_abs_diff=float("inf"),
                    max_rel_diff=float("inf"),
                    mismatched=int(r.size),
                    total=int(r.size),
                    passed=False,
                    note=f"shape {list(g.shape)} != reference {list(r.shape)}",
                )
            )
            continue
        if g.dtype.kind in "OUSb" or r.dtype.kind in "OUSb":
            eq = g == r
            bad = int(np.size(eq) - np.count_nonzero(eq))
            results.append(
                parity(
                    max_abs_diff=float(bad > 0),
                    max_rel_diff=float(bad > 0),
                    mismatched=bad,
                    total=int(r.size),
                    passed=bad == 0,
                )
            )
            continue
        g64, r64 = g.astype(np.float64), r.astype(np.float64)
        both_nan = np.isnan(g64) & np.isnan(r64)
        diff = np.where(both_nan, 0.0, np.abs(g64 - r64))
        rel = diff / (np.abs(r64) + 1e-12)
        ok = (diff <= atol + rtol * np.abs(r64)) | both_nan
        bad = int(ok.size - np.count_nonzero(ok))
        note = ""
        if g.dtype != r.dtype and not (g.dtype.kind == r.dtype.kind == "f"):
            note = f"dtype {g.dtype} differs from reference {r.dtype}"
        results.append(
            parity(
                max_abs_diff=float(np.nanmax(diff)) if diff.size else 0.0,
                max_rel_diff=float(np.nanmax(rel)) if rel.size else 0.0,
                mismatched=bad,
                total=int(r.size),
                passed=bad == 0 and not note,
                note=note,
            )
        )
    return results


def _dim_bindings(signature: Signature, feed: Mapping[str, np.ndarray]) -> dict[str, int]:
    dims: dict[str, int] = {}
    for spec in signature.inputs:
        if spec.name not in feed:
            continue
        for axis, d in spec.dynamic_axes.items():
            dims.setdefault(d, int(np.shape(feed[spec.name])[axis]))
    return dims


def _resize_like(
    example: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator, name: str
) -> np.ndarray:
    """A new array of ``shape`` with values like ``example``'s (same dtype, same value range)."""
    dt = example.dtype
    if dt.kind == "f":
        mean, std = float(example.mean()), float(example.std()) or 1.0
        return (rng.standard_normal(shape) * std + mean).astype(dt)
    if dt.kind == "b":
        return rng.random(shape) < max(0.05, float(example.mean()))
    if dt.kind in "iu":
        lo, hi = int(example.min()), int(example.max())
        if "mask" in name.lower():
            arr = np.ones(shape, dtype=dt) * hi
            if len(shape) == 2 and shape[0] > 1 and shape[1] > 2 and lo != hi:
                arr[-1, shape[1] // 2 :] = lo
            return arr
        return rng.integers(lo, hi + 1, size=shape).astype(dt)
    # strings: tile the example
    flat = example.reshape(-1)
    return np.resize(flat, int(np.prod(shape))).reshape(shape)


def make_cases(signature: Signature, example: Feed, config: VerifyConfig) -> list[tuple[str, Feed]]:
    """The example plus generated feeds at other batch sizes and other dynamic-dim sizes."""
    rng = np.random.default_rng(config.seed)
    base = _dim_bindings(signature, example)
    cases: list[tuple[str, Feed]] = [("example", dict(example))]
    seen = {tuple(sorted(base.items()))}

    def add(label: str, overrides: Mapping[str, int]) -> None:
        dims = {**base, **overrides}
        key = tuple(sorted(dims.items()))
        if key in seen:
            return
        seen.add(key)
        feed = {
            spec.name: _resize_like(example[spec.name], spec.concrete_shape(dims), rng, spec.name)
            for spec in signature.inputs
        }
        cases.append((label, feed))

    # Same shapes, other values: zero-centred floats spanning the example's range, so that a
    # branch on the data that tracing baked in (if x.sum() > 0 ...) takes its other side.
    if any(np.asarray(v).dtype.kind == "f" for v in example.values()):
        values: Feed = {}
        for spec in signature.inputs:
            ex = np.asarray(example[spec.name])
            if ex.dtype.kind == "f":
                scale = float(np.max(np.abs(ex))) if ex.size else 1.0
                values[spec.name] = (rng.standard_normal(ex.shape) * (scale or 1.0)).astype(
                    ex.dtype
                )
            else:
                values[spec.name] = _resize_like(ex, ex.shape, rng, spec.name)
        cases.append(("other values", values))
        cases.append(
            (
                "negated values",
                {
                    k: (-np.asarray(v) if np.asarray(v).dtype.kind == "f" else v)
                    for k, v in example.items()
                },
            )
        )

    batch = config.batch_dim if config.batch_dim in base else None
    if batch is None:  # the first dynamic dim of the first input is the batch dim by convention
        first = signature.inputs[0].dynamic_axes if signature.inputs else {}
        batch = first.get(0)
    if batch:
        for b in config.batch_sizes:
            add(f"{batch}={b}", {batch: b})
    for dim, n in base.items():
        if dim == batch:
            continue
        # an empty tuple in dim_sizes means: no other sizes for this dim
        sizes = config.dim_sizes[dim] if dim in config.dim_sizes else (max(1, n // 2), n * 2 + 1)
        for s in sizes:
            add(f"{dim}={s}", {dim: int(s)})
            if batch:
                for b in config.batch_sizes:
                    add(f"{dim}={s},{batch}={b}", {dim: int(s), batch: b})
    return cases


def _as_dict(
    outputs: Mapping[str, np.ndarray] | Sequence[np.ndarray], names: Sequence[str]
) -> dict[str, np.ndarray]:
    if isinstance(outputs, Mapping):
        return {k: np.asarray(v) for k, v in outputs.items()}
    outputs = list(outputs)
    if len(outputs) != len(names):
        raise VerificationError(
            f"the reference returned {len(outputs)} outputs but the ONNX model has "
            f"{len(names)}: {list(names)}"
        )
    return {n: np.asarray(v) for n, v in zip(names, outputs, strict=True)}


def verify_model(
    model: onnx.ModelProto | str,
    reference: Reference,
    example: Feed,
    config: VerifyConfig | None = None,
    *,
    declared_dynamic: Mapping[str, Mapping[int, str]] | None = None,
    engine: EngineConfig | None = None,
    compared_with: str = "the reference",
    progress: Listener | None = None,
) -> VerifyReport:
    """Check ``model`` (ModelProto or path) and compare it with ``reference`` on several inputs.

    ``declared_dynamic`` (input -> axis -> name) lists the axes the user asked to be dynamic;
    an axis the exporter fixed anyway is reported as a failure of its own. ``engine`` (a
    ``runtime.EngineConfig``) runs the model on that engine instead of ONNX Runtime's default, at
    the tolerances of its precision (``VerifyConfig.for_precision``); the report's ``engines``
    says what ran and, with ``compared_with``, against what. ``progress`` receives the phases
    (``modelport.progress.Event``): "check", then "verify" counted over the cases.
    """
    with listening(progress):
        return _verify_model(
            model, reference, example, config, declared_dynamic, engine, compared_with
        )


def _verify_model(
    model: onnx.ModelProto | str,
    reference: Reference,
    example: Feed,
    config: VerifyConfig | None,
    declared_dynamic: Mapping[str, Mapping[int, str]] | None,
    engine: EngineConfig | None,
    compared_with: str,
) -> VerifyReport:
    import onnx

    from .runtime import EngineConfig, load_engine

    config = config or VerifyConfig()
    chosen = engine
    engine = engine or EngineConfig()
    if chosen is not None:
        config = config.for_precision(engine.precision)
    t0 = time.perf_counter()
    with phase("check"):
        proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
        checker = check_model(proto if proto.ByteSize() < 2_000_000_000 else str(model))
        signature = Signature.from_onnx(proto)
    notes: list[str] = []
    specialized = []
    for inp, axes in (declared_dynamic or {}).items():
        try:
            spec = signature.input(inp)
        except InputError:
            continue
        for axis, name in axes.items():
            if axis < len(spec.shape) and isinstance(spec.shape[axis], int):
                specialized.append(
                    f"input '{inp}' axis {axis} was declared dynamic ('{name}') but the exported "
                    f"graph fixed it to {spec.shape[axis]}"
                )
    notes.extend(specialized)
    small = proto.ByteSize() < 2_000_000_000
    todo = make_cases(signature, example, config)
    ran = engine.engine if engine.precision == "fp32" else f"{engine.engine}:{engine.precision}"
    where = ran if chosen is not None else ""
    runtime_name = {"ort": "ONNX Runtime", "openvino": "OpenVINO"}.get(engine.engine, engine.engine)
    with phase("verify", total=len(todo)) as step:
        step.describe(f"loading {runtime_name}")
        if engine.engine == "ort" or isinstance(model, onnx.ModelProto):
            session = load_engine(proto if small else str(model), engine)
        else:  # a path lets OpenVINO use its compiled-model cache
            session = load_engine(str(model), engine)
        cases = _run_cases(session, reference, todo, config, where, runtime_name, step)
    skipped = [c for c in cases if c.skipped]
    if skipped:
        notes.append(
            f"{len(skipped)} of {len(cases)} generated cases skipped: the model refuses those sizes "
            "on the reference too (not a conversion fault); parity was checked on the others"
        )
    report = VerifyReport(checker, cases, config.atol, config.rtol, time.perf_counter() - t0, notes)
    if chosen is not None:
        report.engines.append(
            {
                "engine": ran,
                "ran": session.info.to_dict(),
                "atol": config.atol,
                "rtol": config.rtol,
                "tolerance": (
                    f"{engine.precision} default (verify.PRECISION_TOLERANCES)"
                    if engine.precision in config.precision_tolerances
                    else "as given"
                ),
                "compared_with": compared_with,
            }
        )
    if specialized:
        cases.append(CaseReport("declared dynamic axes", {}, [], error="; ".join(specialized)))
    return report


def _run_cases(
    session: Any,
    reference: Reference,
    todo: Sequence[tuple[str, Feed]],
    config: VerifyConfig,
    where: str,
    runtime_name: str,
    step: Phase,
) -> list[CaseReport]:
    """Run each case on ``session`` and on ``reference`` and compare; ``step`` counts them."""
    out_names = list(session.output_names)
    cases: list[CaseReport] = []
    for label, feed in todo:
        step.describe(label)
        shapes = {k: list(np.shape(v)) for k, v in feed.items()}
        try:
            got = session.run(feed)
        except Exception as exc:
            refused = _refused_by_reference(reference, feed) if label != "example" else None
            if refused is not None:  # not a conversion fault: the model cannot take these sizes
                why = f"the reference fails on these sizes too: {refused}"
                cases.append(CaseReport(label, shapes, [], engine=where, skipped=why))
            else:
                cases.append(
                    CaseReport(
                        label, shapes, [], error=f"{runtime_name} failed: {exc}", engine=where
                    )
                )
            step.advance()
            continue
        try:
            ref = _as_dict(reference(feed), out_names)
        except VerificationError:
            raise
        except Exception as exc:
            cases.append(
                CaseReport(label, shapes, [], error=f"reference model failed: {exc}", engine=where)
            )
            step.advance()
            continue
        cases.append(CaseReport(label, shapes, compare_outputs(got, ref, config), engine=where))
        step.advance()
    failed = sum(not c.passed for c in cases)
    step.describe(f"{failed} failed" if failed else "")
    return cases


def _refused_by_reference(reference: Reference, feed: Feed) -> str | None:
    """The first line of the reference's error on ``feed``, or None when the reference runs it."""
    try:
        reference(feed)
    except VerificationError:
        raise
    except Exception as exc:
        text = str(exc).split("Status Message:")[-1]  # ONNX Runtime: the operator's own words
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return (lines[0] if lines else type(exc).__name__)[:200]
    return None


def verify_package(
    package: ModelPackage,
    config: VerifyConfig | None = None,
    reference: Reference | None = None,
    example: Feed | None = None,
    *,
    engine: EngineConfig | None = None,
) -> VerifyReport:
    """Verify a ModelPackage.

    With ``reference`` (the source model as a callable), parity is checked as after conversion.
    Without it: the checker, the file's sha256 against the manifest, parity with the source
    outputs stored in the package (samples/), and batch consistency at other batch sizes (every
    row of a batched run must equal the same row run alone), which catches a graph specialized to
    the example's batch without needing the source model.

    ``engine`` (a ``runtime.EngineConfig``): run the package on that engine. Without a source,
    an engine other than ONNX Runtime is compared with the stored outputs for the example and
    with ONNX Runtime fp32 on the same model, row by row, for the other cases (its parity and its
    batch consistency at once).
    """
    from .data import package_feed
    from .package import file_sha256
    from .runtime import EngineConfig, load_engine, run_session

    config = config or VerifyConfig()
    stored = package.samples()
    if example is None:
        if stored is not None:
            example = stored[0]
        else:
            # two rows where rows stack; a model that does not batch on axis 0 (a recurrent
            # state sized by its own dim) at the sizes it was converted at
            batch = 2 if package.signature.batching()[0] is not None else None
            example, _ = package_feed(package, batch=batch)
    if reference is not None:
        return verify_model(
            str(package.model_path),
            reference,
            example,
            config,
            engine=engine,
            compared_with="the source model",
        )

    notes = []
    spec = package.spec
    derived = [step for step in spec.steps if step != "convert"]
    if derived and stored is not None:
        # An optimized package differs from its source by design: its fidelity is in that
        # step's report. Here it is checked for integrity and batch consistency only.
        notes.append(
            f"derived package ({', '.join(derived)}): not compared with the source's "
            "stored outputs; see the history's reports for fidelity"
        )
        stored = (stored[0], {})
    want_sha = spec.model_sha256
    if want_sha and file_sha256(package.model_path) != want_sha:
        notes.append(
            "model.onnx does not match the sha256 in the manifest: it was changed after packaging"
        )
    # the reference for cases without stored outputs: the model on ONNX Runtime fp32 (itself,
    # when that is the engine verified)
    own = engine is None or engine.engine == "ort"
    session = load_engine(str(package.model_path), engine if own and engine else EngineConfig())
    signature = package.signature
    # rows are compared one by one only where stacking rows is the model's contract (every input
    # and output batched on axis 0); a recurrent state or a fixed first axis is run whole
    batched = signature.batching()[0] is not None
    coupled = package.batch_coupled_ops() if batched else []
    if coupled:
        batched = False
        notes.append(
            f"rows of a batch are not independent in this model ({', '.join(coupled)}: dynamic "
            "int8 takes one activation scale over every row of a run), so larger batches are "
            "compared whole, not row by row; serve runs its requests unbatched"
        )

    def self_reference(feed: Feed) -> dict[str, np.ndarray]:
        if stored is not None and stored[1] and all(feed[k] is example[k] for k in example):
            return stored[1]
        n = int(np.shape(next(iter(feed.values())))[0]) if batched and feed else 1
        if n <= 1:
            return run_session(session, feed)
        rows = [run_session(session, {k: v[i : i + 1] for k, v in feed.items()}) for i in range(n)]
        return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}

    has_stored = stored is not None and bool(stored[1])
    report = verify_model(
        str(package.model_path),
        self_reference,
        example,
        config,
        engine=engine,
        compared_with=(
            ("the stored outputs for the example, " if has_stored else "")
            + ("itself" if own else "ONNX Runtime fp32 (same model)")
            + (" row by row" if batched else " (not batched on axis 0: whole feeds)")
        ),
    )
    report.notes.extend(notes)
    tampered = [n for n in notes if "sha256" in n]
    if tampered:
        report.cases.append(CaseReport("file integrity", {}, [], error=tampered[0]))
    return report


def merge_reports(reports: Sequence[VerifyReport]) -> VerifyReport:
    """One report of several engines' (``verify_package(..., engine=...)`` each): every case
    (labelled with its engine), every engine's entry, notes once; passed only when all passed."""
    if len(reports) == 1:
        return reports[0]
    first = reports[0]
    notes: list[str] = []
    for r in reports:
        notes.extend(n for n in r.notes if n not in notes)
    checker = next((r.checker for r in reports if r.checker != "passed"), first.checker)
    cases: list[CaseReport] = []
    for c in (c for r in reports for c in r.cases):
        # checks of the file, not of an engine (integrity, declared axes), are listed once
        if not c.engine and any(
            not d.engine and (d.label, d.error) == (c.label, c.error) for d in cases
        ):
            continue
        cases.append(c)
    return VerifyReport(
        checker=checker,
        cases=cases,
        atol=first.atol,
        rtol=first.rtol,
        seconds=sum(r.seconds for r in reports),
        notes=notes,
        engines=[e for r in reports for e in r.engines],
    )
