"""A minimal stand-in for Triton's ``triton_python_backend_utils`` (the module a Python-backend
``model.py`` imports inside the Triton server): enough of ``Tensor``, ``InferenceRequest``,
``InferenceResponse`` and ``TritonError`` to run a ``TritonPythonModel`` here, without a server.

``installed()`` puts it into ``sys.modules`` under Triton's name while a model.py is imported and
run, and restores what was there.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = [
    "InferenceRequest",
    "InferenceResponse",
    "Tensor",
    "TritonError",
    "get_input_tensor_by_name",
    "get_output_tensor_by_name",
    "installed",
]

MODULE_NAME = "triton_python_backend_utils"


class Tensor:
    def __init__(self, name: str, array: Any) -> None:
        arr = np.asarray(array)
        if arr.dtype.kind == "U":
            raise TypeError(f"tensor {name!r}: Triton takes BYTES as np.object_ of bytes, not str")
        self._name = name
        self._array = arr

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class TritonError:
    def __init__(self, message: str) -> None:
        self._message = message

    def message(self) -> str:
        return self._message


class InferenceRequest:
    def __init__(
        self, inputs: Sequence[Tensor], requested_output_names: Sequence[str] = (), **_: Any
    ) -> None:
        self._inputs = list(inputs)
        self._requested = list(requested_output_names)

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def requested_output_names(self) -> list[str]:
        return self._requested


class InferenceResponse:
    def __init__(self, output_tensors: Sequence[Tensor], error: TritonError | None = None) -> None:
        self._outputs = list(output_tensors)
        self._error = error

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return next((t for t in request.inputs() if t.name() == name), None)


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in response.output_tensors() if t.name() == name), None)


@contextmanager
def installed() -> Iterator[types.ModuleType]:
    """This module as ``triton_python_backend_utils`` for the duration of the block."""
    previous = sys.modules.get(MODULE_NAME)
    sys.modules[MODULE_NAME] = sys.modules[__name__]
    try:
        yield sys.modules[__name__]
    finally:
        if previous is None:
            sys.modules.pop(MODULE_NAME, None)
        else:
            sys.modules[MODULE_NAME] = previous
