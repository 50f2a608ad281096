"""The monitor's counts as Prometheus metric families, read at scrape time.

Split from :mod:`.monitoring` (which counts): the series here are fixed by the baseline and the
model's classes, never by traffic.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from flywheel_serving import names
from flywheel_serving.metrics import bucket_label
from flywheel_serving.monitoring import REFUSED_WHY, SCORE_BUCKETS, WHY, Monitor


def families(monitor: Monitor) -> Iterable[Metric]:
    """Every monitoring family of one model, its pending requests counted first."""
    monitor.settle()
    base = [monitor.model, monitor.version]
    rows = CounterMetricFamily(
        names.MONITORED_ROWS,
        "Rows predicted (the sample size of drift windows).",
        labels=[names.MODEL, names.VERSION],
    )
    rows.add_metric(base, monitor.rows)
    yield rows
    rejected = CounterMetricFamily(
        names.MONITORING_REJECTED_ROWS,
        "Rows left out of the monitoring counts (whole requests), by reason: "
        + "; ".join(f"{reason}: {text}" for reason, text in WHY.items())
        + ".",
        labels=[names.MODEL, names.VERSION, names.REASON],
    )
    for reason, count in monitor.rejected.items():
        rejected.add_metric([*base, reason], count)
    yield rejected
    refused = CounterMetricFamily(
        names.REFUSED_ROWS,
        "Rows refused (422) for their values, never answered, by reason: "
        + "; ".join(f"{reason}: {REFUSED_WHY[reason]}" for reason in names.REFUSE_REASONS)
        + ". Their missing values count in the features' null bins, nothing else of them.",
        labels=[names.MODEL, names.VERSION, names.REASON],
    )
    for reason, count in monitor.refused.items():
        refused.add_metric([*base, reason], count)
    yield refused
    values = CounterMetricFamily(
        names.FEATURE_VALUES,
        "Input values per feature and baseline bin (numeric: position in the baseline "
        "histogram counts, 0 underflow, last overflow; categorical: category, __other__, "
        "__unseen__, __null__); the null bins also count the missing values of rows refused "
        "for their values.",
        labels=[names.MODEL, names.VERSION, names.FEATURE, names.BIN],
    )
    counts = monitor.features.tolist()
    for slot, (feature, bin_) in enumerate(monitor.numeric.labels()):
        values.add_metric([*base, feature, bin_], counts[slot])
    for bins, offset in zip(monitor.categorical, monitor.category_offsets, strict=False):
        for position, label in enumerate(bins.labels):
            values.add_metric([*base, bins.name, label], counts[offset + position])
    yield values
    yield from _predictions(monitor, base)
    yield from _feedback(monitor, base)


def _predictions(monitor: Monitor, base: list[str]) -> Iterable[Metric]:
    counts = monitor.predictions.tolist()
    if monitor.classes:
        family = CounterMetricFamily(
            names.PREDICTIONS,
            "Predicted classes.",
            labels=[names.MODEL, names.VERSION, names.CLASS],
        )
        for position, label in enumerate([*monitor.classes, names.UNSEEN]):
            family.add_metric([*base, label], counts[position])
        yield family
        buckets = np.cumsum(monitor.scores).tolist()
        score = HistogramMetricFamily(
            names.PREDICTION_SCORE,
            "The highest class probability of each prediction.",
            labels=[names.MODEL, names.VERSION],
        )
        score.add_metric(
            base,
            [(bucket_label(b), c) for b, c in zip(SCORE_BUCKETS, buckets, strict=True)]
            + [("+Inf", buckets[-1])],
            sum_value=monitor.score_sum,
        )
        yield score
    elif monitor.prediction_bins is not None:
        family = CounterMetricFamily(
            names.PREDICTION_VALUES,
            "Predicted values per bin of the training label's histogram.",
            labels=[names.MODEL, names.VERSION, names.BIN],
        )
        for slot, (_, bin_) in enumerate(monitor.prediction_bins.labels()):
            family.add_metric([*base, bin_], counts[slot])
        yield family


def _feedback(monitor: Monitor, base: list[str]) -> Iterable[Metric]:
    labels = CounterMetricFamily(
        names.FEEDBACK_LABELS, "True labels received.", labels=[names.MODEL, names.VERSION]
    )
    labels.add_metric(base, monitor.labels)
    yield labels
    if monitor.classes:
        slots = [*monitor.classes, names.UNSEEN]
        confusion = CounterMetricFamily(
            names.FEEDBACK_CONFUSION,
            "True labels by predicted and actual class (accuracy = diagonal / total).",
            labels=[names.MODEL, names.VERSION, names.PREDICTED, names.ACTUAL],
        )
        matrix = monitor.confusion.tolist()
        for row, predicted in enumerate(slots):
            for column, actual in enumerate(slots):
                confusion.add_metric([*base, predicted, actual], matrix[row][column])
        yield confusion
        return
    for name, total, text in (
        (
            names.FEEDBACK_ABSOLUTE_ERROR,
            monitor.absolute_error,
            "Sum of |prediction - label|.",
        ),
        (
            names.FEEDBACK_SQUARED_ERROR,
            monitor.squared_error,
            "Sum of (prediction - label)^2.",
        ),
    ):
        family = CounterMetricFamily(name, text, labels=[names.MODEL, names.VERSION])
        family.add_metric(base, total)
        yield family


def info_metric(model: str, version: str, sha256: str, ready: bool) -> Iterable[Metric]:
    """The model info series and readiness."""
    info = GaugeMetricFamily(
        names.MODEL_INFO, "The served model.", labels=[names.MODEL, names.VERSION, names.SHA256]
    )
    info.add_metric([model, version, sha256], 1)
    yield info
    up = GaugeMetricFamily(
        names.MODEL_READY,
        "1 once loaded, verified and warmed up.",
        labels=[names.MODEL, names.VERSION],
    )
    up.add_metric([model, version], 1 if ready else 0)
    yield up
