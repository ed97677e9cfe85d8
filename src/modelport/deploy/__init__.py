"""Ship a model package to where it will run: ``package_for(pkg, target, out)``.

Targets (a plain dict, ``TARGETS``): a modelport repository entry, a Triton model repository,
a TorchServe .mar, a KServe InferenceService manifest and a Docker build context. Each artifact
is validated as far as this machine allows, and the checks that ran are returned.

(The module is called ``deploy`` because ``modelport.package`` is the model package itself.)
"""

from __future__ import annotations

from .targets import TARGETS, PackageTargetConfig, TargetResult, package_for

__all__ = ["TARGETS", "PackageTargetConfig", "TargetResult", "package_for"]
