"""Pruning directly on an ONNX graph: magnitude (unstructured) on weight initializers of any model,
and structured (whole channels / neurons) for plain MLP and Conv chains.

A *layer* is a Conv, Gemm or MatMul node whose weight is an initializer. Its name is the weight
initializer's name without the ``.weight`` suffix (and without the ``inner.`` prefix modelport's
torch export adds), so a model exported from PyTorch has the layer names of its modules
(``layer1.conv1``); when the initializer name says nothing (``onnx::Conv_31``) the node name is used.

Structured pruning removes output channels of a layer and the matching inputs of the next layer.
Between the two only channel-wise ops may stand (activations, BatchNormalization, pooling, a bias
Add/Mul with a constant, Flatten/Reshape to features). Anything else (a residual Add of two
computed tensors, Concat, a tensor used by two nodes) blocks it, and the error names that op.
Models with such structure are pruned in PyTorch instead, where torch-pruning follows the
dependency graph.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import OptimizationError, UsageError

__all__ = [
    "OnnxLayer",
    "constants_to_initializers",
    "find_layers",
    "magnitude_prune_onnx",
    "resolve_layers",
    "structured_prune_onnx",
]

LAYER_OPS = ("Conv", "Gemm", "MatMul")
# ops that act on each channel independently: pruning a channel before them prunes it after them
CHANNELWISE_OPS = {
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Sigmoid",
    "Tanh",
    "Clip",
    "Elu",
    "Selu",
    "Celu",
    "HardSigmoid",
    "HardSwish",
    "Gelu",
    "Softplus",
    "Softsign",
    "Mish",
    "Erf",
    "Dropout",
    "Identity",
    "Cast",
    "MaxPool",
    "AveragePool",
    "LpPool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "GlobalLpPool",
    "BatchNormalization",
    "InstanceNormalization",
    "Add",
    "Sub",
    "Mul",
    "Div",
}
FLATTEN_OPS = ("Flatten", "Reshape")


@dataclass
class OnnxLayer:
    """A Conv/Gemm/MatMul node with a constant weight."""

    name: str
    node: Any  # onnx.NodeProto
    weight: str  # initializer name
    index: int  # position in graph.node (topological order)
    out_axis: int  # axis of the weight that indexes output channels
    in_axis: int  # axis of the weight that indexes input channels/features
    bias: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _display_name(init_name: str, node: Any) -> str:
    name = init_name[len("inner.") :] if init_name.startswith("inner.") else init_name
    if name.startswith("onnx::") or name.startswith("val_"):
        return node.name or init_name
    return name[: -len(".weight")] if name.endswith(".weight") else name


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def constants_to_initializers(model: Any) -> int:
    """Turn, in place, the main graph's Constant nodes holding a tensor into initializers of the
    same name (paddle2onnx writes every weight as a Constant node, so no layer looked prunable).
    Returns how many were turned."""
    keep, moved = [], 0
    for node in model.graph.node:
        value = next((a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None)
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and value is not None:
            init = model.graph.initializer.add()
            init.CopyFrom(value)
            init.name = node.output[0]
            moved += 1
        else:
            keep.append(node)
    if moved:
        del model.graph.node[:]
        model.graph.node.extend(keep)
    return moved


def find_layers(model: Any) -> list[OnnxLayer]:
    """The prunable layers of ``model`` in graph order (Conv, Gemm, MatMul with constant weights)."""
    inits = {i.name: i for i in model.graph.initializer}
    layers: list[OnnxLayer] = []
    seen: dict[str, int] = {}
    for idx, node in enumerate(model.graph.node):
        if node.op_type not in LAYER_OPS or len(node.input) < 2 or node.input[1] not in inits:
            continue
        w = inits[node.input[1]]
        if len(w.dims) < 2 or w.data_type not in (1, 10, 11):  # float, float16, double
            continue
        if node.op_type == "Conv":
            out_axis, in_axis = 0, 1
            bias = node.input[2] if len(node.input) > 2 and node.input[2] in inits else None
        elif node.op_type == "Gemm":
            if _attr(node, "transA", 0):
                continue
            out_axis, in_axis = (0, 1) if _attr(node, "transB", 0) else (1, 0)
            bias = node.input[2] if len(node.input) > 2 and node.input[2] in inits else None
        else:  # MatMul x @ W with a 2-D W
            if len(w.dims) != 2:
                continue
            out_axis, in_axis, bias = 1, 0, None
        name = _display_name(w.name, node)
        if name in seen:
            name = w.name
        seen[name] = idx
        layers.append(OnnxLayer(name, node, w.name, idx, out_axis, in_axis, bias))
    return layers


def head_layer(layers: Sequence[OnnxLayer]) -> OnnxLayer | None:
    """The classifier head: the last Gemm/MatMul layer (the last layer of any kind if none)."""
    linear = [layer for layer in layers if layer.node.op_type in ("Gemm", "MatMul")]
    candidates = linear or list(layers)
    return candidates[-1] if candidates else None


def resolve_layers(
    layers: Sequence[OnnxLayer], exclude: Sequence[str], exclude_head: bool
) -> list[OnnxLayer]:
    """The layers to prune; an unknown name in ``exclude`` is an error listing the valid ones."""
    by_name = {layer.name: layer for layer in layers}
    by_weight = {layer.weight: layer for layer in layers}
    excluded = set()
    for name in exclude:
        layer = by_name.get(name) or by_weight.get(name)
        if layer is None:
            raise UsageError(
                f"--exclude '{name}': the model has no prunable layer of that name; its layers are "
                f"{[layer.name for layer in layers]}",
                layer=name,
            )
        excluded.add(layer.name)
    head = head_layer(layers)
    if exclude_head and head is not None:
        excluded.add(head.name)
    return [layer for layer in layers if layer.name not in excluded]


def _arrays(model: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _set_initializer(model: Any, name: str, value: np.ndarray) -> None:
    from onnx import numpy_helper

    for i, init in enumerate(model.graph.initializer):
        if init.name == name:
            model.graph.initializer[i].CopyFrom(
                numpy_helper.from_array(value.astype(value.dtype), name)
            )
            return
    raise KeyError(name)


# --- magnitude (unstructured) --------------------------------------------------------------


def _magnitude_masks(
    weights: Sequence[np.ndarray], sparsity: float, global_scope: bool
) -> list[np.ndarray]:
    """Boolean keep-masks zeroing the ``sparsity`` fraction of smallest |w| (per tensor or over all)."""
    if global_scope:
        flat = np.concatenate([np.abs(w).reshape(-1) for w in weights])
        k = int(round(sparsity * flat.size))
        keep = np.ones(flat.size, bool)
        if k:
            keep[np.argpartition(flat, k - 1)[:k]] = False
        out, start = [], 0
        for w in weights:
            out.append(keep[start : start + w.size].reshape(w.shape))
            start += w.size
        return out
    masks = []
    for w in weights:
        flat = np.abs(w).reshape(-1)
        k = int(round(sparsity * flat.size))
        keep = np.ones(flat.size, bool)
        if k:
            keep[np.argpartition(flat, k - 1)[:k]] = False
        masks.append(keep.reshape(w.shape))
    return masks


def magnitude_prune_onnx(
    model: Any, layers: Sequence[OnnxLayer], sparsity: float, global_scope: bool
) -> Any:
    """A copy of ``model`` with the smallest-magnitude ``sparsity`` of each layer's weights set to
    zero (or of all the layers' weights together when ``global_scope``). Shapes do not change."""
    model = copy.deepcopy(model)
    arrays = _arrays(model)
    names = list(dict.fromkeys(layer.weight for layer in layers))
    weights = [arrays[n] for n in names]
    for name, w, keep in zip(
        names, weights, _magnitude_masks(weights, sparsity, global_scope), strict=True
    ):
        _set_initializer(model, name, np.where(keep, w, np.zeros_like(w)))
    return model


# --- structured ----------------------------------------------------------------------------


@dataclass
class _Chain:
    """What pruning the output channels of ``layer`` touches, up to the next layer."""

    layer: OnnxLayer
    channelwise: list[Any] = field(default_factory=list)  # nodes between, in order
    flatten: Any = None  # a Flatten/Reshape node turning channels into features
    per_channel: int = 1  # features per channel after the flatten (H*W)
    consumer: OnnxLayer | None = None


def _blocked(layer: OnnxLayer, node: Any, why: str) -> OptimizationError:
    what = f"op {node.op_type}" + (f" '{node.name}'" if node.name else "")
    return OptimizationError(
        f"structured pruning on ONNX cannot prune layer '{layer.name}': {what} {why}. ONNX structured "
        "pruning handles plain MLP/Conv chains only; exclude the layer (--exclude "
        f"{layer.name}), prune the PyTorch model instead (--torch ..., torch-pruning follows residual "
        "adds and concatenations), or use --method magnitude",
        layer=layer.name,
        op=node.op_type,
    )


def _trace(
    model: Any,
    layer: OnnxLayer,
    layers_by_node: dict[int, OnnxLayer],
    shapes: dict[str, list[int | str]],
) -> _Chain | None:
    consumers: dict[str, list[tuple[int, Any]]] = {}
    for idx, node in enumerate(model.graph.node):
        for inp in node.input:
            consumers.setdefault(inp, []).append((idx, node))
    inits = {i.name for i in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    if layer.node.op_type == "Conv" and int(_attr(layer.node, "group", 1)) != 1:
        raise _blocked(
            layer, layer.node, f"is a grouped convolution (group={_attr(layer.node, 'group', 1)})"
        )
    chain = _Chain(layer)
    tensor = layer.node.output[0]
    while True:
        if tensor in outputs:  # its channels are the model's outputs: never removed
            return None
        users = consumers.get(tensor, [])
        if len(users) != 1:
            ops = ", ".join(f"{n.op_type} '{n.name}'" for _, n in users) or "nothing"
            raise OptimizationError(
                f"structured pruning on ONNX cannot prune layer '{layer.name}': its output '{tensor}' feeds "
                f"{len(users)} nodes ({ops}), not a plain chain (a branch or residual connection); "
                f"exclude it (--exclude {layer.name}) or prune the PyTorch model instead (--torch ...)",
                layer=layer.name,
                op=users[0][1].op_type if users else None,
            )
        idx, node = users[0]
        if idx in layers_by_node and node.input[0] == tensor:
            consumer = layers_by_node[idx]
            if node.op_type == "Conv" and int(_attr(node, "group", 1)) != 1:
                raise _blocked(layer, node, "(the next layer) is a grouped convolution")
            if chain.flatten is not None and node.op_type == "Conv":
                raise _blocked(layer, node, "follows a Flatten/Reshape")
            chain.consumer = consumer
            return chain
        if node.op_type in FLATTEN_OPS and chain.flatten is None and node.input[0] == tensor:
            shape = shapes.get(tensor)
            if not shape or len(shape) < 2 or any(not isinstance(d, int) for d in shape[1:]):
                raise _blocked(
                    layer,
                    node,
                    "reshapes a tensor whose channel/spatial dims are not known statically",
                )
            out_shape = shapes.get(node.output[0])
            per_channel = int(np.prod([int(d) for d in shape[2:]])) if len(shape) > 2 else 1
            if out_shape is not None and (
                len(out_shape) != 2 or out_shape[-1] != shape[1] * per_channel
            ):
                raise _blocked(
                    layer, node, f"reshapes {shape} to {out_shape}, not to (batch, features)"
                )
            if node.op_type == "Flatten" and int(_attr(node, "axis", 1)) != 1:
                raise _blocked(layer, node, "flattens from an axis other than 1")
            if node.op_type == "Reshape" and node.input[1] not in inits:
                raise _blocked(layer, node, "takes a computed target shape")
            chain.flatten, chain.per_channel = node, per_channel
            tensor = node.output[0]
            continue
        if (
            node.op_type in CHANNELWISE_OPS
            and node.input[0] == tensor
            or (node.op_type in ("Add", "Mul", "Sub", "Div") and tensor in node.input)
        ):
            others = [i for i in node.input if i != tensor and i]
            if node.op_type in ("Add", "Sub", "Mul", "Div") and any(i not in inits for i in others):
                raise _blocked(
                    layer, node, "combines it with another computed tensor (a residual connection)"
                )
            if node.op_type == "PRelu" and any(i not in inits for i in others):
                raise _blocked(layer, node, "has a computed slope")
            chain.channelwise.append(node)
            tensor = node.output[0]
            continue
        raise _blocked(layer, node, "is not a channel-wise op between two prunable layers")


def _static_shapes(model: Any) -> dict[str, list[int | str]]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is a help, not a requirement
        inferred = model
    shapes: dict[str, list[int | str]] = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims
        ]
    return shapes


def _channel_importance(w: np.ndarray, out_axis: int, p: int) -> np.ndarray:
    moved = np.moveaxis(np.abs(w.astype(np.float64)), out_axis, 0).reshape(w.shape[out_axis], -1)
    importance: np.ndarray = (moved**p).sum(1) ** (1.0 / p)
    return importance


def _keep_counts(
    importances: dict[str, np.ndarray], sparsity: float, global_scope: bool, round_to: int | None
) -> dict[str, np.ndarray]:
    """Indices of kept channels per layer: the largest importances, ``1 - sparsity`` of them."""
    keep: dict[str, np.ndarray] = {}
    if global_scope:
        # importances are normalized by each layer's mean so that layers with larger weights do not
        # win by scale alone (torch-pruning normalizes the same way)
        norm = {n: v / max(float(v.mean()), 1e-12) for n, v in importances.items()}
        allv = np.concatenate(list(norm.values()))
        k = int(round(sparsity * allv.size))
        thresh = np.sort(allv)[k - 1] if k else -np.inf
        counts = {n: max(1, int((v > thresh).sum())) for n, v in norm.items()}
    else:
        counts = {n: max(1, int(round(len(v) * (1.0 - sparsity)))) for n, v in importances.items()}
    for n, v in importances.items():
        c = counts[n]
        if round_to and round_to > 1:
            c = min(len(v), max(round_to, int(round(c / round_to)) * round_to))
        keep[n] = np.sort(np.argsort(-v, kind="stable")[:c])
    return keep


def structured_prune_onnx(
    model: Any,
    layers: Sequence[OnnxLayer],
    sparsity: float,
    *,
    global_scope: bool = False,
    p: int = 1,
    round_to: int | None = None,
) -> Any:
    """A copy of ``model`` with ``sparsity`` of the output channels of each of ``layers`` removed
    (lowest L``p`` norm first), and the next layer's inputs with them. ``layers`` come from
    ``find_layers(model)``. Raises OptimizationError naming the op that blocks it."""
    model = copy.deepcopy(model)
    all_layers = find_layers(model)  # re-bind to the copy's nodes
    by_name = {layer.name: layer for layer in all_layers}
    targets = [by_name[layer.name] for layer in layers]
    layers_by_node = {layer.index: layer for layer in all_layers}
    shapes = _static_shapes(model)
    traced: list[_Chain | None] = []
    blocked: list[tuple[OnnxLayer, OptimizationError]] = []
    for layer in targets:
        try:
            traced.append(_trace(model, layer, layers_by_node, shapes))
        except OptimizationError as exc:
            blocked.append((layer, exc))
    if len(blocked) == 1:
        raise blocked[0][1]
    if blocked:  # name every blocked layer at once, not one per run
        first = blocked[0][1]
        raise OptimizationError(
            f"{first.message}. {len(blocked) - 1} more layer(s) are blocked too: "
            + ", ".join(f"'{layer.name}'" for layer, _ in blocked[1:])
            + "; to prune the others, exclude all of them: "
            + " ".join(f"--exclude {layer.name}" for layer, _ in blocked),
            layer=first.layer,
            op=first.op,
        )
    chains = [c for c in traced if c is not None]
    if not chains:
        raise UsageError("structured pruning: every layer left to prune produces a model output")
    arrays = _arrays(model)
    importances = {
        c.layer.name: _channel_importance(arrays[c.layer.weight], c.layer.out_axis, p)
        for c in chains
    }
    keep = _keep_counts(importances, sparsity, global_scope, round_to)
    _unshare(model, chains)
    arrays = _arrays(model)
    for chain in chains:
        idx = keep[chain.layer.name]
        _apply(model, arrays, chain, idx)
    del model.graph.value_info[:]
    return model


def _unshare(model: Any, chains: Sequence[_Chain]) -> None:
    """Give every initializer that will be sliced, and is used by more than one node, its own copy."""
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for inp in node.input:
            uses[inp] = uses.get(inp, 0) + 1
    inits = {i.name: i for i in model.graph.initializer}
    nodes = []
    for c in chains:
        nodes += [c.layer.node, *c.channelwise] + ([c.consumer.node] if c.consumer else [])
        if c.flatten is not None:
            nodes.append(c.flatten)
    for n_i, node in enumerate(nodes):
        for j, inp in enumerate(node.input):
            if inp in inits and uses.get(inp, 0) > 1:
                new = copy.deepcopy(inits[inp])
                new.name = f"{inp}__pruned_{n_i}_{j}"
                model.graph.initializer.append(new)
                node.input[j] = new.name
                uses[inp] -= 1
    for c in chains:  # the layer's weight/bias names may have changed
        c.layer.weight = c.layer.node.input[1]
        c.layer.bias = c.layer.node.input[2] if c.layer.bias is not None else None
        if c.consumer is not None:
            c.consumer.weight = c.consumer.node.input[1]


def _apply(model: Any, arrays: dict[str, np.ndarray], chain: _Chain, idx: np.ndarray) -> None:
    layer = chain.layer
    w = arrays[layer.weight]
    arrays[layer.weight] = np.take(w, idx, axis=layer.out_axis)
    _set_initializer(model, layer.weight, arrays[layer.weight])
    if layer.bias is not None:
        arrays[layer.bias] = np.take(
            arrays[layer.bias], idx, axis=-1 if arrays[layer.bias].ndim else 0
        )
        _set_initializer(model, layer.bias, arrays[layer.bias])
    n_channels = w.shape[layer.out_axis]
    # channel axis: 1 for Conv outputs (N, C, ...), last for Gemm/MatMul outputs (N, F)
    conv = layer.node.op_type == "Conv"
    for node in chain.channelwise:
        for name in [i for i in node.input if i in arrays]:
            a = arrays[name]
            axis = _channel_axis_of_param(a, n_channels, conv, node)
            if axis is None:
                continue
            arrays[name] = np.take(a, idx, axis=axis)
            _set_initializer(model, name, arrays[name])
    consumer = chain.consumer
    if chain.flatten is not None:
        k = chain.per_channel
        features = (idx[:, None] * k + np.arange(k)[None, :]).reshape(-1)
        if chain.flatten.op_type == "Reshape":
            shape = arrays[chain.flatten.input[1]].copy()
            old = n_channels * k
            if old in shape:
                shape[list(shape).index(old)] = len(features)
                arrays[chain.flatten.input[1]] = shape
                _set_initializer(model, chain.flatten.input[1], shape)
    else:
        features = idx
    if consumer is not None:
        cw = arrays[consumer.weight]
        arrays[consumer.weight] = np.take(cw, features, axis=consumer.in_axis)
        _set_initializer(model, consumer.weight, arrays[consumer.weight])


def _channel_axis_of_param(a: np.ndarray, n_channels: int, conv: bool, node: Any) -> int | None:
    """Which axis of a per-channel parameter (BN scale, bias constant, PRelu slope) indexes channels."""
    if a.ndim == 0 or a.size == 1:
        return None
    if node.op_type in ("BatchNormalization", "InstanceNormalization") or a.ndim == 1:
        if a.shape[0] != n_channels:
            raise OptimizationError(
                f"structured pruning on ONNX: {node.op_type} '{node.name}' has a parameter of shape "
                f"{list(a.shape)} that does not match the {n_channels} channels before it",
                op=node.op_type,
            )
        return 0
    # broadcast constant: (C, 1, 1) / (1, C, 1, 1) for conv outputs, (..., F) for linear outputs
    if conv:
        axis = a.ndim - 3 if a.ndim >= 3 else None
    else:
        axis = a.ndim - 1
    if axis is None or a.shape[axis] != n_channels:
        raise OptimizationError(
            f"structured pruning on ONNX: {node.op_type} '{node.name}' has a constant of shape {list(a.shape)} "
            f"that is not per-channel over {n_channels} channels",
            op=node.op_type,
        )
    return axis
