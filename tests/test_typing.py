"""The strict mypy override (pyproject.toml) covers the core layers, and mypy checks them.

mypy itself runs in `make lint` and in the landing script; this test guards the configuration:
a module listed as strict but left out of mypy's `files` would silently not be checked.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

# the core layers named in docs/CONTRIBUTING.md ("Types"); may only grow
STRICT_CORE = {
    "modelport.errors",
    "modelport.signature",
    "modelport.data",
    "modelport.package",
    "modelport.manifest",
    "modelport.metrics",
    "modelport.progress",
    "modelport.render",
    "modelport.runtime",
    "modelport.runtime.*",
    "modelport.verify",
    "modelport.describe",
    # the serve data plane
    "modelport.serve.contracts",
    "modelport.serve.dataplane",
    "modelport.serve.batcher",
    "modelport.serve.names",
    "modelport.serve.repository",
    "modelport.serve.http.codec",
    "modelport.serve.http.common",
    "modelport.serve.http.v2",
    "modelport.serve.http.tfserving",
    "modelport.serve.http.torchserve",
    "modelport.serve.http.app",
    "modelport.serve.ray.remote",
    "modelport.serve.types",
    "modelport.serve.errors",
    "modelport.serve.config",
    "modelport.serve.offload",
    "modelport.serve.model",
    "modelport.serve.metrics",
    # the orchestrators and what they package
    "modelport.plan",
    "modelport.plan.*",
    "modelport.optimize",
    "modelport.optimize.*",
    "modelport.deploy",
    "modelport.deploy.*",
}
STRICT_FLAGS = {
    "disallow_untyped_defs",
    "disallow_incomplete_defs",
    "disallow_untyped_calls",
    "disallow_any_generics",
    "warn_return_any",
    "no_implicit_reexport",
}


def _mypy() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]


def _strict_patterns() -> set[str]:
    out: set[str] = set()
    for o in _mypy().get("overrides", []):
        if all(o.get(flag) is True for flag in STRICT_FLAGS):
            mods = o["module"]
            out |= {mods} if isinstance(mods, str) else set(mods)
    return out


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _checked_modules() -> set[str]:
    mods: set[str] = set()
    for entry in _mypy()["files"]:
        p = ROOT / entry
        for f in [p] if p.is_file() else p.rglob("*.py"):
            mods.add(_module_name(f))
    return mods


def test_core_layers_are_strict() -> None:
    missing = STRICT_CORE - _strict_patterns()
    assert not missing, f"core modules no longer strict in pyproject.toml: {sorted(missing)}"


def test_every_strict_module_is_checked() -> None:
    checked = _checked_modules()
    unchecked = [
        pat for pat in _strict_patterns() if not any(fnmatch.fnmatch(m, pat) for m in checked)
    ]
    assert not unchecked, f"strict modules missing from [tool.mypy] files: {sorted(unchecked)}"
    # and every source file of a strict module is in files (a package's submodules included)
    names = {_module_name(f) for f in (SRC / "modelport").rglob("*.py")}
    for pat in _strict_patterns():
        for name in names:
            if fnmatch.fnmatch(name, pat):
                assert name in checked, f"{name} is strict but not in [tool.mypy] files"
