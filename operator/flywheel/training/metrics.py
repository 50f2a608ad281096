"""Held-out metrics of a trained model, named as in the TrainingRun API."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from sklearn import metrics as skm

DEFAULTS = {
    "classification": ("accuracy", "f1_macro", "roc_auc"),
    "regression": ("mae", "rmse", "r2"),
}


def compute_metrics(
    names: Iterable[str], y_true: Any, y_pred: Any, probabilities: Any | None, classes: Any | None
) -> dict[str, float]:
    """Every requested metric; roc_auc and log_loss need probabilities."""
    scores: dict[str, float] = {}
    for name in names:
        scores[name] = float(_metric(name, y_true, y_pred, probabilities, classes))
    return scores


def _metric(name: str, y_true: Any, y_pred: Any, proba: Any | None, classes: Any | None) -> float:
    if name == "accuracy":
        return float(skm.accuracy_score(y_true, y_pred))
    if name == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(y_true, y_pred))
    if name in ("f1_macro", "f1_weighted"):
        return float(skm.f1_score(y_true, y_pred, average=name.split("_")[1]))
    if name == "precision_macro":
        return float(skm.precision_score(y_true, y_pred, average="macro", zero_division=0))
    if name == "recall_macro":
        return float(skm.recall_score(y_true, y_pred, average="macro", zero_division=0))
    if name == "roc_auc":
        if proba is None:
            raise ValueError("roc_auc needs predicted probabilities")
        if proba.shape[1] == 2:
            return float(skm.roc_auc_score(y_true, proba[:, 1]))
        return float(skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes))
    if name == "log_loss":
        if proba is None:
            raise ValueError("log_loss needs predicted probabilities")
        return float(skm.log_loss(y_true, proba, labels=classes))
    if name == "mae":
        return float(skm.mean_absolute_error(y_true, y_pred))
    if name == "rmse":
        return float(np.sqrt(skm.mean_squared_error(y_true, y_pred)))
    if name == "r2":
        return float(skm.r2_score(y_true, y_pred))
    raise ValueError(f"unknown metric {name}")
