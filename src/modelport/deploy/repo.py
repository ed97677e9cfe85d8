"""The ``repo`` target: the package as a new version in a modelport model repository."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..package import ModelPackage, atomic_output_dir
from .base import PackageTargetConfig, TargetResult, copy_package, model_name

__all__ = ["target_repo"]


def target_repo(pkg: ModelPackage, config: PackageTargetConfig, out: Path) -> TargetResult:
    """OUT is a modelport repository: the package lands in OUT/<name>/<version>/."""
    name = model_name(pkg, config)
    entry = out / name
    existing = [int(p.name) for p in entry.iterdir() if p.name.isdigit()] if entry.is_dir() else []
    version = config.version or (max(existing) + 1 if existing else 1)
    dest = entry / str(version)
    if dest.exists():
        raise UsageError(f"{dest} already exists; choose another --version")
    with atomic_output_dir(dest) as tmp:
        copy_package(pkg, tmp)
    loaded = ModelPackage.load(dest)  # the entry reads back as a package
    checks = [
        f"{dest} loads as a model package ({loaded.signature.input_names} -> {loaded.signature.output_names})"
    ]
    return TargetResult("repo", dest, sorted(p.name for p in dest.iterdir()), checks)
