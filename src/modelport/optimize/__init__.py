"""Optimizations of model packages: quantization, graph optimization, pruning.

Every optimization is a function ``(package_in, config) -> (package_out, report)`` that never
changes its inputs. Import the part you need; nothing heavy is imported here:

    from modelport.optimize.quantize import QuantizeConfig, quantize
    from modelport.optimize.graph import GraphConfig, optimize_graph
    from modelport.optimize.prune import PruneConfig, prune

Layout: ``quantize/`` (int8, partial, fp16, NNCF int8 and their helpers), ``prune/`` (ONNX and
PyTorch pruning and its measurements), and what every optimization shares: ``report`` (the
measured report and its checks), ``calibration`` (calibration and evaluation data), ``hardware``
(the CPU and the types it favours), ``graph`` (ONNX Runtime / transformers graph optimization).
"""

__all__ = ["calibration", "graph", "hardware", "prune", "quantize", "report"]
