"""Every example is accepted or refused exactly as its annotation says.

Valid examples must pass the CRD schema + CEL (offline, tests/support/crdcheck.py) and parse
into the pydantic models. Each invalid example names the error fragment users must see: `stage:
api` ones are refused by the schema or a CEL rule, `stage: operator` ones pass the API server and
are refused when the operator parses the spec (then Stalled, reason InvalidSpec).
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flywheel.api import KINDS_BY_NAME
from flywheel.core.admission import invalid_spec_finding
from tests.support.crdcheck import crd_schema, validate
from tests.support.examples import Example, committed_crds, invalid_examples, valid_examples

CRDS = committed_crds()


def test_there_are_enough_invalid_examples() -> None:
    examples = invalid_examples()
    assert len(examples) >= 15
    assert all(e.expect for e in examples), "every invalid example needs '# expect:'"
    assert {e.stage for e in examples} <= {"api", "operator"}
    kinds = {e.objects[0]["kind"] for e in examples}
    assert kinds == set(KINDS_BY_NAME), "every kind has invalid examples"


def test_quickstart_has_the_four_user_kinds() -> None:
    kinds = {
        obj["kind"]
        for e in valid_examples()
        if e.path.parent.name == "quickstart"
        for obj in e.objects
    }
    assert kinds == {"Dataset", "TrainingRun", "ModelDeployment", "ModelMonitor"}


@pytest.mark.parametrize("example", valid_examples(), ids=lambda e: e.id)
def test_valid_example_is_accepted(example: Example) -> None:
    assert example.objects
    for obj in example.objects:
        errors = validate(crd_schema(CRDS[obj["kind"]]), obj)
        assert errors == []
        KINDS_BY_NAME[obj["kind"]].spec.model_validate(obj["spec"])


@pytest.mark.parametrize("example", invalid_examples(), ids=lambda e: e.id)
def test_invalid_example_is_refused_with_its_message(example: Example) -> None:
    (obj,) = example.objects
    assert example.expect is not None
    errors = validate(crd_schema(CRDS[obj["kind"]]), obj)
    if example.stage == "api":
        assert errors, "the API server would accept this"
        assert any(example.expect in e for e in errors), errors
        return
    assert errors == [], "an operator-stage example must pass the API server"
    with pytest.raises(ValidationError) as caught:
        KINDS_BY_NAME[obj["kind"]].spec.model_validate(obj["spec"])
    finding = invalid_spec_finding(caught.value)
    assert finding.reason == "InvalidSpec"
    assert example.expect in finding.message
