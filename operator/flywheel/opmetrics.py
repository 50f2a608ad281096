"""The operator's own Prometheus metrics, on a registry the caller injects.

:class:`OperatorMetrics` is created in :mod:`flywheel.__main__` with a fresh
`CollectorRegistry` and reaches handlers through kopf's memo; tests build their own registry and
read samples back. Nothing is registered at import time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Histogram

RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class OperatorMetrics:
    """Reconcile counts, durations and errors per kind."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.reconciles = Counter(
            "flywheel_reconcile_total",
            "Reconciles by kind and result (success, invalid_spec, retry, error).",
            ["kind", "result"],
            registry=registry,
        )
        self.duration = Histogram(
            "flywheel_reconcile_duration_seconds",
            "Time spent in one reconcile, by kind.",
            ["kind"],
            buckets=RECONCILE_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "flywheel_reconcile_errors_total",
            "Reconciles that ended in an error, by kind and reason.",
            ["kind", "reason"],
            registry=registry,
        )

    @contextmanager
    def timed(self, kind: str) -> Iterator[None]:
        """Observe the duration of the enclosed reconcile of `kind`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.duration.labels(kind=kind).observe(time.perf_counter() - start)
