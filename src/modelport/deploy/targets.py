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
    image: container image for KServe/Docker (default: a python:3.11-slim based image built
        from the docker target).
    storage_uri: where KServe pulls the model repository from (pvc://..., s3://..., gs://...).
    """

    name: str | None = None
    version: int | None = None
    max_batch_size: int | None = None
    max_queue_delay_ms: float | None = None
    instances: int | None = None
    image: str = "modelport-serve:latest"
    storage_uri: str | None = None

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
        (tmp / "handler.py").write_text(HANDLER)
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
            str(manifest),
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
    checks = [_check_mar(mar, pkg)]
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


# --- kserve ---------------------------------------------------------------------------------

KSERVE_SCHEMA: dict[str, Any] = {
    # The parts of serving.kserve.io/v1beta1 InferenceService that this target writes.
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "serving.kserve.io/v1beta1"},
        "kind": {"const": "InferenceService"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": _NAME_RE.pattern, "maxLength": 63}
            },
        },
        "spec": {
            "type": "object",
            "required": ["predictor"],
            "properties": {
                "predictor": {
                    "type": "object",
                    "properties": {
                        "minReplicas": {"type": "integer", "minimum": 0},
                        "maxReplicas": {"type": "integer", "minimum": 1},
                        "containers": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["name", "image"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "image": {"type": "string"},
                                    "args": {"type": "array", "items": {"type": "string"}},
                                    "env": {
                                        "type": "array",
                                        "items": {"type": "object", "required": ["name"]},
                                    },
                                    "ports": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["containerPort"],
                                            "properties": {
                                                "containerPort": {"type": "integer"},
                                                "protocol": {"enum": ["TCP", "UDP", "SCTP"]},
                                            },
                                        },
                                    },
                                    "readinessProbe": {"type": "object"},
                                    "resources": {"type": "object"},
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}


def target_kserve(pkg: ModelPackage, config: PackageTargetConfig, out: Path) -> TargetResult:
    """OUT/inferenceservice.yaml (a custom predictor running ``modelport serve``) + the model repo."""
    import yaml

    name = _model_name(pkg, config).lower().replace("_", "-").replace(".", "-")
    if not _NAME_RE.fullmatch(name):
        raise UsageError(
            f"'{name}' is not a valid Kubernetes name; give --name with lowercase letters, digits and '-'"
        )
    serving = _serving(pkg, config)
    storage = config.storage_uri or f"pvc://modelport-models/{name}"
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "annotations": {
                "modelport/source-sha256": str(
                    pkg.manifest.get("provenance", {}).get("source_sha256", "")
                )
            },
        },
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "maxReplicas": 3,
                "containers": [
                    {
                        "name": "kserve-container",
                        "image": config.image,
                        "args": [
                            "serve",
                            "/mnt/models",
                            "--http-port",
                            "8080",
                            "--grpc-port",
                            "8081",
                            "--host",
                            "0.0.0.0",
                            "--max-batch-size",
                            str(max(serving["max_batch_size"], 1)),
                        ],
                        "env": [{"name": "STORAGE_URI", "value": storage}],
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8080}},
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
        _copy_package(pkg, tmp / "models" / name / str(config.version or 1))
    checks = [_check_kserve(out / "inferenceservice.yaml")]
    return TargetResult(
        "kserve",
        out,
        ["inferenceservice.yaml", f"models/{name}/{config.version or 1}/"],
        checks,
        [
            f"copy models/ to {storage} (KServe's storage initializer mounts it at /mnt/models); "
            f"the image is {config.image} (build it with --target docker)"
        ],
    )


def _check_kserve(path: Path) -> str:
    import jsonschema
    import yaml

    doc = yaml.safe_load(path.read_text())
    try:
        jsonschema.validate(doc, KSERVE_SCHEMA)
    except jsonschema.ValidationError as exc:
        raise VerificationError(
            f"{path} does not match the InferenceService schema: {exc.message}"
        ) from exc
    return "inferenceservice.yaml parses and validates against the InferenceService (v1beta1) fields we use"


# --- docker ---------------------------------------------------------------------------------

DOCKERFILE = """# Built by `modelport package --target docker`: modelport serve over the model repository in models/.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN pip install --no-cache-dir "modelport[serve]=={version}"
RUN useradd --create-home --uid 10001 modelport
WORKDIR /srv
COPY --chown=modelport:modelport models/ /srv/models/
COPY --chown=modelport:modelport entrypoint.sh /srv/entrypoint.sh
USER modelport
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready').status == 200 else 1)"]
ENTRYPOINT ["/srv/entrypoint.sh"]
"""

ENTRYPOINT = """#!/bin/sh
# Serve the bundled repository; extra arguments go to `modelport serve`.
set -eu
exec modelport serve /srv/models --host 0.0.0.0 --http-port 8000 --grpc-port 8001 "$@"
"""


def target_docker(pkg: ModelPackage, config: PackageTargetConfig, out: Path) -> TargetResult:
    """OUT is a Docker build context: Dockerfile, entrypoint.sh and models/<name>/<v>/."""
    from .. import __version__

    name = _model_name(pkg, config)
    with atomic_output_dir(out) as tmp:
        (tmp / "Dockerfile").write_text(DOCKERFILE.format(version=__version__))
        (tmp / "entrypoint.sh").write_text(ENTRYPOINT)
        (tmp / "entrypoint.sh").chmod(0o755)
        (tmp / ".dockerignore").write_text("**/__pycache__\n")
        _copy_package(pkg, tmp / "models" / name / str(config.version or 1))
    checks = [_lint_dockerfile(out / "Dockerfile")]
    return TargetResult(
        "docker",
        out,
        ["Dockerfile", "entrypoint.sh", f"models/{name}/{config.version or 1}/"],
        checks,
        [f"build: docker build -t modelport-{name.lower()} {out}"],
    )


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
