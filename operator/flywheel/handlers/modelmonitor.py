"""The ModelMonitor controller: read a window of serving metrics, judge it, maybe retrain.

Thin kopf glue. Every `interval` (checked on a timer of `pollSeconds`), :func:`step` reads the
monitored ModelDeployment, its serving ModelVersion and the baseline its pods bin on, gets the
window's counts from the metrics source (:mod:`flywheel.monitorsources`), evaluates them
(:mod:`flywheel.evaluations`), takes the retraining decision (:mod:`flywheel.modelmonitors`)
and acts on it: a TrainingRun created with a deterministic name, or a refresh asked of the
Dataset. Decisions are keyed by `status.retrains` and by the runs found in the cluster, so an
evaluation re-taken after an operator restart adopts the run it created instead of making a
second one; the cooldown runs from `status.lastRetrain`, which survives restarts.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import kopf
from pydantic import BaseModel

from flywheel.api import API_GROUP, API_VERSION
from flywheel.api.modelmonitor import ModelMonitorSpec
from flywheel.conditions import READY, RECONCILING, STALLED, ConditionUpdate, raw_condition
from flywheel.datasets import REFRESH_REQUESTED
from flywheel.evaluations import evaluate
from flywheel.handlers.context import OperatorContext
from flywheel.handlers.monitorsources import SourceFailure, baseline, window_counts
from flywheel.handlers.outcome import apply
from flywheel.handlers.registry import model_versions
from flywheel.jobresult import Outcome
from flywheel.kube import Kube, NotFound, namespaced
from flywheel.modelmonitors import (
    MONITOR_LABEL,
    Event,
    RetrainDecision,
    adopt,
    decide,
    duration,
    evaluation_due,
    parse_time,
    render_retrain_run,
    report,
    schedule_base,
    schedule_due,
)
from flywheel.runoutcomes import finished

GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"
Obj = dict[str, Any]


def _waiting(reason: str, message: str, *, failed: bool = False) -> Outcome:
    return Outcome(
        {},
        [
            ConditionUpdate(READY, "False", reason, message),
            ConditionUpdate(RECONCILING, "True", reason, message),
            ConditionUpdate(STALLED, "False", reason, message),
        ],
        "Warning" if failed else "Normal",
        reason,
        message,
    )


async def step(
    kube: Kube, monitor: Obj, spec: ModelMonitorSpec, ctx: OperatorContext, now: datetime
) -> Outcome | tuple[Obj, list[ConditionUpdate], list[Event]]:
    """One evaluation: a waiting Outcome, or the report's (status, conditions, events)."""
    meta, status = monitor["metadata"], monitor.get("status") or {}
    namespace, name = meta["namespace"], meta["name"]
    target = spec.deployment_ref.name
    md = await kube.get_or_none(namespaced(GROUP_VERSION, namespace, "modeldeployments", target))
    if md is None:
        return _waiting("DeploymentNotFound", f"ModelDeployment {target} does not exist (yet).")
    serving = (md.get("status") or {}).get("servingVersion")
    model = md["spec"]["model"]
    version = next(
        (
            v
            for v in await model_versions(kube, namespace, model)
            if v["spec"]["version"] == serving
        ),
        None,
    )
    if serving is None or version is None:
        return _waiting("NotServing", f"ModelDeployment {target} serves no version yet.")
    try:
        stats = await baseline(kube, ctx, md, version)
        counts = await window_counts(kube, ctx, monitor, spec, md, version, now)
    except SourceFailure as failure:
        return _waiting("MetricsUnavailable", str(failure), failed=True)
    classes = list(version["spec"]["signature"].get("classLabels") or [])
    assessment = evaluate(spec, stats, classes, counts, now)
    runs = await _retrain_runs(kube, namespace, name)
    current = await _dataset_version(kube, namespace, spec)
    retrains, last, recent, adopted = adopt(name, status, runs)
    decision = decide(
        spec,
        name,
        verdict=assessment.evaluation.verdict,
        trigger=assessment.trigger,
        previous_consecutive=int(status.get("consecutiveDriftEvaluations") or 0),
        last=last,
        recent=recent,
        decisions_so_far=retrains,
        in_flight=next(
            (r["metadata"]["name"] for r in runs if not finished(r.get("status") or {})), None
        ),
        new_data=current is not None and current != version["spec"]["lineage"]["datasetVersion"],
        schedule_due=schedule_due(spec, schedule_base(meta, status), now),
        now=now,
    )
    if decision.record is not None:
        retrains += 1
    await _act(kube, monitor, spec, decision, current, now)
    ctx.metrics.retrain_decisions.labels(namespace, name, decision.action, decision.reason).inc()
    _export(ctx, namespace, name, spec, assessment.evaluation)
    result = report(status, assessment, decision, serving_version=serving, retrains=retrains)
    if adopted and decision.record is None and last is not None:
        result.status["lastRetrain"] = last.model_dump(
            by_alias=True, exclude_none=True, mode="json"
        )
    return result.status, result.conditions, result.events


async def _retrain_runs(kube: Kube, namespace: str, name: str) -> list[Obj]:
    selector = quote(f"{MONITOR_LABEL}={name}")
    found = await kube.get(
        namespaced(GROUP_VERSION, namespace, "trainingruns") + f"?labelSelector={selector}"
    )
    return list(found.get("items", []))


async def _dataset_version(kube: Kube, namespace: str, spec: ModelMonitorSpec) -> str | None:
    """The retraining Dataset's current version."""
    if spec.retrain is None:
        return None
    dataset = await kube.get_or_none(
        namespaced(GROUP_VERSION, namespace, "datasets", spec.retrain.template.dataset_ref.name)
    )
    version: str | None = ((dataset or {}).get("status") or {}).get("version")
    return version


async def _act(
    kube: Kube,
    monitor: Obj,
    spec: ModelMonitorSpec,
    decision: RetrainDecision,
    dataset_version: str | None,
    now: datetime,
) -> None:
    if decision.action == "Create" and decision.run_name is not None:
        await kube.create_or_get(
            namespaced(GROUP_VERSION, monitor["metadata"]["namespace"], "trainingruns"),
            render_retrain_run(monitor, spec, decision, dataset_version),
        )
    elif decision.action == "WaitForNewData":
        await _request_refresh(kube, monitor, spec, now)


async def _request_refresh(kube: Kube, monitor: Obj, spec: ModelMonitorSpec, now: datetime) -> None:
    """Annotate the Dataset (as Flux's `requestedAt`), at most once per cooldown and only once
    the previous request was answered."""
    assert spec.retrain is not None
    namespace = monitor["metadata"]["namespace"]
    path = namespaced(GROUP_VERSION, namespace, "datasets", spec.retrain.template.dataset_ref.name)
    dataset = await kube.get_or_none(path)
    if dataset is None:
        return
    asked = (dataset["metadata"].get("annotations") or {}).get(REFRESH_REQUESTED)
    handled = (dataset.get("status") or {}).get("lastHandledRefreshAt")
    asked_at = parse_time(asked)
    if asked and (asked != handled or (asked_at and now - asked_at < duration(spec.cooldown))):
        return
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    with contextlib.suppress(NotFound):  # deleted in between: nothing to ask
        await kube.request(
            "PATCH", path, {"metadata": {"annotations": {REFRESH_REQUESTED: stamp}}}, patch="merge"
        )


def _export(
    ctx: OperatorContext, namespace: str, name: str, spec: ModelMonitorSpec, evaluation: Any
) -> None:
    metrics = ctx.metrics
    features = {f.name: f.score for f in evaluation.features or []}
    prediction = (
        (spec.prediction_drift.method, evaluation.prediction_drift_score)
        if evaluation.prediction_drift_score is not None
        else None
    )
    metrics.record_scores(namespace, name, features, spec.data_drift.method, prediction)
    metrics.window_samples.labels(namespace, name).set(evaluation.samples)
    verdict = {"Drift": 1, "Decay": 1, "NoDrift": 0}.get(evaluation.verdict, -1)
    metrics.drift_detected.labels(namespace, name).set(verdict)
    if evaluation.performance is not None and spec.performance is not None:
        metrics.performance.labels(namespace, name, spec.performance.metric).set(
            evaluation.performance
        )


async def work(
    body: kopf.Body,
    spec: BaseModel,
    status: dict[str, Any],
    patch: kopf.Patch,
    memo: OperatorContext,
) -> None:
    """The ModelMonitor controller's part of a reconcile (the spec is already admitted)."""
    assert isinstance(spec, ModelMonitorSpec)
    meta = body["metadata"]
    kube, generation = memo.kube, meta.get("generation")
    async with memo.lock(f"modelmonitor/{meta['uid']}"):
        fresh = await kube.get_or_none(
            namespaced(GROUP_VERSION, meta["namespace"], "modelmonitors", meta["name"])
        )
        if fresh is None or fresh["metadata"].get("uid") != meta["uid"]:
            return
        current = {**(fresh.get("status") or {}), **patch.status}
        now = datetime.now(UTC)
        if not evaluation_due(spec, current, int(generation or 0), now):
            return
        result = await step(kube, {**fresh, "status": current}, spec, memo, now)
        if isinstance(result, Outcome):
            before = raw_condition(current, READY).get("reason")
            if before == result.event_reason:  # post the Event on the transition only
                result = Outcome(result.status, result.conditions)
            apply(result, current, patch, body, generation)
            return
        fields, conditions, events = result
        apply(Outcome(fields, conditions), current, patch, body, generation)
        for event in events:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)


async def forget_deleted(event: kopf.RawEvent, memo: OperatorContext, **_: Any) -> None:
    """A ModelMonitor is gone: drop its snapshots and its metric series."""
    if event.get("type") != "DELETED":
        return
    meta = event["object"]["metadata"]
    for key in [k for k in memo.windows if k.startswith(f"{meta['uid']}/")]:
        del memo.windows[key]
    memo.metrics.forget_monitor(meta["namespace"], meta["name"])


def register(registry: kopf.OperatorRegistry) -> None:
    """The deletion clean-up (the reconcile and the timer are registered per kind)."""
    kopf.on.event(API_GROUP, API_VERSION, "modelmonitors", id="forget-deleted", registry=registry)(
        forget_deleted
    )
