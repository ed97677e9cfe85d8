"""Optimizations of model packages: quantization, graph optimization, pruning.

Every optimization is a function ``(package_in, config) -> (package_out, report)`` that never
changes its inputs. Import the submodule you need; nothing heavy is imported here:

    from modelport.optimize.quantize import QuantizeConfig, quantize
    from modelport.optimize.graph import GraphConfig, optimize_graph
    from modelport.optimize.prune import PruneConfig, prune
"""

__all__ = [
    "calibration",
    "fp16",
    "graph",
    "hardware",
    "partial",
    "prune",
    "prune_onnx",
    "prune_report",
    "prune_torch",
    "quantize",
    "report",
    "sensitivity",
    "smoothing",
]
