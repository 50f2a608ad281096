"""Monitoring counters on the training baseline's bins: features, predictions, label feedback.

Counts live in plain arrays, updated per request with a few vectorised numpy operations for
large batches or a handful of list increments for a few rows (a per-value `Counter.inc` would
cost more than the inference), and are exposed at scrape time by a custom collector. The series
are fixed by the baseline (features x bins, classes), never by traffic.

Binning (the `flywheel.dev/stats/v1` rule, docs/stats-format.md): a numeric value falls in
position 0 (underflow, below the first edge), 1..B (bin i holds `edges[i-1] <= x < edges[i]`,
the last bin also holds the last edge) or B+1 (overflow), the positions of the baseline's
`histogram.counts`; missing values count as `null`. A categorical value counts as itself when it
is one of the baseline's top categories, as `__other__` when it is one of its other values, as
`__unseen__` otherwise, and as `__null__` when missing.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from flywheel_serving.bins import UNSEEN, CategoricalBins, NumericBins
from flywheel_serving.metrics import bucket_label
from flywheel_serving.model import Inputs, Prediction

SCORE_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0]
SCORE_ARRAY = np.array(SCORE_BUCKETS)
SMALL = 16
"""Up to this many rows, counting in Python beats numpy's per-call overhead."""


class Monitor:
    """All monitoring counts of one served model."""

    def __init__(
        self,
        model: str,
        version: str,
        baseline: dict[str, Any] | None,
        *,
        features: Sequence[tuple[str, str]],
        class_labels: Sequence[str],
    ) -> None:
        """`features`: (name, type) in graph order; numeric ones are the Inputs matrix columns."""
        self.model, self.version = model, version
        stats = {f["name"]: f for f in (baseline or {}).get("features", [])}
        numeric_names = [n for n, t in features if t == "numeric"]
        binned = [
            (column, n, list(stats[n]["histogram"]["edges"]))
            for column, n in enumerate(numeric_names)
            if n in stats and (stats[n].get("histogram") or {}).get("edges")
        ]
        self.numeric = NumericBins.build([(n, e) for _, n, e in binned])
        self._columns = [c for c, _, _ in binned]
        self._all_columns = self._columns == list(range(len(numeric_names)))
        self.categorical = [
            CategoricalBins.build(
                n,
                [str(c["value"]) for c in stats[n].get("categories", [])],
                stats[n].get("otherValues", []),
            )
            for n, t in features
            if t == "categorical" and n in stats
        ]
        self.category_offsets = np.cumsum(
            [self.numeric.slots] + [len(c.labels) for c in self.categorical]
        ).tolist()
        slots = self.category_offsets[-1]
        self.features, self._features = np.zeros(slots, dtype=np.int64), [0] * slots
        self.classes = list(class_labels)
        label = (baseline or {}).get("label") or {}
        edges = (label.get("histogram") or {}).get("edges") if not self.classes else None
        self.prediction_bins = NumericBins.build([("prediction", list(edges))]) if edges else None
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        width = len(self.classes) + 1 if self.classes else self._prediction_slots()
        self.predictions, self._predicted = np.zeros(width, dtype=np.int64), [0] * width
        self.scores = [0] * len(SCORE_BUCKETS)
        self.score_sum = 0.0
        self.rows = 0
        known = len(self.classes) + 1
        self.confusion = np.zeros((known, known), dtype=np.int64)
        self.labels = 0
        self.absolute_error = 0.0
        self.squared_error = 0.0

    def _prediction_slots(self) -> int:
        return self.prediction_bins.slots if self.prediction_bins is not None else 0

    def observe(self, inputs: Inputs, prediction: Prediction) -> None:
        """Count one request's (or batch's) inputs and predictions."""
        rows = inputs.rows
        self.rows += rows
        small = rows <= SMALL
        if self.numeric.names:
            matrix = inputs.numeric if self._all_columns else inputs.numeric[:, self._columns]
            if small:
                self.numeric.count_rows(matrix.tolist(), self._features)
            else:
                self.features[: self.numeric.slots] += self.numeric.count(matrix.astype(np.float64))
        counts = self._features
        for bins, offset in zip(self.categorical, self.category_offsets, strict=False):
            for value in inputs.categorical[bins.name].tolist():
                counts[offset + bins.position(value)] += 1
        if prediction.labels is not None and self.classes:  # no card, no class names to count
            self._count_labels(prediction.labels)
        if prediction.probabilities is not None and prediction.probabilities.size:
            self._count_scores(prediction.probabilities, small)
        if prediction.values is not None and self.prediction_bins is not None:
            if small:
                values = [[v] for v in prediction.values.tolist()]
                self.prediction_bins.count_rows(values, self._predicted)
            else:
                column = prediction.values.astype(np.float64).reshape(-1, 1)
                self.predictions += self.prediction_bins.count(column)

    def _count_labels(self, labels: np.ndarray[Any, Any]) -> None:
        unseen = len(self.classes)
        index, counts = self.class_index, self._predicted
        for label in labels.tolist():  # a dict lookup per row beats sorting object arrays
            counts[index.get(label if isinstance(label, str) else str(label), unseen)] += 1

    def _count_scores(self, probabilities: np.ndarray[Any, Any], small: bool) -> None:
        # float32 probabilities can sum to 1.0000001: clip, so every score has a bucket.
        if small:
            for row in probabilities.tolist():
                score = min(max(row), 1.0)
                self.scores[bisect_left(SCORE_BUCKETS, score)] += 1
                self.score_sum += score
            return
        best = np.minimum(probabilities.max(axis=1), 1.0)
        found = np.bincount(np.searchsorted(SCORE_ARRAY, best), minlength=len(SCORE_BUCKETS))
        self.scores = [a + b for a, b in zip(self.scores, found.tolist(), strict=True)]
        self.score_sum += float(best.sum())

    def feedback(self, predicted: Sequence[Any], actual: Sequence[Any]) -> None:
        """Count true labels against the predictions they answer (classes or values)."""
        self.labels += len(actual)
        if self.classes:
            unknown = len(self.classes)
            for p, a in zip(predicted, actual, strict=True):
                row = self.class_index.get(str(p), unknown)
                column = self.class_index.get(str(a), unknown)
                self.confusion[row, column] += 1
            return
        errors = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
        self.absolute_error += float(np.abs(errors).sum())
        self.squared_error += float((errors**2).sum())

    def collect(self) -> Iterable[Metric]:
        """The counts as Prometheus metric families (called at scrape time)."""
        base = [self.model, self.version]
        rows = CounterMetricFamily(
            "flywheel_monitored_rows",
            "Rows predicted (the sample size of drift windows).",
            labels=["model", "version"],
        )
        rows.add_metric(base, self.rows)
        yield rows
        values = CounterMetricFamily(
            "flywheel_feature_values",
            "Input values per feature and baseline bin (numeric: position in the baseline "
            "histogram counts, 0 underflow, last overflow; categorical: category, __other__, "
            "__unseen__, __null__).",
            labels=["model", "version", "feature", "bin"],
        )
        counts = (self.features + np.asarray(self._features, dtype=np.int64)).tolist()
        for slot, (feature, bin_) in enumerate(self.numeric.labels()):
            values.add_metric([*base, feature, bin_], counts[slot])
        for bins, offset in zip(self.categorical, self.category_offsets, strict=False):
            for position, label in enumerate(bins.labels):
                values.add_metric([*base, bins.name, label], counts[offset + position])
        yield values
        yield from self._predictions(base)
        yield from self._feedback(base)

    def _predictions(self, base: list[str]) -> Iterable[Metric]:
        counts = (self.predictions + np.asarray(self._predicted, dtype=np.int64)).tolist()
        if self.classes:
            family = CounterMetricFamily(
                "flywheel_predictions", "Predicted classes.", labels=["model", "version", "class"]
            )
            for position, label in enumerate([*self.classes, UNSEEN]):
                family.add_metric([*base, label], counts[position])
            yield family
            buckets = np.cumsum(self.scores).tolist()
            score = HistogramMetricFamily(
                "flywheel_prediction_score",
                "The highest class probability of each prediction.",
                labels=["model", "version"],
            )
            score.add_metric(
                base,
                [(bucket_label(b), c) for b, c in zip(SCORE_BUCKETS, buckets, strict=True)]
                + [("+Inf", buckets[-1])],
                sum_value=self.score_sum,
            )
            yield score
        elif self.prediction_bins is not None:
            family = CounterMetricFamily(
                "flywheel_prediction_values",
                "Predicted values per bin of the training label's histogram.",
                labels=["model", "version", "bin"],
            )
            for slot, (_, bin_) in enumerate(self.prediction_bins.labels()):
                family.add_metric([*base, bin_], counts[slot])
            yield family

    def _feedback(self, base: list[str]) -> Iterable[Metric]:
        labels = CounterMetricFamily(
            "flywheel_feedback_labels", "True labels received.", labels=["model", "version"]
        )
        labels.add_metric(base, self.labels)
        yield labels
        if self.classes:
            names = [*self.classes, UNSEEN]
            confusion = CounterMetricFamily(
                "flywheel_feedback_confusion",
                "True labels by predicted and actual class (accuracy = diagonal / total).",
                labels=["model", "version", "predicted", "actual"],
            )
            matrix = self.confusion.tolist()
            for row, predicted in enumerate(names):
                for column, actual in enumerate(names):
                    confusion.add_metric([*base, predicted, actual], matrix[row][column])
            yield confusion
            return
        for name, total, text in (
            (
                "flywheel_feedback_absolute_error",
                self.absolute_error,
                "Sum of |prediction - label|.",
            ),
            (
                "flywheel_feedback_squared_error",
                self.squared_error,
                "Sum of (prediction - label)^2.",
            ),
        ):
            family = CounterMetricFamily(name, text, labels=["model", "version"])
            family.add_metric(base, total)
            yield family


def info_metric(model: str, version: str, sha256: str, ready: bool) -> Iterable[Metric]:
    """The model info series and readiness."""
    info = GaugeMetricFamily(
        "flywheel_model_info", "The served model.", labels=["model", "version", "sha256"]
    )
    info.add_metric([model, version, sha256], 1)
    yield info
    up = GaugeMetricFamily(
        "flywheel_model_ready",
        "1 once loaded, verified and warmed up.",
        labels=["model", "version"],
    )
    up.add_metric([model, version], 1 if ready else 0)
    yield up
