"""Request metrics: counts and latency histograms kept in plain Python, exposed at scrape time.

prometheus_client's own Counter and Histogram take a lock per update; at ~100 µs per request,
the eight updates a request needs cost more than the model. Here an update is a dict lookup and
a list increment on the event loop (one thread), and a collector renders the families from the
injected registry. The endpoint label is the route, never the raw path; codes are few. gRPC calls
count here too, under `grpc_infer`, `grpc_metadata` and `grpc_health`, with the HTTP status their
gRPC status stands for (200 OK, 400/404/422/503, 500 INTERNAL; a message over the size limit is
refused by gRPC itself, before it is counted).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from itertools import accumulate

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from flywheel_serving import names

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


def bucket_label(bound: float) -> str:
    """A bucket bound as client_python writes it (`0.5`, `1.0`, `+Inf`)."""
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]


class Histogram:
    """Bucket counts (the last one is +Inf) and a sum."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative buckets as exposed."""
        cumulative = [float(c) for c in accumulate(self.counts)]
        return [(bucket_label(b), c) for b, c in zip(self.bounds, cumulative, strict=False)] + [
            ("+Inf", cumulative[-1])
        ]


class ServingMetrics:
    """The server's request metrics for one model."""

    def __init__(self, model: str, version: str) -> None:
        self.base = [model, version]
        self.requests: dict[tuple[str, int], int] = {}
        self.latency: dict[str, Histogram] = {}
        self.inference = Histogram(LATENCY_BUCKETS)
        self.batch = Histogram(BATCH_BUCKETS)
        self.in_flight = 0

    def observe(self, endpoint: str, code: int, seconds: float) -> None:
        """Count one finished request."""
        key = (endpoint, code)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get(endpoint)
        if histogram is None:
            histogram = self.latency[endpoint] = Histogram(LATENCY_BUCKETS)
        histogram.observe(seconds)

    def collect(self) -> Iterable[Metric]:
        """The families, rendered at scrape time."""
        base = self.base
        labels = [names.MODEL, names.VERSION]
        requests = CounterMetricFamily(
            names.REQUESTS,
            "Requests by endpoint and status code (HTTP's; gRPC calls under grpc_* endpoints).",
            labels=[*labels, names.ENDPOINT, names.CODE],
        )
        for (endpoint, code), count in sorted(self.requests.items()):
            requests.add_metric([*base, endpoint, str(code)], count)
        yield requests
        latency = HistogramMetricFamily(
            names.REQUEST_DURATION,
            "Request latency, body read to response (gRPC: message decoded to response).",
            labels=[*labels, names.ENDPOINT],
        )
        for endpoint, histogram in sorted(self.latency.items()):
            latency.add_metric([*base, endpoint], histogram.buckets(), histogram.sum)
        yield latency
        for name, text, histogram in (
            (
                names.INFERENCE_DURATION,
                "onnxruntime session run latency.",
                self.inference,
            ),
            (
                names.BATCH_SIZE,
                "Rows per session run (merged requests with adaptive batching).",
                self.batch,
            ),
        ):
            family = HistogramMetricFamily(name, text, labels=labels)
            family.add_metric(base, histogram.buckets(), histogram.sum)
            yield family
        in_flight = GaugeMetricFamily(
            names.IN_FLIGHT_REQUESTS, "Requests being handled.", labels=labels
        )
        in_flight.add_metric(base, self.in_flight)
        yield in_flight


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
