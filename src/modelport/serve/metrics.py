"""Prometheus metrics for one server (each server has its own registry).

modelport_inference_requests_total{model,version,status}   requests answered, by outcome
modelport_request_duration_seconds{model,version}          time in the server (histogram)
modelport_queue_duration_seconds{model,version}            time waiting for a batch (histogram)
modelport_batch_size{model,version}                        rows per ONNX Runtime call (histogram)
modelport_inflight_requests{model}                         requests being handled now
modelport_model_state{model,version,state}                 1 for the state a version is in
"""

from __future__ import annotations

from typing import Any

__all__ = ["Metrics", "MODEL_STATES"]

MODEL_STATES = ("LOADING", "READY", "UNLOADING", "UNAVAILABLE", "FAILED")

_LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The server's collectors in their own registry; label children are cached per model."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "modelport_inference_requests",
            "Inference requests answered, by model, version and outcome.",
            ["model", "version", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "modelport_request_duration_seconds",
            "Time from a decoded request to its answer, in the server.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue = Histogram(
            "modelport_queue_duration_seconds",
            "Time a request waited in its model's queue before its batch started.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch = Histogram(
            "modelport_batch_size",
            "Rows per ONNX Runtime call (dynamic batching).",
            ["model", "version"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.inflight = Gauge(
            "modelport_inflight_requests",
            "Inference requests being handled now, by model.",
            ["model"],
            registry=r,
        )
        self.state = Gauge(
            "modelport_model_state",
            "1 for the state each model version is in (LOADING, READY, UNLOADING, UNAVAILABLE, FAILED).",
            ["model", "version", "state"],
            registry=r,
        )
        self._children: dict[tuple[str, str, str], Any] = {}

    def child(self, kind: str, model: str, version: str = "", status: str = "") -> Any:
        key = (kind, model, version + "|" + status)
        c = self._children.get(key)
        if c is None:
            metric = getattr(self, kind)
            if kind == "requests":
                c = metric.labels(model, version, status)
            elif kind == "inflight":
                c = metric.labels(model)
            else:
                c = metric.labels(model, version)
            self._children[key] = c
        return c

    def on_batch(self, model: str, version: str):
        """A Batcher ``on_batch`` hook recording batch sizes and queue times."""
        batch = self.child("batch", model, version)
        queue = self.child("queue", model, version)

        def record(rows: int, waits: list[float]) -> None:
            batch.observe(rows)
            for w in waits:
                queue.observe(w)

        return record

    def set_state(self, model: str, version: str, state: str | None) -> None:
        """Mark ``state`` (None: the version is gone) for a model version."""
        for s in MODEL_STATES:
            self.state.labels(model, version, s).set(1.0 if s == state else 0.0)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
