"""Post-processing: row-wise numpy functions over a merged batch (graph outputs -> answer).

``POST`` maps a step kind to ``apply(step, env, labels) -> {name: array}``, where ``env`` holds
the collated graph inputs, the graph outputs and what earlier steps produced.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["POST"]

Env = Mapping[str, np.ndarray]


def _get(env: Env, name: str, step: Any) -> np.ndarray:
    try:
        return env[name]
    except KeyError:
        raise InputError(
            f"processing step {step.kind!r} needs '{name}', which the graph does not produce "
            f"(available: {sorted(env)})"
        ) from None


def _mask(env: Env, step: Any, tokens: np.ndarray) -> np.ndarray:
    mask = _get(env, step.mask, step)
    if mask.shape != tokens.shape[:2]:
        raise InputError(
            f"{step.kind}: mask '{step.mask}' has shape {list(mask.shape)}, the token vectors "
            f"'{step.input}' have {list(tokens.shape)}"
        )
    return mask.astype(tokens.dtype, copy=False)[:, :, None]


def mean_pool(step: Any, env: Env, labels: Any) -> dict[str, np.ndarray]:
    tokens = _get(env, step.input, step)
    mask = _mask(env, step, tokens)
    summed = np.einsum("bsh,bsx->bh", tokens, mask)
    counts = np.maximum(mask.sum(axis=1), 1e-9)
    return {step.output: (summed / counts).astype(np.float32, copy=False)}


def cls_pool(step: Any, env: Env, labels: Any) -> dict[str, np.ndarray]:
    return {step.output: np.ascontiguousarray(_get(env, step.input, step)[:, 0])}


def max_pool(step: Any, env: Env, labels: Any) -> dict[str, np.ndarray]:
    tokens = _get(env, step.input, step)
    mask = _mask(env, step, tokens)
    masked = np.where(mask > 0, tokens, np.float32(-1e9))
    return {step.output: masked.max(axis=1).astype(np.float32, copy=False)}


def l2_normalize(step: Any, env: Env, labels: Any) -> dict[str, np.ndarray]:
    x = _get(env, step.input, step)
    norms = np.sqrt(np.einsum("...i,...i->...", x, x))[..., None]
    return {step.output: (x / np.maximum(norms, 1e-12)).astype(x.dtype, copy=False)}


def softmax(step: Any, env: Env, labels: Any) -> dict[str, np.ndarray]:
    x = _get(env, step.input, step).astype(np.float32, copy=False)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return {step.output: e / e.sum(axis=-1, keepdims=True)}


def top_k(step: Any, env: Env, labels: Any) -> dict[str, np.ndarray]:
    scores = _get(env, step.input, step)
    if scores.ndim != 2:
        raise InputError(
            f"top_k: '{step.input}' has shape {list(scores.shape)}; it needs [batch, classes]"
        )
    if labels is not None and scores.shape[1] != len(labels):
        raise InputError(
            f"top_k: '{step.input}' has {scores.shape[1]} classes but the labels file has "
            f"{len(labels)} labels"
        )
    k = min(step.k, scores.shape[1])
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(scores, idx, axis=1).astype(np.float32)
    names = np.empty(idx.shape, dtype=object)
    for (i, j), c in np.ndenumerate(idx):
        names[i, j] = (labels[c] if labels is not None else str(c)).encode("utf-8")
    if step.k == 1:
        return {step.label_output: names[:, 0], step.score_output: best[:, 0]}
    return {step.label_output: names, step.score_output: best}


POST: dict[str, Callable[[Any, Env, Any], dict[str, np.ndarray]]] = {
    "mean_pool": mean_pool,
    "cls_pool": cls_pool,
    "max_pool": max_pool,
    "l2_normalize": l2_normalize,
    "softmax": softmax,
    "top_k": top_k,
}
