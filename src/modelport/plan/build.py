"""Building a candidate: each kind calls the public optimization function that makes it.

``BUILDERS`` maps a candidate kind to ``build(ctx, candidate, base, out) -> ModelPackage``. The
builders do not time the result: the search measures every candidate the same way afterwards,
so they switch the optimizations' own latency measurement off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Feed
from ..errors import UsageError
from ..package import ModelPackage
from .candidates import Candidate

__all__ = ["BUILDERS", "BuildContext", "build_candidate"]


@dataclass
class BuildContext:
    """What every builder may need.

    eval_feed / labels / metric: the evaluation data and the budget metric (a callable).
    calibration: calibration data for static int8 (None: static is not a candidate).
    max_drop: the drop budget (partial int8's target).
    source / finetune / example: the PyTorch source, its fine-tune hook and example inputs.
    batch_size: the served batch size.
    """

    eval_feed: Feed
    labels: np.ndarray | None
    metric: Any
    calibration: Any
    max_drop: float | None
    source: Any = None
    finetune: Callable[[Any], Any] | None = None
    example: Feed | None = None
    batch_size: int = 1

    def evaluation(self) -> Any:
        from ..optimize.report import EvalConfig

        return EvalConfig(
            data=self.eval_feed,
            labels=self.labels,
            metric=self.metric,
            limit=None,
            batch_sizes=(self.batch_size,),
            measure_latency=False,
        )


def build_fp32(ctx: BuildContext, cand: Candidate, base: ModelPackage, out: Path) -> ModelPackage:
    return base


def build_graph(ctx: BuildContext, cand: Candidate, base: ModelPackage, out: Path) -> ModelPackage:
    from ..optimize.graph import GraphConfig, optimize_graph

    config = GraphConfig(**dict(cand.options), evaluation=ctx.evaluation())
    return optimize_graph(base, out, config)[0]


def build_quantize(
    ctx: BuildContext, cand: Candidate, base: ModelPackage, out: Path
) -> ModelPackage:
    from ..optimize.quantize import QuantizeConfig, quantize

    opts = dict(cand.options)
    if opts.get("mode") in ("static", "partial") and ctx.calibration is not None:
        opts.setdefault("calibration", ctx.calibration)
    if opts.pop("mode") == "partial":  # the preset: its defaults (e.g. smoothing) included
        if ctx.max_drop is None:  # generate_candidates offers partial int8 only with a budget
            raise UsageError("partial int8 needs a drop budget: give max_drop (--max-drop)")
        config = QuantizeConfig.partial(max_drop=ctx.max_drop, evaluation=ctx.evaluation(), **opts)
    else:
        config = QuantizeConfig(mode=cand.options["mode"], **opts, evaluation=ctx.evaluation())
    return quantize(base, out, config)[0]


def build_prune(ctx: BuildContext, cand: Candidate, base: ModelPackage, out: Path) -> ModelPackage:
    from ..optimize.prune import PruneConfig, prune

    config = PruneConfig.structured(
        float(cand.options["sparsity"]),
        batch_sizes=(ctx.batch_size,),
        latency_repeats=3,
    )
    result = prune(
        ctx.source,
        out,
        config,
        example=ctx.example,
        eval_data=ctx.eval_feed,
        labels=ctx.labels,
        finetune=ctx.finetune,
    )
    return result.package


def build_nncf(ctx: BuildContext, cand: Candidate, base: ModelPackage, out: Path) -> ModelPackage:
    from ..optimize.calibration import take_feed
    from ..optimize.quantize.openvino_int8 import OpenVINOInt8Config, quantize_openvino

    opts = dict(cand.options)
    partial = opts.pop("partial", False)
    calib = ctx.calibration if ctx.calibration is not None else ctx.eval_feed
    calib = take_feed(calib, base.signature, None)
    config = OpenVINOInt8Config(**opts, max_drop=ctx.max_drop if partial else None)
    result = quantize_openvino(
        base,
        out,
        calib,
        config,
        eval_feed=ctx.eval_feed if partial else None,
        metric=ctx.metric,
    )
    return result.package


BUILDERS: dict[str, Callable[[BuildContext, Candidate, ModelPackage, Path], ModelPackage]] = {
    "fp32": build_fp32,
    "graph": build_graph,
    "quantize": build_quantize,
    "prune": build_prune,
    "nncf": build_nncf,
}


def build_candidate(
    ctx: BuildContext, cand: Candidate, base: ModelPackage, out: Path
) -> ModelPackage:
    """Build ``cand`` from ``base`` (the fp32 package, or its base candidate's) at ``out``."""
    return BUILDERS[cand.kind](ctx, cand, base, out)
