"""Monitoring counters on the training baseline's bins: features, predictions, label feedback.

Requests are taken as they are answered and counted in batches (`FLUSH_ROWS` rows or
`FLUSH_REQUESTS` requests), and always before a scrape, with a few vectorised numpy calls per
batch: a per-value `Counter.inc` would cost more than the inference, and even one numpy pass per
request costs more in call overhead than in counting. Counts live in plain arrays, exposed at
scrape time by a custom collector. The series are fixed by the baseline (features x bins,
classes), never by traffic.

Binning (the `flywheel.dev/stats/v1` rule, docs/stats-format.md): a numeric value falls in
position 0 (underflow, below the first edge), 1..B (bin i holds `edges[i-1] <= x < edges[i]`,
the last bin also holds the last edge) or B+1 (overflow), the positions of the baseline's
`histogram.counts`; missing values count as `null`. A categorical value counts as itself when it
is one of the baseline's top categories, as `__other__` when it is one of its other values, as
`__unseen__` otherwise, and as `__null__` when missing.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from flywheel_serving import names
from flywheel_serving.bins import CategoricalBins, NumericBins
from flywheel_serving.metrics import bucket_label
from flywheel_serving.model import Inputs, Prediction

logger = logging.getLogger("flywheel_serving")
SCORE_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0]
SCORE_ARRAY = np.array(SCORE_BUCKETS)
FLUSH_ROWS = 1024
"""Rows taken before they are counted. numpy's per-call cost (several µs a call with the cold
caches of a server between requests) dwarfs its per-value cost, so one count per ~1,000 rows
costs a fraction of one per request; a scrape counts whatever is pending first."""
FLUSH_REQUESTS = 32
"""Requests taken before they are counted, whatever their size: joining many tiny arrays costs
more than it saves, and the count that one request in this many does stays short."""


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
        self.features = np.zeros(slots, dtype=np.int64)
        self.classes = list(class_labels)
        label = (baseline or {}).get("label") or {}
        edges = (label.get("histogram") or {}).get("edges") if not self.classes else None
        self.prediction_bins = NumericBins.build([("prediction", list(edges))]) if edges else None
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        width = len(self.classes) + 1 if self.classes else self._prediction_slots()
        self.predictions = np.zeros(width, dtype=np.int64)
        self.scores = np.zeros(len(SCORE_BUCKETS), dtype=np.int64)
        self.score_sum = 0.0
        self.rows = 0
        known = len(self.classes) + 1
        self.confusion = np.zeros((known, known), dtype=np.int64)
        self.labels = 0
        self.absolute_error = 0.0
        self.squared_error = 0.0
        self._pending: list[tuple[Inputs, Prediction]] = []
        self._pending_rows = 0

    def _prediction_slots(self) -> int:
        return self.prediction_bins.slots if self.prediction_bins is not None else 0

    def observe(self, inputs: Inputs, prediction: Prediction) -> None:
        """Take one request's (or batch's) inputs and predictions; they are counted in batches
        (`FLUSH_ROWS` rows or `FLUSH_REQUESTS` requests), and always before a scrape, so scrapes
        see every row."""
        self._pending.append((inputs, prediction))
        self._pending_rows += inputs.rows
        if self._pending_rows >= FLUSH_ROWS or len(self._pending) >= FLUSH_REQUESTS:
            self.flush()

    def flush(self) -> None:
        """Count everything taken so far: a few vectorised calls for the whole batch."""
        if not self._pending:
            return
        parts, self._pending, self._pending_rows = self._pending, [], 0
        inputs = parts[0][0] if len(parts) == 1 else Inputs.concatenate([i for i, _ in parts])
        self.rows += inputs.rows
        if self.numeric.names:
            matrix = inputs.numeric if self._all_columns else inputs.numeric[:, self._columns]
            self.features[: self.numeric.slots] += self.numeric.count(matrix)
        for bins, offset in zip(self.categorical, self.category_offsets, strict=False):
            for value, seen in Counter(inputs.categorical[bins.name].tolist()).items():
                self.features[offset + bins.position(value)] += seen
        predictions = [p for _, p in parts]
        if self.classes and predictions[0].labels is not None:  # no card: no class names
            self._count_labels(_joined([p.labels for p in predictions]))
        if predictions[0].probabilities is not None and predictions[0].probabilities.size:
            self._count_scores(_joined([p.probabilities for p in predictions]))
        if predictions[0].values is not None and self.prediction_bins is not None:
            values = _joined([p.values for p in predictions])
            self.predictions += self.prediction_bins.count(values.reshape(-1, 1))

    def _count_labels(self, labels: np.ndarray[Any, Any]) -> None:
        unseen = len(self.classes)
        index, counts = self.class_index, self.predictions
        # Counting in C first, then one lookup per distinct label, beats sorting object arrays.
        for label, seen in Counter(labels.tolist()).items():
            counts[index.get(label if isinstance(label, str) else str(label), unseen)] += seen

    def _count_scores(self, probabilities: np.ndarray[Any, Any]) -> None:
        # float32 probabilities can sum to 1.0000001: clip, so every score has a bucket.
        best = _row_max(probabilities)
        np.minimum(best, 1.0, out=best)
        self.scores += np.bincount(np.searchsorted(SCORE_ARRAY, best), minlength=len(SCORE_BUCKETS))
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
        try:
            self.flush()
        except Exception:  # a monitoring bug must not take /metrics down with it
            logger.exception("counting the pending requests failed")
        base = [self.model, self.version]
        rows = CounterMetricFamily(
            names.MONITORED_ROWS,
            "Rows predicted (the sample size of drift windows).",
            labels=[names.MODEL, names.VERSION],
        )
        rows.add_metric(base, self.rows)
        yield rows
        values = CounterMetricFamily(
            names.FEATURE_VALUES,
            "Input values per feature and baseline bin (numeric: position in the baseline "
            "histogram counts, 0 underflow, last overflow; categorical: category, __other__, "
            "__unseen__, __null__).",
            labels=[names.MODEL, names.VERSION, names.FEATURE, names.BIN],
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
                names.PREDICTIONS,
                "Predicted classes.",
                labels=[names.MODEL, names.VERSION, names.CLASS],
            )
            for position, label in enumerate([*self.classes, names.UNSEEN]):
                family.add_metric([*base, label], counts[position])
            yield family
            buckets = np.cumsum(self.scores).tolist()
            score = HistogramMetricFamily(
                names.PREDICTION_SCORE,
                "The highest class probability of each prediction.",
                labels=[names.MODEL, names.VERSION],
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
                names.PREDICTION_VALUES,
                "Predicted values per bin of the training label's histogram.",
                labels=[names.MODEL, names.VERSION, names.BIN],
            )
            for slot, (_, bin_) in enumerate(self.prediction_bins.labels()):
                family.add_metric([*base, bin_], counts[slot])
            yield family

    def _feedback(self, base: list[str]) -> Iterable[Metric]:
        labels = CounterMetricFamily(
            names.FEEDBACK_LABELS, "True labels received.", labels=[names.MODEL, names.VERSION]
        )
        labels.add_metric(base, self.labels)
        yield labels
        if self.classes:
            slots = [*self.classes, names.UNSEEN]
            confusion = CounterMetricFamily(
                names.FEEDBACK_CONFUSION,
                "True labels by predicted and actual class (accuracy = diagonal / total).",
                labels=[names.MODEL, names.VERSION, names.PREDICTED, names.ACTUAL],
            )
            matrix = self.confusion.tolist()
            for row, predicted in enumerate(slots):
                for column, actual in enumerate(slots):
                    confusion.add_metric([*base, predicted, actual], matrix[row][column])
            yield confusion
            return
        for name, total, text in (
            (
                names.FEEDBACK_ABSOLUTE_ERROR,
                self.absolute_error,
                "Sum of |prediction - label|.",
            ),
            (
                names.FEEDBACK_SQUARED_ERROR,
                self.squared_error,
                "Sum of (prediction - label)^2.",
            ),
        ):
            family = CounterMetricFamily(name, text, labels=[names.MODEL, names.VERSION])
            family.add_metric(base, total)
            yield family


def _joined(arrays: list[np.ndarray[Any, Any] | None]) -> np.ndarray[Any, Any]:
    present = [a for a in arrays if a is not None]
    return present[0] if len(present) == 1 else np.concatenate(present)


def _row_max(probabilities: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The highest probability of each row. numpy reduces a short axis slowly: for a few
    classes, a running `maximum` over the columns is several times faster than `max(axis=1)`."""
    classes = probabilities.shape[1]
    if classes > 8:
        found: np.ndarray[Any, Any] = probabilities.max(axis=1)
        return found
    best = probabilities[:, 0].copy()
    for column in range(1, classes):
        np.maximum(best, probabilities[:, column], out=best)
    return best


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
