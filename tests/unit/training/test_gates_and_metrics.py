"""Metrics by name, and the validation gates: thresholds, champion, direction, relative/absolute."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm

from flywheel.api.trainingrun import ValidationGates
from flywheel.controllers.trainingrun.gates import judge_gates
from flywheel.training.metrics import compute_metrics


def _gates(**spec: Any) -> ValidationGates:
    return ValidationGates.model_validate(spec)


def test_classification_metrics_match_scikit_learn() -> None:
    y = np.array([0, 1, 2, 2, 1, 0])
    pred = np.array([0, 2, 2, 2, 1, 0])
    proba = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.1, 0.3, 0.6],
            [0.1, 0.1, 0.8],
            [0.2, 0.2, 0.6],
            [0.1, 0.7, 0.2],
            [0.6, 0.2, 0.2],
        ]
    )
    got = compute_metrics(
        ["accuracy", "f1_macro", "roc_auc", "log_loss", "balanced_accuracy"],
        y,
        pred,
        proba,
        [0, 1, 2],
    )
    assert got["accuracy"] == pytest.approx(5 / 6)
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))


def test_regression_metrics_by_hand() -> None:
    y, pred = np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0])
    got = compute_metrics(["mae", "rmse", "r2"], y, pred, None, None)
    assert got["mae"] == pytest.approx(0.5)
    assert got["rmse"] == pytest.approx(math.sqrt((0.25 + 0 + 1) / 3))
    assert got["r2"] == pytest.approx(1 - 1.25 / (((y - y.mean()) ** 2).sum()))


def test_thresholds_in_both_directions() -> None:
    gates = _gates(thresholds=[{"metric": "accuracy", "min": 0.9}, {"metric": "rmse", "max": 3}])
    good = judge_gates(gates, {"accuracy": 0.95, "rmse": 2.5})
    assert good.passed
    assert [c.name for c in good.checks] == ["accuracy >= 0.9", "rmse <= 3"]
    bad = judge_gates(gates, {"accuracy": 0.85, "rmse": 2.5})
    assert not bad.passed
    failed = [c for c in bad.checks if not c.passed]
    assert failed[0].message == "accuracy = 0.85, failed >= 0.9"
    missing = judge_gates(gates, {"accuracy": 0.95})
    assert not missing.passed


@pytest.mark.parametrize(
    ("metric", "new", "old", "improvement", "mode", "passes"),
    [
        ("accuracy", 0.93, 0.90, 0.02, "Absolute", True),
        ("accuracy", 0.91, 0.90, 0.02, "Absolute", False),
        ("rmse", 2.7, 3.0, 0.2, "Absolute", True),  # lower is better
        ("rmse", 3.1, 3.0, 0.0, "Absolute", False),
        ("mae", 9.0, 10.0, 0.05, "Relative", True),  # 10% better, 5% required
        ("mae", 9.8, 10.0, 0.05, "Relative", False),  # 2% better
        ("accuracy", 0.90, 0.90, 0.0, "Absolute", True),  # as good passes with no improvement asked
    ],
)
def test_champion_comparison_is_direction_aware(
    metric: str, new: float, old: float, improvement: float, mode: str, passes: bool
) -> None:
    gates = _gates(compareTo={"metric": metric, "minImprovement": improvement, "mode": mode})
    result = judge_gates(gates, {metric: new}, champion={metric: old}, champion_version=3)
    assert result.passed is passes, result.checks[0].message
    assert result.checks[0].name == f"{metric} vs champion v3"
    assert result.champion_version == 3


def test_no_champion_passes_the_comparison() -> None:
    result = judge_gates(_gates(compareTo={"metric": "accuracy"}), {"accuracy": 0.5})
    assert result.passed
    assert "no champion" in result.checks[0].message
    assert judge_gates(None, {"accuracy": 0.1}).passed
