"""The errors modelport raises.

Every error is a ``ModelportError``; the message says what went wrong and what to do.
Third-party exceptions are wrapped at the boundary (``raise ConversionError(...) from exc``).

    ModelportError
    ├── UsageError            bad arguments or configuration
    ├── MissingDependencyError  an optional extra is not installed
    ├── PackageError          a model package that cannot be read or written
    ├── ConversionError       a source model that cannot be loaded or exported
    ├── VerificationError     onnx.checker or numerical parity failed
    ├── InputError            data that does not match a model's signature
    └── OptimizationError     a quantization / pruning / graph step that cannot be applied

The exit code the command line returns for each class is a CLI concern: one table,
``modelport.cli.errors.EXIT_CODES``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConversionError",
    "InputError",
    "MissingDependencyError",
    "ModelportError",
    "OptimizationError",
    "PackageError",
    "UsageError",
    "VerificationError",
    "output_exists",
]


class ModelportError(Exception):
    """Root of all modelport errors."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields
        for key, value in fields.items():
            setattr(self, key, value)


class UsageError(ModelportError):
    """Arguments or configuration that cannot work together."""


class MissingDependencyError(ModelportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"this needs the Python package '{module}', which is not installed. "
            f"Install it with: pip install 'modelport[{extra}]'",
            module=module,
            extra=extra,
        )


class PackageError(ModelportError):
    """A model package (directory with model.onnx + modelport.json) that cannot be used."""


class ConversionError(ModelportError):
    """A source model that cannot be loaded or exported to ONNX."""


class VerificationError(ModelportError):
    """The checker or numerical parity failed. ``report`` holds the details when there is one."""


class InputError(ModelportError):
    """Input data that does not match a model's signature (name, dtype or shape)."""


class OptimizationError(ModelportError):
    """An optimization that cannot be applied to this model."""


def output_exists(out: object) -> UsageError:
    """The error for an output path that exists and may not be replaced (API and CLI wording)."""
    return UsageError(
        f"output path '{out}' already exists; choose another path or replace it "
        "(force=True; on the command line --force)",
        path=str(out),
    )


def require(module: str, extra: str) -> Any:
    """Import an optional dependency or raise an error naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module, extra) from exc
