"""Pure ModelMonitor decisions: when drift or decay leads to a retraining, and the guardrails.

The controller evaluates a window (:mod:`flywheel.drift`) and hands the verdict here with what it
read (the monitor's status, whether a retraining run is still in flight, whether the Dataset has
newer data than the serving model was trained on) and the time; it gets back a
:class:`RetrainDecision`. No clock is read here: `now` is passed in, so every guardrail is tested
with an injected clock.

Order of the checks: a schedule that is due, or drift/decay that held for
`consecutiveEvaluations`, is a trigger; then at most one retraining run in flight, `cooldown`
since the last trigger, `maxRunsPerDay` in any 24 hours, and `requireNewData`. `Suggest` mode
records the decision but creates nothing. Run names are deterministic (`<monitor>-retrain-<N>`,
N counting the monitor's decisions), so a decision re-taken after an operator restart finds the
run it already created instead of creating a second one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from croniter import croniter

from flywheel.api.common import API_GROUP, API_VERSION
from flywheel.api.modelmonitor import ModelMonitorSpec, RetrainRecord
from flywheel.conditions import READY, RECONCILING, STALLED, ConditionUpdate, raw_condition
from flywheel.evaluations import Assessment, Trigger, Verdict
from flywheel.podspec import owner_reference

__all__ = ["RetrainDecision", "Trigger", "Verdict", "consecutive", "decide", "duration"]

Action = Literal["None", "Create", "Suggest", "WaitForNewData", "Blocked"]
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DAY = timedelta(hours=24)
DRIFT_DETECTED, WAITING_FOR_NEW_DATA = "DriftDetected", "WaitingForNewData"
MONITOR_LABEL = f"{API_GROUP}/modelmonitor"
REASON_LABEL = f"{API_GROUP}/retrain-reason"
SCORE_LABEL = f"{API_GROUP}/retrain-score"
MESSAGE_ANNOTATION = f"{API_GROUP}/retrain-message"
Obj = dict[str, Any]


def duration(text: str) -> timedelta:
    """A duration such as `90s`, `5m` or `1h30m` (the API's pattern)."""
    parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return timedelta(seconds=sum(float(amount) * _UNITS[unit] for amount, unit in parts))


@dataclass(frozen=True)
class RetrainDecision:
    """What to do, and the status fields that record it."""

    action: Action
    reason: str
    message: str
    consecutive: int
    run_name: str | None = None
    record: RetrainRecord | None = None
    recent: list[RetrainRecord] = field(default_factory=list)


def consecutive(previous: int, verdict: Verdict) -> int:
    """Evaluations in a row that saw drift or decay; no verdict (too little data) keeps the
    count, a clean window resets it."""
    if verdict in ("Drift", "Decay"):
        return previous + 1
    return previous if verdict == "InsufficientData" else 0


def decide(
    spec: ModelMonitorSpec,
    name: str,
    *,
    verdict: Verdict,
    trigger: Trigger | None,
    previous_consecutive: int,
    last: RetrainRecord | None,
    recent: list[RetrainRecord],
    decisions_so_far: int,
    in_flight: str | None,
    new_data: bool,
    schedule_due: bool,
    now: datetime,
) -> RetrainDecision:
    """The retraining decision of one evaluation (see the module docstring)."""
    count = consecutive(previous_consecutive, verdict)
    day = [r for r in recent if now - r.time < DAY]
    if schedule_due:
        trigger = Trigger("Schedule", f"the schedule {spec.schedule!r} is due")
    elif trigger is None or count < spec.consecutive_evaluations:
        if trigger is not None:
            held = f"{count} of {spec.consecutive_evaluations} evaluations in a row"
            return RetrainDecision(
                "None", "Observing", f"{trigger.message} ({held})", count, recent=day
            )
        return RetrainDecision(
            "None", "NoTrigger", "Nothing calls for retraining.", count, recent=day
        )
    policy = spec.retrain
    if policy is None:  # Suggest without a retrain policy: record the observation only
        return RetrainDecision("Suggest", trigger.reason, trigger.message, count, recent=day)
    if in_flight is not None:
        text = f"{trigger.message}; TrainingRun {in_flight} is still running"
        return RetrainDecision("Blocked", "RunInFlight", text, count, recent=day)
    cooldown = duration(spec.cooldown)
    if last is not None and now - last.time < cooldown:
        until = (last.time + cooldown).strftime("%Y-%m-%dT%H:%M:%SZ")
        text = f"{trigger.message}; in cooldown until {until}"
        return RetrainDecision("Blocked", "Cooldown", text, count, recent=day)
    if len(day) >= policy.max_runs_per_day:
        text = f"{trigger.message}; {len(day)} retrainings in the last 24 hours (maxRunsPerDay)"
        return RetrainDecision("Blocked", "DailyBudget", text, count, recent=day)
    if policy.require_new_data and not new_data:
        text = f"{trigger.message}; the Dataset has no version newer than the serving model's"
        return RetrainDecision("WaitForNewData", "WaitingForNewData", text, count, recent=day)
    run = f"{name}-retrain-{decisions_so_far + 1}"
    auto = spec.mode == "Auto"
    record = RetrainRecord(
        time=now,
        training_run=run if auto else None,
        reason=trigger.reason,
        message=trigger.message[:253],
    )
    return RetrainDecision(
        "Create" if auto else "Suggest",
        trigger.reason,
        trigger.message,
        0,
        run if auto else None,
        record,
        [*day, record][-100:],
    )


def schedule_due(spec: ModelMonitorSpec, since: datetime, now: datetime) -> bool:
    """Whether the cron schedule fired after `since` (the last scheduled retraining, or the
    monitor's creation)."""
    if spec.schedule is None:
        return False
    fired: datetime = croniter(spec.schedule, since).get_next(datetime)
    return fired <= now


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 time as the API server writes it (`...Z`), or None."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def evaluation_due(spec: ModelMonitorSpec, status: Obj, generation: int, now: datetime) -> bool:
    """First visit, a new generation, or `interval` since the last evaluation."""
    last = parse_time((status.get("lastEvaluation") or {}).get("time"))
    if last is None or status.get("observedGeneration") != generation:
        return True
    return now - last >= duration(spec.interval)


def schedule_base(meta: Obj, status: Obj) -> datetime:
    """When the schedule last fired for this monitor: its latest scheduled retraining, or its
    creation."""
    scheduled = [r for r in status.get("recentRetrains") or [] if r.get("reason") == "Schedule"]
    times = [parse_time(r["time"]) for r in scheduled]
    times.append(parse_time(meta.get("creationTimestamp")))
    return max(t for t in times if t is not None)


def run_number(name: str, run: str) -> int | None:
    """N of a run named `<monitor>-retrain-<N>`, else None."""
    prefix = f"{name}-retrain-"
    tail = run[len(prefix) :] if run.startswith(prefix) else ""
    return int(tail) if tail.isdigit() else None


@dataclass(frozen=True)
class Event:
    """An Event to post."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Report:
    """The status fields, conditions and Events of one evaluation."""

    status: dict[str, Any]
    conditions: list[ConditionUpdate]
    events: list[Event]


def report(
    previous: dict[str, Any],
    assessment: Assessment,
    decision: RetrainDecision,
    *,
    serving_version: int,
    retrains: int,
) -> Report:
    """What one evaluation writes, and the Events of its transitions."""
    evaluation = assessment.evaluation
    trigger = assessment.trigger
    status: dict[str, Any] = {
        "lastEvaluation": evaluation.model_dump(by_alias=True, exclude_none=True, mode="json"),
        "servingVersion": serving_version,
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
        status["lastRetrain"] = decision.record.model_dump(
            by_alias=True, exclude_none=True, mode="json"
        )
    summary = f"{evaluation.samples} predictions in the last {evaluation.window}"
    if evaluation.verdict == "InsufficientData":
        drift = ConditionUpdate(
            DRIFT_DETECTED,
            "Unknown",
            "InsufficientData",
            f"{summary}; at least {assessment.min_samples} are needed for a verdict.",
        )
    elif trigger is not None and evaluation.verdict in ("Drift", "Decay"):
        drift = ConditionUpdate(DRIFT_DETECTED, "True", trigger.reason, trigger.message)
    else:
        drift = ConditionUpdate(DRIFT_DETECTED, "False", "NoDrift", f"{summary}: no drift.")
    waiting = decision.action == "WaitForNewData"
    conditions = [
        ConditionUpdate(READY, "True", "Evaluated", f"Verdict {evaluation.verdict}: {summary}."),
        ConditionUpdate(RECONCILING, "False", "Evaluated", "The latest window was evaluated."),
        ConditionUpdate(STALLED, "False", "Evaluated", "The latest window was evaluated."),
        drift,
        ConditionUpdate(
            WAITING_FOR_NEW_DATA,
            "True" if waiting else "False",
            "WaitingForNewData" if waiting else "NotWaiting",
            decision.message if waiting else "Retraining does not wait for new data.",
        ),
    ]
    return Report(status, conditions, _events(previous, drift, decision))


def _events(
    previous: dict[str, Any], drift: ConditionUpdate, decision: RetrainDecision
) -> list[Event]:
    events = []
    before = raw_condition(previous, DRIFT_DETECTED).get("status")
    if drift.status == "True" and before != "True":
        events.append(Event("Warning", "DriftDetected", drift.message))
    elif drift.status == "False" and before == "True":
        events.append(Event("Normal", "DriftResolved", drift.message))
    last = (previous.get("lastDecision") or {}).get("reason")
    if decision.action == "Create":
        events.append(
            Event(
                "Normal", "RetrainTriggered", f"TrainingRun {decision.run_name}: {decision.message}"
            )
        )
    elif decision.action == "Suggest":
        events.append(Event("Normal", "RetrainSuggested", decision.message))
    elif decision.action in ("Blocked", "WaitForNewData") and last != decision.reason:
        events.append(Event("Normal", decision.reason, decision.message))
    return events


def render_retrain_run(
    monitor: Obj, spec: ModelMonitorSpec, decision: RetrainDecision, dataset_version: str | None
) -> Obj:
    """The retraining TrainingRun: the template, pinned to the Dataset's latest version (or,
    when the Dataset has none yet, to the version current when the run starts)."""
    assert spec.retrain is not None
    assert decision.run_name is not None
    body = spec.retrain.template.model_dump(by_alias=True, exclude_none=True, mode="json")
    body["datasetRef"].pop("version", None)
    if dataset_version:
        body["datasetRef"]["version"] = dataset_version
    top = decision.message.split(": ", 1)[-1].split(",")[0]
    score = top.split("=")[-1] if "=" in top else ""
    labels = {
        "app.kubernetes.io/managed-by": "flywheel",
        MONITOR_LABEL: monitor["metadata"]["name"],
        REASON_LABEL: decision.reason,
    }
    if score and all(c.isalnum() or c in ".-_" for c in score):
        labels[SCORE_LABEL] = score[:63]
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "TrainingRun",
        "metadata": {
            "name": decision.run_name,
            "namespace": monitor["metadata"]["namespace"],
            "labels": labels,
            "annotations": {MESSAGE_ANNOTATION: decision.message[:1000]},
            "ownerReferences": [{**owner_reference(monitor, "ModelMonitor"), "controller": True}],
        },
        "spec": body,
    }


def adopt(
    name: str, status: Obj, runs: list[Obj]
) -> tuple[int, RetrainRecord | None, list[RetrainRecord], bool]:
    """The decision count, last record and recent records, with a run the operator created but
    did not record (it stopped in between) adopted from the cluster: (count, last, recent,
    adopted)."""
    retrains = int(status.get("retrains") or 0)
    last = (
        RetrainRecord.model_validate(status["lastRetrain"]) if status.get("lastRetrain") else None
    )
    recent = [RetrainRecord.model_validate(r) for r in status.get("recentRetrains") or []]
    numbered = [(run_number(name, r["metadata"]["name"]), r) for r in runs]
    newest = max(((n, r) for n, r in numbered if n is not None), default=None, key=lambda x: x[0])
    if newest is not None and newest[0] > retrains:
        number, run = newest
        meta = run["metadata"]
        record = RetrainRecord(
            time=parse_time(meta["creationTimestamp"]) or datetime.fromtimestamp(0, UTC),
            training_run=meta["name"],
            reason=(meta.get("labels") or {}).get(REASON_LABEL, "Unknown"),
            message=(meta.get("annotations") or {}).get(MESSAGE_ANNOTATION, "adopted")[:253],
        )
        return number, record, [*recent, record], True
    return retrains, last, recent, False
