"""The operator's own Prometheus metrics, on a registry the caller injects.

:class:`OperatorMetrics` is created in :mod:`flywheel.__main__` with a fresh
`CollectorRegistry` and reaches handlers through kopf's memo; tests build their own registry and
read samples back. Nothing is registered at import time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class OperatorMetrics:
    """Reconcile counts, durations and errors per kind; ModelMonitor scores and decisions."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.reconciles = Counter(
            "flywheel_reconcile_total",
            "Reconciles by kind and result (success, invalid_spec, retry, forbidden, error, "
            "gone, deleting).",
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
        self.api_requests = Counter(
            "flywheel_api_requests_total",
            "The operator's own Kubernetes API requests (kopf's watches aside), by verb, "
            "resource and code (2xx: success, 0: no answer, else the refusal's HTTP status).",
            ["verb", "resource", "code"],
            registry=registry,
        )
        self.reports_held = Gauge(
            "flywheel_reports_held",
            "Reports decided and not written yet, by what (status: objects whose status is "
            "held; event: Events queued). Written when the reconcilers are idle, at most 10 s "
            "late.",
            ["what"],
            registry=registry,
        )

        monitor = ["namespace", "monitor"]
        self.drift_score = Gauge(
            "flywheel_drift_score",
            "The latest drift score of each monitored feature, by method.",
            [*monitor, "feature", "method"],
            registry=registry,
        )
        self.drift_critical_value = Gauge(
            "flywheel_drift_critical_value",
            "What each feature's latest drift score was held to: its critical value at the "
            "window's and the baseline's sizes (Calibrated) or the fixed threshold.",
            [*monitor, "feature", "method"],
            registry=registry,
        )
        self.prediction_drift_score = Gauge(
            "flywheel_prediction_drift_score",
            "The latest prediction drift score, by method.",
            [*monitor, "method"],
            registry=registry,
        )
        self.prediction_drift_critical_value = Gauge(
            "flywheel_prediction_drift_critical_value",
            "What the latest prediction drift score was held to (critical value or threshold).",
            [*monitor, "method"],
            registry=registry,
        )
        self.performance = Gauge(
            "flywheel_monitor_performance",
            "The latest labelled performance (accuracy or mae) over the window.",
            [*monitor, "metric"],
            registry=registry,
        )
        self.window_samples = Gauge(
            "flywheel_monitor_window_samples",
            "Predictions in the latest evaluation's window.",
            monitor,
            registry=registry,
        )
        self.drift_detected = Gauge(
            "flywheel_monitor_drift_detected",
            "1 while the latest evaluation saw drift or decay, 0 when not, -1 without a verdict.",
            monitor,
            registry=registry,
        )
        self.retrain_decisions = Counter(
            "flywheel_retrain_decisions_total",
            "Retraining decisions by action (Create, Suggest, WaitForNewData, Blocked) and reason.",
            [*monitor, "action", "reason"],
            registry=registry,
        )
        self._series: dict[tuple[str, str], set[tuple[str, ...]]] = {}

    def record_scores(
        self,
        namespace: str,
        monitor: str,
        features: dict[str, tuple[float, float | None]],
        method: str,
        prediction: tuple[str, float, float | None] | None,
    ) -> None:
        """Set a monitor's feature scores and critical values (score, critical per feature;
        prediction: method, score, critical); series of features no longer scored are
        removed."""
        key = (namespace, monitor)
        fresh: set[tuple[str, ...]] = {(namespace, monitor, name, method) for name in features}
        for stale in self._series.get(key, set()) - fresh:
            self._drop_feature(stale)
        for name, (value, critical) in features.items():
            self.drift_score.labels(namespace, monitor, name, method).set(value)
            if critical is not None:
                self.drift_critical_value.labels(namespace, monitor, name, method).set(critical)
        self._series[key] = fresh
        if prediction is not None:
            method_name, value, critical = prediction
            self.prediction_drift_score.labels(namespace, monitor, method_name).set(value)
            if critical is not None:
                gauge = self.prediction_drift_critical_value
                gauge.labels(namespace, monitor, method_name).set(critical)

    def _drop_feature(self, labels: tuple[str, ...]) -> None:
        self.drift_score.remove(*labels)
        with contextlib.suppress(KeyError):
            self.drift_critical_value.remove(*labels)

    def forget_monitor(self, namespace: str, monitor: str) -> None:
        """Remove every series of a deleted monitor (its decision counts too)."""
        for labels in self._series.pop((namespace, monitor), set()):
            self._drop_feature(labels)
        families = (
            self.prediction_drift_score,
            self.prediction_drift_critical_value,
            self.performance,
            self.retrain_decisions,
        )
        for family in families:
            found = {
                tuple(sample.labels.values())
                for metric in family.collect()
                for sample in metric.samples
                if sample.labels.get("namespace") == namespace
                and sample.labels.get("monitor") == monitor
            }
            for labels in found:
                with contextlib.suppress(KeyError):
                    family.remove(*labels)
        for gauge in (self.window_samples, self.drift_detected):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, monitor)

    def observe_request(self, verb: str, resource: str, code: str) -> None:
        """Count one API request."""
        self.api_requests.labels(verb, resource, code).inc()

    @contextmanager
    def timed(self, kind: str) -> Iterator[None]:
        """Observe the duration of the enclosed reconcile of `kind`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.duration.labels(kind=kind).observe(time.perf_counter() - start)
