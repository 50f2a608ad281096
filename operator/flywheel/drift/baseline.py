"""Baselines as count vectors, slot for slot the series a model server exports
(docs/serving.md): a Dataset's statistics (`flywheel.dev/stats/v1`) for the features, and the
ModelVersion's own held-out predictions (or, for versions registered without them, the training
label) for the predictions.

Numeric feature: `histogram.counts` (underflow, bins, overflow) and `nulls`. Categorical
feature: the top categories' counts, `__other__`, `__unseen__` (0: the baseline saw every value)
and `nulls`. Classifier predictions: counts per class, then `__unseen__`. Each baseline also
says which of its slots hold values the baseline never had (underflow, overflow, `__unseen__`)
and which holds missing values, for the share checks of :mod:`.decision`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from flywheel.drift.statistics import bin_positions
from flywheel_serving.names import OTHER, numeric_slots

Document = dict[str, Any]
"""A `flywheel.dev/stats/v1` document, as decoded JSON."""


@dataclass(frozen=True)
class FeatureBaseline:
    """One feature's baseline counts in serving slot order, and where numeric bins sit."""

    name: str
    counts: np.ndarray[Any, Any]
    positions: list[float] | None  # numeric: underflow, bin middles, overflow (null left out)
    std: float | None
    new_slots: tuple[int, ...] = ()
    """Slots of values the baseline never had: underflow and overflow, or `__unseen__`."""
    null_slot: int | None = None
    """The slot of missing values."""
    expected_new: float = 0.0
    """How many values the baseline stands for in its never-seen slots under no drift, when
    it holds none there by construction: a numeric feature's range is the baseline's own
    minimum and maximum, so a new value from the same distribution falls outside it with
    probability 2 / (m + 1), as if the baseline held 2 values there; a categorical feature's
    unseen values are, by Good-Turing, as frequent as its values seen once (at most the
    singletons among the top categories plus the other values), at least 1."""
    beyond_range: bool = False
    """The never-seen slots hold values below the baseline's own minimum and above its maximum
    (a numeric feature): under no drift, the chance that the window holds at least `x` values
    beyond one of them is at most (n / (n + m))^x (the `x` most extreme of all n + m values,
    which are exchangeable, all in the window), so each side is tested on its own count."""


def numeric_baseline(name: str, feature: Document) -> FeatureBaseline | None:
    """A numeric feature (or a regressor's label) of a stats document; None without bins."""
    histogram = feature.get("histogram") or {}
    if not histogram.get("edges"):
        return None
    counts = [*histogram["counts"], int(feature.get("nulls") or 0)]
    positions = bin_positions(list(histogram["edges"]))
    std = float(feature["std"]) if feature.get("std") else None
    last = len(counts) - 2
    return FeatureBaseline(
        name, np.asarray(counts, dtype=np.float64), positions, std, (0, last), last + 1, 2.0, True
    )


def feature_baselines(stats: Document) -> dict[str, FeatureBaseline]:
    """Every feature of a stats document, by name."""
    found: dict[str, FeatureBaseline] = {}
    for feature in stats.get("features", []):
        name = feature["name"]
        if feature.get("type") == "numeric":
            numeric = numeric_baseline(name, feature)
            if numeric is not None:
                found[name] = numeric
        elif feature.get("type") == "categorical":
            top = [int(c["count"]) for c in feature.get("categories", [])]
            counts = [*top, int(feature.get(OTHER) or 0), 0, int(feature.get("nulls") or 0)]
            found[name] = FeatureBaseline(
                name,
                np.asarray(counts, dtype=np.float64),
                None,
                None,
                (len(top) + 1,),
                len(top) + 2,
                _singletons(feature, top),
            )
    return found


def _singletons(feature: Document, top: list[int]) -> float:
    """An upper bound of the values a categorical baseline saw once (see `expected_new`)."""
    others = int(feature.get(OTHER) or 0)
    distinct = feature.get("unique")
    other_values = (
        max(int(distinct) - len(top), 0)
        if distinct is not None
        else len(feature.get("otherValues") or [])
    )
    return float(max(1, sum(1 for count in top if count == 1) + min(other_values, others)))


def class_baseline(stats: Document, classes: list[str]) -> np.ndarray[Any, Any]:
    """The training label's counts per class (in the model's class order), then `__unseen__`."""
    label = stats.get("label") or {}
    by_value = {str(c["value"]): int(c["count"]) for c in label.get("categories", [])}
    return np.asarray([by_value.get(c, 0) for c in classes] + [0], dtype=np.float64)


def prediction_baseline(
    stats: Document, classes: list[str], recorded: Mapping[str, int] | None
) -> tuple[FeatureBaseline | None, str]:
    """The prediction baseline and where it comes from: the model's own predictions on its
    held-out rows when the ModelVersion records them (`heldOutPredictions`), else the training
    label (`trainingLabel`: versions registered before predictions were recorded)."""
    if classes:
        if recorded:
            counts = np.asarray([recorded.get(c, 0) for c in classes] + [0], dtype=np.float64)
            source = "heldOutPredictions"
        else:
            counts, source = class_baseline(stats, classes), "trainingLabel"
        slots = (len(classes),)
        return FeatureBaseline("prediction", counts, None, None, slots, None), source
    label = stats.get("label") or {}
    regression = numeric_baseline("prediction", label)
    if regression is None:
        return None, "none"
    if not recorded:
        return regression, "trainingLabel"
    names = numeric_slots(len((label.get("histogram") or {}).get("edges") or []))
    counts = np.asarray([recorded.get(n, 0) for n in names], dtype=np.float64)
    return FeatureBaseline(
        "prediction",
        counts,
        regression.positions,
        regression.std,
        regression.new_slots,
        regression.null_slot,  # edges of the label, not of these counts: nothing floored
    ), "heldOutPredictions"
