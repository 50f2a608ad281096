"""Request metrics on an injected registry, plus the collector of the monitoring counts.

Children are bound to their label values once (a `labels()` call per request costs more than the
observation itself); the endpoint label is the route template, never the raw path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
ENDPOINTS = ("infer", "predict_v1", "feedback", "metadata", "health", "other")


class ServingMetrics:
    """The server's request metrics for one model."""

    def __init__(self, registry: CollectorRegistry, model: str, version: str) -> None:
        base = ["model", "version"]
        self._requests = Counter(
            "flywheel_requests",
            "HTTP requests by endpoint and status code.",
            [*base, "endpoint", "code"],
            registry=registry,
        )
        self._latency = Histogram(
            "flywheel_request_duration_seconds",
            "HTTP request latency, body read to response.",
            [*base, "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        inference = Histogram(
            "flywheel_inference_duration_seconds",
            "onnxruntime session run latency.",
            base,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        batch = Histogram(
            "flywheel_batch_size",
            "Rows per session run (merged requests with adaptive batching).",
            base,
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        in_flight = Gauge(
            "flywheel_in_flight_requests", "Requests being handled.", base, registry=registry
        )
        self.inference = inference.labels(model, version)
        self.batch = batch.labels(model, version)
        self.in_flight = in_flight.labels(model, version)
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        self._model, self._version = model, version

    def observe(self, endpoint: str, code: int, seconds: float) -> None:
        """Count one finished request."""
        children = self._children.get((endpoint, code))
        if children is None:
            children = (
                self._requests.labels(self._model, self._version, endpoint, str(code)),
                self._latency.labels(self._model, self._version, endpoint),
            )
            self._children[(endpoint, code)] = children
        counter, latency = children
        counter.inc()
        latency.observe(seconds)


class CallbackCollector(Collector):
    """Exposes metric families produced at scrape time by a callback."""

    def __init__(self, produce: Callable[[], Iterable[Metric]]) -> None:
        self._produce = produce

    def collect(self) -> Iterable[Metric]:
        """Everything the callback yields."""
        return list(self._produce())

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the families appear once the model is loaded."""
        return []
