"""The monitor's retraining guardrails, with an injected clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flywheel.api.modelmonitor import ModelMonitorSpec, RetrainRecord
from flywheel.controllers.modelmonitor.evaluate import Trigger
from flywheel.controllers.modelmonitor.guardrails import (
    RetrainDecision,
    RetrainHistory,
    RetrainInputs,
    consecutive,
    decide_retrain,
)
from flywheel.core.times import duration

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DRIFT = Trigger("DataDrift", "2 features drifted: x (psi 0.41), y (psi 0.33)", 0.41)


TEMPLATE = {
    "model": "iris",
    "datasetRef": {"name": "iris"},
    "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
}


def _spec(**fields: Any) -> ModelMonitorSpec:
    return ModelMonitorSpec.model_validate(
        {
            "deploymentRef": {"name": "iris"},
            "mode": "Auto",
            "retrain": {"template": TEMPLATE},
            **fields,
        }
    )


def _decide(spec: ModelMonitorSpec, **given: Any) -> RetrainDecision:
    """`decide_retrain` for monitor `mon` at NOW: drift seen once before, new data, the rest
    as `RetrainInputs` defaults it (nothing in flight, no history, no schedule)."""
    base = RetrainInputs(spec, "mon", "Drift", DRIFT, previous_consecutive=1, new_data=True)
    return decide_retrain(replace(base, **given), NOW)


def _record(hours_ago: float) -> RetrainRecord:
    return RetrainRecord(
        time=NOW - timedelta(hours=hours_ago), training_run="r", reason="DataDrift", message="m"
    )


def _history(last: RetrainRecord | None, *recent: RetrainRecord) -> RetrainHistory:
    return RetrainHistory(last=last, recent=recent)


def test_durations() -> None:
    assert duration("90s") == timedelta(seconds=90)
    assert duration("1h30m") == timedelta(minutes=90)
    assert duration("250ms") == timedelta(milliseconds=250)
    with pytest.raises(ValueError, match="not a duration"):
        duration("5 minutes")


def test_consecutive_evaluations() -> None:
    assert consecutive(1, "Drift") == 2
    assert consecutive(3, "InsufficientData") == 3
    assert consecutive(3, "NoDrift") == 0


def test_drift_must_hold_for_consecutive_evaluations() -> None:
    spec = _spec(consecutiveEvaluations=3)
    waiting = _decide(spec, previous_consecutive=1)
    assert (waiting.action, waiting.reason, waiting.consecutive) == ("None", "Observing", 2)
    assert "2 of 3 evaluations" in waiting.message
    created = _decide(spec, previous_consecutive=2)
    assert created.action == "Create"
    assert created.run_name == "mon-retrain-1"
    assert created.record is not None
    assert created.record.training_run == "mon-retrain-1"
    assert created.record.reason == "DataDrift"
    assert created.consecutive == 0, "the count starts again after a trigger"
    assert created.score == 0.41, "the number behind the trigger travels with the decision"


def test_no_trigger_no_run() -> None:
    quiet = _decide(_spec(), verdict="NoDrift", trigger=None)
    assert (quiet.action, quiet.consecutive) == ("None", 0)


def test_guardrails_in_order() -> None:
    spec = _spec(cooldown="1h", retrain={"template": TEMPLATE, "maxRunsPerDay": 2})
    assert _decide(spec, in_flight="mon-retrain-1").reason == "RunInFlight"
    cooling = _decide(spec, history=_history(_record(0.5), _record(0.5)))
    assert cooling.reason == "Cooldown"
    assert "12:30:00Z" in cooling.message
    budget = _decide(spec, history=_history(_record(2), _record(2), _record(5)))
    assert budget.reason == "DailyBudget"
    old = _decide(spec, history=_history(_record(2), _record(2), _record(30)))
    assert old.action == "Create", "a run older than 24 hours does not count"
    assert len(old.recent) == 2
    stale = _decide(spec, new_data=False)
    assert (stale.action, stale.reason) == ("WaitForNewData", "WaitingForNewData")


def test_new_data_not_required_when_turned_off() -> None:
    spec = _spec(retrain={"template": TEMPLATE, "requireNewData": False})
    assert _decide(spec, new_data=False).action == "Create"


def test_suggest_mode_records_but_creates_nothing() -> None:
    suggested = _decide(_spec(mode="Suggest"))
    assert suggested.action == "Suggest"
    assert suggested.run_name is None
    assert suggested.record is not None
    assert suggested.record.training_run is None


def test_a_due_schedule_triggers_under_the_same_guardrails() -> None:
    spec = _spec(schedule="0 3 * * *")
    scheduled = _decide(
        spec, verdict="NoDrift", trigger=None, previous_consecutive=0, schedule_due=True
    )
    assert (scheduled.action, scheduled.reason) == ("Create", "Schedule")
    assert _decide(spec, schedule_due=True, history=_history(_record(0.1))).reason == "Cooldown"


def test_the_run_name_is_the_same_when_the_decision_is_taken_again() -> None:
    first = _decide(_spec(), history=RetrainHistory(decisions=4))
    again = _decide(_spec(), history=RetrainHistory(decisions=4))
    assert first.run_name == again.run_name == "mon-retrain-5"
