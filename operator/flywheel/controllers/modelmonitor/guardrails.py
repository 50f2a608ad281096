"""Pure retraining decisions: when drift or decay leads to a TrainingRun, under guardrails.

A schedule that is due, or drift/decay that held for `consecutiveEvaluations`, is a trigger.
The guardrails are then a chain of small checks, in order: at most one retraining run in flight,
`cooldown` since the last trigger, `maxRunsPerDay` in any 24 hours, and `requireNewData`; the
first that holds the trigger back is the decision's reason. `Suggest` mode records the decision
but creates nothing. Run names are deterministic (`<monitor>-retrain-<N>`, N counting the
monitor's decisions), so a decision taken again after an operator restart finds the run it
already created instead of creating a second one. No clock is read: `now` is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from croniter import croniter

from flywheel.api.modelmonitor import ModelMonitorSpec, ModelMonitorStatus, RetrainRecord
from flywheel.controllers.modelmonitor.evaluate import EvaluationVerdict, Trigger
from flywheel.controllers.modelmonitor.render import MESSAGE_ANNOTATION, REASON_LABEL
from flywheel.core.conditions import Finding
from flywheel.core.objects import Obj, annotations_of, labels_of, meta_of
from flywheel.core.policy import first_finding
from flywheel.core.times import duration, parse_time, rfc3339

Action = Literal["None", "Create", "Suggest", "WaitForNewData", "Blocked"]
DAY = timedelta(hours=24)


@dataclass(frozen=True)
class RetrainHistory:
    """The monitor's retraining record: how many decisions it took, the last, the recent ones."""

    decisions: int = 0
    last: RetrainRecord | None = None
    recent: tuple[RetrainRecord, ...] = ()
    adopted: bool = False
    """The last record was recovered from a run found in the cluster (not in the status)."""


@dataclass(frozen=True)
class RetrainInputs:
    """What one retraining decision weighs."""

    spec: ModelMonitorSpec
    monitor: str
    verdict: EvaluationVerdict
    trigger: Trigger | None = None
    previous_consecutive: int = 0
    history: RetrainHistory = field(default_factory=RetrainHistory)
    in_flight: str | None = None
    """A retraining run of this monitor that has not finished."""
    new_data: bool = False
    """The Dataset has a version newer than the serving model was trained on."""
    schedule_due: bool = False


@dataclass(frozen=True)
class RetrainDecision:
    """What to do, and the status fields that record it."""

    action: Action
    reason: str
    message: str
    consecutive: int
    run_name: str | None = None
    record: RetrainRecord | None = None
    recent: tuple[RetrainRecord, ...] = ()
    score: float | None = None
    """The number behind the trigger (the top drift score, the decayed metric)."""


@dataclass(frozen=True)
class Hold(Finding):
    """A guardrail holding a trigger back, and the action that records it."""

    action: Action = "Blocked"


@dataclass(frozen=True)
class Guarded:
    """One guardrail check's input: the trigger and what the guardrails look at."""

    inputs: RetrainInputs
    trigger: Trigger
    day: tuple[RetrainRecord, ...]
    now: datetime


def run_in_flight(subject: Guarded) -> Hold | None:
    """At most one retraining run at a time."""
    running = subject.inputs.in_flight
    if running is None:
        return None
    return Hold("RunInFlight", f"{subject.trigger.message}; TrainingRun {running} is still running")


def cooling_down(subject: Guarded) -> Hold | None:
    """`cooldown` since the last trigger."""
    last, cooldown = subject.inputs.history.last, duration(subject.inputs.spec.cooldown)
    if last is None or subject.now - last.time >= cooldown:
        return None
    until = rfc3339(last.time + cooldown)
    return Hold("Cooldown", f"{subject.trigger.message}; in cooldown until {until}")


def over_budget(subject: Guarded) -> Hold | None:
    """At most `maxRunsPerDay` in any 24 hours."""
    policy = subject.inputs.spec.retrain
    if policy is None or len(subject.day) < policy.max_runs_per_day:
        return None
    count = len(subject.day)
    text = f"{subject.trigger.message}; {count} retrainings in the last 24 hours (maxRunsPerDay)"
    return Hold("DailyBudget", text)


def no_new_data(subject: Guarded) -> Hold | None:
    """With `requireNewData`, only once the Dataset has a newer version."""
    policy = subject.inputs.spec.retrain
    if policy is None or not policy.require_new_data or subject.inputs.new_data:
        return None
    text = f"{subject.trigger.message}; the Dataset has no version newer than the serving model's"
    return Hold("WaitingForNewData", text, action="WaitForNewData")


GUARDRAILS = (run_in_flight, cooling_down, over_budget, no_new_data)
"""In order: the first that holds is the reason."""


def consecutive(previous: int, verdict: EvaluationVerdict) -> int:
    """Evaluations in a row that saw drift or decay; no verdict (too little data) keeps the
    count, a clean window resets it."""
    if verdict in ("Drift", "Decay"):
        return previous + 1
    return previous if verdict == "InsufficientData" else 0


def decide_retrain(inputs: RetrainInputs, now: datetime) -> RetrainDecision:
    """The retraining decision of one evaluation (see the module docstring)."""
    spec = inputs.spec
    count = consecutive(inputs.previous_consecutive, inputs.verdict)
    day = tuple(r for r in inputs.history.recent if now - r.time < DAY)
    trigger = inputs.trigger
    if inputs.schedule_due:
        trigger = Trigger("Schedule", f"the schedule {spec.schedule!r} is due")
    elif trigger is None:
        return RetrainDecision(
            "None", "NoTrigger", "Nothing calls for retraining.", count, recent=day
        )
    elif count < spec.consecutive_evaluations:
        held = f"{count} of {spec.consecutive_evaluations} evaluations in a row"
        text = f"{trigger.message} ({held})"
        return RetrainDecision("None", "Observing", text, count, recent=day, score=trigger.score)
    if spec.retrain is None:  # Suggest without a retrain policy: record the observation only
        return RetrainDecision(
            "Suggest", trigger.reason, trigger.message, count, recent=day, score=trigger.score
        )
    hold = first_finding(GUARDRAILS, Guarded(inputs, trigger, day, now))
    if isinstance(hold, Hold):
        return RetrainDecision(
            hold.action, hold.reason, hold.message, count, recent=day, score=trigger.score
        )
    run = f"{inputs.monitor}-retrain-{inputs.history.decisions + 1}"
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
        (*day, record)[-100:],
        trigger.score,
    )


def schedule_due(spec: ModelMonitorSpec, since: datetime, now: datetime) -> bool:
    """Whether the cron schedule fired after `since` (the last scheduled retraining, or the
    monitor's creation)."""
    if spec.schedule is None:
        return False
    fired: datetime = croniter(spec.schedule, since).get_next(datetime)
    return fired <= now


def schedule_base(created: datetime | None, status: ModelMonitorStatus) -> datetime:
    """When the schedule last fired for this monitor: its latest scheduled retraining, or its
    creation."""
    times = [r.time for r in status.recent_retrains or [] if r.reason == "Schedule"]
    times.append(created or datetime.fromtimestamp(0, UTC))
    return max(times)


def run_number(name: str, run: str) -> int | None:
    """N of a run named `<monitor>-retrain-<N>`, else None."""
    prefix = f"{name}-retrain-"
    tail = run[len(prefix) :] if run.startswith(prefix) else ""
    return int(tail) if tail.isdigit() else None


def adopt(name: str, status: ModelMonitorStatus, runs: list[Obj]) -> RetrainHistory:
    """The monitor's history, with a run the operator created but did not record (it stopped
    in between) adopted from the cluster."""
    history = RetrainHistory(
        status.retrains or 0, status.last_retrain, tuple(status.recent_retrains or ())
    )
    numbered = [(run_number(name, meta_of(r)["name"]), r) for r in runs]
    newest = max(((n, r) for n, r in numbered if n is not None), default=None, key=lambda x: x[0])
    if newest is None or newest[0] <= history.decisions:
        return history
    number, run = newest
    found = meta_of(run)
    record = RetrainRecord(
        time=parse_time(found.get("creationTimestamp")) or datetime.fromtimestamp(0, UTC),
        training_run=found["name"],
        reason=labels_of(run).get(REASON_LABEL, "Unknown"),
        message=annotations_of(run).get(MESSAGE_ANNOTATION, "adopted")[:253],
    )
    return RetrainHistory(number, record, (*history.recent, record), adopted=True)
