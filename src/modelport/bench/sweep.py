"""In-process benchmark of one or more models over batch sizes, thread counts and providers.

For every (provider, threads) pair each model gets a fresh session (its load time and memory are
recorded); then for every batch size all models run *interleaved* (see ``runtime.latency.interleave``)
on inputs generated from their signature or taken from data, and each row carries ratios against
the first model of the same (provider, threads, batch size) group.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..data import Feed, generate_feed, guess_dims, load_feed, recorded_dims
from ..errors import InputError, UsageError
from ..runtime.latency import LatencyConfig, LatencyStats, interleave, session_runner
from ..signature import Signature
from .machine import machine_info
from .memory import MemoryDelta, measure_memory

__all__ = ["BenchResult", "SweepConfig", "batch_dim", "bench_models", "make_feed"]


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep.

    batch_sizes: sizes of the batch axis (the symbolic first dim of the inputs).
    threads: ORT intra-op thread counts (0 = ORT's default); empty = ``latency.threads``.
    providers: execution providers ("cpu", "cuda", ...).
    dims: other symbolic dims, e.g. (("sequence", 128),); unnamed ones default to 1.
    latency: warm-up and repeats (or seconds) per measurement.
    data: an .npz/.npy/directory with real inputs (leading sample axis), cut or tiled to each
        batch size; None generates inputs from the signature.
    seed: seed of the generated inputs.
    graph_optimization: ORT graph optimization level of the sessions.
    engines: how each model is run, every entry a variant of every model, all interleaved (the
        first of the first model is the baseline of the ratios): "ort", "openvino",
        "openvino:bf16" (engine[:precision]), or "package": the engine, precision and
        intra_op_threads the package's serving section names (what ``plan`` measured and
        ``serve`` runs; the sweep's thread count where the section sets none). Rows
        record what actually ran (engine, version, precision, threads, providers).
    """

    batch_sizes: tuple[int, ...] = (1,)
    threads: tuple[int, ...] = ()
    providers: tuple[str, ...] = ("cpu",)
    dims: tuple[tuple[str, int], ...] = ()
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    data: str | None = None
    seed: int = 0
    graph_optimization: str = "all"
    engines: tuple[str, ...] = ("ort",)

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise UsageError(f"batch_sizes must be >= 1, e.g. (1, 8, 32); got {self.batch_sizes}")
        if any(t < 0 for t in self.threads):
            raise UsageError(f"threads must be >= 0 (0 = ORT's default); got {self.threads}")
        if not self.providers:
            raise UsageError("providers must name at least one execution provider, e.g. ('cpu',)")
        if any(v < 1 for _, v in self.dims):
            raise UsageError(f"dims must be >= 1; got {dict(self.dims)}")
        if not self.engines:
            raise UsageError("engines must name at least one engine, e.g. ('ort', 'openvino')")
        for spec in self.engines:
            if spec != "package":
                engine_of(spec, None)  # validates

    @property
    def thread_counts(self) -> tuple[int, ...]:
        return self.threads or (self.latency.threads,)


def engine_of(spec: str, pkg: Any, threads: int = 0, **session: Any) -> Any:
    """The EngineConfig of an engine spec ("ort", "openvino:bf16", "package") for ``pkg``
    (``runtime.engine_config`` with the package's serving section)."""
    from ..runtime import SessionConfig, engine_config

    return engine_config(
        spec,
        pkg.serving if pkg is not None else None,
        threads=threads,
        session=SessionConfig(**session) if session else None,
    )


@dataclass
class BenchResult:
    """The result of ``bench_models``; ``to_dict()`` is what ``--json`` writes.

    rows: one per (provider, threads, batch size, model), with ratios against the first model.
    groups: one per interleaved measurement, with the order the timed runs happened in.
    loads: session creation time and memory per (provider, threads, model).
    """

    variants: list[dict[str, Any]]
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    groups: list[dict[str, Any]]
    loads: list[dict[str, Any]]
    machine: dict[str, Any]
    kind: str = "inprocess"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "variants": self.variants,
            "config": self.config,
            "rows": self.rows,
            "groups": self.groups,
            "loads": self.loads,
            "machine": self.machine,
        }


def bench_models(
    models: Sequence[Any],
    config: SweepConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> BenchResult:
    """Benchmark packages, ``.onnx`` files or ModelPackage objects; the first is the baseline.

    ``progress`` is called with a short line before each measurement."""
    from ..package import ModelPackage
    from ..runtime import load_engine

    config = config or SweepConfig()
    if not models:
        raise UsageError("give at least one model package or .onnx file to bench")
    _warm_up_runtime()
    loaded = [m if isinstance(m, ModelPackage) else ModelPackage.load(m) for m in models]
    # every model with every engine spec: variants, all interleaved together
    combos = [(p, spec) for p in loaded for spec in config.engines]
    pkgs = [p for p, _ in combos]
    multi = len(config.engines) > 1
    names = _unique_names(
        [_display_name(p) + (f" [{spec}]" if multi else "") for p, spec in combos]
    )
    _check_dims(pkgs, config)
    if config.data is not None:
        data = [load_feed(config.data, p.signature) for p in pkgs]
    else:  # real data first: the packages' stored samples, unless --shapes asks for other sizes
        data = [_stored_inputs(p) if not config.dims else None for p in pkgs]
    variants = [
        {"name": n, "package_name": p.name, "path": str(p.model_path), "size_bytes": p.size_bytes()}
        for n, p in zip(names, pkgs, strict=True)
    ]
    rows: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    loads: list[dict[str, Any]] = []
    for provider in config.providers:
        for threads in config.thread_counts:
            where = {"provider": provider, "threads": threads}
            sessions = []
            ran: dict[str, dict[str, Any]] = {}
            for name, (pkg, spec) in zip(names, combos, strict=True):
                econf = engine_of(spec, pkg, threads, providers=(provider,),
                                  graph_optimization=config.graph_optimization)  # fmt: skip
                t0 = time.perf_counter()
                session, mem = measure_memory(lambda p=pkg, c=econf: load_engine(p.model_path, c))
                sessions.append(session)
                ran[name] = session.info.to_dict()
                loads.append({"variant": name, **where, "load_s": time.perf_counter() - t0,
                              "ran": ran[name], **mem.to_dict()})  # fmt: skip
            load_of = {row["variant"]: row for row in loads[-len(pkgs) :]}
            for b in config.batch_sizes:
                if progress is not None:
                    progress(f"{provider}, threads {threads or 'default'}, batch {b}")
                feeds = [
                    make_feed(  # generated: at the sizes the package was converted at
                        p.signature,
                        b,
                        {**recorded_dims(p), **dict(config.dims)},
                        data[i] if data else None,
                        config.seed,
                    )
                    for i, p in enumerate(pkgs)
                ]
                runners = [(n, session_runner(s, f))
                           for n, s, f in zip(names, sessions, feeds, strict=True)]  # fmt: skip
                # one run of each alone, before interleaving: the memory a run at this batch takes
                first_run = {n: measure_memory(fn)[1] for n, fn in runners}
                run = interleave(runners, config.latency)
                groups.append({**where, "batch_size": b, "variants": list(names),
                               "rounds": run.rounds, "blocks": run.blocks,
                               "order": run.order})  # fmt: skip
                stats = [LatencyStats(n, b, run.times_ms[n]) for n in names]
                for st, v in zip(stats, variants, strict=True):
                    row = _row(st, stats[0], v, variants[0], load_of[st.name], first_run[st.name])
                    info = ran[st.name]
                    rows.append({"variant": st.name, **where, "engine": info["engine"],
                                 "precision": info["precision"], "ran": info, **row})  # fmt: skip
            del sessions
    cfg = asdict(config)
    cfg["latency"] = asdict(config.latency)
    cfg["threads"] = list(config.thread_counts)
    return BenchResult(variants, cfg, rows, groups, loads, machine_info())


def _row(
    st: LatencyStats,
    base: LatencyStats,
    variant: Mapping[str, Any],
    base_variant: Mapping[str, Any],
    load: Mapping[str, Any],
    first_run: MemoryDelta,
) -> dict[str, Any]:
    """One row's numbers, with ratios against the first model (``base``)."""
    d = st.to_dict()
    del d["name"]
    size, base_size = variant["size_bytes"], base_variant["size_bytes"]
    return {
        **d,
        "speedup_vs_first": base.p50 / st.p50 if st.p50 > 0 else None,
        "p99_ratio_vs_first": st.p99 / base.p99 if base.p99 > 0 else None,
        "size_bytes": size,
        "size_ratio_vs_first": size / base_size if base_size else None,
        "load_s": load["load_s"],
        "load_rss_bytes": load["grown_bytes"],
        "first_run_peak_extra_bytes": first_run.peak_extra,
        "peak_rss_bytes": first_run.peak,
    }


def _warm_up_runtime() -> None:
    """Import ONNX Runtime and create one tiny session, so that the first model's load time and
    memory do not include the runtime's own one-time start-up."""
    from onnx import TensorProto, helper

    from ..runtime import make_session

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "warm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = make_session(model)
    session.run(None, {"x": np.zeros(1, np.float32)})


def _display_name(pkg: Any) -> str:
    """The package directory's name (derived packages keep their parent's manifest name), or
    the file's stem for a bare .onnx file not called model.onnx."""
    mp = pkg.model_path
    return mp.parent.name if mp.name == "model.onnx" else mp.stem


def _unique_names(names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        cand, k = n, 2
        while cand in out:
            cand, k = f"{n}#{k}", k + 1
        out.append(cand)
    return out


def batch_dim(signature: Signature) -> str | int | None:
    """The name of the batch dim (the symbolic first axis of the inputs), or its fixed size."""
    firsts = {t.shape[0] for t in signature.inputs if t.shape}
    symbolic = sorted(d for d in firsts if isinstance(d, str))
    if symbolic:
        return symbolic[0]
    return next(iter(firsts), None)


def _check_dims(pkgs: Sequence[Any], config: SweepConfig) -> None:
    known = {d for p in pkgs for t in p.signature.inputs for d in t.shape if isinstance(d, str)}
    batch_names = {batch_dim(p.signature) for p in pkgs}
    for name, _ in config.dims:
        if name in batch_names:
            raise UsageError(
                f"'{name}' is the batch dim; set it with batch_sizes (--batch-sizes), not dims"
            )
        if name not in known:
            raise UsageError(
                f"no input has a symbolic dim '{name}'; the models' symbolic dims are "
                f"{sorted(known) or 'none'}"
            )
    for p in pkgs:
        bd = batch_dim(p.signature)
        if isinstance(bd, int):
            wrong = [b for b in config.batch_sizes if b != bd]
            if wrong:
                raise UsageError(
                    f"model '{p.name}' has a fixed batch size of {bd}; use --batch-sizes {bd} "
                    f"(got {list(config.batch_sizes)})"
                )


def _stored_inputs(pkg: Any) -> Feed | None:
    stored = pkg.samples()
    return dict(stored[0]) if stored and stored[0] else None


def make_feed(
    signature: Signature,
    batch: int,
    dims: Mapping[str, int] | None = None,
    data: Feed | None = None,
    seed: int = 0,
) -> Feed:
    """Inputs for one batch: ``data`` cut (or tiled) to ``batch`` rows (on inputs whose first
    axis is dynamic), else generated from ``signature`` with the batch dim set to ``batch`` and
    other symbolic dims from ``dims``."""
    if data is None:
        full: dict[str, int] = {**guess_dims(signature, batch), **dict(dims or {})}
        bd = batch_dim(signature)
        if isinstance(bd, str):
            full[bd] = batch
        return generate_feed(signature, full, seed=seed)
    out: Feed = {}
    fixed_first = {t.name for t in signature.inputs if not t.shape or isinstance(t.shape[0], int)}
    for name, arr in data.items():
        if name in fixed_first:  # a scalar (a sample rate) or a fixed first axis (a state's
            out[name] = arr  # layers): not a sample axis, passed as it is
            continue
        n = arr.shape[0] if arr.ndim else 0
        if n < 1:
            raise InputError(f"input '{name}' in the data has no sample axis", input=name)
        out[name] = arr[:batch] if n >= batch else np.take(arr, np.arange(batch) % n, axis=0)
    return out
