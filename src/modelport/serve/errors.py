"""Serving errors and the one table that maps every error to its HTTP and gRPC status.

    ModelportError
    └── ServeError
        ├── ModelNotFoundError     unknown model or version             404 / NOT_FOUND
        ├── ModelNotReadyError     known but loading, failed, unloaded  503 / UNAVAILABLE
        ├── QueueFullError         the model's queue is full            503 / UNAVAILABLE
        ├── RequestTimeoutError    not answered within the timeout      504 / DEADLINE_EXCEEDED
        ├── RequestTooLargeError   body or message over the limit       413 / RESOURCE_EXHAUSTED
        ├── UnsupportedMediaError  a Content-Encoding not accepted      415 / INVALID_ARGUMENT
        ├── ForbiddenError         management from a non-loopback peer  403 / PERMISSION_DENIED
        ├── ConflictError          registering a version that exists    409 / ALREADY_EXISTS
        ├── UnsupportedError       a protocol feature not implemented   501 / UNIMPLEMENTED
        └── InferenceFailedError   ONNX Runtime failed on good input    500 / INTERNAL

InputError and UsageError from modelport.errors are the client's fault (400 / INVALID_ARGUMENT);
any other error is a 500 / INTERNAL. The grpc column holds ``grpc.StatusCode`` member names so that
this module does not import grpc.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import InputError, ModelportError, UsageError

__all__ = [
    "STATUS",
    "ClientDisconnected",
    "ConflictError",
    "ForbiddenError",
    "InferenceFailedError",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "QueueFullError",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "ServeError",
    "Status",
    "UnsupportedError",
    "UnsupportedMediaError",
    "status_of",
]


class ServeError(ModelportError):
    """Root of the errors raised while serving. model: the model at fault, when one is."""

    model: str | None

    def __init__(self, message: str, *, model: str | None = None) -> None:
        super().__init__(message)
        self.model = model


class ModelNotFoundError(ServeError):
    """The model (or the requested version of it) is not in the repository."""


class ModelNotReadyError(ServeError):
    """The model exists but cannot take requests (loading, failed to load, unloaded, draining)."""


class QueueFullError(ServeError):
    """Backpressure: the model's queue is full; the client should retry later."""


class RequestTimeoutError(ServeError):
    """The request was not answered within its timeout."""


class RequestTooLargeError(ServeError):
    """The request (its body, or one of its inputs) is larger than the server's limit.
    input: the input over its limit, when one is."""

    input: str | None

    def __init__(self, message: str, *, model: str | None = None, input: str | None = None) -> None:
        super().__init__(message, model=model)
        self.input = input


class UnsupportedMediaError(ServeError):
    """The request body's encoding (e.g. ``Content-Encoding: br``) is not one the server reads."""


class ForbiddenError(ServeError):
    """A management call from an address that may not make it."""


class ConflictError(ServeError):
    """The thing to create already exists (e.g. registering a model version twice)."""


class UnsupportedError(ServeError):
    """A protocol feature modelport does not implement."""


class InferenceFailedError(ServeError):
    """ONNX Runtime failed on a request that matched the model's signature."""


class ClientDisconnected(Exception):
    """The client went away before its answer was ready (not an error to report)."""


class Status(NamedTuple):
    """How an error is reported: a metrics label, an HTTP status and a grpc.StatusCode name."""

    label: str
    http: int
    grpc: str


# Looked up along the exception's MRO, so subclasses inherit their parent's row.
STATUS: dict[type[BaseException], Status] = {
    ModelNotFoundError: Status("not_found", 404, "NOT_FOUND"),
    ModelNotReadyError: Status("unavailable", 503, "UNAVAILABLE"),
    QueueFullError: Status("unavailable", 503, "UNAVAILABLE"),
    RequestTimeoutError: Status("deadline_exceeded", 504, "DEADLINE_EXCEEDED"),
    RequestTooLargeError: Status("too_large", 413, "RESOURCE_EXHAUSTED"),
    UnsupportedMediaError: Status("invalid_argument", 415, "INVALID_ARGUMENT"),
    ForbiddenError: Status("forbidden", 403, "PERMISSION_DENIED"),
    ConflictError: Status("conflict", 409, "ALREADY_EXISTS"),
    UnsupportedError: Status("unsupported", 501, "UNIMPLEMENTED"),
    InferenceFailedError: Status("internal", 500, "INTERNAL"),
    InputError: Status("invalid_argument", 400, "INVALID_ARGUMENT"),
    UsageError: Status("invalid_argument", 400, "INVALID_ARGUMENT"),
    ClientDisconnected: Status("cancelled", 499, "CANCELLED"),
    ModelportError: Status("internal", 500, "INTERNAL"),
}
SUCCESS = Status("success", 200, "OK")
_INTERNAL = Status("internal", 500, "INTERNAL")


def status_of(exc: BaseException) -> Status:
    """The status row for ``exc`` (500 / INTERNAL for anything not in the table)."""
    for cls in type(exc).__mro__:
        row = STATUS.get(cls)
        if row is not None:
            return row
    return _INTERNAL
