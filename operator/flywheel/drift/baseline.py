"""A Dataset's statistics (`flywheel.dev/stats/v1`) as baseline count vectors, slot for slot
the series a model server exports (docs/serving.md), and the per-feature scores of a window.

Numeric feature: `histogram.counts` (underflow, bins, overflow) and `nulls`. Categorical
feature: the top categories' counts, `__other__`, `__unseen__` (0: the baseline saw every value)
and `nulls`. Classifier predictions: the label's class counts and `__unseen__`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from flywheel.drift.statistics import EmptyDistribution, Method, bin_positions, score
from flywheel_serving.names import OTHER

Document = dict[str, Any]
"""A `flywheel.dev/stats/v1` document, as decoded JSON."""


@dataclass(frozen=True)
class FeatureBaseline:
    """One feature's baseline counts in serving slot order, and where numeric bins sit."""

    name: str
    counts: np.ndarray[Any, Any]
    positions: list[float] | None  # numeric: underflow, bin middles, overflow (null left out)
    std: float | None


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's score in a window."""

    name: str
    score: float
    drifted: bool


def feature_baselines(stats: Document) -> dict[str, FeatureBaseline]:
    """Every feature of a stats document, by name."""
    found: dict[str, FeatureBaseline] = {}
    for feature in stats.get("features", []):
        name = feature["name"]
        histogram = feature.get("histogram") or {}
        if feature.get("type") == "numeric" and histogram.get("edges"):
            counts = [*histogram["counts"], int(feature.get("nulls") or 0)]
            positions = bin_positions(list(histogram["edges"]))
            std = float(feature["std"]) if feature.get("std") else None
            found[name] = FeatureBaseline(
                name, np.asarray(counts, dtype=np.float64), positions, std
            )
        elif feature.get("type") == "categorical":
            top = [int(c["count"]) for c in feature.get("categories", [])]
            counts = [*top, int(feature.get(OTHER) or 0), 0, int(feature.get("nulls") or 0)]
            found[name] = FeatureBaseline(name, np.asarray(counts, dtype=np.float64), None, None)
    return found


def class_baseline(stats: Document, classes: list[str]) -> np.ndarray[Any, Any]:
    """The training label's counts per class (in the model's class order), then `__unseen__`."""
    label = stats.get("label") or {}
    by_value = {str(c["value"]): int(c["count"]) for c in label.get("categories", [])}
    return np.asarray([by_value.get(c, 0) for c in classes] + [0], dtype=np.float64)


def feature_drift(
    baseline: FeatureBaseline, window: np.ndarray[Any, Any], method: Method, threshold: float
) -> FeatureDrift | None:
    """The feature's score, or None when the window has no value of it."""
    window = np.asarray(window, dtype=np.float64)
    if window.shape != baseline.counts.shape:
        raise ValueError(
            f"feature {baseline.name}: {window.size} window slots, {baseline.counts.size} baseline"
        )
    base, seen = baseline.counts, window
    positions = baseline.positions
    if method == "wasserstein" and positions is not None:
        base, seen = base[:-1], seen[:-1]  # nulls have no position
    try:
        value = score(
            method, base, seen, positions if method == "wasserstein" else None, baseline.std
        )
    except EmptyDistribution:
        return None
    return FeatureDrift(baseline.name, value, value > threshold)
