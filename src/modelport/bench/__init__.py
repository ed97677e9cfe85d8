"""Measurements: latency percentiles, throughput and memory, in-process and against a server.

Every number modelport reports (quantize, prune, plan) comes from here:

- ``compare_latency`` / ``interleave``: several models timed interleaved in one process (from
  ``runtime/latency.py``, where ``optimize`` uses them too);
- ``bench_models`` (sweep.py): packages over batch sizes, threads and providers, with load time,
  memory and ratios against the first;
- ``bench_server`` / ``run_load`` (load.py): closed- or open-loop load on a KServe V2 server over
  HTTP (JSON or binary tensors) and gRPC;
- report.py and plot.py: tables, Markdown/HTML reports and plots of either result.

Importing this package is light: onnxruntime, grpc, httpx and matplotlib load when used.
"""

from ..runtime.latency import (
    Interleaved,
    LatencyConfig,
    LatencyStats,
    compare_latency,
    interleave,
    measure_session,
    session_runner,
)
from .load import LoadConfig, LoadTarget, ServerBenchResult, bench_server, run_load
from .sweep import BenchResult, SweepConfig, bench_models

__all__ = [
    "BenchResult",
    "Interleaved",
    "LatencyConfig",
    "LatencyStats",
    "LoadConfig",
    "LoadTarget",
    "ServerBenchResult",
    "SweepConfig",
    "bench_models",
    "bench_server",
    "compare_latency",
    "interleave",
    "measure_session",
    "run_load",
    "session_runner",
]
