"""The ``kserve`` target: an InferenceService manifest (a custom predictor running ``modelport
serve``), validated against KServe's vendored CRD schema, and the model repository it mounts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..errors import UsageError, VerificationError
from ..package import ModelPackage, atomic_output_dir
from .base import (
    HTTP_PORT,
    PackageTargetConfig,
    TargetResult,
    copy_package,
    default_image,
    k8s_name,
    model_name,
    serve_args,
    serving_settings,
)

__all__ = ["KSERVE_SCHEMA_FILE", "KSERVE_VERSION", "check_kserve", "kserve_schema", "target_kserve"]

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # DNS-1123 label (KServe/K8s names)

KSERVE_VERSION = "v0.20.0"
KSERVE_SCHEMA_FILE = f"kserve-{KSERVE_VERSION}-inferenceservice-v1beta1.schema.json.gz"


def kserve_schema() -> dict[str, Any]:
    """KServe's real InferenceService (v1beta1) CRD schema, vendored from KServe v0.20.0
    (Apache-2.0; see deploy/schemas/README.md), made strict like ``kubectl --validate=strict``:
    unknown fields are errors and ``metadata.name`` must be a DNS-1123 label."""
    import gzip
    from importlib.resources import files

    raw = files("modelport.deploy").joinpath("schemas").joinpath(KSERVE_SCHEMA_FILE).read_bytes()
    schema: dict[str, Any] = _strict(json.loads(gzip.decompress(raw)))
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

    model = model_name(pkg, config)
    name = k8s_name(model)
    if not _NAME_RE.fullmatch(name):
        raise UsageError(
            f"'{name}' is not a valid Kubernetes name; give --name with lowercase letters, digits and '-'"
        )
    serving = serving_settings(pkg, config)
    storage = config.storage_uri or f"pvc://modelport-models/{name}"
    image = default_image(pkg, config)
    provenance = pkg.spec.provenance
    source_sha256 = (provenance.source_sha256 if provenance else None) or ""
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "annotations": {
                "modelport/model-name": model,
                "modelport/source-sha256": source_sha256,
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
        copy_package(pkg, tmp / "models" / model / str(config.version or 1))
    checks = [check_kserve(out / "inferenceservice.yaml")]
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


def check_kserve(path: Path) -> str:
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
