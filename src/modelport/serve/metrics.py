"""Prometheus metrics for one server.

    modelport_inference_requests_total{model,version,status}   requests answered, by outcome
    modelport_request_duration_seconds{model,version}          time in the server (histogram)
    modelport_queue_duration_seconds{model,version}            time waiting for a batch (histogram)
    modelport_batch_size{model,version}                        rows per ONNX Runtime call (histogram)
    modelport_inflight_requests{model}                         requests being handled now
    modelport_model_state{model,version,state}                 1 for the state a version is in

The hot path only adds to plain Python numbers (every update happens on the event loop thread);
a prometheus-client collector turns them into metric families when ``/metrics`` is scraped. This
costs a fraction of prometheus-client's own locked counters and histograms per request.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = ["Histogram", "MODEL_STATES", "Metrics"]

MODEL_STATES = ("LOADING", "READY", "UNLOADING", "UNAVAILABLE", "FAILED")

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    """Counts per bucket (``le`` upper bounds, +Inf last) and the sum of observations."""

    __slots__ = ("buckets", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        out, total = [], 0
        for le, c in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            total += c
            out.append((le, total))
        return out


class Metrics:
    """The server's numbers, and a registry that exposes them in Prometheus' text format."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.duration: dict[tuple[str, str], Histogram] = {}
        self.queue: dict[tuple[str, str], Histogram] = {}
        self.batch: dict[tuple[str, str], Histogram] = {}
        self.inflight: dict[str, int] = defaultdict(int)
        self.state: dict[tuple[str, str], str] = {}
        self._registry: Any = None  # a prometheus_client CollectorRegistry, made on first use

    def histogram(self, kind: str, model: str, version: str) -> Histogram:
        table: dict[tuple[str, str], Histogram] = getattr(self, kind)  # duration, queue, batch
        h = table.get((model, version))
        if h is None:
            h = table[(model, version)] = Histogram(
                BATCH_BUCKETS if kind == "batch" else LATENCY_BUCKETS
            )
        return h

    def on_batch(self, model: str, version: str) -> Callable[[int, list[float]], None]:
        """A Batcher ``on_batch`` hook recording batch sizes and queue times."""
        batch = self.histogram("batch", model, version)
        queue = self.histogram("queue", model, version)

        def record(rows: int, waits: list[float]) -> None:
            batch.observe(rows)
            for w in waits:
                queue.observe(w)

        return record

    def set_state(self, model: str, version: str, state: str | None) -> None:
        """Record the state of a model version (None: the version is gone)."""
        if state is None:
            self.state.pop((model, version), None)
        else:
            self.state[(model, version)] = state

    # --- exposition -----------------------------------------------------------------------

    @property
    def registry(self) -> Any:
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(_Collector(self))
        return self._registry

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Collector:
    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        m = self.m
        c = CounterMetricFamily(
            "modelport_inference_requests",
            "Inference requests answered, by model, version and outcome.",
            labels=["model", "version", "status"],
        )
        for labels, n in sorted(m.requests.items()):
            c.add_metric(list(labels), n)
        yield c
        for kind, name, doc in (
            ("duration", "modelport_request_duration_seconds", "Time from a decoded request to its answer, in the server."),
            ("queue", "modelport_queue_duration_seconds", "Time a request waited in its model's queue before its batch started."),
            ("batch", "modelport_batch_size", "Rows per ONNX Runtime call (dynamic batching)."),
        ):  # fmt: skip
            h = HistogramMetricFamily(name, doc, labels=["model", "version"])
            for labels, hist in sorted(getattr(m, kind).items()):
                h.add_metric(list(labels), hist.cumulative(), hist.sum)
            yield h
        g = GaugeMetricFamily(
            "modelport_inflight_requests", "Inference requests being handled now, by model.",
            labels=["model"],
        )  # fmt: skip
        for model, n in sorted(m.inflight.items()):
            g.add_metric([model], n)
        yield g
        s = GaugeMetricFamily(
            "modelport_model_state",
            "1 for the state each model version is in (LOADING, READY, UNLOADING, UNAVAILABLE, FAILED).",
            labels=["model", "version", "state"],
        )
        for (model, version), state in sorted(m.state.items()):
            for st in MODEL_STATES:
                s.add_metric([model, version, st], 1.0 if st == state else 0.0)
        yield s
