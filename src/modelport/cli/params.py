"""The value syntaxes the commands share, one ``click.ParamType`` each.

Each type turns the text of an option into the value the Python API takes, or fails with a click
usage error (exit 2) that names the option, the value given and an example of the syntax:
``Invalid value for '--shape': expected NAME=VALUE, e.g. sequence=128; got 'seq'``.

Importing this module imports click only: the types that need numpy (``INPUT_SPEC``) import it
when they convert a value, so ``modelport --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

import click

__all__ = [
    "DIM_SIZE",
    "DIM_SIZES",
    "DYNAMIC_AXES",
    "ENGINE_SPEC",
    "ENGINE_SPECS",
    "INPUT_SPEC",
    "INT_LIST",
    "INT_LIST_OR_EMPTY",
    "REPLICA_CPUS",
    "DynamicAxes",
    "EngineSpecs",
    "InputSpec",
    "IntList",
    "NameValue",
    "ReplicaCpus",
]


class IntList(click.ParamType):
    """``1,8,32`` -> ``(1, 8, 32)``; with ``allow_empty`` an empty text is ``()``."""

    name = "integers"

    def __init__(self, allow_empty: bool = False, example: str = "1,8,32") -> None:
        self.allow_empty = allow_empty
        self.example = example

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        if isinstance(value, int):
            return (value,)
        try:
            out = tuple(int(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            self.fail(
                f"expected comma-separated integers, e.g. {self.example}; got {value!r}", param, ctx
            )
        if not out and not self.allow_empty:
            self.fail(f"is empty; give comma-separated integers, e.g. {self.example}", param, ctx)
        return out


class NameValue(click.ParamType):
    """``NAME=SIZE`` -> ``(name, size)``: the size of a named (symbolic) dimension, an integer
    >= 1. With ``several``: ``NAME=SIZE[,SIZE...]`` -> ``(name, (size, ...))``. Pass the pairs of a
    ``multiple=True`` option to ``dict()``."""

    name = "name=size"

    def __init__(
        self, syntax: str = "NAME=SIZE", example: str = "sequence=128", several: bool = False
    ) -> None:
        self.syntax = syntax
        self.example = example
        self.several = several

    def get_metavar(self, param: click.Parameter, *args: Any, **kwargs: Any) -> str:
        return self.syntax

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        name, sep, rest = str(value).partition("=")
        sizes = [s.strip() for s in rest.split(",")] if self.several else [rest.strip()]
        if not sep or not name.strip() or not all(s.isdigit() for s in sizes):
            self.fail(
                f"expected {self.syntax} (a symbolic dim and its size), e.g. {self.example}; "
                f"got {value!r}",
                param,
                ctx,
            )
        ints = tuple(int(s) for s in sizes)
        if any(i < 1 for i in ints):
            self.fail(f"sizes must be >= 1, e.g. {self.example}; got {value!r}", param, ctx)
        return (name.strip(), ints if self.several else ints[0])


class DynamicAxes(click.ParamType):
    """``input_ids:0=batch,1=sequence`` -> ``("input_ids", {0: "batch", 1: "sequence"})``."""

    name = "dynamic axes"

    def get_metavar(self, param: click.Parameter, *args: Any, **kwargs: Any) -> str:
        return "INPUT:AXIS=NAME,..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        name, sep, rest = str(value).partition(":")
        if not sep or not name or not rest:
            self.fail(
                f"expected input:axis=name[,axis=name], e.g. input_ids:1=sequence; got {value!r}",
                param,
                ctx,
            )
        axes: dict[int, str] = {}
        for part in rest.split(","):
            axis, eq, dim = part.partition("=")
            if not eq or not axis.strip().isdigit() or not dim.strip():
                self.fail(f"{value!r}: {part!r} should be axis=name, e.g. 1=sequence", param, ctx)
            axes[int(axis)] = dim.strip()
        return (name, axes)


class InputSpec(click.ParamType):
    """``name:shape[:dtype[:LOW..HIGH]]`` -> ``(TensorSpec, (low, high) or None)``, parsed by
    :func:`modelport.data.parse_input_spec`."""

    name = "input spec"

    def get_metavar(self, param: click.Parameter, *args: Any, **kwargs: Any) -> str:
        return "NAME:SHAPE:DTYPE[:LOW..HIGH]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        from ..data import parse_input_spec
        from ..errors import ModelportError

        try:
            return parse_input_spec(str(value), what="")
        except ModelportError as exc:
            self.fail(exc.message, param, ctx)


class ReplicaCpus(click.ParamType):
    """A number of CPUs >= 0 (fractions allowed) or ``auto``."""

    name = "cpus"

    def get_metavar(self, param: click.Parameter, *args: Any, **kwargs: Any) -> str:
        return "CPUS|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float) or value == "auto":
            return value
        try:
            cpus = float(value)
        except (TypeError, ValueError):
            self.fail(f"a number of CPUs or 'auto', got {value!r}", param, ctx)
        if cpus < 0:
            self.fail(f"must be >= 0, got {value}", param, ctx)
        return cpus


class EngineSpecs(click.ParamType):
    """``ort,openvino:bf16,package`` -> ``("ort", "openvino:bf16", "package")``, each checked by
    :func:`modelport.runtime.parse_engine_specs` (an unknown engine, a precision the engine lacks
    or this CPU does not run natively fails here). ``single``: the command runs one engine."""

    name = "engines"

    def __init__(self, single: bool = False) -> None:
        self.single = single

    def get_metavar(self, param: click.Parameter, *args: Any, **kwargs: Any) -> str:
        return "ENGINE[:PRECISION]" if self.single else "ENGINE[:PRECISION][,...]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        from ..errors import ModelportError
        from ..runtime import parse_engine_specs

        try:
            specs = parse_engine_specs(str(value))
        except ModelportError as exc:
            self.fail(exc.message, param, ctx)
        if self.single and len(specs) > 1:
            self.fail(
                f"this command runs one engine; give one of {list(specs)} "
                "(modelport bench --engine compares several)",
                param,
                ctx,
            )
        return specs


INT_LIST = IntList()
INT_LIST_OR_EMPTY = IntList(allow_empty=True, example="1,4")
DIM_SIZE = NameValue()
DIM_SIZES = NameValue("NAME=SIZE[,SIZE]", "sequence=16,128", several=True)
DYNAMIC_AXES = DynamicAxes()
INPUT_SPEC = InputSpec()
REPLICA_CPUS = ReplicaCpus()
ENGINE_SPECS = EngineSpecs()
ENGINE_SPEC = EngineSpecs(single=True)
