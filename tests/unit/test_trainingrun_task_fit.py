"""A TrainingRun's metrics, thresholds and champion metric must fit its estimator's task: the
spec is refused at the edge (the operator stalls it `InvalidSpec` before any Job runs) instead
of a metric being dropped or computed on the wrong kind of target."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from flywheel.api.trainingrun import TrainingRunSpec

RIDGE = {"class": "sklearn.linear_model.Ridge"}
FOREST = {"class": "sklearn.ensemble.RandomForestClassifier"}


def _spec(estimator: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "iris", "datasetRef": {"name": "iris"}, "estimator": estimator, **fields}


@pytest.mark.parametrize(
    ("estimator", "fields", "named"),
    [
        (RIDGE, {"metrics": ["roc_auc"]}, "metrics: roc_auc"),
        (RIDGE, {"validation": {"thresholds": [{"metric": "accuracy", "min": 0.9}]}}, "accuracy"),
        (FOREST, {"validation": {"compareTo": {"metric": "rmse"}}}, "compareTo.metric: rmse"),
        (FOREST, {"metrics": ["accuracy", "r2"]}, "metrics: r2"),
    ],
)
def test_a_metric_of_the_other_task_is_refused(
    estimator: dict[str, Any], fields: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        TrainingRunSpec.model_validate(_spec(estimator, **fields))
    assert named in str(refused.value)
    assert "cannot be computed for a" in str(refused.value)


def test_metrics_of_the_task_are_accepted() -> None:
    TrainingRunSpec.model_validate(_spec(RIDGE, metrics=["mae", "r2"]))
    gates = {"thresholds": [{"metric": "roc_auc", "min": 0.8}], "compareTo": {"metric": "f1_macro"}}
    TrainingRunSpec.model_validate(_spec(FOREST, validation=gates))
