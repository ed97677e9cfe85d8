"""int8 for OpenVINO with NNCF, kept as a QDQ ``model.onnx`` that OpenVINO runs in int8.

    from modelport.optimize.quantize import OpenVINOInt8Config, quantize_openvino
    pkg = quantize_openvino("out/minilm", "out/minilm-ov-int8", calibration_feed,
                            OpenVINOInt8Config(precision="bf16", max_drop=0.001),
                            eval_feed=eval_feed)

``nncf.quantize`` (ONNX backend: the package's model.onnx stays the artefact, with
QuantizeLinear/DequantizeLinear pairs; ``model_type="transformer"`` for attention models) is
calibrated on one sample at a time from ``calibration``. With ``max_drop`` a fidelity budget is
held the way ``quantize --mode partial`` holds it for ONNX Runtime: every quantized MatMul/Conv is
ranked by how much of the drop reverting it alone recovers (its activation
QuantizeLinear/DequantizeLinear bypassed: cheap, no re-quantization), then NNCF runs again with
the k most sensitive in ``ignored_scope`` (fully float, weights included), k found by exponential
then binary search, the fewest that make the drop on the eval data fit.
Everything is measured on OpenVINO itself at ``precision`` (the float math of the rest: bf16 on
AMX). The package's serving section names engine "openvino" and that precision; the history step
records NNCF's and OpenVINO's versions (the model.onnx hash is in ``files``).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...data import Feed, feed_batch_size
from ...errors import UsageError, require
from ...package import ModelPackage, now_iso, opset_of, write_package
from ...signature import Signature

__all__ = ["OpenVINOInt8Config", "OpenVINOInt8Result", "quantize_openvino", "revert_nodes"]


@dataclass(frozen=True)
class OpenVINOInt8Config:
    """precision: the float math of what stays float ("bf16" where native, else "fp32").
    model_type: "transformer" (NNCF's preset for attention models) or None.
    subset_size: calibration samples NNCF uses (one row each).
    max_drop: a drop budget (1 - mean cosine vs fp32, or the ``metric``'s drop); None = every
        node NNCF quantizes stays int8.
    threads: OpenVINO threads while measuring (0 = all cores).
    """

    precision: str = "fp32"
    model_type: str | None = None
    subset_size: int = 128
    max_drop: float | None = None
    threads: int = 0

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise UsageError(f"precision {self.precision!r}: use 'fp32' or 'bf16'")
        if self.model_type not in (None, "transformer"):
            raise UsageError(f"model_type {self.model_type!r}: use 'transformer' or None")
        if self.subset_size < 1:
            raise UsageError("subset_size must be >= 1")
        if self.max_drop is not None and self.max_drop < 0:
            raise UsageError("max_drop must be >= 0")


@dataclass
class OpenVINOInt8Result:
    package: ModelPackage
    drop: float | None
    kept_float: list[str]
    ranking: list[tuple[str, float]]


def _rows(feed: Feed, n: int) -> list[dict[str, np.ndarray]]:
    k = min(n, feed_batch_size(feed))
    return [{name: v[i : i + 1] for name, v in feed.items()} for i in range(k)]


def _quantized_nodes(model: Any) -> dict[str, list[tuple[int, str]]]:
    """MatMul/Gemm/Conv node name -> [(input index, float tensor before its activation QDQ)]."""
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name for i in model.graph.initializer}
    out: dict[str, list[tuple[int, str]]] = {}
    for n in model.graph.node:
        if n.op_type not in ("MatMul", "Gemm", "Conv"):
            continue
        for idx, name in enumerate(n.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in inits:
                out.setdefault(n.name, []).append((idx, q.input[0]))
    return out


def revert_nodes(model: Any, names: set[str] | list[str]) -> Any:
    """A copy of the QDQ ``model`` with the activation QDQ in front of ``names`` bypassed (they
    run in float; int8 weights stay and are decompressed); dangling Q/DQ nodes are removed."""
    m = copy.deepcopy(model)
    edits = _quantized_nodes(m)
    for n in m.graph.node:
        for idx, src in edits.get(n.name, []) if n.name in names else []:
            n.input[idx] = src
    used = {i for n in m.graph.node for i in n.input} | {o.name for o in m.graph.output}
    changed = True
    while changed:  # drop Q/DQ nodes nothing reads any more
        changed = False
        for n in list(m.graph.node):
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not set(n.output) & used:
                m.graph.node.remove(n)
                changed = True
        used = {i for n in m.graph.node for i in n.input} | {o.name for o in m.graph.output}
    return m


def _score_fn(metric: Callable[..., float] | None) -> Callable[..., float]:
    if metric is not None:
        return metric
    from ...metrics import mean_cosine

    return mean_cosine


def quantize_openvino(
    package: ModelPackage | str | os.PathLike[str],
    out: str | os.PathLike[str],
    calibration: Feed,
    config: OpenVINOInt8Config | None = None,
    *,
    eval_feed: Feed | None = None,
    metric: Callable[..., float] | None = None,
    force: bool = False,
    log: Callable[[str], None] = lambda _m: None,
) -> OpenVINOInt8Result:
    """NNCF int8 of ``package`` for OpenVINO, written as a package at ``out``."""
    import onnx

    from ...runtime import EngineConfig, load_engine
    from ..report import run_batched

    nncf = require("nncf", "openvino")
    ov = require("openvino", "openvino")
    config = config or OpenVINOInt8Config()
    pkg = package if isinstance(package, ModelPackage) else ModelPackage.load(package)
    if config.max_drop is not None and eval_feed is None:
        raise UsageError("a drop budget (max_drop) needs eval data to measure the drop on")
    model = pkg.load_onnx()
    kwargs: dict[str, Any] = {"subset_size": config.subset_size}
    if config.model_type == "transformer":
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    log(f"nncf.quantize on {min(config.subset_size, feed_batch_size(calibration))} samples")
    dataset = nncf.Dataset(_rows(calibration, config.subset_size))
    quantized = nncf.quantize(model, dataset, **kwargs)
    econf = EngineConfig(
        engine="openvino", precision=config.precision, threads=config.threads, cache_dir=""
    )

    def run(m: Any) -> Mapping[str, np.ndarray]:
        assert eval_feed is not None  # only called to measure a drop, which needs eval data
        return run_batched(load_engine(m.SerializeToString(), econf), eval_feed)

    drop: float | None = None
    kept: list[str] = []
    ranking: list[tuple[str, float]] = []
    if eval_feed is not None:
        score = _score_fn(metric)
        ref = run_batched(load_engine(pkg.model_path), eval_feed)  # ORT fp32: the reference
        best = float(score(ref, ref, eval_feed))

        def drop_of(m: Any) -> float:
            return max(0.0, best - float(score(ref, run(m), eval_feed)))

        drop = drop_of(quantized)
        log(f"every node int8: drop {drop:.5f}")
        if config.max_drop is not None and drop > config.max_drop:
            nodes = list(_quantized_nodes(quantized))
            for name in nodes:
                ranking.append((name, drop - drop_of(revert_nodes(quantized, {name}))))
            ranking.sort(key=lambda kv: -kv[1])
            order = [n for n, _ in ranking]

            def with_float(k: int) -> Any:
                # NNCF again with the k most sensitive nodes in ignored_scope: fully float,
                # weights included (bypassing the activation QDQ alone keeps int8 weight error)
                scope = nncf.IgnoredScope(names=order[:k])
                return nncf.quantize(model, dataset, ignored_scope=scope, **kwargs)

            tried: dict[int, tuple[float, Any]] = {}

            def attempt(k: int) -> float:
                if k not in tried:
                    m = with_float(k)
                    tried[k] = (drop_of(m), m)
                    log(f"{k} most sensitive of {len(order)} kept float: drop {tried[k][0]:.5f}")
                return tried[k][0]

            # exponential search for a k that fits, then binary search below it
            hi = 1
            while hi < len(order) and attempt(hi) > config.max_drop:
                hi = min(2 * hi, len(order))
            if attempt(hi) <= config.max_drop:
                lo = hi // 2 + 1
                while lo < hi:
                    mid = (lo + hi) // 2
                    if attempt(mid) <= config.max_drop:
                        hi = mid
                    else:
                        lo = mid + 1
            k = hi
            kept, (drop, quantized) = order[:k], tried[k]
    manifest = copy.deepcopy(pkg.manifest)
    step = {
        "step": "quantize",
        "time": now_iso(),
        "mode": "openvino-int8",
        "tool": "nncf.quantize (ONNX backend, QDQ)",
        "engine_versions": {
            "openvino": str(ov.get_version()).split("-")[0],
            "nncf": str(nncf.__version__),
        },
        "model_type": config.model_type,
        "calibration_samples": min(config.subset_size, feed_batch_size(calibration)),
        "precision": config.precision,
        "max_drop": config.max_drop,
        "drop": drop,
        "kept_float": kept,
    }
    manifest["history"] = [*manifest.get("history", []), step]
    manifest["signature"] = Signature.from_onnx(quantized).to_dict()
    manifest["opset"] = opset_of(quantized)
    manifest["parent"] = {
        "path": str(pkg.path),
        "sha256": (pkg.manifest.get("files", {}).get("model.onnx", {}) or {}).get("sha256"),
    }
    manifest["serving"] = {
        **dict(manifest.get("serving") or {}),
        "engine": "openvino",
        "precision": config.precision,
    }
    manifest.pop("files", None)
    if not isinstance(quantized, onnx.ModelProto):  # pragma: no cover - NNCF returns a proto
        raise UsageError("nncf.quantize did not return an ONNX model")
    written = write_package(quantized, manifest, Path(out), force=force, samples_from=pkg)
    return OpenVINOInt8Result(written, drop, kept, ranking)
