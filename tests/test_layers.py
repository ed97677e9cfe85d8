"""The import graph follows the layers in docs/CONTRIBUTING.md, and modules share only public names.

Every ``import`` of a modelport module, at module level or inside a function, is read from the
source with ``ast``; no module is imported, so this runs in milliseconds.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "modelport"

# Rank of each top-level part of the package: a module may import its own part and lower ranks.
# Keep this table and the picture in docs/CONTRIBUTING.md in step.
LAYERS: dict[str, int] = {
    # core types and files
    "errors": 0,
    "signature": 0,
    "data": 0,
    "package": 0,
    "manifest": 0,
    "metrics": 0,
    "progress": 0,
    "render": 0,
    # the only place that creates engine sessions
    "runtime": 1,
    # running and measuring a package
    "processing": 2,
    "verify": 2,
    "bench": 2,
    "describe": 2,
    # steps that make packages
    "convert": 3,
    "optimize": 3,
    # what ships and serves packages
    "serve": 4,
    "plan": 4,
    "deploy": 4,
    # the command line
    "cli": 5,
    "__main__": 5,  # python -m modelport: the command line
}

# Lower parts that a part may still not import (the table's "but" column in docs/CONTRIBUTING.md):
# optimize measures with runtime.latency, not through the bench library.
NOT_IMPORTED: dict[str, set[str]] = {"optimize": {"bench"}}

# Debts: imports that break a rule today, each with the reason it is tolerated. The test fails
# when an entry is no longer needed, so the list can only shrink.
ALLOWED_UPWARD: set[tuple[str, str]] = set()

ALLOWED_PRIVATE: set[tuple[str, str]] = set()


def _module_name(path: Path) -> tuple[str, str]:
    """(module name, the package its relative imports resolve against)."""
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def _imports() -> list[tuple[str, str, str | None]]:
    """(importing module, imported module, imported name or None) for every modelport import."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if "generated" in path.parts:
            continue
        module, package = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] == "modelport":
                    found.extend((module, target, alias.name) for alias in node.names)
            elif isinstance(node, ast.Import):
                found.extend(
                    (module, alias.name, None)
                    for alias in node.names
                    if alias.name.split(".")[0] == "modelport"
                )
    return found


def _part(module: str) -> str | None:
    """The top-level part ("serve", "package", ...) of a module; None for modelport itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_part_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in SRC.iterdir()}
    parts = {p for p in parts if not p.startswith(("_", ".")) and p != "py"}
    assert parts - set(LAYERS) == set(), "add the new part to LAYERS and to docs/CONTRIBUTING.md"


def test_imports_point_down_the_layers():
    upward = set()
    for module, target, name in _imports():
        src, dst = _part(module), _part(target)
        if dst is None:
            # the package root is a facade; below it only its version may be read
            if src is not None and name not in ("__version__",):
                upward.add((module, f"{target}.{name}"))
            continue
        if src is None or src == dst:
            continue
        if LAYERS[dst] > LAYERS[src]:
            upward.add((module, target))
    assert upward - ALLOWED_UPWARD == set(), "an import points up the layers"
    assert ALLOWED_UPWARD - upward == set(), "a tolerated import is gone: drop it from the list"


def test_parts_avoid_the_lower_parts_they_must_not_use():
    found = {
        (module, target)
        for module, target, _ in _imports()
        if _part(target) in NOT_IMPORTED.get(_part(module) or "", set())
    }
    assert found == set(), "see NOT_IMPORTED and the layer table in docs/CONTRIBUTING.md"


def test_no_cycle_between_parts():
    edges = {
        (_part(m), _part(t))
        for m, t, _ in _imports()
        if _part(m) and _part(t) and _part(m) != _part(t)
    }
    cycles = {(a, b) for a, b in edges if (b, a) in edges}
    assert cycles == set()


def test_modules_share_only_public_names():
    private = {
        (module, f"{target}.{name}")
        for module, target, name in _imports()
        if name and name.startswith("_") and not name.startswith("__") and target != module
    }
    assert private - ALLOWED_PRIVATE == set(), "make the shared name public (and test it)"
    assert ALLOWED_PRIVATE - private == set(), "a tolerated private import is gone: drop it"


def test_no_module_shadows_the_standard_library():
    """A top-level module named like a stdlib one (``inspect.py``) shadows it for scripts run there."""
    import sys

    shadowing = sorted(
        path.name
        for path in SRC.iterdir()
        if (path.suffix == ".py" or (path / "__init__.py").exists())
        and path.stem in sys.stdlib_module_names
    )
    assert shadowing == [], f"rename these modules: {shadowing}"
