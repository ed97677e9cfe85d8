"""Model signatures: the names, dtypes and shapes of a model's inputs and outputs.

A dimension is an ``int`` (fixed) or a ``str`` (symbolic, e.g. ``"batch"``). Unknown dimensions
without a name are given a generated name (``"dim_<input>_<axis>"``) so every dynamic axis can be
addressed by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError

if TYPE_CHECKING:
    import onnx

__all__ = [
    "Dim",
    "Signature",
    "TensorSpec",
    "V2_DATATYPES",
    "onnx_elem_type_to_numpy",
    "numpy_to_onnx_elem_type",
]

Dim = int | str

# ONNX TensorProto element type -> numpy dtype name. Kept as data, not as onnx calls, so that this
# module stays cheap to import.
_ONNX_TO_NUMPY: dict[int, str] = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "str",  # STRING
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
}
_NUMPY_TO_ONNX = {v: k for k, v in _ONNX_TO_NUMPY.items()}
_NUMPY_TO_ONNX["object"] = 8

# dtype name (as in a Signature) -> KServe V2 / Triton datatype; strings travel as BYTES.
V2_DATATYPES: dict[str, str] = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "str": "BYTES",
}


def onnx_elem_type_to_numpy(elem_type: int) -> str:
    try:
        return _ONNX_TO_NUMPY[elem_type]
    except KeyError:
        raise InputError(
            f"ONNX element type {elem_type} has no numpy equivalent modelport supports "
            f"(supported: {sorted(_ONNX_TO_NUMPY)})"
        ) from None


def numpy_to_onnx_elem_type(dtype: Any) -> int:
    name = np.dtype(dtype).name if np.dtype(dtype).kind not in "OUS" else "str"
    try:
        return _NUMPY_TO_ONNX[name]
    except KeyError:
        raise InputError(f"numpy dtype {name} has no ONNX equivalent") from None


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: name, numpy dtype name and shape (ints and symbolic names)."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def concrete_shape(self, dims: Mapping[str, int], default: int = 1) -> tuple[int, ...]:
        """The shape with symbolic dims replaced from ``dims`` (``default`` for those not given)."""
        return tuple(d if isinstance(d, int) else int(dims.get(d, default)) for d in self.shape)

    def check(self, array: np.ndarray) -> None:
        """Raise InputError unless ``array`` fits this spec (dtype and every fixed dim)."""
        want = np.dtype(object if self.dtype == "str" else self.dtype)
        got = array.dtype
        if self.dtype == "str":
            ok = got.kind in "OUS"
        else:
            ok = got == want
        if not ok:
            raise InputError(
                f"input '{self.name}' has dtype {got}, expected {self.dtype}",
                input=self.name,
                expected=self.dtype,
                got=str(got),
            )
        if array.ndim != len(self.shape):
            raise InputError(
                f"input '{self.name}' has {array.ndim} dimensions {list(array.shape)}, "
                f"expected {len(self.shape)}: {list(self.shape)}",
                input=self.name,
                expected=list(self.shape),
                got=list(array.shape),
            )
        for axis, (d, n) in enumerate(zip(self.shape, array.shape, strict=True)):
            if isinstance(d, int) and d != n:
                raise InputError(
                    f"input '{self.name}' has size {n} on axis {axis}, expected {d} "
                    f"(shape {list(self.shape)}, got {list(array.shape)})",
                    input=self.name,
                    expected=list(self.shape),
                    got=list(array.shape),
                )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorSpec:
        return cls(str(d["name"]), str(d["dtype"]), tuple(d["shape"]))


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = field(default_factory=tuple)

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def input(self, name: str) -> TensorSpec:
        for t in self.inputs:
            if t.name == name:
                return t
        raise InputError(
            f"the model has no input named '{name}'; its inputs are {self.input_names}",
            input=name,
            expected=self.input_names,
        )

    def output(self, name: str) -> TensorSpec:
        for t in self.outputs:
            if t.name == name:
                return t
        raise InputError(
            f"the model has no output named '{name}'; its outputs are {self.output_names}",
            output=name,
            expected=self.output_names,
        )

    def check_feed(self, feed: Mapping[str, np.ndarray]) -> None:
        """Validate a full input feed: every input present, no unknown names, dtypes and dims."""
        unknown = sorted(set(feed) - set(self.input_names))
        if unknown:
            raise InputError(
                f"unknown input name(s) {unknown}; the model's inputs are {self.input_names}",
                input=unknown[0],
                expected=self.input_names,
            )
        missing = [n for n in self.input_names if n not in feed]
        if missing:
            raise InputError(
                f"missing input(s) {missing}; the model's inputs are {self.input_names}",
                input=missing[0],
                expected=self.input_names,
            )
        bound: dict[str, int] = {}
        for spec in self.inputs:
            arr = feed[spec.name]
            spec.check(arr)
            for axis, d in spec.dynamic_axes.items():
                n = int(arr.shape[axis])
                if d in bound and bound[d] != n:
                    raise InputError(
                        f"input '{spec.name}' has {d}={n} on axis {axis}, but another input "
                        f"has {d}={bound[d]}; inputs sharing a named dim must agree",
                        input=spec.name,
                    )
                bound[d] = n

    def batching(self) -> tuple[str | None, str]:
        """(the batch axis name, "") when rows of several feeds may be stacked, else (None, why).

        Stacking is correct only when every input has the same symbolic dim on axis 0 and every
        output has it too (or an unnamed dynamic axis 0, which then holds one row per input row).
        An input without it (a per-call parameter, a recurrent state, a fixed first axis) or an
        output with another named axis 0 (e.g. a detection count) would mix one feed's values into
        another's. The server's dynamic batching, verify's row-by-row reference and the batch
        sizes optimize measures all follow this one rule.
        """
        if not self.inputs:
            return None, "the model has no inputs"
        for s in self.inputs:
            if not s.shape or not isinstance(s.shape[0], str):
                first = s.shape[0] if s.shape else "none (a scalar)"
                return None, f"input '{s.name}' has no dynamic batch axis (its axis 0 is {first})"
        names = {s.shape[0] for s in self.inputs}
        if len(names) != 1:
            detail = ", ".join(f"{s.name}: {s.shape[0]}" for s in self.inputs)
            return None, f"the inputs have different dims on axis 0 ({detail})"
        (name,) = names
        assert isinstance(name, str)
        for s in self.outputs:
            if not s.shape or not isinstance(s.shape[0], str):
                first = s.shape[0] if s.shape else "none (a scalar)"
                return None, f"output '{s.name}' has no batch axis (its axis 0 is {first})"
            if s.shape[0] != name and s.shape[0] != f"dim_{s.name}_0":  # unnamed: from_onnx
                return (
                    None,
                    f"output '{s.name}' has axis 0 '{s.shape[0]}', not the batch axis '{name}'",
                )
        return name, ""

    def symbolic_dims(self) -> list[str]:
        seen: list[str] = []
        for t in self.inputs:
            for d in t.shape:
                if isinstance(d, str) and d not in seen:
                    seen.append(d)
        return seen

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Signature:
        return cls(
            tuple(TensorSpec.from_dict(t) for t in d.get("inputs", [])),
            tuple(TensorSpec.from_dict(t) for t in d.get("outputs", [])),
        )

    @classmethod
    def from_onnx(cls, model: onnx.ModelProto) -> Signature:
        """Read the signature of an ``onnx.ModelProto`` (graph inputs that are not initializers)."""
        graph = model.graph
        inits = {i.name for i in graph.initializer}

        def spec(vi: onnx.ValueInfoProto) -> TensorSpec:
            tt = vi.type.tensor_type
            dims: list[Dim] = []
            for axis, d in enumerate(tt.shape.dim):
                if d.HasField("dim_value"):
                    dims.append(int(d.dim_value))
                elif d.dim_param:
                    dims.append(str(d.dim_param))
                else:
                    dims.append(f"dim_{vi.name}_{axis}")
            return TensorSpec(vi.name, onnx_elem_type_to_numpy(tt.elem_type), tuple(dims))

        return cls(
            tuple(spec(vi) for vi in graph.input if vi.name not in inits),
            tuple(spec(vi) for vi in graph.output),
        )
