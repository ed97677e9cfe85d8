"""Quantization of a model package: dynamic and static int8, partial, fp16, NNCF int8 for OpenVINO.

    from modelport.optimize.quantize import QuantizeConfig, quantize
    package, report = quantize(pkg, "out/q", QuantizeConfig.dynamic())

Modules: ``core`` (the config and ``quantize()``), ``partial`` (a sensitivity search keeps the
harmful nodes float), ``sensitivity`` (that search), ``smoothing`` (SmoothQuant-style activation
smoothing), ``fp16``, ``openvino_int8`` (NNCF int8, ``quantize_openvino``).
"""

from .core import FIELD_MODES, MODES, QUANTIZED_OPS, QuantizeConfig, quantize
from .openvino_int8 import OpenVINOInt8Config, OpenVINOInt8Result, quantize_openvino

__all__ = [
    "FIELD_MODES",
    "MODES",
    "OpenVINOInt8Config",
    "OpenVINOInt8Result",
    "QUANTIZED_OPS",
    "QuantizeConfig",
    "quantize",
    "quantize_openvino",
]
