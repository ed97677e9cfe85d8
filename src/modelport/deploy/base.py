"""What every target shares: the config, the result, the model name and serving settings, the
package copy, and the serving command the Docker image and the KServe manifest both run."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..package import ModelPackage

__all__ = [
    "GRPC_PORT",
    "HTTP_PORT",
    "SERVE_ENTRYPOINT",
    "PackageTargetConfig",
    "TargetResult",
    "copy_package",
    "default_image",
    "k8s_name",
    "model_name",
    "serve_args",
    "serving_settings",
]


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


def model_name(pkg: ModelPackage, config: PackageTargetConfig) -> str:
    name = config.name or pkg.name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", name) or ".." in name:
        raise UsageError(
            f"model name {name!r} is not valid: use letters, digits, '-', '_', '.' (no '..', no '/')"
        )
    return name


def serving_settings(pkg: ModelPackage, config: PackageTargetConfig) -> dict[str, Any]:
    s = pkg.serving
    # the one stacking rule (Signature.batching), as `modelport serve` decides it: an output whose
    # axis 0 is another named dim (a detection count, say) must not be batched by Triton either
    batch_axis, why_not = pkg.signature.batching()
    coupled = pkg.batch_coupled_ops() if batch_axis is not None else []
    if coupled:  # dynamic int8: merged requests would change each other's answers
        batch_axis, why_not = (
            None,
            (
                f"the model quantizes activations at run time ({', '.join(coupled)}), so a merged "
                "batch would change each request's answer"
            ),
        )
    batchable = batch_axis is not None
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
        "why_not_batched": why_not,
    }


def copy_package(pkg: ModelPackage, dest: Path) -> None:
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
    return f"modelport-{k8s_name(model_name(pkg, config))}:{config.version or 1}"
