"""Monitoring counters on the training baseline's bins: features, predictions, label feedback.

Every count lives in one numpy int64 array, updated with a few vectorised operations per
request whatever the number of features (a per-value `Counter.inc` would cost more than the
inference), and exposed at scrape time by a custom collector. The series are fixed by the
baseline (features x bins, classes), never by traffic.

Binning (the `flywheel.dev/stats/v1` rule, docs/stats-format.md): a numeric value falls in
position 0 (underflow, below the first edge), 1..B (bin i holds `edges[i-1] <= x < edges[i]`,
the last bin also holds the last edge) or B+1 (overflow), the positions of the baseline's
`histogram.counts`; missing values count as `null`. A categorical value counts as itself when it
is one of the baseline's top categories, as `__other__` when it is one of its other values, as
`__unseen__` otherwise, and as `__null__` when missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

SCORE_BUCKETS = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0])
OTHER, UNSEEN, NULL = "__other__", "__unseen__", "__null__"


@dataclass
class NumericBins:
    """Edges of numeric features, padded into one matrix for vectorised binning."""

    names: list[str]
    edges: np.ndarray[Any, Any]  # features x max_edges, padded with +inf
    sizes: np.ndarray[Any, Any]  # edges per feature
    last: np.ndarray[Any, Any]  # the last edge per feature
    offsets: np.ndarray[Any, Any]  # where each feature's slots start
    slots: int

    @classmethod
    def build(cls, features: Sequence[tuple[str, list[float]]]) -> NumericBins:
        """From (name, edges) pairs; each feature gets len(edges) + 1 positions plus null."""
        widest = max((len(e) for _, e in features), default=1)
        edges = np.full((len(features), widest), np.inf)
        for row, (_, values) in enumerate(features):
            edges[row, : len(values)] = values
        sizes = np.array([len(e) for _, e in features], dtype=np.int64)
        width = sizes + 2  # positions 0..len(edges) and null
        offsets = np.concatenate([[0], np.cumsum(width)[:-1]]).astype(np.int64)
        last = np.array([e[-1] if e else np.inf for _, e in features])
        return cls([n for n, _ in features], edges, sizes, last, offsets, int(width.sum()))

    def positions(self, values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Slot of every value (rows x features, float64 with NaN for missing), flattened."""
        index = (values[:, :, None] >= self.edges[None, :, :]).sum(axis=2)
        index -= (index == self.sizes) & (values == self.last)  # the last edge is in the last bin
        index = np.where(np.isnan(values), self.sizes + 1, index)
        flat: np.ndarray[Any, Any] = (index + self.offsets).ravel()
        return flat

    def labels(self) -> list[tuple[str, str]]:
        """(feature, bin) of every slot, in slot order."""
        return [
            (name, str(position) if position <= size else "null")
            for name, size in zip(self.names, self.sizes.tolist(), strict=True)
            for position in range(size + 2)
        ]


@dataclass
class CategoricalBins:
    """The slots of one categorical feature."""

    name: str
    index: dict[str, int]
    other: set[str]
    labels: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, name: str, top: list[str], others: Iterable[str]) -> CategoricalBins:
        """Top categories first, then `__other__`, `__unseen__`, `__null__`."""
        labels = [*top, OTHER, UNSEEN, NULL]
        return cls(name, {v: i for i, v in enumerate(top)}, set(others), labels)

    def position(self, value: object) -> int:
        """The slot of one value."""
        if value is None:
            return len(self.labels) - 1
        text = str(value)
        found = self.index.get(text)
        if found is not None:
            return found
        return len(self.labels) - 3 if text in self.other else len(self.labels) - 2


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
        self.model, self.version = model, version
        stats = {f["name"]: f for f in (baseline or {}).get("features", [])}
        numeric = [
            (n, list(stats[n]["histogram"]["edges"]))
            for n, t in features
            if t == "numeric" and n in stats and stats[n].get("histogram")
        ]
        self.numeric = NumericBins.build(numeric)
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
        self.features = np.zeros(self.category_offsets[-1], dtype=np.int64)
        self.classes = list(class_labels)
        label = (baseline or {}).get("label") or {}
        edges = (label.get("histogram") or {}).get("edges") if not self.classes else None
        self.prediction_bins = NumericBins.build([("prediction", list(edges))]) if edges else None
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        width = len(self.classes) + 1 if self.classes else (self.prediction_bins or _NONE).slots
        self.predictions = np.zeros(max(width, 1), dtype=np.int64)
        self.scores = np.zeros(len(SCORE_BUCKETS), dtype=np.int64)
        self.score_sum = 0.0
        self.rows = 0
        known = len(self.classes) + 1
        self.confusion = np.zeros((known, known), dtype=np.int64)
        self.labels = 0
        self.absolute_error = 0.0
        self.squared_error = 0.0

    def observe(
        self,
        columns: dict[str, np.ndarray[Any, Any]],
        rows: int,
        labels: np.ndarray[Any, Any] | None,
        probabilities: np.ndarray[Any, Any] | None,
        values: np.ndarray[Any, Any] | None,
    ) -> None:
        """Count one request's inputs and predictions."""
        self.rows += rows
        if self.numeric.names:
            matrix = np.stack([columns[n] for n in self.numeric.names], axis=1).astype(np.float64)
            self.features[: self.numeric.slots] += np.bincount(
                self.numeric.positions(matrix), minlength=self.numeric.slots
            )
        for bins, offset in zip(self.categorical, self.category_offsets, strict=False):
            for value in columns[bins.name].tolist():
                self.features[offset + bins.position(value)] += 1
        if labels is not None:
            found, counts = np.unique(labels.astype(str), return_counts=True)
            for label, count in zip(found.tolist(), counts.tolist(), strict=True):
                self.predictions[self.class_index.get(label, len(self.classes))] += count
        if probabilities is not None and probabilities.size:
            best = np.minimum(probabilities.max(axis=1), 1.0)  # float32 sums reach 1.0000001
            self.scores += np.bincount(
                np.searchsorted(SCORE_BUCKETS, best), minlength=len(SCORE_BUCKETS) + 1
            )[: len(SCORE_BUCKETS)]
            self.score_sum += float(best.sum())
        if values is not None and self.prediction_bins is not None:
            matrix = values.astype(np.float64).reshape(-1, 1)
            self.predictions += np.bincount(
                self.prediction_bins.positions(matrix), minlength=self.prediction_bins.slots
            )

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
        counts = self.features.tolist()
        for slot, (feature, bin_) in enumerate(self.numeric.labels()):
            values.add_metric([*base, feature, bin_], counts[slot])
        for bins, offset in zip(self.categorical, self.category_offsets, strict=False):
            for position, label in enumerate(bins.labels):
                values.add_metric([*base, bins.name, label], counts[offset + position])
        yield values
        yield from self._predictions(base)
        yield from self._feedback(base)

    def _predictions(self, base: list[str]) -> Iterable[Metric]:
        counts = self.predictions.tolist()
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
                [(f"{b:g}", c) for b, c in zip(SCORE_BUCKETS.tolist(), buckets, strict=True)]
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


_NONE = NumericBins.build([])


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
