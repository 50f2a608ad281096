"""Pure ModelMonitor evaluation: window counts against the baseline, to a verdict and a trigger.

Inputs are the monitor's spec, the baseline document the serving pods bin on
(`flywheel.dev/stats/v1`), the model's class labels (empty for regressors) and the window's
:class:`~.windows.WindowCounts`. The output is the status's `lastEvaluation` and, when drift or
decay is seen, the :class:`Trigger` the decision logic weighs.

- **Data drift**: one score per feature (`dataDrift.method`, `threshold`); the data drifts when
  at least `minDriftedFeatures` features exceed the threshold.
- **Prediction drift**: the predicted classes against the training label's classes
  (regressors: predictions binned on the label's histogram).
- **Performance**: accuracy (the confusion matrix's diagonal over the labels) or MAE (the
  absolute-error total over the labels) against `performance.min`/`max`, only with at least
  `minLabels` labels in the window.
- Below `minSamples` predictions there is no drift verdict (`InsufficientData`); a performance
  verdict still counts when it has its labels. Decay outranks drift as the trigger's reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np

from flywheel.api.modelmonitor import Evaluation, FeatureScore, ModelMonitorSpec
from flywheel.controllers.modelmonitor.windows import WindowCounts
from flywheel.core.objects import Obj
from flywheel.drift.baseline import FeatureBaseline, class_baseline, feature_baselines
from flywheel.drift.baseline import feature_drift as score_feature
from flywheel.drift.statistics import EmptyDistribution, score
from flywheel_serving.names import UNSEEN, categorical_slots, numeric_slots

EvaluationVerdict = Literal["NoDrift", "Drift", "Decay", "InsufficientData"]
"""What one window shows (the status's `lastEvaluation.verdict`)."""
MAX_LISTED = 256


@dataclass(frozen=True)
class Trigger:
    """Why a retraining is wanted: `DataDrift`, `PredictionDrift`, `PerformanceDecay` or
    `Schedule`; the sentence, and the number behind it (the top drift score or the metric)."""

    reason: str
    message: str
    score: float | None = None


@dataclass(frozen=True)
class Assessment:
    """One evaluation: what the status records and what, if anything, calls for retraining."""

    evaluation: Evaluation
    trigger: Trigger | None
    min_samples: int


def slot_names(stats_feature: Obj) -> list[str]:
    """The serving slots of one baseline feature, in the baseline's count order."""
    if stats_feature.get("type") == "categorical":
        return categorical_slots([str(c["value"]) for c in stats_feature.get("categories", [])])
    return numeric_slots(len((stats_feature.get("histogram") or {}).get("edges") or []))


def window_vector(names: list[str], bins: dict[str, float]) -> np.ndarray[Any, Any]:
    """The window's counts in slot order (a slot no pod reported counts 0)."""
    return np.asarray([bins.get(n, 0.0) for n in names], dtype=np.float64)


def _features(spec: ModelMonitorSpec, stats: Obj, counts: WindowCounts) -> list[FeatureScore]:
    config = spec.data_drift
    wanted = set(config.features) if config.features else None
    baselines = feature_baselines(stats)
    scores: list[FeatureScore] = []
    for feature in stats.get("features", []):
        name = feature["name"]
        baseline = baselines.get(name)
        if baseline is None or (wanted is not None and name not in wanted):
            continue
        seen = window_vector(slot_names(feature), counts.features.get(name, {}))
        result = score_feature(baseline, seen, config.method, config.threshold)
        if result is not None:
            scores.append(
                FeatureScore(name=name, score=_round(result.score), drifted=result.drifted)
            )
    return scores


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def prediction_drift(
    spec: ModelMonitorSpec, stats: Obj, classes: list[str], counts: WindowCounts
) -> float | None:
    """The prediction drift score, or None without predictions or a label baseline."""
    method = spec.prediction_drift.method
    label = stats.get("label") or {}
    try:
        if classes:
            base = class_baseline(stats, classes)
            seen = window_vector([*classes, UNSEEN], counts.predictions)
            return _round(score(method, base, seen))
        baselines = feature_baselines({"features": [label]})
        regression: FeatureBaseline | None = baselines.get(label.get("name", ""))
        if regression is None:
            return None
        seen = window_vector(slot_names(label), counts.predictions)
        result = score_feature(regression, seen, method, spec.prediction_drift.threshold)
        return None if result is None else _round(result.score)
    except EmptyDistribution:
        return None


def performance(spec: ModelMonitorSpec, counts: WindowCounts) -> float | None:
    """The labelled metric over the window, or None below `minLabels`."""
    config = spec.performance
    if config is None or counts.labels < config.min_labels:
        return None
    if config.metric == "accuracy":
        return _round(counts.correct / counts.labels)
    return _round(counts.absolute_error / counts.labels)


def _decayed(spec: ModelMonitorSpec, value: float | None) -> bool:
    config = spec.performance
    if config is None or value is None:
        return False
    return (config.min is not None and value < config.min) or (
        config.max is not None and value > config.max
    )


def evaluate(
    spec: ModelMonitorSpec,
    stats: Obj,
    classes: list[str],
    counts: WindowCounts,
    now: datetime,
) -> Assessment:
    """Score the window and give the verdict (see the module docstring)."""
    samples = round(counts.rows)
    enough = samples >= spec.min_samples
    features = _features(spec, stats, counts) if enough and spec.data_drift.enabled else []
    drifted = [f.name for f in features if f.drifted]
    data_drift = len(drifted) >= spec.data_drift.min_drifted_features
    predicted = (
        prediction_drift(spec, stats, classes, counts)
        if enough and spec.prediction_drift.enabled
        else None
    )
    prediction_drifted = predicted is not None and predicted > spec.prediction_drift.threshold
    metric = performance(spec, counts)
    decayed = _decayed(spec, metric)
    trigger = None
    verdict: EvaluationVerdict
    if decayed:
        assert spec.performance is not None
        verdict = "Decay"
        bound = spec.performance.min if spec.performance.min is not None else spec.performance.max
        trigger = Trigger(
            "PerformanceDecay",
            f"{spec.performance.metric} {metric} over {int(counts.labels)} labels (limit {bound})",
            metric,
        )
    elif enough and (data_drift or prediction_drifted):
        verdict = "Drift"
        trigger = _drift_trigger(spec, features, drifted, data_drift, predicted)
    else:
        verdict = "NoDrift" if enough else "InsufficientData"
    listed = sorted(features, key=lambda f: -f.score)[:MAX_LISTED] if features else None
    if listed is not None and len(features) <= MAX_LISTED:
        listed = features  # all of them, in dataset order
    evaluation = Evaluation(
        time=now.replace(microsecond=0),
        window=spec.window,
        samples=samples,
        labels=round(counts.labels) if spec.performance is not None else None,
        verdict=verdict,
        features=listed,
        drifted_features=drifted[:MAX_LISTED] or None,
        prediction_drift_score=predicted,
        performance=metric,
    )
    return Assessment(evaluation, trigger, spec.min_samples)


def _drift_trigger(
    spec: ModelMonitorSpec,
    features: list[FeatureScore],
    drifted: list[str],
    data_drift: bool,
    predicted: float | None,
) -> Trigger:
    method = spec.data_drift.method
    if data_drift:
        top = sorted((f for f in features if f.drifted), key=lambda f: -f.score)[:5]
        listed = ", ".join(f"{f.name}={f.score:.3g}" for f in top)
        more = f" and {len(drifted) - len(top)} more" if len(drifted) > len(top) else ""
        return Trigger(
            "DataDrift",
            f"{method} over {spec.data_drift.threshold} on {len(drifted)} of {len(features)} "
            f"features: {listed}{more}",
            top[0].score,
        )
    return Trigger(
        "PredictionDrift",
        f"prediction {spec.prediction_drift.method} {predicted:.3g} over "
        f"{spec.prediction_drift.threshold}",
        predicted,
    )
