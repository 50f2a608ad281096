"""Pure ModelMonitor decisions: when to evaluate, what an evaluation writes, what it asks for.

Every `interval` the monitor judges a window of the serving model's metrics
(:mod:`.evaluate`), takes the retraining decision (:mod:`.guardrails`) and acts on it: a
TrainingRun with a deterministic name, or a refresh asked of the Dataset (its
`flywheel.dev/refresh-requested-at` annotation), at most once per cooldown and only once the
previous request was answered. While there is nothing to watch (no ModelDeployment, no served
version, metrics that cannot be read) it says so, with an Event on each change of reason only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from flywheel.api.modelmonitor import ModelMonitorSpec, ModelMonitorStatus
from flywheel.controllers.modelmonitor.evaluate import Assessment, evaluate
from flywheel.controllers.modelmonitor.guardrails import (
    RetrainDecision,
    RetrainInputs,
    adopt,
    decide_retrain,
    schedule_base,
    schedule_due,
)
from flywheel.controllers.modelmonitor.render import RetrainRequest, render_retrain_run
from flywheel.controllers.modelmonitor.windows import WindowCounts
from flywheel.core.conditions import READY, RECONCILING, STALLED, ConditionUpdate, raw_condition
from flywheel.core.objects import Obj, annotations_of, meta_of, status_of
from flywheel.core.outcome import Action, Create, Event, MergePatch, Outcome
from flywheel.core.resources import DATASETS
from flywheel.core.statuses import REFRESH_REQUESTED, run_finished
from flywheel.core.target import Meta
from flywheel.core.times import duration, parse_time, rfc3339

DRIFT_DETECTED, WAITING_FOR_NEW_DATA = "DriftDetected", "WaitingForNewData"


@dataclass(frozen=True)
class ModelMonitorInputs:
    """Everything one ModelMonitor decision looks at."""

    meta: Meta
    spec: ModelMonitorSpec
    status: ModelMonitorStatus
    raw_status: Obj
    due: bool = True
    """An evaluation is due: nothing else is read when it is not."""
    deployment: Obj | None = None
    serving: int | None = None
    version: Obj | None = None
    """The ModelVersion the deployment serves."""
    stats: Obj | None = None
    """The baseline its pods bin on."""
    counts: WindowCounts | None = None
    """The window's counts."""
    source_failure: str | None = None
    runs: list[Obj] = field(default_factory=list)
    """This monitor's retraining runs."""
    dataset: Obj | None = None
    """The retraining template's Dataset."""


def next_evaluation(
    spec: ModelMonitorSpec, status: ModelMonitorStatus, generation: int
) -> datetime | None:
    """When the next evaluation is due; None: now (first visit, or a new generation)."""
    last = status.last_evaluation
    if last is None or status.observed_generation != generation:
        return None
    return last.time + duration(spec.interval)


def decide(inputs: ModelMonitorInputs, now: datetime) -> Outcome:
    """Evaluate when due (see the module docstring); otherwise wait for the interval."""
    spec, interval = inputs.spec, duration(inputs.spec.interval)
    if not inputs.due:
        due = next_evaluation(spec, inputs.status, inputs.meta.generation) or now
        return Outcome(requeue_after=max(due - now, timedelta(0)) + timedelta(milliseconds=100))
    target = spec.deployment_ref.name
    if inputs.deployment is None:
        return waiting(
            inputs, "DeploymentNotFound", f"ModelDeployment {target} does not exist (yet)."
        )
    if inputs.serving is None or inputs.version is None:
        return waiting(inputs, "NotServing", f"ModelDeployment {target} serves no version yet.")
    if inputs.stats is None or inputs.counts is None:
        why = inputs.source_failure or "the window could not be read"
        return waiting(inputs, "MetricsUnavailable", why, failed=True)
    classes = list(inputs.version["spec"]["signature"].get("classLabels") or [])
    recorded = ((inputs.version["spec"].get("baseline") or {}).get("predictions") or {}).get(
        "counts"
    )
    assessment = evaluate(spec, inputs.stats, classes, inputs.counts, now, recorded)
    return replace(evaluated(inputs, assessment, now), requeue_after=interval)


def waiting(
    inputs: ModelMonitorInputs, reason: str, message: str, *, failed: bool = False
) -> Outcome:
    """Nothing to evaluate yet; the Event only when the reason changes."""
    before = raw_condition(inputs.raw_status, READY).get("reason")
    events = (
        () if before == reason else (Event("Warning" if failed else "Normal", reason, message),)
    )
    return Outcome(
        conditions=(
            ConditionUpdate(READY, "False", reason, message),
            ConditionUpdate(RECONCILING, "True", reason, message),
            ConditionUpdate(STALLED, "False", reason, message),
        ),
        events=events,
        requeue_after=duration(inputs.spec.interval),
    )


def evaluated(inputs: ModelMonitorInputs, assessment: Assessment, now: datetime) -> Outcome:
    """The evaluation's status, its retraining decision and what that decision asks for."""
    spec, status, name = inputs.spec, inputs.status, inputs.meta.name
    history = adopt(name, status, inputs.runs)
    current = status_of(inputs.dataset).get("version")
    trained_on = ((inputs.version or {}).get("spec") or {}).get("lineage", {}).get("datasetVersion")
    in_flight = next(
        (meta_of(r)["name"] for r in inputs.runs if not run_finished(status_of(r))), None
    )
    decision = decide_retrain(
        RetrainInputs(
            spec=spec,
            monitor=name,
            verdict=assessment.evaluation.verdict,
            trigger=assessment.trigger,
            previous_consecutive=status.consecutive_drift_evaluations or 0,
            history=history,
            in_flight=in_flight,
            new_data=current is not None and current != trained_on,
            schedule_due=schedule_due(spec, schedule_base(inputs.meta.created, status), now),
        ),
        now,
    )
    decisions = history.decisions + (1 if decision.record is not None else 0)
    fields = report_status(assessment, decision, serving=inputs.serving, retrains=decisions)
    if history.adopted and decision.record is None and history.last is not None:
        fields["lastRetrain"] = history.last.model_dump(
            by_alias=True, exclude_none=True, mode="json"
        )
    drift = drift_condition(assessment)
    events = transition_events(inputs.raw_status, drift, decision)
    if history.adopted and decision.record is None and history.last is not None:
        # The reconcile that created the run stopped before it could say so.
        text = f"TrainingRun {history.last.training_run}: {history.last.message}"
        events = (*events, Event("Normal", "RetrainTriggered", text))
    return Outcome(
        status=fields,
        conditions=report_conditions(assessment, decision, drift),
        events=events,
        actions=asked(inputs, decision, current, now),
    )


def asked(
    inputs: ModelMonitorInputs, decision: RetrainDecision, version: str | None, now: datetime
) -> tuple[Action, ...]:
    """The run to create, or the refresh to ask of the Dataset."""
    if decision.action == "Create" and decision.run_name is not None:
        request = RetrainRequest(
            decision.run_name, decision.reason, decision.message, decision.score
        )
        return (Create(render_retrain_run(inputs.meta, inputs.spec, request, version)),)
    dataset = inputs.dataset
    if decision.action != "WaitForNewData" or dataset is None:
        return ()
    requested = annotations_of(dataset).get(REFRESH_REQUESTED)
    handled = status_of(dataset).get("lastHandledRefreshAt")
    asked_at = parse_time(requested)
    cooldown = duration(inputs.spec.cooldown)
    if requested and (requested != handled or (asked_at and now - asked_at < cooldown)):
        return ()  # the last request is not answered yet, or was made within the cooldown
    patch = {"metadata": {"annotations": {REFRESH_REQUESTED: rfc3339(now)}}}
    found = meta_of(dataset)
    return (MergePatch(DATASETS.ref(found["namespace"], found["name"]), patch),)


def report_status(
    assessment: Assessment, decision: RetrainDecision, *, serving: int | None, retrains: int
) -> dict[str, Any]:
    """The status fields one evaluation writes."""
    fields: dict[str, Any] = {
        "lastEvaluation": assessment.evaluation.model_dump(
            by_alias=True, exclude_none=True, mode="json"
        ),
        "servingVersion": serving,
        "consecutiveDriftEvaluations": decision.consecutive,
        "lastDecision": {
            "action": decision.action,
            "reason": decision.reason,
            "message": decision.message[:253],
        },
        "retrains": retrains,
        "recentRetrains": [
            r.model_dump(by_alias=True, exclude_none=True, mode="json") for r in decision.recent
        ],
    }
    if decision.record is not None:
        fields["lastRetrain"] = decision.record.model_dump(
            by_alias=True, exclude_none=True, mode="json"
        )
    return fields


def _summary(assessment: Assessment) -> str:
    evaluation = assessment.evaluation
    return f"{evaluation.samples} predictions in the last {evaluation.window}"


def drift_condition(assessment: Assessment) -> ConditionUpdate:
    """DriftDetected: Unknown without enough data, True with the trigger, else False."""
    evaluation, trigger, summary = assessment.evaluation, assessment.trigger, _summary(assessment)
    if evaluation.verdict == "InsufficientData":
        needed = f"{summary}; at least {assessment.min_samples} are needed for a verdict."
        return ConditionUpdate(DRIFT_DETECTED, "Unknown", "InsufficientData", needed)
    if trigger is not None and evaluation.verdict in ("Drift", "Decay"):
        return ConditionUpdate(DRIFT_DETECTED, "True", trigger.reason, trigger.message)
    return ConditionUpdate(DRIFT_DETECTED, "False", "NoDrift", f"{summary}: no drift.")


def report_conditions(
    assessment: Assessment, decision: RetrainDecision, drift: ConditionUpdate
) -> tuple[ConditionUpdate, ...]:
    """Ready, Reconciling, Stalled, DriftDetected and WaitingForNewData after an evaluation."""
    evaluation, summary = assessment.evaluation, _summary(assessment)
    waiting_for_data = decision.action == "WaitForNewData"
    return (
        ConditionUpdate(READY, "True", "Evaluated", f"Verdict {evaluation.verdict}: {summary}."),
        ConditionUpdate(RECONCILING, "False", "Evaluated", "The latest window was evaluated."),
        ConditionUpdate(STALLED, "False", "Evaluated", "The latest window was evaluated."),
        drift,
        ConditionUpdate(
            WAITING_FOR_NEW_DATA,
            "True" if waiting_for_data else "False",
            "WaitingForNewData" if waiting_for_data else "NotWaiting",
            decision.message if waiting_for_data else "Retraining does not wait for new data.",
        ),
    )


def transition_events(
    previous: Obj, drift: ConditionUpdate, decision: RetrainDecision
) -> tuple[Event, ...]:
    """Events on transitions only: drift seen or resolved, a run created or suggested, a new
    reason for holding back."""
    events = []
    before = raw_condition(previous, DRIFT_DETECTED).get("status")
    if drift.status == "True" and before != "True":
        events.append(Event("Warning", "DriftDetected", drift.message))
    elif drift.status == "False" and before == "True":
        events.append(Event("Normal", "DriftResolved", drift.message))
    last = previous.get("lastDecision") or {}
    if decision.action == "Create":
        text = f"TrainingRun {decision.run_name}: {decision.message}"
        events.append(Event("Normal", "RetrainTriggered", text))
    elif decision.action == "Suggest" and (
        decision.record is not None or last.get("action") != "Suggest"
    ):
        events.append(Event("Normal", "RetrainSuggested", decision.message))
    elif decision.action in ("Blocked", "WaitForNewData") and last.get("reason") != decision.reason:
        events.append(Event("Normal", decision.reason, decision.message))
    return tuple(events)
