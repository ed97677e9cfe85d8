"""The package targets by name (``TARGETS``, a plain dict) and ``package_for``.

Each target is a function (package, config, out_dir) -> TargetResult, one module per target.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import UsageError
from ..package import ModelPackage
from .base import PackageTargetConfig, TargetResult
from .docker import target_docker
from .kserve import target_kserve
from .repo import target_repo
from .torchserve import target_torchserve
from .triton import target_triton

__all__ = ["TARGETS", "PackageTargetConfig", "TargetResult", "package_for"]


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
