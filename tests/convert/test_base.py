"""Every entry of CONVERTERS is a Converter, and every Source constructor has one."""

from __future__ import annotations

import inspect
import typing

from modelport.convert import CONVERTERS, ConvertConfig, Converter, Source
from modelport.convert.base import Exported


def _hints(fn):
    """The annotated types of the positional parameters, and of the result."""
    hints = typing.get_type_hints(fn)
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return {"params": [hints.get(p.name) for p in params], "return": hints.get("return")}


def test_every_converter_has_the_converter_signature():
    want = _hints(Converter.__call__)
    assert want == {"params": [None, Source, ConvertConfig], "return": Exported}  # self first
    for kind, fn in CONVERTERS.items():
        got = _hints(fn)
        assert got["params"] == want["params"][1:], f"{kind}: {got}"
        assert got["return"] is Exported, kind


def test_every_source_constructor_has_a_converter():
    kinds = {
        Source.torch_module(object()).kind,
        Source.torch_factory("m:f").kind,
        Source.torch_class("m:C", "w.pt").kind,
        Source.torchscript("m.pt").kind,
        Source.exported_program("m.pt2").kind,
        Source.hf("d").kind,
        Source.onnx("m.onnx").kind,
        Source.savedmodel("d").kind,
        Source.keras("m.keras").kind,
        Source.sklearn("m.joblib").kind,
    }
    assert kinds == set(CONVERTERS)
