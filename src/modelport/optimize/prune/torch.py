"""Pruning a PyTorch module before export.

- magnitude: ``torch.nn.utils.prune`` masks on the weights of Conv/Linear layers (kept during
  fine-tuning so pruned weights stay zero), made permanent at the end. Shapes do not change.
- structured: torch-pruning's DependencyGraph groups coupled channels (residual adds,
  concatenations, BatchNorm, grouped convolutions) and removes them together, so the module really
  gets smaller. The layer that produces the model's output is never pruned on its output side.

A layer's name is its module's qualified name (``layer1.conv1``). The input module is not changed.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ...errors import ModelportError, OptimizationError, UsageError, require

__all__ = ["FineTune", "prune_module", "torch_layers"]

FineTune = Callable[[Any], Any]  # receives the pruned nn.Module, returns it trained


def _is_layer(m: Any) -> bool:
    torch = require("torch", "torch")
    return isinstance(m, torch.nn.modules.conv._ConvNd | torch.nn.Linear)


def _as_args(example: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
    torch = require("torch", "torch")
    return tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in example.values())


def _flat_tensors(out: Any) -> list[Any]:
    torch = require("torch", "torch")
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, Mapping):
        return [v for v in out.values() if isinstance(v, torch.Tensor)]
    if isinstance(out, list | tuple):
        return [t for v in out for t in _flat_tensors(v)]
    return []


def torch_layers(module: Any, args: tuple[Any, ...]) -> tuple[list[tuple[str, Any]], set[str]]:
    """(Conv/Linear layers as (name, module) in execution order, names of the layers whose output
    is a model output). Layers never called come last."""
    torch = require("torch", "torch")
    order: list[str] = []
    produced: dict[int, str] = {}
    named = {m: n for n, m in module.named_modules() if _is_layer(m)}
    handles = []

    def hook(m: Any, _inp: Any, out: Any) -> None:
        name = named[m]
        if name not in order:
            order.append(name)
        if isinstance(out, torch.Tensor):
            produced[id(out)] = name

    for m in named:
        handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = module(*args)
    except Exception as exc:
        raise OptimizationError(
            f"the PyTorch model fails on the example inputs: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        for h in handles:
            h.remove()
    by_name = {n: m for m, n in named.items()}
    layers = [(n, by_name[n]) for n in order] + [(n, m) for m, n in named.items() if n not in order]
    outputs = {produced[id(t)] for t in _flat_tensors(out) if id(t) in produced}
    return layers, outputs


def head_name(layers: Sequence[tuple[str, Any]]) -> str | None:
    """The classifier head: the last Linear layer called (the last layer of any kind if none)."""
    torch = require("torch", "torch")
    linear = [n for n, m in layers if isinstance(m, torch.nn.Linear)]
    names = linear or [n for n, _ in layers]
    return names[-1] if names else None


def resolve(
    layers: Sequence[tuple[str, Any]], exclude: Sequence[str], exclude_head: bool
) -> set[str]:
    """Names of the layers to leave alone; an unknown name is an error listing the valid ones."""
    names = [n for n, _ in layers]
    excluded = set()
    for name in exclude:
        key = name[: -len(".weight")] if name.endswith(".weight") else name
        if key not in names:
            raise UsageError(
                f"--exclude '{name}': the model has no prunable layer (Conv/Linear) of that name; its "
                f"layers are {names}",
                layer=name,
            )
        excluded.add(key)
    head = head_name(layers)
    if exclude_head and head:
        excluded.add(head)
    return excluded


def _run_finetune(finetune: FineTune, model: Any, step: int) -> Any:
    torch = require("torch", "torch")
    name = getattr(finetune, "__qualname__", repr(finetune))
    model.train()
    try:
        out = finetune(model)
    except ModelportError:
        raise
    except Exception as exc:
        raise OptimizationError(
            f"the fine-tune function {name} failed at step {step}: {type(exc).__name__}: {exc}"
        ) from exc
    if out is None:
        out = model
    if not isinstance(out, torch.nn.Module):
        raise UsageError(
            f"the fine-tune function {name} returned a {type(out).__name__}; return the nn.Module"
        )
    return out.eval()


def _check_runs(model: Any, args: tuple[Any, ...], shapes: list[tuple[int, ...]]) -> None:
    """Run the pruned model; on failure name the module it failed in (or the last one that ran)."""
    torch = require("torch", "torch")
    entered: list[str] = []
    done: list[str] = []
    handles = []
    for n, m in model.named_modules():
        if n and not list(m.children()):
            handles.append(m.register_forward_pre_hook(lambda _m, _i, n=n: entered.append(n)))
            handles.append(m.register_forward_hook(lambda _m, _i, _o, n=n: done.append(n)))
    try:
        with torch.no_grad():
            out = model(*args)
    except Exception as exc:
        if entered and (not done or done[-1] != entered[-1]):
            name = entered[-1]
            where = f"in layer '{name}' ({type(model.get_submodule(name)).__name__})"
            if done:
                where += f", after '{done[-1]}'"
        elif done:
            name = done[-1]
            where = (
                f"after layer '{name}' ({type(model.get_submodule(name)).__name__}), in code "
                "outside any layer (a hard-coded size or a functional op on a tensor of fixed size)"
            )
        else:
            name, where = None, "before any layer ran"
        raise OptimizationError(
            f"after structured pruning the model no longer runs: it fails {where}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0]}. torch-pruning could not follow that "
            "dependency (e.g. a view() with a hard-coded size, a functional op on a raw tensor); exclude "
            "the layers that feed it with --exclude, or use --method magnitude",
            layer=name,
        ) from exc
    finally:
        for h in handles:
            h.remove()
    got = [tuple(t.shape) for t in _flat_tensors(out)]
    if got != shapes:
        raise OptimizationError(
            f"after structured pruning the model's output shapes changed from {shapes} to {got}: "
            "something in forward() has a hard-coded size (e.g. view(-1, N)) that torch-pruning cannot "
            "follow; write it as flatten(x, 1) / view(x.size(0), -1), or use --method magnitude"
        )


def _drop_grads(model: Any) -> None:
    for p in model.parameters():
        p.grad = None


def _weights(model: Any, names: Sequence[str]) -> dict[str, Any]:
    return {n: model.get_submodule(n).weight.detach().clone() for n in names}


def _magnitude(model: Any, names: Sequence[str], config: Any, finetune: FineTune | None) -> Any:
    torch = require("torch", "torch")
    from torch.nn.utils import prune

    tprune: Any = prune  # torch's pruning helpers are untyped

    modules = [model.get_submodule(n) for n in names]
    for step in range(1, config.steps + 1):
        target = config.sparsity * step / config.steps
        weights = [m.weight.detach().abs() for m in modules]
        if config.scope == "global":
            flat = torch.cat([w.reshape(-1) for w in weights])
            k = int(round(target * flat.numel()))
            thresh_mask = torch.ones_like(flat, dtype=torch.bool)
            if k:
                thresh_mask[torch.topk(flat, k, largest=False).indices] = False
            masks, start = [], 0
            for w in weights:
                masks.append(thresh_mask[start : start + w.numel()].reshape(w.shape))
                start += w.numel()
        else:
            masks = []
            for w in weights:
                flat = w.reshape(-1)
                k = int(round(target * flat.numel()))
                keep = torch.ones_like(flat, dtype=torch.bool)
                if k:
                    keep[torch.topk(flat, k, largest=False).indices] = False
                masks.append(keep.reshape(w.shape))
        for m, mask in zip(modules, masks, strict=True):
            tprune.custom_from_mask(m, "weight", mask.to(m.weight.dtype))
        if finetune is not None:
            model = _run_finetune(finetune, model, step)
            modules = [model.get_submodule(n) for n in names]
    for m in modules:
        if tprune.is_pruned(m):
            tprune.remove(m, "weight")
    return model


def _structured(
    model: Any,
    args: tuple[Any, ...],
    excluded: set[str],
    config: Any,
    finetune: FineTune | None,
    notes: list[str],
) -> Any:
    tp = require("torch_pruning", "torch")
    ignored = [model.get_submodule(n) for n in sorted(excluded)]
    importance = tp.importance.GroupMagnitudeImportance(p=1 if config.importance == "l1" else 2)
    example = args[0] if len(args) == 1 else args
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pruner = tp.pruner.BasePruner(
                model,
                example,
                importance=importance,
                global_pruning=config.scope == "global",
                pruning_ratio=config.sparsity,
                iterative_steps=config.steps,
                ignored_layers=ignored,
                round_to=config.round_to,
            )
        notes.extend(f"torch-pruning: {' '.join(str(w.message).split())}" for w in caught)
    except Exception as exc:
        raise OptimizationError(
            f"torch-pruning cannot build the dependency graph of this model: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}. Structured pruning needs a model that "
            "torch.fx/autograd can trace with the example inputs; use --method magnitude otherwise"
        ) from exc
    for step in range(1, config.steps + 1):
        try:
            pruner.step()
            _drop_grads(model)  # stale .grad of the old shapes corrupt memory in the next backward
        except Exception as exc:
            raise OptimizationError(
                f"torch-pruning failed at step {step}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            ) from exc
        if finetune is not None:
            model = _run_finetune(finetune, model, step)
    return model


def prune_module(
    module: Any,
    example: Mapping[str, np.ndarray],
    config: Any,
    finetune: FineTune | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Prune a copy of ``module`` as ``config`` (a PruneConfig) says; returns (pruned module, info).

    info: "layers" (per-layer rows: name, shape before/after, params before/after, nonzero,
    sparsity), "excluded", "head", "params_before", "params_after" (torch parameter counts).
    """
    torch = require("torch", "torch")
    notes: list[str] = []
    model = copy.deepcopy(module).eval()
    _drop_grads(model)
    args = _as_args(example)
    layers, output_layers = torch_layers(model, args)
    if not layers:
        raise OptimizationError("the model has no Conv or Linear layers to prune")
    excluded = resolve(layers, config.exclude, config.exclude_head)
    names = [n for n, _ in layers]
    targets = [n for n in names if n not in excluded]
    if not targets:
        raise UsageError(f"every prunable layer is excluded ({names}); nothing to prune")
    with torch.no_grad():
        shapes = [tuple(t.shape) for t in _flat_tensors(model(*args))]
    before = _weights(model, names)
    params_before = sum(p.numel() for p in model.parameters())
    if config.method == "magnitude":
        model = _magnitude(model, targets, config, finetune)
    else:
        model = _structured(model, args, excluded | output_layers, config, finetune, notes)
    model.eval()
    _check_runs(model, args, shapes)
    after = {}
    for n in names:
        try:
            after[n] = model.get_submodule(n).weight.detach()
        except AttributeError:
            continue
    rows = []
    for n in names:
        b = before[n]
        a = after.get(n)
        nonzero = int((a != 0).sum()) if a is not None else 0
        rows.append(
            {
                "name": n,
                "pruned": n in targets,
                "shape_before": list(b.shape),
                "shape_after": list(a.shape) if a is not None else None,
                "params_before": int(b.numel()),
                "params_after": int(a.numel()) if a is not None else 0,
                "nonzero": nonzero,
                "sparsity": 1.0 - nonzero / max(int(b.numel()), 1),
            }
        )
    info = {
        "layers": rows,
        "notes": notes,
        "excluded": sorted(excluded),
        "head": head_name(layers),
        "torch_params_before": int(params_before),
        "torch_params_after": int(sum(p.numel() for p in model.parameters())),
    }
    return model, info
