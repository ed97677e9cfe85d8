"""modelport: carry a trained model from its framework to production traffic.

``import modelport`` is light: torch, tensorflow, onnxruntime and grpc are imported only by the
functions that need them, and the public names below (numpy included) load on first use, so
``modelport --help`` imports neither numpy nor rich.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import ModelportError
    from .package import ModelPackage
    from .signature import Signature, TensorSpec

__all__ = ["ModelPackage", "ModelportError", "Signature", "TensorSpec", "__version__", "load"]

# public name -> module that defines it (loaded on first access)
_LAZY = {
    "ModelportError": "errors",
    "ModelPackage": "package",
    "Signature": "signature",
    "TensorSpec": "signature",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modelport")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    else:
        raise AttributeError(f"module 'modelport' has no attribute '{name}'")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load(package, *, trust: bool = False):
    """A package as a callable with its processing: ``modelport.load("minilm")(["a text"])``
    returns ``{"embedding": array [1, 384]}`` (see ``modelport.processing.Pipeline``).

    ``trust`` lets a custom handler shipped in the package run (it is Python code)."""
    from .processing import load as _load

    return _load(package, trust=trust)
