"""The ModelMonitor controller: every `interval`, a window of serving metrics judged against the
training baseline (data drift, prediction drift, labelled performance), and retraining under
guardrails.

:mod:`.gather` reads (with :mod:`.sources`: the baseline and the window's counts from the pods or
Prometheus, :mod:`.windows`: counter snapshots), :mod:`.decide` decides (pure) with
:mod:`.evaluate` and :mod:`.guardrails`, :mod:`.render` builds the retraining run; the shared
:mod:`flywheel.runtime.act` writes. The interval is a real clock; a change of the watched
ModelDeployment wakes the monitor too (a deployment that appears, a version that starts serving).
Scores and decisions are exported as the operator's metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from flywheel.api.kinds import MODEL_MONITOR
from flywheel.api.modelmonitor import Evaluation, ModelMonitorSpec
from flywheel.controllers.modelmonitor.decide import ModelMonitorInputs, decide
from flywheel.controllers.modelmonitor.gather import gather
from flywheel.controllers.modelmonitor.sources import MonitorMemory
from flywheel.core.conditions import READY
from flywheel.core.objects import Obj, meta_of
from flywheel.core.outcome import Outcome
from flywheel.core.resources import MODEL_DEPLOYMENTS, MODEL_MONITORS
from flywheel.core.target import Target
from flywheel.opmetrics import OperatorMetrics
from flywheel.runtime.controller import Controller, Env, Watch
from flywheel.runtime.store import Store

VERDICT_GAUGE = {"Drift": 1, "Decay": 1, "NoDrift": 0}
"""`flywheel_monitor_drift_detected`: 1 drift or decay, 0 none, -1 no verdict."""


def monitors_of(deployment: Obj, store: Store) -> Iterable[str]:
    """The monitors of the deployment's namespace that watch it."""
    found = meta_of(deployment)
    for monitor in store.list(MODEL_MONITORS, found["namespace"]):
        if ((monitor.get("spec") or {}).get("deploymentRef") or {}).get("name") == found["name"]:
            yield str(meta_of(monitor)["name"])


def exporter(metrics: OperatorMetrics) -> Callable[[Target[Any, Any], Outcome], None]:
    """What an evaluation exports: scores, samples, the verdict, the decision."""

    def observe(target: Target[Any, Any], outcome: Outcome) -> None:
        spec: ModelMonitorSpec = target.spec
        namespace, name = target.meta.namespace, target.meta.name
        raw = outcome.status.get("lastEvaluation")
        if raw is None:
            if any(c.type == READY and c.status == "False" for c in outcome.conditions):
                metrics.drift_detected.labels(namespace, name).set(-1)  # no verdict now
            return
        evaluation = Evaluation.model_validate(raw)
        features = {f.name: (f.score, f.critical_value) for f in evaluation.features or []}
        predicted = evaluation.prediction_drift
        prediction = (
            (spec.prediction_drift.method, predicted.score, predicted.critical_value)
            if predicted is not None
            else None
        )
        metrics.record_scores(namespace, name, features, spec.data_drift.method, prediction)
        metrics.window_samples.labels(namespace, name).set(evaluation.samples)
        verdict = VERDICT_GAUGE.get(evaluation.verdict, -1)
        metrics.drift_detected.labels(namespace, name).set(verdict)
        if evaluation.performance is not None and spec.performance is not None:
            metric = spec.performance.metric
            metrics.performance.labels(namespace, name, metric).set(evaluation.performance)
        decision = outcome.status.get("lastDecision") or {}
        metrics.retrain_decisions.labels(
            namespace, name, decision.get("action", "None"), decision.get("reason", "")
        ).inc()

    return observe


def build(
    metrics: OperatorMetrics, memory: MonitorMemory | None = None
) -> Controller[ModelMonitorInputs]:
    """The controller, with the memory of its windows and the metrics it exports."""
    kept = memory or MonitorMemory()

    async def gather_with_memory(
        env: Env, target: Target[Any, Any], now: datetime
    ) -> ModelMonitorInputs:
        return await gather(env, kept, target, now)

    def forget(namespace: str, name: str) -> None:
        kept.forget(namespace, name)
        metrics.forget_monitor(namespace, name)

    return Controller[ModelMonitorInputs](
        kind=MODEL_MONITOR,
        gather=gather_with_memory,
        decide=decide,
        watches=(Watch(MODEL_DEPLOYMENTS, monitors_of),),
        observe=exporter(metrics),
        forget=forget,
    )
