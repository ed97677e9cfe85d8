"""Custom handlers: Python code shipped in a package, run only when the caller trusts it.

A handler is a class (``module:Class``) in one Python file, TorchServe-handler-like::

    class Handler:
        inputs = {"text": ("BYTES", [-1])}          # optional: the public signature
        outputs = {"label": ("BYTES", [-1])}        # optional

        def initialize(self, package_dir): ...      # optional, once at load
        def preprocess(self, inputs): ...           # per request: {name: array} -> {name: array}
        def postprocess(self, outputs): ...         # per merged batch, one row per input row

``preprocess`` gets numpy arrays; a BYTES input is an object array of ``bytes`` over every protocol
(V2 JSON's strings are encoded as UTF-8 first), so ``x.decode()`` works everywhere.

``attach_handler`` copies the file into the package (``processing/<module>.py``) and records its
sha256 in the manifest. Loading refuses the handler without ``trust`` and refuses a file whose
sha256 differs from the one recorded (it changed since packaging).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PackageError, UsageError

__all__ = ["HandlerRef", "HANDLER_DIR", "load_handler", "resolve_handler_file"]

HANDLER_DIR = "processing"


@dataclass(frozen=True)
class HandlerRef:
    """A handler recorded in the manifest.

    target: "module:Class"; file: the module's file, relative to the package; sha256: its hash
    when it was packaged.
    """

    target: str
    file: str
    sha256: str


def _split_target(target: str) -> tuple[str, str]:
    module, sep, cls = target.partition(":")
    if not sep or not module or not cls.isidentifier():
        raise UsageError(f"handler '{target}': expected module:Class, e.g. my_handler:Handler")
    return module, cls


def resolve_handler_file(target: str) -> Path:
    """The source file of ``module`` in ``module:Class`` (importable from the current path), or a
    ``path/to/file.py:Class`` path. The module must be a single file."""
    module, _ = _split_target(target)
    if module.endswith(".py"):
        path = Path(module)
    else:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
            raise UsageError(
                f"handler '{target}': cannot find module '{module}'; run from its directory, "
                "add it to PYTHONPATH, or give its file (path/to/handler.py:Class)"
            )
        path = Path(spec.origin)
    if not path.is_file() or path.suffix != ".py" or path.name == "__init__.py":
        raise UsageError(
            f"handler '{target}': the handler must be one .py file (a package's __init__ or a "
            f"compiled module cannot be shipped), got {path}"
        )
    return path


def load_handler(ref: HandlerRef, base: Path, *, trust: bool) -> Any:
    """Import and instantiate the handler, after the trust and sha256 checks."""
    from ..package import file_sha256

    if not trust:
        raise PackageError(
            f"the package {base} carries custom code (handler {ref.target}, file {ref.file}); "
            "running it needs trust: pass --trust to 'modelport serve' (trust=True in Python) "
            "if you trust whoever made the package"
        )
    path = base / ref.file
    if not path.is_file():
        raise PackageError(f"the handler file {ref.file} is missing from {base}", path=str(path))
    digest = file_sha256(path)
    if digest != ref.sha256:
        raise PackageError(
            f"the handler file {ref.file} changed since the package was written (sha256 "
            f"{digest[:12]}... is not the recorded {ref.sha256[:12]}...); refusing to run it. "
            "Attach the handler again to re-package it.",
            path=str(path),
        )
    _, cls_name = _split_target(ref.target)
    module_name = f"modelport_handler_{digest[:16]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PackageError(f"cannot import the handler file {path}", path=str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
        handler = getattr(module, cls_name)()
        if hasattr(handler, "initialize"):
            handler.initialize(os.fspath(base))
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise PackageError(
            f"the handler {ref.target} failed to load: {type(exc).__name__}: {exc}",
            path=str(path),
        ) from exc
    return handler
