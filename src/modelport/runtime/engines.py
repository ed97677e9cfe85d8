"""Inference engines behind one small interface: ONNX Runtime and OpenVINO.

    from modelport.runtime import EngineConfig, load_engine
    session = load_engine("pkg/model.onnx", EngineConfig(engine="openvino", precision="bf16"))
    outputs = session.run({"x": x})          # name -> array
    session.info.to_dict()                   # what actually ran: engine, device, precision, ...

Both engines read the package's ``model.onnx`` directly (OpenVINO through its ONNX frontend, not
the onnxruntime-openvino wheel). ``precision`` is the precision of the *float* math: "fp32", or
"bf16" (OpenVINO only, where the CPU has native bf16: AMX or AVX-512 BF16). A model with int8
QuantizeLinear/DequantizeLinear nodes (static int8, NNCF) runs those parts in int8 on either
engine; ``info.precision`` reports that, e.g. "int8+bf16", as read from the compiled model.

Nothing here imports an engine at module import: each loads on first use and says which extra
to install when it is missing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import InputError, ModelportError, UsageError, require
from .cpu import read_cpuinfo
from .session import ModelSource, SessionConfig, make_session, run_session

__all__ = [
    "ENGINES",
    "ENGINE_LOADERS",
    "PACKAGE_SPEC",
    "PRECISIONS",
    "EngineConfig",
    "EngineInfo",
    "EngineSession",
    "OpenVINOSession",
    "OrtSession",
    "disabled_precisions",
    "engine_available",
    "engine_config",
    "load_engine",
    "native_precisions",
    "openvino_cache_dir",
    "parse_engine_specs",
]

ENGINES = ("ort", "openvino")
PRECISIONS = ("fp32", "bf16", "fp16")
_ENGINE_ALIASES = {"onnxruntime": "ort", "ov": "openvino"}
DISABLE_ENV = "MODELPORT_DISABLE_PRECISIONS"
CACHE_ENV = "MODELPORT_CACHE_DIR"


@dataclass(frozen=True)
class EngineConfig:
    """Which engine runs a model, and how.

    engine: "ort" (ONNX Runtime) or "openvino".
    precision: the float math: "fp32", "bf16" or "fp16" (the latter two on OpenVINO only, and
        only where the CPU runs them natively; see ``native_precisions``).
    threads: threads for one inference (0 = the engine's default: all cores).
    device: "cpu" (ONNX Runtime's GPU providers are chosen with ``session.providers``).
    session: further ONNX Runtime settings (providers, parallel mode, graph optimization);
        its ``intra_op_threads`` is replaced by ``threads``.
    cache_dir: OpenVINO's compiled-model cache (CACHE_DIR): a later load of the same model with
        the same settings skips compilation. None = $MODELPORT_CACHE_DIR or
        ~/.cache/modelport/openvino; "" = no cache.
    """

    engine: str = "ort"
    precision: str = "fp32"
    threads: int = 0
    device: str = "cpu"
    session: SessionConfig | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        engine = _ENGINE_ALIASES.get(str(self.engine).lower(), str(self.engine).lower())
        object.__setattr__(self, "engine", engine)
        if engine not in ENGINES:
            raise UsageError(f"engine {self.engine!r} is not one of {list(ENGINES)}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision {self.precision!r} is not one of {list(PRECISIONS)}")
        if engine == "ort" and self.precision != "fp32":
            raise UsageError(
                f"precision {self.precision!r}: ONNX Runtime's CPU provider has no "
                f"{self.precision} kernels (it would run them through casts, slower than fp32); "
                "use engine 'openvino' for bf16 on the CPU's matrix units"
            )
        if self.threads < 0:
            raise UsageError(f"threads must be >= 0 (0 = the engine's default), got {self.threads}")
        if self.device != "cpu":
            raise UsageError(f"device {self.device!r}: only 'cpu' is supported by the engines")


@dataclass(frozen=True)
class EngineInfo:
    """What actually ran, as read back from the engine after loading.

    precision: the precision of the heavy ops, e.g. "fp32", "bf16", "int8+fp32", "int8+bf16".
    threads: the threads one inference uses (the engine's own figure where it reports one).
    providers: ONNX Runtime's execution providers (empty for OpenVINO).
    """

    engine: str
    version: str
    device: str
    precision: str
    threads: int
    providers: tuple[str, ...] = ()

    def label(self) -> str:
        return f"{self.engine} {self.precision}, {self.threads} thread(s)"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["providers"] = list(self.providers)
        return d


@runtime_checkable
class EngineSession(Protocol):
    """A loaded model. ``run`` may be called from several threads at once."""

    info: EngineInfo
    input_names: list[str]
    output_names: list[str]

    def run(
        self, feed: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Outputs by name (all when ``outputs`` is None). Bad inputs raise InputError."""
        ...


# --- engine specs: "ort", "openvino:bf16", "package" ----------------------------------------------

PACKAGE_SPEC = "package"


def parse_engine_specs(text: str | Sequence[str], *, check_native: bool = True) -> tuple[str, ...]:
    """``"ort,openvino:bf16,package"`` (or a sequence of specs) -> the specs, each checked.

    A spec is ``engine[:precision]`` (precision defaults to fp32), or ``package``: the engine and
    precision the package's serving section names (what ``modelport serve`` runs). With
    ``check_native``, a precision this CPU does not run natively is refused here (UsageError),
    not when a model loads. Duplicates are dropped, the order kept.
    """
    parts = text.split(",") if isinstance(text, str) else list(text)
    specs = [p.strip().lower() for p in parts if p.strip()]
    if not specs:
        raise UsageError("no engine given: name one or more, e.g. ort,openvino:bf16 (or package)")
    out: list[str] = []
    for spec in specs:
        if spec != PACKAGE_SPEC:
            config = engine_config(spec)  # unknown engine / precision -> UsageError naming it
            spec = (
                config.engine
                if config.precision == "fp32"
                else f"{config.engine}:{config.precision}"
            )
            if check_native and config.precision != "fp32":
                offered = native_precisions(config.engine)
                if config.precision not in offered:
                    raise UsageError(
                        f"engine '{spec}': {config.precision} does not run natively on this CPU "
                        f"({config.engine} offers {list(offered)} here); use "
                        f"'{config.engine}' (fp32)"
                    )
        if spec not in out:
            out.append(spec)
    return tuple(out)


def engine_config(
    spec: str,
    serving: Mapping[str, Any] | None = None,
    *,
    threads: int = 0,
    session: SessionConfig | None = None,
    cache_dir: str | None = None,
) -> EngineConfig:
    """The EngineConfig of one spec (``ort``, ``openvino:bf16``, or ``package`` with the
    package's ``serving`` section: its engine, precision and ``intra_op_threads``, which then
    win over ``threads``, exactly as ``modelport serve`` runs it)."""
    spec = spec.strip()
    if spec.lower() == PACKAGE_SPEC:
        serving = serving or {}
        engine = str(serving.get("engine") or "ort")
        precision = str(serving.get("precision") or "fp32")
        threads = int(serving.get("intra_op_threads") or threads)
    else:
        engine, sep, precision = spec.partition(":")
        if sep and not precision:
            raise UsageError(f"engine '{spec}': give a precision after ':', e.g. openvino:bf16")
        precision = (precision or "fp32").lower()
    return EngineConfig(
        engine=engine, precision=precision, threads=threads, session=session, cache_dir=cache_dir
    )


# --- what the hardware offers -------------------------------------------------------------------


def disabled_precisions() -> frozenset[str]:
    """Precisions switched off with $MODELPORT_DISABLE_PRECISIONS (comma-separated, e.g. "bf16"):
    to plan as on a CPU without them, or to rule one out."""
    raw = os.environ.get(DISABLE_ENV, "")
    return frozenset(p.strip().lower() for p in raw.split(",") if p.strip())


def engine_available(engine: str) -> bool:
    """Whether the engine's Python package is installed (without importing it)."""
    import importlib.util

    module = {"ort": "onnxruntime", "openvino": "openvino"}[engine]
    return importlib.util.find_spec(module) is not None


def native_precisions(
    engine: str = "openvino", cpu_flags: frozenset[str] | None = None
) -> tuple[str, ...]:
    """The float precisions ``engine`` runs natively on this CPU, fastest-first after fp32.

    bf16 needs both OpenVINO's CPU plugin to list BF16 in OPTIMIZATION_CAPABILITIES and the CPU
    flags to show AMX-BF16 or AVX512-BF16 (OpenVINO would otherwise emulate it, slower than
    fp32); fp16 likewise needs AMX-FP16 or AVX512-FP16. ``cpu_flags`` overrides /proc/cpuinfo
    (tests); $MODELPORT_DISABLE_PRECISIONS removes precisions (simulates an older CPU).
    """
    if engine == "ort":
        return ("fp32",)
    flags = cpu_flags if cpu_flags is not None else read_cpuinfo().flags
    caps = set(_openvino_capabilities())
    out = ["fp32"]
    if "BF16" in caps and flags & {"amx_bf16", "avx512_bf16"}:
        out.append("bf16")
    if "FP16" in caps and flags & {"amx_fp16", "avx512_fp16"}:
        out.append("fp16")
    off = disabled_precisions()
    return tuple(p for p in out if p == "fp32" or p not in off)


def _openvino_capabilities() -> tuple[str, ...]:
    ov = _openvino()
    try:
        return tuple(str(c) for c in _core(ov).get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # a CPU plugin that cannot answer offers fp32 only
        return ()


# --- ONNX Runtime -------------------------------------------------------------------------------

_INT8_OPS = {
    "QuantizeLinear",
    "DynamicQuantizeLinear",
    "MatMulInteger",
    "ConvInteger",
    "QLinearMatMul",
    "QLinearConv",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
}


def _graph_precision(model: Any) -> str:
    """'int8+fp32' when the graph holds int8 ops, 'fp16' for a float16 model, else 'fp32'."""
    import onnx

    try:
        proto = (
            model if hasattr(model, "graph") else onnx.load(str(model), load_external_data=False)
        )
    except Exception:
        return "fp32"
    ops = {n.op_type for n in proto.graph.node}
    if ops & _INT8_OPS:
        return "int8+fp32"
    fp16 = any(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 for i in proto.graph.output)
    return "fp16" if fp16 else "fp32"


class OrtSession:
    """ONNX Runtime through ``runtime.session`` (spinning off, the thread count given)."""

    def __init__(self, model: ModelSource, config: EngineConfig) -> None:
        import dataclasses

        ort = require("onnxruntime", "all")
        base = config.session or SessionConfig()
        sconf = dataclasses.replace(base, intra_op_threads=config.threads)
        self.session = make_session(model, sconf)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.info = EngineInfo(
            engine="ort",
            version=str(ort.__version__),
            device="cpu" if self.session.get_providers()[0] == "CPUExecutionProvider" else "gpu",
            precision=_graph_precision(model),
            threads=config.threads or _cores(),
            providers=tuple(self.session.get_providers()),
        )

    def run(
        self, feed: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        _check_names(feed, self.input_names)
        return run_session(self.session, feed, outputs or self.output_names)


def _check_names(feed: Mapping[str, Any], inputs: Sequence[str]) -> None:
    unknown = sorted(set(feed) - set(inputs))
    missing = sorted(set(inputs) - set(feed))
    if unknown or missing:
        raise InputError(
            f"the model rejected the inputs: unknown {unknown}, missing {missing}; "
            f"it takes {list(inputs)}"
        )


# --- OpenVINO -----------------------------------------------------------------------------------

_CORE: Any = None
_CORE_LOCK = threading.Lock()


def _openvino() -> Any:
    return require("openvino", "openvino")


def _core(ov: Any) -> Any:
    """One ``openvino.Core`` per process (it owns the plugins; creating one costs ~100 ms)."""
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            _CORE = ov.Core()
        return _CORE


def openvino_cache_dir(config: EngineConfig) -> str | None:
    """Where OpenVINO keeps compiled models for ``config`` (None: no cache)."""
    if config.cache_dir == "":
        return None
    if config.cache_dir is not None:
        return config.cache_dir
    env = os.environ.get(CACHE_ENV)
    if env == "":
        return None
    root = Path(env) if env else Path.home() / ".cache" / "modelport"
    return str(root / "openvino")


_OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
_OV_HEAVY_OPS = ("FullyConnected", "MatMul", "Convolution", "GroupConvolution", "Deconvolution")


class OpenVINOSession:
    """OpenVINO's CPU plugin reading the ONNX model; one infer request per calling thread."""

    def __init__(self, model: ModelSource, config: EngineConfig) -> None:
        ov = _openvino()
        core = _core(ov)
        if config.precision != "fp32" and config.precision not in native_precisions("openvino"):
            raise UsageError(
                f"precision {config.precision!r} does not run natively on this CPU (OpenVINO "
                f"offers {list(native_precisions('openvino'))} here); use fp32"
            )
        props: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": _OV_PRECISION[config.precision],
            "PERFORMANCE_HINT": "LATENCY",
            # OpenVINO pins its threads to cores by default; with other work on the cores (a
            # server with several models, a shared machine) a pinned thread waits for its core.
            # Measured on the digits ResNet at batch 8 next to other work: unpinned 3-9% faster
            # at the median and steadier (benchmarks/results/engines_resnet_run3.json)
            "ENABLE_CPU_PINNING": False,
        }
        if config.threads:
            props["INFERENCE_NUM_THREADS"] = config.threads
        cache = openvino_cache_dir(config)
        if cache:
            # one directory per precision and thread count: OpenVINO 2026.4 keys its blobs without
            # the precision hint, and a bf16 load that imported the fp32 blob failed at run time
            # ("Subgraph ... broadcast_merge_dim") on MiniLM (measured; see docs/engines.md)
            cache = str(Path(cache) / f"{config.precision}-t{config.threads or 'all'}")
            Path(cache).mkdir(parents=True, exist_ok=True)
            props["CACHE_DIR"] = cache
        path: str | None = None
        proto = b""
        if isinstance(model, str | os.PathLike):
            path = str(model)
        else:
            proto = model if isinstance(model, bytes) else model.SerializeToString()

        def compile_model() -> Any:
            if path is not None:
                # a path lets OpenVINO take the compiled blob from CACHE_DIR without reading it
                return core.compile_model(path, "CPU", props)
            return core.compile_model(core.read_model(proto), "CPU", props)

        self._compile = compile_model
        try:
            self.compiled = self._compile()
        except Exception as exc:
            raise ModelportError(f"OpenVINO cannot load the model: {_first_line(exc)}") from exc
        # bumped when a failed run made the compiled model untrustworthy (see run())
        self._generation = 0
        self._recompiling = threading.Lock()
        graph_inputs, graph_outputs = _onnx_io_names(model)
        self._inputs = {_port_name(p, graph_inputs): p for p in self.compiled.inputs}
        self.input_names = list(self._inputs)
        self.output_names = [_port_name(p, graph_outputs) for p in self.compiled.outputs]
        self._index = {n: i for i, n in enumerate(self.output_names)}
        # what run() checks, computed once (a port's shape is a call into OpenVINO)
        self._ranks = {
            n: p.get_partial_shape().rank.get_length()
            for n, p in self._inputs.items()
            if p.get_partial_shape().rank.is_static
        }
        self._names = frozenset(self.input_names)
        self._local = threading.local()
        threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS")) or _cores()
        self.info = EngineInfo(
            engine="openvino",
            version=str(ov.get_version()).split("-")[0],
            device="cpu",
            precision=self._ran_precision(),
            threads=threads,
        )

    def _ran_precision(self) -> str:
        """The precisions the heavy ops run in, read from the compiled (runtime) model."""
        seen = set()
        for op in self.compiled.get_runtime_model().get_ops():
            rt = op.get_rt_info()
            kind = rt["layerType"].astype(str) if "layerType" in rt else op.get_type_name()
            if kind in _OV_HEAVY_OPS and "runtimePrecision" in rt:
                seen.add(rt["runtimePrecision"].astype(str))
        ints = seen & {"i8", "u8"}
        floats = [p for p in ("bf16", "f16", "f32") if p in seen]
        names = {"bf16": "bf16", "f16": "fp16", "f32": "fp32"}
        hint = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        hint = (
            "bf16" if "bfloat16" in hint or hint == "bf16" else "fp16" if "16" in hint else "fp32"
        )
        # the float part: what heavy float ops ran in, else the hint the other ops run with
        float_part = "+".join(names[p] for p in floats) or hint
        return f"int8+{float_part}" if ints else float_part

    def _request(self) -> Any:
        local = self._local
        if getattr(local, "generation", None) != self._generation:
            local.request = self.compiled.create_infer_request()
            local.generation = self._generation
        return local.request

    def _recompile(self, generation: int) -> None:
        """A fresh compiled model after a failed run (once for concurrent failures)."""
        with self._recompiling:
            if self._generation != generation:
                return  # another thread already did
            try:
                self.compiled = self._compile()
            except Exception:  # keep serving with what there is; the next failure retries
                return
            self._generation += 1

    def run(
        self, feed: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        if feed.keys() != self._names:
            _check_names(feed, self.input_names)
        for name, arr in feed.items():
            rank = self._ranks.get(name)
            if rank is not None and np.ndim(arr) != rank:
                raise InputError(
                    f"the model rejected the inputs: input '{name}' has rank {np.ndim(arr)}, "
                    f"the model expects rank {rank}",
                    input=name,
                )
        names = list(outputs) if outputs else self.output_names
        bad = [n for n in names if n not in self._index]
        if bad:
            raise InputError(f"unknown output(s) {bad}; the model has {self.output_names}")
        generation = self._generation
        try:
            # the run is synchronous: the inputs can be read in place; the outputs are the
            # request's own buffers, copied below before the next run reuses them
            result = self._request().infer(dict(feed), share_inputs=True, share_outputs=True)
        except Exception as exc:
            # OpenVINO 2026.4's CPU plugin can be left broken by a run it refused: on PaddleOCR's
            # recognizer, after 6 refused input heights, valid inputs gave NaN or wrong values on
            # every compiled model tried, a fresh infer request too (reproduced without
            # modelport). So a refused run costs its caller a recompile (from CACHE_DIR when
            # set), and no later answer comes from the broken model.
            self._recompile(generation)
            msg = _first_line(exc)
            if "shape" in msg.lower() or "dimension" in msg.lower() or "type" in msg.lower():
                raise InputError(f"the model rejected the inputs: {msg}") from exc
            raise ModelportError(f"OpenVINO failed while running the model: {msg}") from exc
        return {n: np.array(result[self._index[n]], copy=True) for n in names}


def _onnx_io_names(model: Any) -> tuple[set[str], set[str]]:
    """The ONNX graph's input and output names (without its weights)."""
    import onnx

    try:
        if isinstance(model, str | os.PathLike):
            proto = onnx.load(str(model), load_external_data=False)
        elif isinstance(model, bytes):
            proto = onnx.load_from_string(model)
        else:
            proto = model
        inits = {i.name for i in proto.graph.initializer}
        return (
            {i.name for i in proto.graph.input if i.name not in inits},
            {o.name for o in proto.graph.output},
        )
    except Exception:  # the port's own name then
        return set(), set()


def _port_name(port: Any, graph_names: set[str]) -> str:
    """The ONNX name of an OpenVINO port: a port carries every name of the tensor, and its
    "any" name can be one OpenVINO merged in (e.g. the output of a Cast right after the input,
    as in an fp16 model that keeps float32 inputs), which a caller's feed does not use."""
    names = set(port.get_names()) & graph_names
    return min(names) if names else str(port.get_any_name())


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # OpenVINO's messages start with "Exception from src/...cpp:NNN:"; the reason follows
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '"))]
    first = (useful or lines or [type(exc).__name__])[0]
    if first.endswith(":"):  # a heading ("FrontEnd API failed with OpConversionFailure:")
        summary = next((b for a, b in zip(lines, lines[1:], strict=False) if a == "Summary:"), "")
        reason = next((ln for ln in useful[1:] if not ln.endswith(":") and ln[:2] != "--"), "")
        first = " ".join(
            x for x in (first, summary.lstrip("- "), f"({reason})" if reason else "") if x
        )
    return first[:400]


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


ENGINE_LOADERS: dict[str, Callable[[ModelSource, EngineConfig], EngineSession]] = {
    "ort": OrtSession,
    "openvino": OpenVINOSession,
}


def load_engine(model: ModelSource, config: EngineConfig | None = None) -> EngineSession:
    """Load ``model`` (a path, serialized bytes or a ModelProto) with ``config``'s engine."""
    config = config or EngineConfig()
    return ENGINE_LOADERS[config.engine](model, config)
