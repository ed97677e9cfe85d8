"""In-process latency of ONNX models through ONNX Runtime (or any engine's session).

The timing loop every measured number comes from: ``bench`` (sweeps, reports) and ``optimize``
(the before/after of quantize, graph and prune) both use it, which is why it lives here, below
both of them.

Several models are measured *interleaved* (A, B, B, A, ...) so that drift of the machine (other
processes, frequency scaling) hits all of them alike; ratios against the first are then fair on a
noisy 2-core box. A model that runs in well under a few milliseconds is run in *blocks* of
consecutive calls (about ``block_ms`` each) per turn, every call timed on its own: one call of
model A right after one of model B measures a cold start a server never sees (B's caches, and the
other engine's worker threads still spinning after B returned). On the digits ResNet at batch 8
(0.3-0.6 ms a call), alternating every call put ORT int8 (2 threads) at 0.91x and then 2.49x of
fp32 in two back-to-back runs; blocks of 20 ms gave 1.77x and 1.79x (docs/bench.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from ..data import Feed, feed_batch_size
from ..errors import UsageError

__all__ = [
    "Interleaved",
    "LatencyConfig",
    "LatencyStats",
    "compare_latency",
    "interleave",
    "measure_session",
    "session_runner",
]


@dataclass(frozen=True)
class LatencyConfig:
    """warmup: untimed runs per model first. repeats: timed runs per model (at least).
    min_seconds: keep repeating (in rounds) until each model has run this long in total
    (``LatencyConfig.timed(T)`` measures for T seconds instead of a count).
    threads: ORT intra-op threads (0 = ORT default).
    block_ms: a model whose runs take less than this runs several times in a row per turn
    (about ``block_ms`` per block, at most ``MAX_BLOCK`` runs), every run timed on its own;
    0 alternates the models every run."""

    warmup: int = 5
    repeats: int = 30
    min_seconds: float = 0.0
    threads: int = 0
    block_ms: float = 20.0

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.warmup < 0:
            raise UsageError(
                f"repeats must be >= 1 and warmup >= 0 (got {self.repeats}, {self.warmup})"
            )
        if self.min_seconds < 0 or self.threads < 0 or self.block_ms < 0:
            raise UsageError("min_seconds, threads and block_ms must be >= 0")

    @classmethod
    def timed(
        cls, seconds: float, warmup: int = 5, threads: int = 0, block_ms: float = 20.0
    ) -> LatencyConfig:
        """Repeat for ``seconds`` per model (at least 3 runs each) instead of a fixed count."""
        return cls(
            warmup=warmup, repeats=3, min_seconds=seconds, threads=threads, block_ms=block_ms
        )


@dataclass
class LatencyStats:
    name: str
    batch_size: int
    times_ms: list[float] = field(repr=False)

    @property
    def p50(self) -> float:
        return float(np.percentile(self.times_ms, 50))

    @property
    def p90(self) -> float:
        return float(np.percentile(self.times_ms, 90))

    @property
    def p99(self) -> float:
        return float(np.percentile(self.times_ms, 99))

    @property
    def mean(self) -> float:
        return float(np.mean(self.times_ms))

    @property
    def throughput(self) -> float:
        """Items per second at the median latency."""
        return self.batch_size / (self.p50 / 1000.0) if self.p50 > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "batch_size": self.batch_size,
            "runs": len(self.times_ms),
            "p50_ms": self.p50,
            "p90_ms": self.p90,
            "p99_ms": self.p99,
            "mean_ms": self.mean,
            "min_ms": float(np.min(self.times_ms)),
            "max_ms": float(np.max(self.times_ms)),
            "throughput_items_s": self.throughput,
        }


def measure_session(
    session: Any, feed: Feed, config: LatencyConfig | None = None, name: str = ""
) -> LatencyStats:
    """Latency of one session on one feed."""
    return compare_latency({name or "model": session}, feed, config)[0]


def compare_latency(
    sessions: Mapping[str, Any] | Sequence[tuple[str, Any]],
    feed: Feed | Mapping[str, Feed],
    config: LatencyConfig | None = None,
) -> list[LatencyStats]:
    """Interleaved latency of several ORT sessions (name -> session, or (name, session) pairs).

    ``feed`` is one feed for all, or a mapping name -> feed (when signatures differ).
    Returns one LatencyStats per session, in the order given.
    """
    items = list(sessions.items()) if isinstance(sessions, Mapping) else list(sessions)
    per_model = bool(feed) and all(isinstance(v, Mapping) for v in feed.values())
    feeds: dict[str, Feed] = {
        n: dict(cast("Mapping[str, Feed]", feed)[n]) if per_model else dict(cast(Feed, feed))
        for n, _ in items
    }
    run = interleave([(n, session_runner(s, feeds[n])) for n, s in items], config)
    return [LatencyStats(n, feed_batch_size(feeds[n]), run.times_ms[n]) for n, _ in items]


def session_runner(session: Any, feed: Feed) -> Callable[[], Any]:
    """A no-argument callable that runs ``session`` (an ORT session or any engine's session from
    ``runtime.load_engine``) on ``feed`` (all outputs)."""
    feed = dict(feed)
    if not hasattr(session, "get_outputs"):  # an engine session
        run_engine = session.run
        return lambda: run_engine(feed)
    names = [o.name for o in session.get_outputs()]

    def run() -> Any:
        return session.run(names, feed)

    return run


@dataclass
class Interleaved:
    """Times of an interleaved run, by name, and the order the timed runs happened in.

    ``order`` lists the names of the first ``ORDER_KEPT`` timed runs, in the order they ran;
    ``rounds`` counts all rounds (a round runs every callable's block once); ``blocks`` is the
    number of consecutive runs each callable had per turn.
    """

    times_ms: dict[str, list[float]]
    order: list[str]
    rounds: int
    blocks: dict[str, int] = field(default_factory=dict)


ORDER_KEPT = 256
MAX_BLOCK = 200
MIN_BLOCK_ROUNDS = 6  # with blocks, at least this many turns each (drift still cancels)


def _block_size(warm_ms: list[float], block_ms: float) -> int:
    """Runs per turn for a callable whose fastest warm-up run took ``min(warm_ms)``."""
    if block_ms <= 0:
        return 1
    fastest = min(warm_ms) if warm_ms else block_ms
    if fastest >= block_ms:
        return 1
    return max(1, min(MAX_BLOCK, round(block_ms / max(fastest, 1e-3))))


def interleave(
    runners: Sequence[tuple[str, Callable[[], Any]]], config: LatencyConfig | None = None
) -> Interleaved:
    """Time several callables interleaved: warm-up rounds, then timed rounds that run each once
    (or a block of consecutive runs, see ``LatencyConfig.block_ms``).

    The order alternates every round (A B C, C B A, ...) so that no callable always runs right
    after the same other one. Stops once every callable has run ``config.repeats`` times and
    ``config.min_seconds`` in total, and with blocks after at least ``MIN_BLOCK_ROUNDS`` rounds
    (at most 100,000 rounds).
    """
    config = config or LatencyConfig()
    items = list(runners)
    if not items:
        raise UsageError("nothing to measure: give at least one model")
    if len({n for n, _ in items}) != len(items):
        raise UsageError(f"names to measure must be unique, got {[n for n, _ in items]}")
    warm: dict[str, list[float]] = {n: [] for n, _ in items}
    for _ in range(config.warmup):
        for n, fn in items:
            t0 = time.perf_counter()
            fn()
            warm[n].append((time.perf_counter() - t0) * 1000.0)
    blocks = {n: _block_size(warm[n], config.block_ms) for n, _ in items}
    min_rounds = MIN_BLOCK_ROUNDS if max(blocks.values()) > 1 else 1
    times: dict[str, list[float]] = {n: [] for n, _ in items}
    spent = dict.fromkeys(times, 0.0)
    order: list[str] = []
    rounds = 0
    while (
        rounds < min_rounds
        or min(len(t) for t in times.values()) < config.repeats
        or min(spent.values()) < config.min_seconds
    ):
        # alternate the order every round so no model always runs right after another
        for n, fn in items if rounds % 2 == 0 else items[::-1]:
            for _ in range(blocks[n]):
                t0 = time.perf_counter()
                fn()
                dt = time.perf_counter() - t0
                times[n].append(dt * 1000.0)
                spent[n] += dt
                if len(order) < ORDER_KEPT:
                    order.append(n)
        rounds += 1
        if rounds >= 100_000:
            break
    return Interleaved(times, order, rounds, blocks)
