"""Convert a trained model to a verified ONNX model package.

    from modelport.convert import Source, ConvertConfig, convert
    result = convert(Source.torch_factory("mymodels:build"), "out/pkg", ConvertConfig(...))

``CONVERTERS`` maps a source kind to the function that exports it; every conversion then goes
through the same verification and atomic package writing.
"""

from .api import CONVERTERS, convert
from .base import ConvertConfig, Converter, ConvertResult, Source

__all__ = ["CONVERTERS", "ConvertConfig", "ConvertResult", "Converter", "Source", "convert"]
