"""PyTorch sources: nn.Module (object, factory or class + state_dict), TorchScript, ExportedProgram.

Exporter choice: torch.onnx's dynamo exporter first; when it fails, or when its graph breaks parity
(it happens: pytorch/pytorch#169178), the TorchScript exporter. The exporter used, and why, is
recorded. Reference outputs come from a deep copy of the module taken before export, because an
export can change the module's state.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import io
import json
import logging
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Feed, describe_generated, generate_feed
from ..errors import ConversionError, InputError, UsageError, require
from ..package import file_sha256
from ..progress import phase
from ..signature import Signature
from ..verify import verify_model
from .base import ConvertConfig, DynamicAxes, Exported, Source

__all__ = [
    "convert_torch",
    "convert_torchscript",
    "convert_exported_program",
    "export_module",
    "torch_versions",
    "import_target",
    "bind_inputs",
    "InputBinding",
]


def import_target(target: str) -> Any:
    """Resolve "package.module:attr" or "path/to/file.py:attr" to the object."""
    if ":" not in target:
        raise UsageError(
            f"'{target}' should be 'module.path:name' (or 'file.py:name'), e.g. 'mymodels:build'"
        )
    mod_name, _, attr = target.rpartition(":")
    try:
        if mod_name.endswith(".py") or "/" in mod_name:
            path = Path(mod_name)
            if not path.is_file():
                raise ConversionError(
                    f"no Python file at '{path}' (from '{target}')", path=str(path)
                )
            spec = importlib.util.spec_from_file_location(f"_modelport_user_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[spec.name] = module  # type: ignore[union-attr]
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            if "" not in sys.path and "." not in sys.path:
                sys.path.insert(0, "")
            module = importlib.import_module(mod_name)
    except ConversionError:
        raise
    except ImportError as exc:
        raise ConversionError(
            f"cannot import module '{mod_name}' (from '{target}'): {exc}. Check the name and that "
            "its directory is on PYTHONPATH (the current directory is searched).",
            path=mod_name,
        ) from exc
    except Exception as exc:
        raise ConversionError(
            f"importing '{mod_name}' failed: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        names = sorted(n for n in dir(module) if not n.startswith("_"))
        raise ConversionError(
            f"module '{mod_name}' has no attribute '{attr}'; it defines: {names[:20]}",
            path=mod_name,
        ) from None


def _torch() -> Any:
    return require("torch", "torch")


def load_module(source: Source) -> tuple[Any, dict[str, Any]]:
    """The nn.Module a torch Source describes, in eval mode, plus provenance facts."""
    torch = _torch()
    prov: dict[str, Any] = {}
    if source.obj is not None:
        module = source.obj
        prov["source_path"] = f"<in-memory {type(module).__name__}>"
    elif source.target and source.weights:
        cls = import_target(source.target)
        try:
            module = cls(**dict(source.init_args))
        except Exception as exc:
            raise ConversionError(
                f"cannot construct {source.target}(**{dict(source.init_args)}): {exc}. "
                "Pass constructor arguments with --init-args '{\"name\": value}'."
            ) from exc
        weights = Path(source.weights)
        if not weights.is_file():
            raise ConversionError(f"weights file '{weights}' does not exist", path=str(weights))
        if _zip_kind(weights) == "torchscript":
            raise ConversionError(
                f"'{weights}' is a TorchScript archive (torch.jit.save), not a state_dict: convert "
                f"it with --torchscript {weights} (Python: Source.torchscript(path))",
                path=str(weights),
            )
        try:
            state = torch.load(str(weights), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConversionError(
                f"cannot load '{weights}' as a state_dict with weights_only=True: {exc}. "
                "modelport only reads plain state_dicts (no pickled code); save one with "
                "torch.save(model.state_dict(), path).",
                path=str(weights),
            ) from exc
        if (
            isinstance(state, Mapping)
            and "state_dict" in state
            and isinstance(state["state_dict"], Mapping)
        ):
            state = state["state_dict"]
        if not isinstance(state, Mapping):
            raise ConversionError(f"'{weights}' holds a {type(state).__name__}, not a state_dict")
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ConversionError(
                f"the weights in '{weights}' do not fit {source.target}: "
                f"{str(exc).splitlines()[0]} — check --init-args (layer sizes) and the class.",
                path=str(weights),
            ) from exc
        prov.update(
            source_path=str(weights), source_sha256=file_sha256(weights), source_class=source.target
        )
    elif source.target:
        factory = import_target(source.target)
        try:
            module = (
                factory(**dict(source.init_args))
                if callable(factory) and not isinstance(factory, torch.nn.Module)
                else factory
            )
        except Exception as exc:
            raise ConversionError(
                f"calling {source.target}() failed: {type(exc).__name__}: {exc}"
            ) from exc
        prov["source_path"] = source.target
        mod_file = getattr(
            sys.modules.get(getattr(factory, "__module__", ""), None), "__file__", None
        )
        if mod_file:
            prov["source_sha256"] = file_sha256(mod_file)
    else:
        raise UsageError("a torch source needs a module object, a factory or a class with weights")
    if not isinstance(module, torch.nn.Module):
        raise ConversionError(
            f"{source.describe()} gave a {type(module).__name__}, not a torch.nn.Module"
        )
    module.eval()
    return module, prov


def _flatten_outputs(out: Any) -> tuple[list[str] | None, list[Any]]:
    """(names or None, tensors) for a tensor, a tuple/list of tensors, or a dict/ModelOutput."""
    torch = _torch()
    if isinstance(out, torch.Tensor):
        return None, [out]
    if isinstance(out, Mapping):
        items = [(k, v) for k, v in out.items() if v is not None]
        bad = [k for k, v in items if not isinstance(v, torch.Tensor)]
        if bad:
            raise ConversionError(f"model outputs {bad} are not tensors; return tensors only")
        return [k for k, _ in items], [v for _, v in items]
    if isinstance(out, list | tuple):
        flat = []
        for v in out:
            if not isinstance(v, torch.Tensor):
                raise ConversionError(
                    f"the model returns a nested {type(v).__name__} inside its outputs; "
                    "return a tensor, a tuple of tensors or a dict of tensors"
                )
            flat.append(v)
        return None, flat
    raise ConversionError(f"the model returned a {type(out).__name__}; return tensors")


def _tuple_outputs(module: Any) -> Any:
    """``module`` wrapped so that dict outputs (ModelOutput...) come out as a tuple in key order.

    The class is defined here, not at module level, so that importing this module needs no torch.
    """
    torch = _torch()

    class TupleOutputs(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> Any:
            out = self.inner(*args)
            if isinstance(out, Mapping):
                return tuple(v for v in out.values() if v is not None)
            if isinstance(out, torch.Tensor):
                return out
            return tuple(out)

    return TupleOutputs(module)


# --- inputs bound to forward()'s parameters by name ---------------------------------------------


@dataclass(frozen=True)
class Param:
    """One parameter of forward(): its name, how it is passed and whether it has a default."""

    name: str
    kind: str  # "positional_only", "positional", "keyword_only", "var_positional", "var_keyword"
    required: bool


def forward_params(module: Any) -> list[Param] | None:
    """forward()'s parameters (without self), or None when they cannot be read."""
    import inspect

    schema = getattr(getattr(module, "forward", None), "schema", None)
    if schema is not None:  # a ScriptModule: the TorchScript schema names its arguments
        return [
            Param(a.name, "positional", not a.has_default_value())
            for a in schema.arguments
            if a.name != "self"
        ]
    try:
        sig = inspect.signature(module.forward)
    except (TypeError, ValueError):
        return None
    kinds = {
        inspect.Parameter.POSITIONAL_ONLY: "positional_only",
        inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
        inspect.Parameter.KEYWORD_ONLY: "keyword_only",
        inspect.Parameter.VAR_POSITIONAL: "var_positional",
        inspect.Parameter.VAR_KEYWORD: "var_keyword",
    }
    return [
        Param(p.name, kinds[p.kind], p.default is inspect.Parameter.empty)
        for p in sig.parameters.values()
    ]


@dataclass(frozen=True)
class InputBinding:
    """How the graph's inputs reach forward(): ``names`` in graph order; ``positional`` of them
    are passed by position, the rest by keyword (``keywords[i]`` is the parameter name)."""

    names: tuple[str, ...]
    positional: int
    keywords: tuple[str, ...] = ()
    note: str | None = None

    @property
    def direct(self) -> bool:
        """True when forward() can be called with the graph's inputs in order, by position."""
        return not self.keywords

    def call(self, module: Any, tensors: Sequence[Any]) -> Any:
        args = list(tensors[: self.positional])
        kwargs = dict(zip(self.keywords, tensors[self.positional :], strict=True))
        return module(*args, **kwargs)


def bind_inputs(module: Any, keys: Sequence[str]) -> InputBinding:
    """Match input names (``.npz`` keys, ``--input`` names) to forward()'s parameters by name.

    Names that are parameter names bind to those parameters whatever their order; the graph's
    inputs then follow forward()'s parameter order. Positional-only parameters are passed by
    position, keyword-only ones by keyword. When no name is a parameter name (forward(*args), or
    arrays saved under other names), inputs bind by position in the order given, with a note.
    """
    params = forward_params(module)
    keys = list(keys)
    if params is None:
        return InputBinding(tuple(keys), len(keys), note=_positional_note(keys, None))
    named = [p for p in params if p.kind not in ("var_positional", "var_keyword")]
    by_name = {p.name: p for p in named}
    matched = [k for k in keys if k in by_name]
    var_kw = any(p.kind == "var_keyword" for p in params)
    var_pos = any(p.kind == "var_positional" for p in params)
    shown = "forward(" + ", ".join(_shown(p) for p in params) + ")"
    if not matched and not var_kw:
        positional = [p for p in named if p.kind in ("positional_only", "positional")]
        if len(keys) > len(positional) and not var_pos:
            raise UsageError(
                f"the inputs {keys} match no parameter of {shown}, and there are more of them "
                "than positional parameters; name each array (or --input) after the parameter "
                "it is for"
            )
        need = [p.name for p in positional[len(keys) :] if p.required]
        need += [p.name for p in named if p.kind == "keyword_only" and p.required]
        if need:
            raise UsageError(
                f"{shown} needs {need}, which the inputs {keys} do not provide; name each array "
                "(or --input) after the parameter it is for"
            )
        return InputBinding(tuple(keys), len(keys), note=_positional_note(keys, shown))
    unknown = [k for k in keys if k not in by_name]
    if unknown and not var_kw:
        raise UsageError(
            f"input(s) {unknown} match no parameter of {shown}; name each array (or --input) "
            "after the parameter it is for"
        )
    missing = [p.name for p in named if p.required and p.name not in keys]
    if missing:
        raise UsageError(
            f"{shown} needs {missing}, but the inputs are {keys}; add them to --example-inputs "
            "(or as --input specs)"
        )
    order = [p.name for p in named if p.name in keys] + unknown
    # by position while the parameters are given in order, then by keyword
    positional = 0
    for p in named:
        if p.kind == "keyword_only" or p.name not in keys:
            break
        positional += 1
    for p in named[positional:]:
        if p.kind == "positional_only" and p.name in keys:
            gap = [q.name for q in named[: named.index(p)] if q.name not in keys]
            raise UsageError(
                f"{shown}: positional-only parameter '{p.name}' comes after {gap}, which the "
                "inputs do not provide; positional-only parameters can only be given in order"
            )
    return InputBinding(tuple(order), positional, tuple(order[positional:]))


def _shown(p: Param) -> str:
    name = {"var_positional": f"*{p.name}", "var_keyword": f"**{p.name}"}.get(p.kind, p.name)
    return name if p.required or p.kind.startswith("var") else f"{name}=..."


def _positional_note(keys: Sequence[str], shown: str | None) -> str | None:
    if len(keys) < 2:
        return None
    where = shown or "forward()"
    return (
        f"inputs {list(keys)} bound to {where} by position, in the order given (no input is "
        "named after a parameter); name them after the parameters to bind them by name"
    )


def _bound_module(module: Any, binding: InputBinding) -> Any:
    """``module`` behind a forward(*args) that passes the graph's inputs as ``binding`` says."""
    torch = _torch()

    class BoundInputs(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> Any:
            return binding.call(self.inner, args)

    return BoundInputs(module)


def torch_reference(module: Any, input_names: Sequence[str], binding: InputBinding | None = None):
    """A callable feed -> list of numpy outputs, running ``module`` under no_grad; the feed's
    arrays reach forward()'s parameters by name as ``binding`` says (else in ``input_names``
    order, by position)."""
    torch = _torch()
    binding = binding or InputBinding(tuple(input_names), len(input_names))

    def run(feed: Feed) -> list[np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(feed[n])) for n in binding.names]
        with torch.no_grad():
            out = binding.call(module, args)
        _, tensors = _flatten_outputs(out)
        return [t.detach().cpu().numpy() for t in tensors]

    return run


def _example_feed(config: ConvertConfig, module: Any = None) -> tuple[Feed, dict[str, str]]:
    """The example inputs, and for generated ones how they were made (name -> description).

    Generated integer inputs take their range from ``--input ...:LOW..HIGH``, else from the
    module: an input that goes straight into an ``nn.Embedding`` gets [0, num_embeddings).
    """
    if config.example is not None:
        return {k: np.asarray(v) for k, v in config.example.items()}, {}
    if not config.inputs:
        raise UsageError(
            "a PyTorch model needs example inputs: give --example-inputs FILE.npz or describe "
            "each input with --input name:shape:dtype (e.g. --input x:batch,3,32,32:float32)"
        )
    sig = Signature(tuple(config.inputs))
    dims = {d: (2 if d == "batch" else 8) for d in sig.symbolic_dims()}
    ranges = dict(config.input_ranges)
    found: dict[str, tuple[float, float]] = {}
    if module is not None:
        probe = generate_feed(sig, dims, ranges={t.name: (0, 1) for t in sig.inputs})
        found = {k: v for k, v in embedding_ranges(module, probe).items() if k not in ranges}
    feed = generate_feed(sig, dims, ranges={**found, **ranges})
    how = {}
    for t in sig.inputs:
        how[t.name] = describe_generated(t, feed[t.name], ranges.get(t.name))
        if t.name in found:
            how[t.name] += " (the range of the nn.Embedding it feeds)"
    return feed, how


def embedding_ranges(module: Any, feed: Feed) -> dict[str, tuple[float, float]]:
    """Inputs that ``module`` passes unchanged to an ``nn.Embedding``: [0, num_embeddings).

    Found by running ``module`` once on ``feed`` (integer inputs all zero) with hooks on its
    embeddings; a module that fails on that run yields no ranges.
    """
    torch = _torch()
    embeddings = [
        m for m in module.modules() if isinstance(m, torch.nn.Embedding | torch.nn.EmbeddingBag)
    ]
    if not embeddings:
        return {}
    try:
        binding = bind_inputs(module, list(feed))
    except UsageError:
        return {}
    tensors = {n: torch.from_numpy(np.ascontiguousarray(feed[n])) for n in binding.names}
    found: dict[str, int] = {}

    def hook(mod: Any, args: tuple) -> None:
        if not args or not isinstance(args[0], torch.Tensor):
            return
        for name, t in tensors.items():
            if args[0] is t or (
                args[0].data_ptr() == t.data_ptr() and args[0].numel() == t.numel()
            ):
                found[name] = min(found.get(name, mod.num_embeddings), mod.num_embeddings)

    handles = [m.register_forward_pre_hook(hook) for m in embeddings]
    try:
        with torch.no_grad():
            binding.call(module, [tensors[n] for n in binding.names])
    except Exception:  # the probe is a hint; the real run reports errors
        pass
    finally:
        for h in handles:
            h.remove()
    return {k: (0.0, float(v)) for k, v in found.items() if v > 0}


def _dynamic_axes(
    config: ConvertConfig, input_names: Sequence[str], feed: Feed
) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {n: {} for n in input_names}
    for spec in config.inputs:
        for axis, name in spec.dynamic_axes.items():
            axes.setdefault(spec.name, {})[axis] = name
    if config.dynamic_batch:
        for n in input_names:
            if np.ndim(feed[n]) > 0:
                axes[n].setdefault(0, "batch")
    for n, m in config.dynamic.items():
        if n not in axes:
            raise UsageError(f"--dynamic names input '{n}', but the inputs are {list(input_names)}")
        for axis, name in m.items():
            if axis >= np.ndim(feed[n]):
                raise UsageError(
                    f"--dynamic {n}:{axis}: input '{n}' has only {np.ndim(feed[n])} dims"
                )
            axes[n][int(axis)] = name
    return {k: v for k, v in axes.items() if v}


def _widen_batch(feed: Feed, axes: DynamicAxes) -> Feed:
    """Tracing with a dynamic dim of size 1 specializes it; export with batch >= 2 instead."""
    out = dict(feed)
    for name, m in axes.items():
        for axis, dim in m.items():
            if dim == "batch" and out[name].shape[axis] == 1:
                out[name] = np.concatenate([out[name], out[name]], axis=axis)
    return out


def export_module(
    module: Any,
    feed: Feed,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic: DynamicAxes,
    opset: int | None,
    exporter: str,
    varargs: bool = False,
) -> Any:
    """Export with one exporter ("dynamo" or "torchscript"); return an onnx.ModelProto."""
    torch = _torch()
    import onnx

    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    args = tuple(torch.from_numpy(np.ascontiguousarray(feed[n])) for n in input_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            dims: dict[str, Any] = {}
            shapes = []
            for n in input_names:
                m = dynamic.get(n, {})
                shapes.append(
                    {
                        a: dims.setdefault(d, torch.export.Dim(_ident(d), min=1))
                        for a, d in m.items()
                    }
                    or None
                )
            program = torch.onnx.export(
                module,
                args,
                input_names=list(input_names),
                output_names=list(output_names),
                opset_version=opset,
                dynamo=True,
                # a wrapper's forward takes *args: then one tuple holds every input's shapes
                dynamic_shapes=(tuple(shapes),) if varargs else tuple(shapes),
                external_data=False,
                optimize=True,
                verbose=False,
            )
            proto = program.model_proto
            _rename_dims(proto, {(_ident(d)): d for m in dynamic.values() for d in m.values()})
        else:
            out_axes = (
                {n: {0: "batch"} for n in output_names}
                if any(d == "batch" for m in dynamic.values() for d in m.values())
                else {}
            )
            buf = io.BytesIO()
            torch.onnx.export(
                module,
                args,
                buf,
                input_names=list(input_names),
                output_names=list(output_names),
                opset_version=min(opset or 17, 20),
                dynamo=False,
                dynamic_axes={**{k: dict(v) for k, v in dynamic.items()}, **out_axes},
                do_constant_folding=True,
            )
            proto = onnx.load_from_string(buf.getvalue())
    return proto


def _error_summary(exc: BaseException) -> str:
    """The useful line of an exporter error (torch.export buries it under a banner)."""
    text = str(exc).strip()
    if "## Exception summary" in text:
        text = text.split("## Exception summary", 1)[1].strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:400]


def _ident(name: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return out if out and not out[0].isdigit() else f"d_{out}"


def _rename_dims(proto: Any, names: Mapping[str, str]) -> None:
    for vi in [*proto.graph.input, *proto.graph.output]:
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param in names:
                d.dim_param = names[d.dim_param]


def torch_versions() -> dict[str, str]:
    """The versions of torch, onnx and (when imported) onnxscript and transformers, for the
    provenance of a package exported with torch."""
    torch = _torch()
    import onnx

    versions = {"torch": torch.__version__, "onnx": onnx.__version__}
    for mod in ("onnxscript", "transformers"):
        m = sys.modules.get(mod)
        if m is not None:
            versions[mod] = getattr(m, "__version__", "?")
    return versions


def _first_call(module: Any, binding: InputBinding, feed: Feed, generated: Mapping[str, str]):
    """The source's outputs on ``feed``; when it rejects generated inputs, an InputError that
    names them and says how to give real ones."""
    torch = _torch()
    try:
        with torch.no_grad():
            return binding.call(
                module, [torch.from_numpy(np.ascontiguousarray(feed[n])) for n in binding.names]
            )
    except Exception as exc:
        if not generated:
            raise ConversionError(
                f"the model failed on the example inputs: {type(exc).__name__}: "
                f"{_error_summary(exc)}"
            ) from exc
        ints = [n for n in generated if np.asarray(feed[n]).dtype.kind in "iu"]
        suspects = ints or list(generated)
        how = "; ".join(f"'{n}': {generated[n]}" for n in suspects)
        first = suspects[0]
        raise InputError(
            f"the model rejected the generated inputs ({type(exc).__name__}: "
            f"{_error_summary(exc)}). Generated {how}. Give real inputs with --example-inputs "
            f"FILE.npz (one array per input name), or a value range for the input, e.g. "
            f"--input {first}:{_spec_text(feed[first])}:LOW..HIGH",
            input=first,
        ) from None


def _spec_text(arr: np.ndarray) -> str:
    shape = ",".join(["batch", *map(str, np.shape(arr)[1:])])
    return f"{shape}:{np.asarray(arr).dtype}"


def export_with_fallback(
    module: Any,
    reference_module: Any,
    config: ConvertConfig,
    feed: Feed,
    input_names: Sequence[str],
    default_output_names: Sequence[str] | None = None,
    verify_config: Any = None,
    *,
    binding: InputBinding | None = None,
    generated: Mapping[str, str] | None = None,
) -> tuple[Any, str, list[str], Any, dict[str, dict[int, str]], list[str]]:
    """Export ``module``; with exporter="auto" try dynamo, fall back to TorchScript on failure
    or broken parity. Returns (proto, exporter, output_names, report, dynamic axes, notes).

    ``binding`` says how the inputs reach forward() (default: ``input_names`` by position);
    ``generated`` describes the inputs that were generated (name -> how), so that a source that
    rejects them gets an error naming them and the fix.
    """
    binding = binding or InputBinding(tuple(input_names), len(input_names))
    input_names = list(binding.names)
    reference = torch_reference(reference_module, input_names, binding)
    with phase("reference"):
        sample = _first_call(reference_module, binding, feed, generated or {})
    names, tensors = _flatten_outputs(sample)
    output_names = (
        list(config.output_names)
        or names
        or list(default_output_names or [])
        or (["output"] if len(tensors) == 1 else [f"output_{i}" for i in range(len(tensors))])
    )
    if len(output_names) != len(tensors):
        raise UsageError(
            f"{len(output_names)} output names given but the model returns {len(tensors)} outputs"
        )
    dynamic = _dynamic_axes(config, input_names, feed)
    export_feed = _widen_batch(feed, dynamic)
    # dict outputs (ModelOutput...) are flattened to a tuple by a wrapper; ScriptModules and
    # plain tensor/tuple outputs are exported as they are.
    wrapped = module if binding.direct else _bound_module(module, binding)
    wrapped = _tuple_outputs(wrapped) if isinstance(sample, Mapping) else wrapped
    order = ["dynamo", "torchscript"] if config.exporter == "auto" else [config.exporter]
    notes: list[str] = []
    last_error: Exception | None = None
    fallback: tuple | None = None
    for exporter in order:
        try:
            with phase("export", detail=exporter):
                proto = export_module(
                    copy.deepcopy(wrapped) if exporter != order[-1] else wrapped,
                    export_feed,
                    input_names,
                    output_names,
                    dynamic,
                    config.opset,
                    exporter,
                    varargs=wrapped is not module,
                )
        except Exception as exc:
            last_error = exc
            msg = _error_summary(exc)
            notes.append(f"{exporter} exporter failed: {type(exc).__name__}: {msg}")
            continue
        report = verify_model(
            proto, reference, feed, verify_config or config.verify, declared_dynamic=dynamic
        )
        if report.passed or exporter == order[-1]:
            if not report.passed and fallback is not None:
                # both exporters produced graphs; keep the one with fewer failures
                if len(fallback[3].failures()) <= len(report.failures()):
                    notes.append(
                        f"{exporter} exporter's graph failed parity too; kept {fallback[1]}'s"
                    )
                    return (*fallback, dynamic, notes)
            return proto, exporter, output_names, report, dynamic, notes
        notes.append(
            f"{exporter} exporter's graph failed parity ({report.failures()[0]}); trying the next exporter"
        )
        fallback = (proto, exporter, output_names, report)
    if fallback is not None:
        return (*fallback, dynamic, notes)
    raise ConversionError(
        "no exporter could convert the model: "
        + "; ".join(notes)
        + ". If an op is unsupported, try another --opset or rewrite that part of the model."
    ) from last_error


def convert_torch(source: Source, config: ConvertConfig) -> Exported:
    with phase("load"):
        module, prov = load_module(source)
        reference_module = copy.deepcopy(module)  # exporting may change the module's state
    feed, generated = _example_feed(config, reference_module)
    input_names = list(config.input_names) or list(feed)
    missing = [n for n in input_names if n not in feed]
    if missing:
        raise UsageError(f"example inputs lack {missing}; they hold {list(feed)}")
    binding = bind_inputs(module, input_names)
    proto, exporter, _, report, dynamic, notes = export_with_fallback(
        module, reference_module, config, feed, input_names, binding=binding, generated=generated
    )
    if binding.note:
        notes.insert(0, binding.note)
    prov.update(source_kind="torch", frameworks=torch_versions(), exporter=exporter)
    if source.init_args:
        prov["init_args"] = json.loads(json.dumps(dict(source.init_args), default=str))
    return Exported(
        proto,
        torch_reference(reference_module, input_names, binding),
        feed,
        dynamic,
        prov,
        exporter,
        notes,
        report=report,
    )


def convert_torchscript(source: Source, config: ConvertConfig) -> Exported:
    torch = _torch()
    path = Path(source.path or "")
    if not path.is_file():
        raise ConversionError(f"TorchScript file '{path}' does not exist", path=str(path))
    try:
        with phase("load"):
            module = torch.jit.load(str(path), map_location="cpu")
            reference_module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        if _zip_kind(path) == "torch.save":
            raise ConversionError(
                f"'{path}' is not a TorchScript archive but a torch.save file (a state_dict or a "
                "pickled module): convert a state_dict with --torch MODULE:CLASS --weights "
                f"{path}, or save TorchScript with torch.jit.save(torch.jit.script(model), path)",
                path=str(path),
            ) from exc
        raise ConversionError(
            f"'{path}' is not a TorchScript archive (torch.jit.save): {str(exc).splitlines()[0]}",
            path=str(path),
        ) from exc
    module.eval()
    reference_module.eval()
    feed, generated = _example_feed(config, reference_module)
    input_names = list(config.input_names) or list(feed)
    binding = bind_inputs(module, input_names)
    # TorchScript modules export natively through the TorchScript exporter
    cfg = config if config.exporter != "auto" else _replace(config, exporter="torchscript")
    proto, exporter, _, report, dynamic, notes = export_with_fallback(
        module, reference_module, cfg, feed, input_names, binding=binding, generated=generated
    )
    if binding.note:
        notes.insert(0, binding.note)
    prov = {
        "source_kind": "torchscript",
        "source_path": str(path),
        "source_sha256": file_sha256(path),
        "frameworks": torch_versions(),
        "exporter": exporter,
    }
    return Exported(
        proto,
        torch_reference(reference_module, input_names, binding),
        feed,
        dynamic,
        prov,
        exporter,
        notes,
        report=report,
    )


def convert_exported_program(source: Source, config: ConvertConfig) -> Exported:
    torch = _torch()
    path = Path(source.path or "")
    if not path.is_file():
        raise ConversionError(f"ExportedProgram file '{path}' does not exist", path=str(path))
    try:
        with phase("load"):
            program = torch.export.load(str(path))
    except Exception as exc:
        raise ConversionError(
            f"'{path}' is not an ExportedProgram archive (torch.export.save): {str(exc).splitlines()[0]}",
            path=str(path),
        ) from exc
    module = program.module()
    own = None if (config.example is not None or config.inputs) else _program_example(program)
    feed, _ = (own, {}) if own is not None else _example_feed(config, module)
    input_names = list(config.input_names) or list(feed)
    _check_program_shapes(program, feed)
    reference = torch_reference(module, input_names)
    # An ExportedProgram carries its own dynamic shapes; it is exported as it is.
    import onnx

    try:
        with phase("export", detail="dynamo"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onnx_program = torch.onnx.export(
                program,
                input_names=input_names,
                output_names=list(config.output_names) or None,
                opset_version=config.opset,
                dynamo=True,
                external_data=False,
            )
        proto = onnx_program.model_proto
    except Exception as exc:
        raise ConversionError(f"exporting the ExportedProgram failed: {exc}") from exc
    proto = onnx.load_from_string(proto.SerializeToString())
    sig = Signature.from_onnx(proto)
    if sig.inputs and sig.inputs[0].shape and isinstance(sig.inputs[0].shape[0], str):
        _rename_dims(proto, {sig.inputs[0].shape[0]: "batch"})  # torch.export names it s0, s77...
        sig = Signature.from_onnx(proto)
    dynamic = {t.name: t.dynamic_axes for t in sig.inputs if t.dynamic_axes}
    notes = []
    if own is not None:
        notes.append(
            "example inputs: the ones the ExportedProgram was exported with ("
            + ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in own.items())
            + "); give --example-inputs with real ones to verify on your data"
        )
    if not dynamic:
        notes.append(
            "the ExportedProgram has no dynamic dims (export it with dynamic_shapes to get them); "
            "only the example's shapes are verified"
        )
    prov = {
        "source_kind": "exported_program",
        "source_path": str(path),
        "source_sha256": file_sha256(path),
        "frameworks": torch_versions(),
        "exporter": "dynamo",
    }
    vcfg = config.verify
    if not dynamic:
        vcfg = _replace(vcfg, batch_sizes=())
    return Exported(proto, reference, feed, dynamic, prov, "dynamo", notes, verify_config=vcfg)


def _zip_kind(path: Path) -> str:
    """ "torchscript" (torch.jit.save), "torch.save", or "" for a file that is neither zip layout."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = [n.split("/", 1)[-1] for n in z.namelist()]
    except (OSError, zipfile.BadZipFile):
        return ""
    if "constants.pkl" in names or any(n.startswith("code/") for n in names):
        return "torchscript"
    return "torch.save" if "data.pkl" in names else ""


def _check_program_shapes(program: Any, feed: Feed) -> None:
    """Refuse example inputs whose fixed dims the program's own input specs contradict."""
    metas = {
        n.name: n.meta.get("val")
        for n in program.graph.nodes
        if n.op == "placeholder" and n.name in program.graph_signature.user_inputs
    }
    for name, value in feed.items():
        val = metas.get(name)
        if val is None or not hasattr(val, "shape"):
            continue
        want = [d if isinstance(d, int) else str(d) for d in val.shape]
        got = list(np.shape(value))
        if len(want) != len(got) or any(
            isinstance(w, int) and w != g for w, g in zip(want, got, strict=False)
        ):
            raise UsageError(
                f"the ExportedProgram takes {name} {want} (named dims are dynamic), but the example "
                f"gives {got}; its fixed dims were set by torch.export"
            )


def _program_example(program: Any) -> Feed | None:
    """The example inputs torch.export saved with the program, by input name; None when it holds
    none, or holds keyword or non-tensor inputs (then --input / --example-inputs are asked for)."""
    torch = _torch()
    example = getattr(program, "example_inputs", None)
    names = list(program.graph_signature.user_inputs)
    if not example:
        return None
    args, kwargs = example
    if kwargs or len(args) != len(names) or not all(isinstance(a, torch.Tensor) for a in args):
        return None
    return {n: a.detach().cpu().numpy() for n, a in zip(names, args, strict=True)}


def _replace(obj: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **changes)
