"""An object whose name breaks its kind's name rule (created before the CRD had the rule) is
refused at the edge with `InvalidSpec`, instead of its children being refused forever; a trained
model outside the ModelVersion schema fails its run once instead of being created forever."""

from __future__ import annotations

from flywheel.api.kinds import MODEL_DEPLOYMENT
from flywheel.controllers.trainingrun.decide import registrable
from flywheel.core.target import InvalidSpec, Target, parse_target


def _deployment(name: str) -> dict[str, object]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "ns", "uid": "u", "generation": 1},
        "spec": {"model": "iris", "version": 1},
    }


def test_an_over_long_name_is_an_invalid_spec() -> None:
    refused = parse_target(MODEL_DEPLOYMENT, _deployment("d" * 60))
    assert isinstance(refused, InvalidSpec)
    assert refused.finding.reason == "InvalidSpec"
    assert "at most 55 characters" in refused.finding.message
    assert isinstance(parse_target(MODEL_DEPLOYMENT, _deployment("iris")), Target)


def test_a_model_version_outside_its_schema_is_not_created() -> None:
    body = {"spec": {"model": "iris", "version": 1}}
    why = registrable(body)
    assert why is not None
    assert "cannot be registered" in why
    assert "artifact" in why
