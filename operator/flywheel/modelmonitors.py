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
from datetime import datetime, timedelta
from typing import Literal

from flywheel.api.modelmonitor import ModelMonitorSpec, RetrainRecord

Verdict = Literal["NoDrift", "Drift", "Decay", "InsufficientData"]
Action = Literal["None", "Create", "Suggest", "WaitForNewData", "Blocked"]
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DAY = timedelta(hours=24)


def duration(text: str) -> timedelta:
    """A duration such as `90s`, `5m` or `1h30m` (the API's pattern)."""
    parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return timedelta(seconds=sum(float(amount) * _UNITS[unit] for amount, unit in parts))


@dataclass(frozen=True)
class Trigger:
    """Why a retraining is wanted: `DataDrift`, `PredictionDrift`, `PerformanceDecay` or
    `Schedule`, and the scores behind it."""

    reason: str
    message: str


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
