"""The status every kind gets on its first visit and on an invalid spec."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from flywheel.api.trainingrun import TrainingRunSpec
from flywheel.core.admission import (
    INVALID_SPEC,
    describe_validation_error,
    generic_updates,
    invalid_spec_finding,
    invalid_spec_outcome,
    merge_patch,
    status_patch,
)
from flywheel.core.conditions import ConditionUpdate, Finding, find_condition, parse_conditions
from flywheel.core.outcome import Outcome

T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def _conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in parse_conditions(status["conditions"])}


def _write(status: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """What the API server stores after a status merge patch."""
    return dict(merge_patch(status, patch))


def _stalled(generation: int, message: str = "bad") -> dict[str, Any]:
    outcome = invalid_spec_outcome(Finding(INVALID_SPEC, message), {}, generation)
    patch = status_patch(
        {}, generation=generation, kind="TrainingRun", outcome=outcome, now=T0, valid=False
    )
    return _write({}, patch)


def test_first_visit_posts_unknown_ready_and_reconciling() -> None:
    patch = status_patch({}, generation=1, kind="Dataset", outcome=Outcome(), now=T0)
    assert patch["observedGeneration"] == 1
    assert _conditions(patch) == {
        "Ready": ("Unknown", "Initializing"),
        "Reconciling": ("True", "Reconciling"),
        "Stalled": ("False", "SpecAccepted"),
    }


def test_first_visit_is_a_no_op_afterwards() -> None:
    status = _write({}, status_patch({}, generation=1, kind="Dataset", outcome=Outcome(), now=T0))
    again = status_patch(status, generation=1, kind="Dataset", outcome=Outcome(), now=T0)
    assert again == {}, "nothing to write when nothing changed"
    assert all(
        u.reason != "Initializing" for u in generic_updates(status, 2, "Dataset", valid=True)
    )


def _invalid_spec_error() -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        TrainingRunSpec.model_validate(
            {
                "model": "m",
                "datasetRef": {"name": "d"},
                "estimator": {"class": "sklearn.cluster.KMeans"},
            }
        )
    return caught.value


def test_validation_errors_name_the_yaml_path() -> None:
    message = describe_validation_error(_invalid_spec_error())
    assert message.startswith("spec.estimator.class: estimator sklearn.cluster.KMeans")


def test_long_error_lists_are_capped() -> None:
    with pytest.raises(ValidationError) as caught:
        TrainingRunSpec.model_validate({f"unknown{i}": i for i in range(15)})
    message = describe_validation_error(caught.value)
    assert message.endswith("more")
    assert message.count(";") == 10


def test_invalid_spec_stalls_the_object() -> None:
    first = _write(
        {}, status_patch({}, generation=4, kind="TrainingRun", outcome=Outcome(), now=T0)
    )
    finding = invalid_spec_finding(_invalid_spec_error())
    outcome = invalid_spec_outcome(finding, first, 4)
    assert [e.reason for e in outcome.events] == [INVALID_SPEC]
    patch = status_patch(
        first,
        generation=4,
        kind="TrainingRun",
        outcome=outcome,
        now=T0 + timedelta(seconds=1),
        valid=False,
    )
    stored = _write(first, patch)
    assert stored["observedGeneration"] == 4
    conditions = _conditions(stored)
    assert conditions["Stalled"] == ("True", INVALID_SPEC)
    assert conditions["Ready"] == ("False", INVALID_SPEC)
    assert conditions["Reconciling"][0] == "False"
    ready = find_condition(parse_conditions(stored["conditions"]), "Ready")
    assert ready is not None
    assert "KMeans" in ready.message
    assert invalid_spec_outcome(finding, stored, 4).events == (), "announced once"


def test_a_fixed_spec_clears_stalled_and_unjudges_ready() -> None:
    stalled = _stalled(1)
    patch = status_patch(stalled, generation=2, kind="TrainingRun", outcome=Outcome(), now=T0)
    conditions = _conditions(patch)
    assert conditions["Stalled"] == ("False", "SpecAccepted")
    assert conditions["Ready"][0] == "Unknown"
    assert conditions["Reconciling"][0] == "True"
    assert patch["observedGeneration"] == 2


def test_accepting_a_spec_keeps_a_ready_verdict() -> None:
    ready = {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Serving",
                "message": "ok",
                "lastTransitionTime": "2026-11-30T11:00:00Z",
            }
        ]
    }
    patch = status_patch(ready, generation=3, kind="ModelDeployment", outcome=Outcome(), now=T0)
    assert _conditions(patch)["Ready"] == ("True", "Serving")


def test_a_resumed_object_keeps_its_controllers_conditions() -> None:
    first = _write(
        {}, status_patch({}, generation=1, kind="TrainingRun", outcome=Outcome(), now=T0)
    )
    assert _conditions(first)["Stalled"] == ("False", "SpecAccepted"), "posted on first visit"
    finished = Outcome(
        conditions=(
            ConditionUpdate("Stalled", "True", "InvalidEstimator", "bad param"),
            ConditionUpdate("Reconciling", "False", "InvalidEstimator", "The run is finished."),
        )
    )
    done = _write(
        first, status_patch(first, generation=1, kind="TrainingRun", outcome=finished, now=T0)
    )
    assert status_patch(done, generation=1, kind="TrainingRun", outcome=Outcome(), now=T0) == {}, (
        "an operator restart does not reopen a finished object"
    )
    assert status_patch(done, generation=2, kind="TrainingRun", outcome=Outcome(), now=T0) != {}


def test_a_status_field_is_written_only_when_the_merge_would_change_it() -> None:
    status = {"lastIngest": {"jobName": "j", "message": "m"}, "rows": 3}
    same = Outcome(status={"lastIngest": {"jobName": "j", "result": None}, "rows": 3})
    assert "lastIngest" not in status_patch(status, generation=None, kind="D", outcome=same, now=T0)
    cleared = Outcome(status={"lastIngest": {"message": None}})
    patch = status_patch(status, generation=None, kind="D", outcome=cleared, now=T0)
    assert patch["lastIngest"] == {"message": None}
