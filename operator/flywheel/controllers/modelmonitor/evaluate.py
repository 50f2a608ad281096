"""Pure ModelMonitor evaluation: window counts against the baseline, to a verdict and a trigger.

Inputs are the monitor's spec, the baseline document the serving pods bin on
(`flywheel.dev/stats/v1`), the model's class labels (empty for regressors) and the window's
:class:`~.windows.WindowCounts`. The output is the status's `lastEvaluation` and, when drift or
decay is seen, the :class:`Trigger` the decision logic weighs.

- **Data drift**: one verdict per feature (:func:`flywheel.drift.decision.judge`: missing
  values, never-seen values, then the distribution's shift against its critical value or the
  fixed threshold), alpha corrected over the features judged; the data drifts when at least
  `minDriftedFeatures` features drift.
- **Prediction drift**: the predicted classes (regressors: predictions binned on the label's
  histogram) against the model's own predictions on its held-out rows, recorded with the
  ModelVersion; versions registered without them fall back to the training label.
- **Performance**: accuracy (the confusion matrix's diagonal over the labels) or MAE (the
  absolute-error total over the labels) against `performance.min`/`max`, only with at least
  `minLabels` labels in the window.
- Below `minSamples` predictions there is no drift verdict (`InsufficientData`); a performance
  verdict still counts when it has its labels. Decay outranks drift as the trigger's reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np

from flywheel.api.modelmonitor import DriftTest, Evaluation, FeatureScore, ModelMonitorSpec
from flywheel.controllers.modelmonitor.windows import WindowCounts
from flywheel.core.objects import Obj
from flywheel.drift.baseline import feature_baselines, prediction_baseline
from flywheel.drift.decision import DriftRule, FeatureVerdict, judge
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


def drift_rule(config: DriftTest) -> DriftRule:
    """The pure decision's rule from a monitor's `dataDrift` or `predictionDrift`."""
    return DriftRule(
        method=config.method,
        decision=config.decision,
        threshold=config.threshold,
        alpha=config.alpha,
        min_effect=config.min_effect,
        max_new_share=config.max_new_value_share,
    )


def feature_score(verdict: FeatureVerdict) -> FeatureScore:
    """A verdict as the status records it."""
    return FeatureScore(
        name=verdict.name,
        score=_round(verdict.score),
        critical_value=_round(verdict.critical),
        effect=_round(verdict.effect),
        missing_share=_round(verdict.missing_share),
        new_value_share=_round(verdict.new_share),
        drifted=verdict.drifted,
        reason=verdict.reason,
    )


def _features(spec: ModelMonitorSpec, stats: Obj, counts: WindowCounts) -> list[FeatureScore]:
    config = spec.data_drift
    wanted = set(config.features) if config.features else None
    baselines = feature_baselines(stats)
    judged = [
        (baselines[f["name"]], window_vector(slot_names(f), counts.features.get(f["name"], {})))
        for f in stats.get("features", [])
        if f["name"] in baselines and (wanted is None or f["name"] in wanted)
    ]
    rule = drift_rule(config)
    tests = len(judged) + (1 if spec.prediction_drift.enabled else 0)
    verdicts = (judge(baseline, seen, rule, tests) for baseline, seen in judged)
    return [feature_score(v) for v in verdicts if v is not None]


def _round(value: float) -> float:
    return float(f"{value:.6g}") if math.isfinite(value) else value


def prediction_drift(
    spec: ModelMonitorSpec,
    stats: Obj,
    classes: list[str],
    counts: WindowCounts,
    recorded: Mapping[str, int] | None = None,
    tests: int = 1,
) -> tuple[FeatureScore | None, str | None]:
    """The predictions' verdict and its baseline's source, or None without predictions or a
    baseline."""
    baseline, source = prediction_baseline(stats, classes, recorded)
    if baseline is None:
        return None, None
    label = stats.get("label") or {}
    names = [*classes, UNSEEN] if classes else slot_names(label)
    seen = window_vector(names, counts.predictions)
    verdict = judge(baseline, seen, drift_rule(spec.prediction_drift), tests)
    return (None if verdict is None else feature_score(verdict)), source


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
    recorded_predictions: Mapping[str, int] | None = None,
) -> Assessment:
    """Score the window and give the verdict (see the module docstring).
    `recorded_predictions`: the ModelVersion's held-out prediction counts per serving slot."""
    samples = round(counts.rows)
    enough = samples >= spec.min_samples
    features = _features(spec, stats, counts) if enough and spec.data_drift.enabled else []
    drifted = [f.name for f in features if f.drifted]
    data_drift = len(drifted) >= spec.data_drift.min_drifted_features
    predicted, source = None, None
    if enough and spec.prediction_drift.enabled:
        tests = len(features) + 1 if spec.data_drift.enabled else 1
        predicted, source = prediction_drift(
            spec, stats, classes, counts, recorded_predictions, tests
        )
    prediction_drifted = predicted is not None and predicted.drifted
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
    listed = sorted(features, key=_severity)[:MAX_LISTED] if features else None
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
        prediction_drift_score=predicted.score if predicted is not None else None,
        prediction_drift=predicted,
        prediction_baseline=source if predicted is not None else None,
        performance=metric,
    )
    return Assessment(evaluation, trigger, spec.min_samples)


def _severity(score: FeatureScore) -> tuple[bool, float]:
    """Drifted first, then by how far past its critical value."""
    critical = score.critical_value or 0.0
    ratio = score.score / critical if critical > 0 else score.score
    return (not score.drifted, -ratio)


def describe(score: FeatureScore) -> str:
    """One verdict in a few words, e.g. `n00 psi 0.31 > 0.012` or `c1 new values 2.1%`."""
    if score.reason == "Missing":
        return f"{score.name} missing {100 * (score.missing_share or 0):.2g}%"
    if score.reason == "NewValues":
        return f"{score.name} new values {100 * (score.new_value_share or 0):.2g}%"
    return f"{score.name} {score.score:.3g} > {score.critical_value or 0:.3g}"


def _drift_trigger(
    spec: ModelMonitorSpec,
    features: list[FeatureScore],
    drifted: list[str],
    data_drift: bool,
    predicted: FeatureScore | None,
) -> Trigger:
    config = spec.data_drift
    how = (
        f"{config.method} calibrated at alpha {config.alpha}"
        if config.decision == "Calibrated"
        else f"{config.method} over {config.threshold}"
    )
    if data_drift:
        top = sorted((f for f in features if f.drifted), key=_severity)[:5]
        listed = ", ".join(describe(f) for f in top)
        more = f" and {len(drifted) - len(top)} more" if len(drifted) > len(top) else ""
        return Trigger(
            "DataDrift",
            f"{len(drifted)} of {len(features)} features drifted ({how}): {listed}{more}",
            top[0].score,
        )
    assert predicted is not None
    return Trigger(
        "PredictionDrift",
        f"predictions drifted ({spec.prediction_drift.method}): {describe(predicted)}",
        predicted.score,
    )
