"""Pruning of a model package (ONNX) or a PyTorch module, with a report of what it buys.

    from modelport.optimize.prune import PruneConfig, prune
    result = prune("out/digits", "out/digits-sparse", PruneConfig.magnitude(0.8))

Modules: ``core`` (the config and ``prune()``), ``onnx`` (pruning ONNX initializers), ``torch``
(pruning an ``nn.Module``, ``prune_module``), ``report`` (parameter counts, sizes, measurements).
"""

from .core import METHODS, PruneConfig, PruneResult, prune
from .torch import FineTune, prune_module

__all__ = ["FineTune", "METHODS", "PruneConfig", "PruneResult", "prune", "prune_module"]
