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

from collections.abc import Sequence
from typing import Any, Protocol

__all__ = [
    "CheckReport",
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

Shown = str | int | Sequence[int | str]
"""A value an error shows the caller: a name, a count, a shape or a list of names."""


class CheckReport(Protocol):
    """What a VerificationError carries of a failed check (``modelport.verify``'s report)."""

    @property
    def passed(self) -> bool: ...

    def failures(self) -> list[str]: ...

    def to_dict(self) -> dict[str, Any]: ...


class ModelportError(Exception):
    """Root of all modelport errors.

    Each class declares its fields (typed, keyword-only, None when not given); ``fields`` holds
    the ones set, so ``type(exc)(new_message, **exc.fields)`` re-raises with another message.
    """

    message: str

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def fields(self) -> dict[str, Any]:
        """The declared fields that were set, by name."""
        names = [
            n
            for cls in reversed(type(self).__mro__)
            for n in cls.__dict__.get("__annotations__", {})
            if n != "message"
        ]
        return {n: getattr(self, n) for n in dict.fromkeys(names) if getattr(self, n) is not None}


class UsageError(ModelportError):
    """Arguments or configuration that cannot work together.

    path: the file or directory at fault; field: the setting at fault; layer: the model layer
    an option named; got: the value given."""

    path: str | None
    field: str | None
    layer: str | None
    got: Shown | None

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        field: str | None = None,
        layer: str | None = None,
        got: Shown | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.field = field
        self.layer = layer
        self.got = got


class MissingDependencyError(ModelportError):
    """An optional dependency is missing; the message names the extra to install."""

    module: str
    extra: str

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"this needs the Python package '{module}', which is not installed. "
            f"Install it with: pip install 'modelport[{extra}]'"
        )
        self.module = module
        self.extra = extra

    def __reduce__(self) -> tuple[Any, ...]:  # pickled (e.g. from a worker process) by its fields
        return (type(self), (self.module, self.extra))


class PackageError(ModelportError):
    """A model package (directory with model.onnx + modelport.json) that cannot be used.

    path: the package or file at fault."""

    path: str | None

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class ConversionError(ModelportError):
    """A source model that cannot be loaded or exported to ONNX. path: the source at fault."""

    path: str | None

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class VerificationError(ModelportError):
    """The checker or numerical parity failed.

    report: the verification report, when there is one; checker: onnx.checker's message."""

    report: CheckReport | None
    checker: str | None

    def __init__(
        self, message: str, *, report: CheckReport | None = None, checker: str | None = None
    ) -> None:
        super().__init__(message)
        self.report = report
        self.checker = checker


class InputError(ModelportError):
    """Input data that does not match a model's signature (name, dtype or shape).

    input / output: the tensor at fault; expected / got: what the model takes and what was
    given (a dtype, a shape, names, a count); model: the model; path: the data file; dim and
    sizes: a symbolic dimension the inputs disagree on, and each input's size on it."""

    input: str | None
    output: str | None
    expected: Shown | None
    got: Shown | None
    model: str | None
    path: str | None
    dim: str | None
    sizes: dict[str, int] | None

    def __init__(
        self,
        message: str,
        *,
        input: str | None = None,
        output: str | None = None,
        expected: Shown | None = None,
        got: Shown | None = None,
        model: str | None = None,
        path: str | None = None,
        dim: str | None = None,
        sizes: dict[str, int] | None = None,
    ) -> None:
        super().__init__(message)
        self.input = input
        self.output = output
        self.expected = expected
        self.got = got
        self.model = model
        self.path = path
        self.dim = dim
        self.sizes = sizes


class OptimizationError(ModelportError):
    """An optimization that cannot be applied to this model.

    layer: the layer at fault; op: the op type that blocks it; ops: the op types involved."""

    layer: str | None
    op: str | None
    ops: Sequence[str] | None

    def __init__(
        self,
        message: str,
        *,
        layer: str | None = None,
        op: str | None = None,
        ops: Sequence[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.layer = layer
        self.op = op
        self.ops = ops


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
