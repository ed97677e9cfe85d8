"""Deployment planning: try the variants that make sense, keep the Pareto front, pick one.

    from modelport.plan import PlanConfig, plan
    result = plan("out/minilm", "out/minilm-plan", PlanConfig(max_drop=0.005, eval_data="sentences.npz"))
    result.chosen        # the chosen ModelPackage (None when nothing meets the budget)

``plan`` builds the candidates that make sense for the model and the target (fp32 as given and
graph-optimized; dynamic, static and partial int8 with per-channel and calibration choices;
fp16 on GPU; structured pruning of a PyTorch source with a fine-tune hook; with OpenVINO
installed, the same model.onnx on OpenVINO in fp32, in bf16 where the CPU runs it natively, and
NNCF int8, whole or held to the budget), measures each with
the same function on the same eval data (latency interleaved with fp32, at the served batch
size, with each ONNX Runtime session setting), keeps the Pareto front over latency, size and
drop, and picks the fastest that meets the budget. Within a time budget it always leaves the
best model found so far. Output directory:

    OUT/chosen/        the chosen model package (only when one meets the budget)
    OUT/front/<name>/  the Pareto front's packages (keep_front=True)
    OUT/report.md, OUT/report.html (with the Pareto plot), OUT/pareto.png, OUT/plan.json
    OUT/deploy/<target>/  the chosen package shipped with ``deploy.package_for`` (ship=...)
"""

from .run import TARGETS, PlanConfig, PlanResult, plan

__all__ = ["TARGETS", "PlanConfig", "PlanResult", "plan"]
