"""modelport: carry a trained model from its framework to production traffic.

``import modelport`` is light: torch, tensorflow, onnxruntime and grpc are imported only by the
functions that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import ModelportError
from .package import ModelPackage
from .signature import Signature, TensorSpec

__all__ = ["ModelPackage", "ModelportError", "Signature", "TensorSpec", "__version__", "load"]


def load(package, *, trust: bool = False):
    """A package as a callable with its processing: ``modelport.load("minilm")(["a text"])``
    returns ``{"embedding": array [1, 384]}`` (see ``modelport.processing.Pipeline``).

    ``trust`` lets a custom handler shipped in the package run (it is Python code)."""
    from .processing import load as _load

    return _load(package, trust=trust)
