"""The package targets. Each is a function (package, config, out_dir) -> TargetResult."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError, VerificationError
from ..package import ModelPackage, atomic_output_dir
from ..signature import V2_DATATYPES

__all__ = ["TARGETS", "PackageTargetConfig", "TargetResult", "package_for"]

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # DNS-1123 label (KServe/K8s names)


@dataclass(frozen=True)
class PackageTargetConfig:
    """name: model name in the target (default: the package's name, lower-cased for K8s).
    version: model version (repo/triton), default 1 (repo: the next free version).
    max_batch_size / max_queue_delay_ms / instances: batching and concurrency for Triton and
        modelport serve (default: the package's serving config, else 8 / 2 ms / 1).
    image: container image the KServe manifest runs (default: ``modelport-<name>:<version>``,
        the tag the docker target tells you to build).
    storage_uri: where KServe pulls the model repository from (pvc://..., s3://..., gs://...).
    wheel: the modelport wheel the docker target puts into the build context (default: built
        with ``pip wheel`` from the source checkout modelport runs from).
    """

    name: str | None = None
    version: int | None = None
    max_batch_size: int | None = None
    max_queue_delay_ms: float | None = None
    instances: int | None = None
    image: str | None = None
    storage_uri: str | None = None
    wheel: str | None = None

    def __post_init__(self) -> None:
        if self.version is not None and self.version < 1:
            raise UsageError(f"version must be >= 1 (got {self.version})")
        if self.max_batch_size is not None and self.max_batch_size < 0:
            raise UsageError("max_batch_size must be >= 0")


@dataclass
class TargetResult:
    target: str
    path: Path
    files: list[str]
    checks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "path": str(self.path),
            "files": self.files,
            "checks": self.checks,
            "notes": self.notes,
        }


def _model_name(pkg: ModelPackage, config: PackageTargetConfig) -> str:
    name = config.name or pkg.name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", name) or ".." in name:
        raise UsageError(
            f"model name {name!r} is not valid: use letters, digits, '-', '_', '.' (no '..', no '/')"
        )
    return name


def _serving(pkg: ModelPackage, config: PackageTargetConfig) -> dict[str, Any]:
    s = pkg.serving
    batchable = all(
        t.shape and isinstance(t.shape[0], str)
        for t in (*pkg.signature.inputs, *pkg.signature.outputs)
    )
    mbs = (
        config.max_batch_size
        if config.max_batch_size is not None
        else int(s.get("max_batch_size", 8))
    )
    return {
        "max_batch_size": mbs if batchable else 0,
        "max_queue_delay_ms": float(
            config.max_queue_delay_ms
            if config.max_queue_delay_ms is not None
            else s.get("max_queue_delay_ms", 2.0)
        ),
        "instances": int(
            config.instances if config.instances is not None else s.get("instances", 1)
        ),
        "batchable": batchable,
    }


def _copy_package(pkg: ModelPackage, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for f in (
        pkg.path.iterdir() if pkg.path.is_dir() and (pkg.path / "modelport.json").exists() else []
    ):
        if f.name.startswith("."):
            continue
        if f.is_dir():
            shutil.copytree(f, dest / f.name)
        else:
            shutil.copy2(f, dest / f.name)
    if not (dest / "model.onnx").exists():  # a bare .onnx file
        shutil.copy2(pkg.model_path, dest / "model.onnx")
        (dest / "modelport.json").write_text(json.dumps(pkg.manifest, indent=2))


# --- repo -----------------------------------------------------------------------------------


def target_repo(pkg: ModelPackage, config: PackageTargetConfig, out: Path) -> TargetResult:
    """OUT is a modelport repository: the package lands in OUT/<name>/<version>/."""
    name = _model_name(pkg, config)
    entry = out / name
    existing = [int(p.name) for p in entry.iterdir() if p.name.isdigit()] if entry.is_dir() else []
    version = config.version or (max(existing) + 1 if existing else 1)
    dest = entry / str(version)
    if dest.exists():
        raise UsageError(f"{dest} already exists; choose another --version")
    with atomic_output_dir(dest) as tmp:
        _copy_package(pkg, tmp)
    loaded = ModelPackage.load(dest)  # the entry reads back as a package
    checks = [
        f"{dest} loads as a model package ({loaded.signature.input_names} -> {loaded.signature.output_names})"
    ]
    return TargetResult("repo", dest, sorted(p.name for p in dest.iterdir()), checks)


# --- triton ---------------------------------------------------------------------------------

# Triton's config.pbtxt names: TYPE_ + the V2 datatype (TYPE_STRING for BYTES)
_TRITON_TYPES = {k: "TYPE_" + ("STRING" if v == "BYTES" else v) for k, v in V2_DATATYPES.items()}


def triton_config(pkg: ModelPackage, name: str, serving: dict[str, Any]) -> str:
    """A Triton config.pbtxt for the ONNX Runtime backend."""
    batched = serving["max_batch_size"] > 0

    def tensors(specs: Any) -> str:
        blocks = []
        for t in specs:
            dims = list(t.shape[1:] if batched else t.shape)
            dims_s = ", ".join(str(d) if isinstance(d, int) else "-1" for d in dims) or "1"
            blocks.append(
                f'  {{\n    name: "{t.name}"\n    data_type: {_TRITON_TYPES[t.dtype]}\n    dims: [ {dims_s} ]\n  }}'
            )
        return ",\n".join(blocks)

    lines = [
        f'name: "{name}"',
        'backend: "onnxruntime"',
        f"max_batch_size: {serving['max_batch_size']}",
        f"input [\n{tensors(pkg.signature.inputs)}\n]",
        f"output [\n{tensors(pkg.signature.outputs)}\n]",
        f"instance_group [\n  {{\n    count: {serving['instances']}\n    kind: KIND_CPU\n  }}\n]",
    ]
    if batched:
        us = int(serving["max_queue_delay_ms"] * 1000)
        lines.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {us}\n}}")
    return "\n".join(lines) + "\n"


def target_triton(pkg: ModelPackage, config: PackageTargetConfig, out: Path) -> TargetResult:
    """OUT is a Triton model repository: OUT/<name>/config.pbtxt and OUT/<name>/<v>/model.onnx."""
    name = _model_name(pkg, config)
    serving = _serving(pkg, config)
    version = config.version or 1
    text = triton_config(pkg, name, serving)
    with atomic_output_dir(out / name) as tmp:
        (tmp / str(version)).mkdir()
        shutil.copy2(pkg.model_path, tmp / str(version) / "model.onnx")
        ext = pkg.model_path.parent / "model.onnx.data"
        if ext.exists():
            shutil.copy2(ext, tmp / str(version) / ext.name)
        (tmp / "config.pbtxt").write_text(text)
    checks = [_check_triton_config(out / name / "config.pbtxt", pkg)]
    notes = (
        []
        if serving["batchable"]
        else ["inputs/outputs lack a dynamic batch axis: max_batch_size 0 (no batching)"]
    )
    if pkg.manifest.get("processing"):
        notes.append(
            "the package's pre/post-processing (manifest 'processing') is NOT carried: Triton "
            "serves the bare graph, so clients send its tensors (as to NAME_raw); use --target "
            "torchserve, repo, kserve or docker to keep the processing"
        )
    return TargetResult(
        "triton", out / name, ["config.pbtxt", f"{version}/model.onnx"], checks, notes
    )


def _check_triton_config(path: Path, pkg: ModelPackage) -> str:
    from google.protobuf import text_format

    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        return "config.pbtxt written (tritonclient not installed: not parsed)"
    cfg = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    if [i.name for i in cfg.input] != pkg.signature.input_names:
        raise VerificationError(
            f"{path}: inputs {[i.name for i in cfg.input]} do not match the model"
        )
    return f"config.pbtxt parses as Triton ModelConfig ({len(cfg.input)} inputs, {len(cfg.output)} outputs, max_batch_size {cfg.max_batch_size})"


# --- torchserve -----------------------------------------------------------------------------

HANDLER = '''"""TorchServe handler written by modelport: runs model.onnx with ONNX Runtime (no torch needed).

Requests: a JSON body with a nested list (one-input models) or an object of named inputs, or
raw .npy bytes. Responses: a JSON object of named outputs (lists).
"""

import io
import json
import os

import numpy as np
import onnxruntime as ort

_session = None
_inputs = None


def initialize(context):
    global _session, _inputs
    model_dir = context.system_properties.get("model_dir", ".")
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    _session = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), so, providers=["CPUExecutionProvider"])
    _inputs = {i.name: i for i in _session.get_inputs()}


_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
           "tensor(int32)": np.int32, "tensor(bool)": np.bool_, "tensor(float16)": np.float16,
           "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def _decode(body):
    if isinstance(body, (bytes, bytearray)):
        if body[:6] == b"\\x93NUMPY":
            return {next(iter(_inputs)): np.load(io.BytesIO(bytes(body)), allow_pickle=False)}
        body = json.loads(body)
    if isinstance(body, dict) and "inputs" in body and isinstance(body["inputs"], dict):
        body = body["inputs"]
    if not isinstance(body, dict):
        body = {next(iter(_inputs)): body}
    return {k: np.asarray(v, dtype=_DTYPES.get(_inputs[k].type, None)) for k, v in body.items()}


def handle(data, context):
    if _session is None:
        initialize(context)
    if data is None:
        return None
    results = []
    for row in data:
        body = row.get("body") if isinstance(row, dict) else row
        if body is None and isinstance(row, dict):
            body = row.get("data")
        feed = _decode(body)
        names = [o.name for o in _session.get_outputs()]
        outs = _session.run(names, feed)
        results.append({n: o.tolist() for n, o in zip(names, outs)})
    return results
'''


def target_torchserve(pkg: ModelPackage, config: PackageTargetConfig, out: Path) -> TargetResult:
    """OUT/<name>.mar built with torch-model-archiver; the handler runs ONNX Runtime."""
    name = _model_name(pkg, config)
    archiver = shutil.which("torch-model-archiver") or str(
        Path(sys.executable).parent / "torch-model-archiver"
    )
    if not Path(archiver).exists():
        raise UsageError(
            "the torchserve target needs torch-model-archiver: pip install 'modelport[deploy]'"
        )
    mar = out / f"{name}.mar"
    if mar.exists():
        raise UsageError(f"{mar} already exists; remove it or choose another -o")
    out.mkdir(parents=True, exist_ok=True)
    import tempfile

    with tempfile.TemporaryDirectory(dir=out) as tmpd:
        tmp = Path(tmpd)
        from .processed_mar import HANDLER_PROCESSED, stage_processing

        extra = stage_processing(pkg, tmp)  # the package's processing/, when it has some
        (tmp / "handler.py").write_text(HANDLER if extra is None else HANDLER_PROCESSED)
        shutil.copy2(pkg.model_path, tmp / "model.onnx")
        manifest = tmp / "modelport.json"
        manifest.write_text(json.dumps(pkg.manifest, indent=2, default=str))
        stage = tmp / "stage"
        stage.mkdir()
        cmd = [
            archiver,
            "--model-name",
            name,
            "--version",
            str(config.version or 1),
            "--handler",
            str(tmp / "handler.py"),
            "--serialized-file",
            str(tmp / "model.onnx"),
            "--extra-files",
            str(manifest) if extra is None else f"{manifest},{extra}",
            "--export-path",
            str(stage),
            "--force",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise VerificationError(
                f"torch-model-archiver failed: {proc.stderr.strip() or proc.stdout.strip()}"
            )
        shutil.move(str(stage / f"{name}.mar"), mar)
    if extra is None:
        checks = [_check_mar(mar, pkg)]
    else:
        from .processed_mar import check_processed_mar

        checks = [check_processed_mar(mar, pkg)]
    return TargetResult(
        "torchserve",
        mar,
        [mar.name],
        checks,
        [
            "serve it with: torchserve --start --model-store DIR --models NAME=NAME.mar "
            "(TorchServe's Python backend also needs torch installed)"
        ],
    )


def _check_mar(mar: Path, pkg: ModelPackage) -> str:
    """Unpack the .mar and run its handler on the package's sample inputs."""
    import importlib.util
    import tempfile
    import types

    import numpy as np

    with tempfile.TemporaryDirectory() as d, zipfile.ZipFile(mar) as z:
        z.extractall(d)
        man = json.loads(Path(d, "MAR-INF", "MANIFEST.json").read_text())
        handler = Path(d, man["model"]["handler"])
        spec = importlib.util.spec_from_file_location("_mar_handler", handler)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        context = types.SimpleNamespace(system_properties={"model_dir": d}, manifest=man)
        samples = pkg.samples()
        from ..data import generate_feed

        feed = samples[0] if samples else generate_feed(pkg.signature, {"batch": 2})
        body = json.dumps({k: np.asarray(v).tolist() for k, v in feed.items()}).encode()
        module.initialize(context)
        (result,) = module.handle([{"body": body}], context)
        if set(result) != set(pkg.signature.output_names):
            raise VerificationError(
                f"the .mar handler returned {sorted(result)}, expected {pkg.signature.output_names}"
            )
        if samples and samples[1]:
            for k, ref in samples[1].items():
                if not np.allclose(np.asarray(result[k]), ref, atol=1e-3, rtol=1e-3):
                    raise VerificationError(
                        f"the .mar handler's output '{k}' differs from the package's samples"
                    )
    return f".mar unpacks (MANIFEST handler={man['model']['handler']}) and its handler ran on a sample: outputs match"


# --- the serving command shared by the Docker image and the KServe manifest -----------------

# One command line for both artifacts, so they cannot disagree: the image's ENTRYPOINT is
# ``modelport serve`` and its CMD the arguments; KServe's ``args`` replace CMD (Kubernetes
# semantics) with the same arguments over /mnt/models. HTTP on 8080 (KServe's default for custom
# predictors), gRPC on 8081, and no management API: it would bind 127.0.0.1:8081 inside the
# container by default (unreachable from outside anyway, and the same port as gRPC).
SERVE_ENTRYPOINT = ("modelport", "serve")
HTTP_PORT = 8080
GRPC_PORT = 8081


def serve_args(models_dir: str, serving: dict[str, Any]) -> list[str]:
    """The arguments after ``modelport serve`` in the image and in the KServe manifest."""
    return [
        models_dir,
        "--host",
        "0.0.0.0",
        "--http-port",
        str(HTTP_PORT),
        "--grpc-port",
        str(GRPC_PORT),
        "--no-management",
        "--max-batch-size",
        str(max(serving["max_batch_size"], 1)),
    ]


def k8s_name(name: str) -> str:
    """``name`` as a Kubernetes object name (DNS-1123 label): lower case, '-' for '_' and '.'."""
    return name.lower().replace("_", "-").replace(".", "-")


def default_image(pkg: ModelPackage, config: PackageTargetConfig) -> str:
    """The image the docker target tells you to build, and the KServe manifest runs."""
    if config.image:
        return config.image
    return f"modelport-{k8s_name(_model_name(pkg, config))}:{config.version or 1}"


# --- kserve ---------------------------------------------------------------------------------

KSERVE_VERSION = "v0.20.0"
KSERVE_SCHEMA_FILE = f"kserve-{KSERVE_VERSION}-inferenceservice-v1beta1.schema.json.gz"


def kserve_schema() -> dict[str, Any]:
    """KServe's real InferenceService (v1beta1) CRD schema, vendored from KServe v0.20.0
    (Apache-2.0; see deploy/schemas/README.md), made strict like ``kubectl --validate=strict``:
    unknown fields are errors and ``metadata.name`` must be a DNS-1123 label."""
    import gzip
    from importlib.resources import files

    raw = files("modelport.deploy").joinpath("schemas", KSERVE_SCHEMA_FILE).read_bytes()
    schema = _strict(json.loads(gzip.decompress(raw)))
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    props = schema["properties"]
    props["apiVersion"] = {"type": "string", "const": "serving.kserve.io/v1beta1"}
    props["kind"] = {"type": "string", "const": "InferenceService"}
    props["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": _NAME_RE.pattern, "maxLength": 63},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    return schema


def _strict(node: Any) -> Any:
    """Objects with declared properties reject unknown ones, unless the schema preserves them."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def target_kserve(pkg: ModelPackage, config: PackageTargetConfig, out: Path) -> TargetResult:
    """OUT/inferenceservice.yaml (a custom predictor running ``modelport serve`` in the image the
    docker target builds) + the model repository OUT/models/<name>/<version>/."""
    import yaml

    model = _model_name(pkg, config)
    name = k8s_name(model)
    if not _NAME_RE.fullmatch(name):
        raise UsageError(
            f"'{name}' is not a valid Kubernetes name; give --name with lowercase letters, digits and '-'"
        )
    serving = _serving(pkg, config)
    storage = config.storage_uri or f"pvc://modelport-models/{name}"
    image = default_image(pkg, config)
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "annotations": {
                "modelport/model-name": model,
                "modelport/source-sha256": str(
                    pkg.manifest.get("provenance", {}).get("source_sha256", "")
                ),
            },
        },
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "maxReplicas": 3,
                "containers": [
                    {
                        "name": "kserve-container",
                        "image": image,
                        # the image's ENTRYPOINT is `modelport serve`; args replace its CMD
                        "args": serve_args("/mnt/models", serving),
                        "env": [{"name": "STORAGE_URI", "value": storage}],
                        "ports": [{"containerPort": HTTP_PORT, "protocol": "TCP"}],
                        "readinessProbe": {
                            "httpGet": {"path": "/v2/health/ready", "port": HTTP_PORT}
                        },
                        "resources": {
                            "requests": {"cpu": "1", "memory": "1Gi"},
                            "limits": {"cpu": "2", "memory": "2Gi"},
                        },
                    }
                ],
            }
        },
    }
    with atomic_output_dir(out) as tmp:
        (tmp / "inferenceservice.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        _copy_package(pkg, tmp / "models" / model / str(config.version or 1))
    checks = [_check_kserve(out / "inferenceservice.yaml")]
    notes = [
        f"copy models/ to {storage} (KServe's storage initializer mounts it at /mnt/models); "
        f"the image is {image}: build it with `modelport package PKG --target docker -o CTX` "
        f"and `docker build -t {image} CTX`"
    ]
    if name != model:
        notes.append(f"the Kubernetes object is named '{name}'; the served model keeps '{model}'")
    return TargetResult(
        "kserve",
        out,
        ["inferenceservice.yaml", f"models/{model}/{config.version or 1}/"],
        checks,
        notes,
    )


def _check_kserve(path: Path) -> str:
    import jsonschema
    import yaml

    doc = yaml.safe_load(path.read_text())
    errors = sorted(
        jsonschema.Draft7Validator(kserve_schema()).iter_errors(doc), key=lambda e: list(e.path)
    )
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(top)"
        raise VerificationError(
            f"{path} does not match KServe's InferenceService CRD ({KSERVE_VERSION}): "
            f"{where}: {errors[0].message}"
        )
    return (
        f"inferenceservice.yaml validates against KServe {KSERVE_VERSION}'s InferenceService "
        "v1beta1 CRD schema (vendored; unknown fields rejected as with kubectl --validate=strict)"
    )


# --- docker ---------------------------------------------------------------------------------

DOCKERFILE = """# Built by `modelport package --target docker`: modelport serve over the model repository in models/.
# modelport itself comes from the wheel in wheels/ (built from the modelport that wrote this).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY wheels/{wheel} /tmp/wheels/{wheel}
RUN pip install --no-cache-dir "/tmp/wheels/{wheel}[serve]" && rm -rf /tmp/wheels
RUN useradd --create-home --uid 10001 modelport
WORKDIR /srv
COPY --chown=modelport:modelport models/ /srv/models/
USER modelport
EXPOSE {http_port} {grpc_port}
HEALTHCHECK --interval=10s --timeout=3s CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{http_port}/v2/health/ready').status == 200 else 1)"]
ENTRYPOINT {entrypoint}
CMD {cmd}
"""


def _source_root() -> Path | None:
    """The source checkout modelport runs from (pyproject.toml naming modelport), if any."""
    root = Path(__file__).resolve().parents[3]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and re.search(
        r'^name\s*=\s*"modelport"', pyproject.read_text(), flags=re.M
    ):
        return root
    return None


def build_wheel(dest: Path, wheel: str | None = None) -> Path:
    """Put the modelport wheel into ``dest``: the given ``wheel`` file, else one built with
    ``pip wheel <source> --no-deps`` from the source checkout this modelport runs from."""
    import tempfile

    dest.mkdir(parents=True, exist_ok=True)
    if wheel is not None:
        w = Path(wheel)
        if not (w.is_file() and w.name.startswith("modelport-") and w.suffix == ".whl"):
            raise UsageError(f"--wheel {wheel}: give a modelport-*.whl file")
        shutil.copy2(w, dest / w.name)
        return dest / w.name
    root = _source_root()
    if root is None:
        raise UsageError(
            "the docker target puts a modelport wheel into the build context, and this modelport "
            "is not a source checkout to build one from: give --wheel PATH (build it with "
            "`pip wheel <modelport source> -w DIR --no-deps`)"
        )
    with tempfile.TemporaryDirectory(prefix="modelport-wheel-") as tmpd:
        src = Path(tmpd) / "src-tree"
        src.mkdir()
        for f in ("pyproject.toml", "README.md"):
            shutil.copy2(root / f, src / f)
        shutil.copytree(
            root / "src",
            src / "src",
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"),
        )
        built = Path(tmpd) / "wheels"
        cmd = [sys.executable, "-m", "pip", "wheel", str(src), "-w", str(built), "--no-deps", "-q"]
        try:
            import setuptools  # noqa: F401

            cmd.append("--no-build-isolation")  # build offline with the setuptools we have
        except ImportError:
            pass
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(built.glob("modelport-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise VerificationError(
                f"pip wheel of {root} failed: {(proc.stderr or proc.stdout).strip()[-2000:]}"
            )
        shutil.copy2(wheels[0], dest / wheels[0].name)
    return dest / wheels[0].name


def target_docker(pkg: ModelPackage, config: PackageTargetConfig, out: Path) -> TargetResult:
    """OUT is a Docker build context: Dockerfile, wheels/modelport-*.whl and models/<name>/<v>/."""
    name = _model_name(pkg, config)
    serving = _serving(pkg, config)
    with atomic_output_dir(out) as tmp:
        wheel = build_wheel(tmp / "wheels", config.wheel)
        (tmp / "Dockerfile").write_text(
            DOCKERFILE.format(
                wheel=wheel.name,
                http_port=HTTP_PORT,
                grpc_port=GRPC_PORT,
                entrypoint=json.dumps(list(SERVE_ENTRYPOINT)),
                cmd=json.dumps(serve_args("/srv/models", serving)),
            )
        )
        (tmp / ".dockerignore").write_text("**/__pycache__\n")
        _copy_package(pkg, tmp / "models" / name / str(config.version or 1))
    checks = [_lint_dockerfile(out / "Dockerfile"), _check_context(out)]
    image = default_image(pkg, config)
    return TargetResult(
        "docker",
        out,
        ["Dockerfile", f"wheels/{wheel.name}", f"models/{name}/{config.version or 1}/"],
        checks,
        [f"build: docker build -t {image} {out}"],
    )


def dockerfile_sources(path: Path) -> list[str]:
    """The build-context paths the Dockerfile's COPY lines read (flags such as --chown dropped)."""
    sources = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and parts[0].upper() in ("COPY", "ADD"):
            args = [a for a in parts[1:] if not a.startswith("--")]
            sources.extend(args[:-1])
    return sources


def _check_context(ctx: Path) -> str:
    """Every COPY source exists in the context, and the wheel pip installs is the one copied."""
    missing = [s for s in dockerfile_sources(ctx / "Dockerfile") if not (ctx / s).exists()]
    if missing:
        raise VerificationError(f"{ctx}/Dockerfile copies {missing}, not in the build context")
    text = (ctx / "Dockerfile").read_text()
    installs = re.findall(r'pip install [^\n]*?"?/tmp/wheels/([^"\[\s]+)', text)
    if not installs or any(not (ctx / "wheels" / w).is_file() for w in installs):
        raise VerificationError(f"{ctx}/Dockerfile installs {installs}, not wheels in the context")
    return f"every COPY source is in the build context; pip installs wheels/{installs[0]}"


def _lint_dockerfile(path: Path) -> str:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    text = path.read_text()
    problems = []
    if not text.lstrip("# \n").startswith("FROM") and "\nFROM " not in text:
        problems.append("no FROM")
    if "\nUSER " not in text:
        problems.append("runs as root (no USER)")
    if ":latest" in text.split("\n", 2)[1]:
        problems.append("FROM uses :latest")
    if problems:
        raise VerificationError(f"{path}: " + "; ".join(problems))
    if Path(hadolint).exists():
        proc = subprocess.run(
            [hadolint, "--failure-threshold", "warning", str(path)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise VerificationError(
                f"hadolint found problems in {path}:\n{proc.stdout}{proc.stderr}"
            )
        return "Dockerfile passes hadolint (warning threshold) and our checks (FROM pinned, non-root USER)"
    return "Dockerfile passes our checks (FROM pinned, non-root USER); hadolint not installed"


TARGETS: dict[str, Callable[[ModelPackage, PackageTargetConfig, Path], TargetResult]] = {
    "repo": target_repo,
    "triton": target_triton,
    "torchserve": target_torchserve,
    "kserve": target_kserve,
    "docker": target_docker,
}


def package_for(
    package: ModelPackage | str,
    target: str,
    out: str | Path,
    config: PackageTargetConfig | None = None,
) -> TargetResult:
    """Write ``package`` for ``target`` under ``out`` and validate the artifact."""
    if target not in TARGETS:
        raise UsageError(f"unknown target '{target}'; choose one of {sorted(TARGETS)}")
    pkg = package if isinstance(package, ModelPackage) else ModelPackage.load(package)
    return TARGETS[target](pkg, config or PackageTargetConfig(), Path(out))
