"""The manifest (``modelport.json``) as typed, frozen dataclasses, one per section.

    {"format_version": 1, "name": ..., "signature": {...}, "opset": 17,
     "provenance": {...}, "verification": {...} | null, "history": [{...}, ...],
     "serving": {...}, "processing": {...}, "files": {"model.onnx": {...}}, "parent": {...}}

``Manifest.from_dict`` validates a parsed manifest and raises ``PackageError`` naming the bad field
(``history[1].step must be a string, got 3``); ``to_dict`` gives it back. The round trip is exact:
keys the types do not know (written by a newer modelport, or added by hand) are kept in each
section's ``extra`` and written back, and each section remembers the order and presence of its
keys. ``package.py`` is the one place that reads and writes manifests through these types.

Two sections stay mappings here because their types live in higher layers: ``processing`` (typed
by ``modelport.processing.Processing.from_dict``) and ``serving`` (per-model settings, validated by
``modelport.serve``'s config, which names the valid keys). A verification report's ``cases`` are
kept as written by ``verify.VerifyReport.to_dict``.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .errors import PackageError
from .signature import Signature

__all__ = [
    "FORMAT_VERSION",
    "FileRecord",
    "Manifest",
    "Parent",
    "Provenance",
    "Step",
    "Verification",
]

FORMAT_VERSION = 1

# JSON values of the parts the types leave open (extra keys, reports, processing steps)
Json = Any


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(where: str, what: str, got: object) -> PackageError:
    return PackageError(
        f"manifest field '{where}' must be {what}, got {_show(got)} ({type(got).__name__}); "
        "fix modelport.json or re-create the package with 'modelport convert'"
    )


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _object(d: object, where: str) -> Mapping[str, Json]:
    if not isinstance(d, Mapping):
        raise _bad(where, "an object", d)
    return d


def _str(d: Mapping[str, Json], key: str, where: str, *, required: bool = False) -> str | None:
    if key not in d:
        if required:
            raise PackageError(f"manifest field '{_at(where, key)}' is missing")
        return None
    v = d[key]
    if v is None and not required:
        return None
    if not isinstance(v, str):
        raise _bad(_at(where, key), "a string", v)
    return v


def _int(d: Mapping[str, Json], key: str, where: str) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise _bad(_at(where, key), "an integer", v)
    return int(v)


def _float(d: Mapping[str, Json], key: str, where: str) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise _bad(_at(where, key), "a number", v)
    # as written where JSON has it (an integer stays one, so the round trip is exact)
    return v if isinstance(v, int | float) else float(v)


def _bool(d: Mapping[str, Json], key: str, where: str, *, required: bool = False) -> bool | None:
    if key not in d and required:
        raise PackageError(f"manifest field '{_at(where, key)}' is missing")
    v = d.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, bool):
        raise _bad(_at(where, key), "true or false", v)
    return v


def _list(d: Mapping[str, Json], key: str, where: str) -> list[Json] | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, list | tuple):
        raise _bad(_at(where, key), "a list", v)
    return list(v)


def _extra(d: Mapping[str, Json], known: tuple[str, ...]) -> dict[str, Json]:
    return {k: copy.deepcopy(v) for k, v in d.items() if k not in known}


def _nulls(d: Mapping[str, Json]) -> tuple[str, ...]:
    return tuple(k for k, v in d.items() if v is None)


def _emit(
    known: Mapping[str, Json],
    extra: Mapping[str, Json],
    layout: tuple[tuple[str, ...], tuple[str, ...]],
    always: tuple[str, ...] = (),
) -> dict[str, Json]:
    """The section as a dict: first the keys it was read with, in their order (a field read as
    null stays null; one set to None since is left out unless it is in ``always``, the keys
    every such section has); then known fields set since (``always`` ones also when empty, for
    a section built in code); then extra keys."""
    keys, nulls = layout
    out: dict[str, Json] = {}
    for k in keys:
        if k in known:
            if known[k] is not None or k in nulls or k in always:
                out[k] = known[k]
        elif k in extra:
            out[k] = copy.deepcopy(extra[k])
    for k, v in known.items():
        if k not in out and ((not keys and k in always) or v not in (None, [], {})):
            out[k] = v
    for k, v in extra.items():
        if k not in out:
            out[k] = copy.deepcopy(v)
    return out


def _layout() -> Any:
    """The keys a section was read with, in order, and those read as null (not compared)."""
    return field(default=((), ()), compare=False, repr=False)


@dataclass(frozen=True)
class FileRecord:
    """A file of the package (``files``: package-relative path -> record)."""

    sha256: str
    bytes: int
    extra: Mapping[str, Json] = field(default_factory=dict)
    layout: tuple[tuple[str, ...], tuple[str, ...]] = _layout()

    KNOWN: ClassVar[tuple[str, ...]] = ("sha256", "bytes")

    @classmethod
    def from_dict(cls, d: object, where: str) -> FileRecord:
        d = _object(d, where)
        sha = _str(d, "sha256", where, required=True)
        size = _int(d, "bytes", where)
        if size is None:
            raise PackageError(f"manifest field '{where}.bytes' is missing")
        return cls(sha or "", size, _extra(d, cls.KNOWN), (tuple(d), _nulls(d)))

    def to_dict(self) -> dict[str, Json]:
        return _emit({"sha256": self.sha256, "bytes": self.bytes}, self.extra, self.layout)


@dataclass(frozen=True)
class Parent:
    """The package a derived package was made from: its path and model.onnx sha256 then."""

    path: str
    sha256: str | None = None
    extra: Mapping[str, Json] = field(default_factory=dict)
    layout: tuple[tuple[str, ...], tuple[str, ...]] = _layout()

    KNOWN: ClassVar[tuple[str, ...]] = ("path", "sha256")

    @classmethod
    def from_dict(cls, d: object, where: str = "parent") -> Parent:
        d = _object(d, where)
        path = _str(d, "path", where, required=True)
        return cls(
            path or "", _str(d, "sha256", where), _extra(d, cls.KNOWN), (tuple(d), _nulls(d))
        )

    def to_dict(self) -> dict[str, Json]:
        # sha256 is written even when unknown (null), as derive_package always did
        return _emit(
            {"path": self.path, "sha256": self.sha256}, self.extra, self.layout, self.KNOWN
        )


@dataclass(frozen=True)
class Provenance:
    """Where the model came from. Source-specific facts (a Hugging Face task and architecture, a
    scikit-learn estimator, a SavedModel's signature name, ...) are in ``extra``.

    frameworks: package -> version of what exported the model (torch, onnx, tf2onnx, ...).
    """

    source_kind: str | None = None
    modelport_version: str | None = None
    created: str | None = None
    source_path: str | None = None
    source_sha256: str | None = None
    frameworks: Mapping[str, str] | None = None
    exporter: str | None = None
    extra: Mapping[str, Json] = field(default_factory=dict)
    layout: tuple[tuple[str, ...], tuple[str, ...]] = _layout()

    KNOWN: ClassVar[tuple[str, ...]] = (
        "modelport_version",
        "created",
        "source_kind",
        "source_path",
        "source_sha256",
        "frameworks",
        "exporter",
    )

    @classmethod
    def from_dict(cls, d: object, where: str = "provenance") -> Provenance:
        d = _object(d, where)
        frameworks = d.get("frameworks")
        if frameworks is not None:
            frameworks = dict(_object(frameworks, f"{where}.frameworks"))
            for name, version in frameworks.items():
                if not isinstance(version, str):
                    raise _bad(f"{where}.frameworks.{name}", "a version string", version)
        return cls(
            source_kind=_str(d, "source_kind", where),
            modelport_version=_str(d, "modelport_version", where),
            created=_str(d, "created", where),
            source_path=_str(d, "source_path", where),
            source_sha256=_str(d, "source_sha256", where),
            frameworks=frameworks,
            exporter=_str(d, "exporter", where),
            extra=_extra(d, cls.KNOWN),
            layout=(tuple(d), _nulls(d)),
        )

    def to_dict(self) -> dict[str, Json]:
        known = {
            "modelport_version": self.modelport_version,
            "created": self.created,
            "source_kind": self.source_kind,
            "source_path": self.source_path,
            "source_sha256": self.source_sha256,
            "frameworks": None if self.frameworks is None else dict(self.frameworks),
            "exporter": self.exporter,
        }
        return _emit(known, self.extra, self.layout)


@dataclass(frozen=True)
class Verification:
    """The parity report of the conversion (``verify.VerifyReport.to_dict``).

    passed: the checker passed and every case matched. checker: "passed" or its message.
    cases: one object per input shape tried (label, input_shapes, passed, error, outputs).
    """

    passed: bool
    checker: str
    atol: float | None = None
    rtol: float | None = None
    seconds: float | None = None
    notes: tuple[str, ...] = ()
    cases: tuple[Mapping[str, Json], ...] = ()
    extra: Mapping[str, Json] = field(default_factory=dict)
    layout: tuple[tuple[str, ...], tuple[str, ...]] = _layout()

    KNOWN: ClassVar[tuple[str, ...]] = (
        "passed",
        "checker",
        "atol",
        "rtol",
        "seconds",
        "notes",
        "cases",
    )

    @classmethod
    def from_dict(cls, d: object, where: str = "verification") -> Verification:
        d = _object(d, where)
        notes = _list(d, "notes", where) or []
        for i, n in enumerate(notes):
            if not isinstance(n, str):
                raise _bad(f"{where}.notes[{i}]", "a string", n)
        cases = _list(d, "cases", where) or []
        return cls(
            passed=bool(_bool(d, "passed", where, required=True)),
            checker=_str(d, "checker", where, required=True) or "",
            atol=_float(d, "atol", where),
            rtol=_float(d, "rtol", where),
            seconds=_float(d, "seconds", where),
            notes=tuple(notes),
            cases=tuple(
                copy.deepcopy(dict(_object(c, f"{where}.cases[{i}]"))) for i, c in enumerate(cases)
            ),
            extra=_extra(d, cls.KNOWN),
            layout=(tuple(d), _nulls(d)),
        )

    def to_dict(self) -> dict[str, Json]:
        known = {
            "passed": self.passed,
            "checker": self.checker,
            "atol": self.atol,
            "rtol": self.rtol,
            "seconds": self.seconds,
            "notes": list(self.notes),
            "cases": [copy.deepcopy(dict(c)) for c in self.cases],
        }
        return _emit(known, self.extra, self.layout, ("passed", "checker", "notes", "cases"))


@dataclass(frozen=True)
class Step:
    """One step of the package's history (convert, quantize, optimize, prune, plan, ...).

    The step-specific record (a conversion's exporter and timings, an optimization's report, a
    plan's measurements) is in ``extra``; ``get`` reads any key.
    """

    step: str
    time: str | None = None
    notes: tuple[str, ...] | None = None
    extra: Mapping[str, Json] = field(default_factory=dict)
    layout: tuple[tuple[str, ...], tuple[str, ...]] = _layout()

    KNOWN: ClassVar[tuple[str, ...]] = ("step", "time", "notes")

    @classmethod
    def from_dict(cls, d: object, where: str = "history[]") -> Step:
        d = _object(d, where)
        notes = _list(d, "notes", where)
        for i, n in enumerate(notes or ()):
            if not isinstance(n, str):
                raise _bad(f"{where}.notes[{i}]", "a string", n)
        return cls(
            step=_str(d, "step", where, required=True) or "",
            time=_str(d, "time", where),
            notes=None if notes is None else tuple(notes),
            extra=_extra(d, cls.KNOWN),
            layout=(tuple(d), _nulls(d)),
        )

    def get(self, key: str, default: Json = None) -> Json:
        if key in self.KNOWN:
            value = getattr(self, key)
            return default if value is None else value
        return self.extra.get(key, default)

    def to_dict(self) -> dict[str, Json]:
        known = {
            "step": self.step,
            "time": self.time,
            "notes": None if self.notes is None else list(self.notes),
        }
        return _emit(known, self.extra, self.layout, ("step", "time"))


@dataclass(frozen=True)
class Manifest:
    """A package's ``modelport.json``.

    name: the model's name (None: the package directory's name).
    opset: the default-domain ONNX opset of model.onnx.
    verification: the conversion's parity report (None for a package made from a bare .onnx).
    history: the steps that made the package, oldest first.
    serving: per-model serving settings (names and checks in modelport.serve).
    processing: pre/post-processing steps (typed by modelport.processing.Processing).
    files: the sha256 and size of model.onnx and every processing file.
    parent: the package this one was derived from (optimizations, plan).
    extra: top-level keys this version does not know, kept as they are.
    """

    signature: Signature
    name: str | None = None
    format_version: int | None = FORMAT_VERSION
    opset: int | None = None
    provenance: Provenance | None = None
    verification: Verification | None = None
    history: tuple[Step, ...] = ()
    serving: Mapping[str, Json] = field(default_factory=dict)
    processing: Mapping[str, Json] | None = None
    files: Mapping[str, FileRecord] | None = None
    parent: Parent | None = None
    extra: Mapping[str, Json] = field(default_factory=dict)
    layout: tuple[tuple[str, ...], tuple[str, ...]] = _layout()
    # the signature as read, written back while the typed signature is unchanged (it may carry
    # keys a newer version added to tensor specs)
    signature_dict: Mapping[str, Json] | None = field(default=None, compare=False, repr=False)

    KNOWN: ClassVar[tuple[str, ...]] = (
        "format_version",
        "name",
        "signature",
        "opset",
        "provenance",
        "verification",
        "history",
        "serving",
        "processing",
        "files",
        "parent",
    )
    # what base_manifest always wrote, empty or not
    ALWAYS: ClassVar[tuple[str, ...]] = KNOWN[:8]

    @classmethod
    def from_dict(cls, d: object) -> Manifest:
        """Validate a parsed manifest; PackageError names the first bad field."""
        if not isinstance(d, Mapping):
            raise PackageError(f"the manifest must be a JSON object, got {type(d).__name__}")
        if "signature" not in d:
            raise PackageError("the manifest has no 'signature'; it is not a modelport manifest")
        sig = _object(d["signature"], "signature")
        signature = _signature(sig)
        history = _list(d, "history", "") or []
        files = d.get("files")
        if files is not None:
            files = {
                str(rel): FileRecord.from_dict(rec, f"files[{rel!r}]")
                for rel, rec in _object(files, "files").items()
            }
        serving = d.get("serving")
        processing = d.get("processing")
        verification = d.get("verification")
        provenance = d.get("provenance")
        parent = d.get("parent")
        return cls(
            signature=signature,
            name=_str(d, "name", ""),
            format_version=_int(d, "format_version", ""),
            opset=_int(d, "opset", ""),
            provenance=None if provenance is None else Provenance.from_dict(provenance),
            verification=None if verification is None else Verification.from_dict(verification),
            history=tuple(Step.from_dict(h, f"history[{i}]") for i, h in enumerate(history)),
            serving={} if serving is None else copy.deepcopy(dict(_object(serving, "serving"))),
            processing=None
            if processing is None
            else copy.deepcopy(dict(_object(processing, "processing"))),
            files=files,
            parent=None if parent is None else Parent.from_dict(parent),
            extra=_extra(d, cls.KNOWN),
            layout=(tuple(d), _nulls(d)),
            signature_dict=copy.deepcopy(dict(sig)),
        )

    def to_dict(self) -> dict[str, Json]:
        sig = self.signature_dict
        known: dict[str, Json] = {
            "format_version": self.format_version,
            "name": self.name,
            "signature": copy.deepcopy(dict(sig))
            if sig is not None and _signature(sig) == self.signature
            else self.signature.to_dict(),
            "opset": self.opset,
            "provenance": None if self.provenance is None else self.provenance.to_dict(),
            "verification": None if self.verification is None else self.verification.to_dict(),
            "history": [h.to_dict() for h in self.history],
            "serving": copy.deepcopy(dict(self.serving)),
            "processing": None if self.processing is None else copy.deepcopy(dict(self.processing)),
            "files": None
            if self.files is None
            else {rel: rec.to_dict() for rel, rec in self.files.items()},
            "parent": None if self.parent is None else self.parent.to_dict(),
        }
        return _emit(known, self.extra, self.layout, self.ALWAYS)

    @property
    def model_sha256(self) -> str | None:
        """The sha256 of model.onnx recorded when the package was written."""
        rec = (self.files or {}).get("model.onnx")
        return rec.sha256 if rec is not None else None

    @property
    def steps(self) -> list[str]:
        """The names of the history's steps, oldest first."""
        return [h.step for h in self.history]


def _signature(d: Mapping[str, Json]) -> Signature:
    for part in ("inputs", "outputs"):
        specs = d.get(part, [])
        if not isinstance(specs, list | tuple):
            raise _bad(f"signature.{part}", "a list", specs)
        for i, t in enumerate(specs):
            where = f"signature.{part}[{i}]"
            t = _object(t, where)
            _str(t, "name", where, required=True)
            _str(t, "dtype", where, required=True)
            shape = t.get("shape")
            if not isinstance(shape, list | tuple):
                raise _bad(f"{where}.shape", "a list of sizes and dimension names", shape)
            for j, dim in enumerate(shape):
                if isinstance(dim, bool) or not isinstance(dim, numbers.Integral | str):
                    raise _bad(f"{where}.shape[{j}]", "a size or a dimension name", dim)
    return Signature.from_dict(d)
