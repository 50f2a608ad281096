"""The status every kind gets on its first visit and on an invalid spec."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from flywheel.api.trainingrun import TrainingRunSpec
from flywheel.conditions import Verdict, find_condition, parse_conditions
from flywheel.status import (
    INVALID_SPEC,
    accepted_patch,
    describe_validation_error,
    first_visit_patch,
    invalid_spec_verdict,
    stalled_patch,
)

T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def _conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in parse_conditions(status["conditions"])}


def test_first_visit_posts_unknown_ready_and_reconciling() -> None:
    patch = first_visit_patch({}, generation=1, kind="Dataset", now=T0)
    assert patch is not None
    assert patch["observedGeneration"] == 1
    assert _conditions(patch) == {
        "Ready": ("Unknown", "Initializing"),
        "Reconciling": ("True", "Initializing"),
    }


def test_first_visit_is_a_no_op_afterwards() -> None:
    status = first_visit_patch(None, generation=1, kind="Dataset", now=T0)
    assert first_visit_patch(status, generation=2, kind="Dataset", now=T0) is None


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
    status = first_visit_patch({}, generation=4, kind="TrainingRun", now=T0)
    verdict = invalid_spec_verdict(_invalid_spec_error())
    patch = stalled_patch(status, verdict, generation=4, now=T0 + timedelta(seconds=1))
    assert patch["observedGeneration"] == 4
    conditions = _conditions(patch)
    assert conditions["Stalled"] == ("True", INVALID_SPEC)
    assert conditions["Ready"] == ("False", INVALID_SPEC)
    assert conditions["Reconciling"][0] == "False"
    ready = find_condition(parse_conditions(patch["conditions"]), "Ready")
    assert ready is not None
    assert "KMeans" in ready.message


def test_a_fixed_spec_clears_stalled_and_unjudges_ready() -> None:
    stalled = stalled_patch({}, Verdict(INVALID_SPEC, "bad"), generation=1, now=T0)
    patch = accepted_patch(stalled, generation=2, kind="TrainingRun", now=T0)
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
    patch = accepted_patch(ready, generation=3, kind="ModelDeployment", now=T0)
    assert _conditions(patch)["Ready"] == ("True", "Serving")


def test_a_resumed_object_keeps_its_controllers_conditions() -> None:
    first = first_visit_patch({}, generation=1, kind="TrainingRun", now=T0)
    accepted = accepted_patch(first, generation=1, kind="TrainingRun", now=T0)
    assert _conditions(accepted)["Stalled"] == ("False", "SpecAccepted"), "posted on first visit"
    assert accepted_patch(accepted, generation=1, kind="TrainingRun", now=T0) == {}
    assert accepted_patch(accepted, generation=2, kind="TrainingRun", now=T0) != {}
