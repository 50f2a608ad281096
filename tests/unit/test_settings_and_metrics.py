"""Settings come from FLYWHEEL_* variables; metrics live on the registry they are given."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from flywheel.opmetrics import OperatorMetrics
from flywheel.settings import OperatorSettings


def test_defaults_watch_the_whole_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLYWHEEL_NAMESPACES", "FLYWHEEL_METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = OperatorSettings()
    assert settings.clusterwide
    assert settings.metrics_port == 8081
    assert settings.artifacts_claim == "flywheel-artifacts"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_NAMESPACES", '["ml", "ml-staging"]')
    monkeypatch.setenv("FLYWHEEL_METRICS_PORT", "9100")
    settings = OperatorSettings()
    assert settings.namespaces == ["ml", "ml-staging"]
    assert not settings.clusterwide
    assert settings.metrics_port == 9100


def test_bad_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_METRICS_PORT", "70000")
    with pytest.raises(ValueError, match="metrics_port"):
        OperatorSettings()


def test_metrics_use_the_injected_registry() -> None:
    registry = CollectorRegistry()
    metrics = OperatorMetrics(registry)
    metrics.reconciles.labels(kind="Dataset", result="success").inc()
    with metrics.timed("Dataset"):
        pass
    assert (
        registry.get_sample_value(
            "flywheel_reconcile_total", {"kind": "Dataset", "result": "success"}
        )
        == 1
    )
    assert (
        registry.get_sample_value("flywheel_reconcile_duration_seconds_count", {"kind": "Dataset"})
        == 1
    )
    # A second operator in the same process has its own, empty registry.
    other = CollectorRegistry()
    OperatorMetrics(other)
    assert (
        other.get_sample_value("flywheel_reconcile_total", {"kind": "Dataset", "result": "success"})
        is None
    )
