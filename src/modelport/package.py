"""The model package: a directory holding ``model.onnx`` and the ``modelport.json`` manifest.

    my-model/
      model.onnx          the graph (``model.onnx.data`` beside it for external weights)
      modelport.json      name, signature, provenance, verification, history, serving config
                          (typed by ``modelport.manifest.Manifest``: ``ModelPackage.spec``)

Packages are written atomically: everything goes to a temporary sibling directory which is renamed
into place at the end, so an interrupted or failed step never leaves a half-written package.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import PackageError, output_exists
from .manifest import FORMAT_VERSION, FileRecord, Manifest, Parent, Provenance, Step
from .signature import Signature

if TYPE_CHECKING:  # for annotations only: `import modelport` stays light (tests/test_import.py)
    import numpy as np
    import onnx

__all__ = [
    "MANIFEST_NAME",
    "MODEL_NAME",
    "ModelPackage",
    "atomic_output_dir",
    "file_sha256",
    "json_default",
    "now_iso",
    "write_package",
]

MANIFEST_NAME = "modelport.json"
MODEL_NAME = "model.onnx"
EXTERNAL_DATA_NAME = "model.onnx.data"
SAMPLES_DIR = (
    "samples"  # inputs.npz (example inputs) and outputs.npz (the source's outputs on them)
)
MAX_SAMPLE_BYTES = 16_000_000
# tokenizer, labels, custom handler: the files the manifest's "processing" steps use
PROCESSING_DIR = "processing"
# ONNX protobufs cannot exceed 2 GiB; above this weights go to an external data file.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, or of every file under a directory (sorted by relative path)."""
    p = Path(path)
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


@dataclass
class ModelPackage:
    """A model package on disk. ``manifest`` is the parsed ``modelport.json`` (validated when
    loaded); ``spec`` is the same as a typed ``Manifest``."""

    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    # a bare .onnx file wrapped as a package may not be called model.onnx
    model_file: Path | None = field(default=None, repr=False, compare=False)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelPackage:
        """Open a package directory, or wrap a bare ``.onnx`` file (manifest derived from it)."""
        p = Path(path)
        if not p.exists():
            raise PackageError(f"no model package at '{p}': the path does not exist", path=str(p))
        if p.is_file():
            if p.suffix != ".onnx":
                raise PackageError(
                    f"'{p}' is neither a model package directory nor an .onnx file; "
                    "create a package with 'modelport convert'",
                    path=str(p),
                )
            return cls._from_bare_onnx(p)
        manifest_path = p / MANIFEST_NAME
        if not (p / MODEL_NAME).is_file():
            raise PackageError(
                f"'{p}' is not a model package: it has no {MODEL_NAME}; "
                "create one with 'modelport convert'",
                path=str(p),
            )
        if not manifest_path.is_file():
            return cls._from_bare_onnx(p / MODEL_NAME, package_dir=p)
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise PackageError(
                f"cannot read the manifest {manifest_path}: {exc}", path=str(manifest_path)
            ) from exc
        if not isinstance(manifest, dict) or "signature" not in manifest:
            raise PackageError(
                f"{manifest_path} is not a modelport manifest (no 'signature')",
                path=str(manifest_path),
            )
        try:
            Manifest.from_dict(manifest)
        except PackageError as exc:
            raise PackageError(f"{manifest_path}: {exc}", path=str(manifest_path)) from exc
        return cls(p, manifest)

    @classmethod
    def _from_bare_onnx(cls, onnx_path: Path, package_dir: Path | None = None) -> ModelPackage:
        import onnx

        try:
            model = onnx.load(str(onnx_path), load_external_data=False)
        except Exception as exc:  # onnx raises DecodeError and friends
            raise PackageError(
                f"'{onnx_path}' is not a readable ONNX model: {exc}", path=str(onnx_path)
            ) from exc
        manifest = base_manifest(
            name=onnx_path.parent.name if package_dir else onnx_path.stem,
            signature=Signature.from_onnx(model),
            opset=opset_of(model),
            provenance={"source_kind": "onnx", "source_path": str(onnx_path)},
        )
        return cls(package_dir or onnx_path.parent, manifest, model_file=onnx_path)

    # --- accessors -------------------------------------------------------------------------

    @property
    def model_path(self) -> Path:
        return self.model_file or self.path / MODEL_NAME

    @property
    def spec(self) -> Manifest:
        """The manifest as typed sections (a fresh copy: changing it changes nothing here)."""
        return Manifest.from_dict(self.manifest)

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.path.name)

    @property
    def signature(self) -> Signature:
        return Signature.from_dict(self.manifest["signature"])

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("history", []))

    @property
    def serving(self) -> dict[str, Any]:
        return dict(self.manifest.get("serving", {}))

    def load_onnx(self, load_external_data: bool = True) -> onnx.ModelProto:
        import onnx

        try:
            return onnx.load(str(self.model_path), load_external_data=load_external_data)
        except Exception as exc:
            raise PackageError(
                f"cannot load {self.model_path}: {exc}", path=str(self.model_path)
            ) from exc

    def batch_coupled_ops(self) -> list[str]:
        """Ops of the graph whose result for one row depends on the other rows of the batch:
        dynamic int8 (one activation scale per run, over every row). Rows stacked into one run
        then give other answers than each row alone, so requests must not be merged."""
        try:
            model = self.load_onnx(load_external_data=False)
        except PackageError:
            return []
        return sorted({n.op_type for n in model.graph.node} & BATCH_COUPLED_OPS)

    def samples(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
        """(example inputs, the source model's outputs on them), when the package stores them.

        Derived packages (quantized, pruned) keep the original source's outputs, so comparing
        against them measures fidelity to the source, not to the previous step.
        """
        import numpy as np

        d = self.path / SAMPLES_DIR
        if not (d / "inputs.npz").is_file():
            return None
        with np.load(d / "inputs.npz", allow_pickle=False) as zi:
            inputs = {k: zi[k] for k in zi.files}
        outputs: dict[str, np.ndarray] = {}
        if (d / "outputs.npz").is_file():
            with np.load(d / "outputs.npz", allow_pickle=False) as zo:
                outputs = {k: zo[k] for k in zo.files}
        return inputs, outputs

    def size_bytes(self) -> int:
        """Bytes on disk of the model (graph plus external data, if any)."""
        total = self.model_path.stat().st_size
        ext = self.model_path.parent / EXTERNAL_DATA_NAME
        if ext.exists():
            total += ext.stat().st_size
        return total


# dynamic quantization: the activation scale is computed over the whole input of a run
BATCH_COUPLED_OPS = frozenset(
    {"DynamicQuantizeLinear", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM"}
)


def opset_of(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def base_manifest(
    name: str,
    signature: Signature,
    opset: int,
    provenance: Mapping[str, Any],
) -> dict[str, Any]:
    """A new package's manifest (as a dict; ``Manifest.from_dict`` types it): no verification,
    history or serving settings yet. ``provenance`` adds to the modelport version and time."""
    from . import __version__

    prov = {"modelport_version": __version__, "created": now_iso(), **provenance}
    spec = Manifest(
        signature=signature,
        name=name,
        format_version=FORMAT_VERSION,
        opset=opset,
        provenance=Provenance.from_dict(prov),
    )
    return spec.to_dict()


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike[str], force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``out`` only if the block succeeds.

    Refuses an existing ``out`` unless ``force``. On any error the temporary directory is
    removed and ``out`` is left untouched.
    """
    out = Path(out)
    if out.exists() and not force:
        raise output_exists(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it owner-only; a package is an ordinary directory
    try:
        yield tmp
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_onnx(model: onnx.ModelProto, path: Path, external_data: bool | None = None) -> None:
    """Save a ModelProto, moving weights to ``model.onnx.data`` when large or asked to."""
    import onnx

    asked = bool(external_data)
    if external_data is None:
        external_data = model.ByteSize() > EXTERNAL_DATA_THRESHOLD
    if external_data:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=EXTERNAL_DATA_NAME,
            size_threshold=0 if asked else 1024,
        )
    else:
        onnx.save_model(model, str(path))


def write_package(
    model: onnx.ModelProto,
    manifest: Manifest | Mapping[str, Any],
    out: str | os.PathLike[str],
    *,
    force: bool = False,
    external_data: bool | None = None,
    samples: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None,
    samples_from: ModelPackage | None = None,
    files: Mapping[str, bytes | os.PathLike[str]] | None = None,
) -> ModelPackage:
    """Write ``model`` (a ModelProto) and ``manifest`` as a package at ``out``, atomically.

    The key provenance facts are also written into the ONNX ``metadata_props`` so that a bare
    model.onnx still tells where it came from. Neither argument is modified. ``samples`` (example
    inputs, reference outputs) are stored under samples/ when small; ``samples_from`` copies them
    from a parent package instead, with its processing files (processing/). ``files`` maps
    package-relative paths under processing/ to their content (bytes or a file to copy). Every
    processing file's sha256 goes into the manifest's ``files``. A manifest given as a mapping
    is validated as a ``Manifest`` first (PackageError names a bad field).
    """
    import onnx

    model = copy.deepcopy(model) if isinstance(model, onnx.ModelProto) else model
    spec = manifest if isinstance(manifest, Manifest) else Manifest.from_dict(manifest)
    stamp_metadata(model, spec)
    with atomic_output_dir(out, force=force) as tmp:
        save_onnx(model, tmp / MODEL_NAME, external_data=external_data)
        records = dict(spec.files or {})
        records["model.onnx"] = _file_record(tmp / MODEL_NAME)
        _write_samples(tmp, samples, samples_from)
        _write_processing_files(tmp, files or {}, samples_from)
        for f in sorted((tmp / PROCESSING_DIR).rglob("*")):
            if f.is_file():
                rel = f.relative_to(tmp).as_posix()
                records[rel] = _file_record(f)
        written = dataclasses.replace(spec, files=records).to_dict()
        (tmp / MANIFEST_NAME).write_text(json.dumps(written, indent=2, default=json_default))
    return ModelPackage(Path(out), written)


def _file_record(path: Path) -> FileRecord:
    return FileRecord(file_sha256(path), path.stat().st_size)


def _write_samples(
    tmp: Path,
    samples: tuple[Mapping[str, Any], Mapping[str, Any]] | None,
    samples_from: ModelPackage | None,
) -> None:
    import numpy as np

    if samples is None and samples_from is not None:
        src = samples_from.path / SAMPLES_DIR
        if src.is_dir():
            shutil.copytree(src, tmp / SAMPLES_DIR)
        return
    if samples is None:
        return
    inputs, outputs = samples
    nbytes = sum(np.asarray(v).nbytes for v in [*inputs.values(), *outputs.values()])
    if nbytes > MAX_SAMPLE_BYTES or any(np.asarray(v).dtype.kind == "O" for v in inputs.values()):
        return
    (tmp / SAMPLES_DIR).mkdir()
    for name, arrays in (("inputs.npz", inputs), ("outputs.npz", outputs)):
        # numpy's stub types savez's **kwds against its allow_pickle: bool, hence the ignore
        np.savez(tmp / SAMPLES_DIR / name, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]


def _write_processing_files(
    tmp: Path, files: Mapping[str, bytes | os.PathLike[str]], parent: ModelPackage | None
) -> None:
    if parent is not None and not files and (parent.path / PROCESSING_DIR).is_dir():
        shutil.copytree(parent.path / PROCESSING_DIR, tmp / PROCESSING_DIR)
    for rel, content in files.items():
        dest = tmp / rel
        if (tmp / PROCESSING_DIR).resolve() not in dest.resolve().parents:
            raise PackageError(f"processing file {rel!r} must be under {PROCESSING_DIR}/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            dest.write_bytes(content)
        else:
            shutil.copyfile(content, dest)


def stamp_metadata(model: onnx.ModelProto, manifest: Manifest) -> None:
    """Write provenance and the last step into ``model.metadata_props`` (in place)."""
    prov = manifest.provenance or Provenance()
    props = {
        "modelport.name": manifest.name or "",
        "modelport.version": prov.modelport_version or "",
        "modelport.source_kind": prov.source_kind or "",
        "modelport.source_sha256": prov.source_sha256 or "",
        "modelport.created": prov.created or "",
        "modelport.frameworks": json.dumps(dict(prov.frameworks or {}), sort_keys=True),
    }
    if manifest.history:
        props["modelport.steps"] = ",".join(manifest.steps)
    if manifest.verification is not None:
        props["modelport.verified"] = str(manifest.verification.passed)
    existing = {p.key: p for p in model.metadata_props}
    for k, v in props.items():
        if k in existing:
            existing[k].value = v
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = k, v


def derive_package(
    parent: ModelPackage,
    model: onnx.ModelProto,
    out: str | os.PathLike[str],
    step: Mapping[str, Any],
    *,
    force: bool = False,
    signature: Signature | None = None,
) -> ModelPackage:
    """Write a new package for ``model`` derived from ``parent`` with ``step`` appended to history.

    Used by every optimization: provenance is inherited, history grows, the parent is untouched.
    """
    spec = parent.spec
    manifest = dataclasses.replace(
        spec,
        history=(*spec.history, Step.from_dict({"time": now_iso(), **dict(step)}, "step")),
        signature=signature or Signature.from_onnx(model),
        opset=opset_of(model),
        parent=Parent(str(parent.path), spec.model_sha256),
    )
    return write_package(model, manifest, out, force=force, samples_from=parent)


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for what manifests and reports hold besides JSON types: numpy
    scalars and arrays become Python numbers and lists, paths become strings."""
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
