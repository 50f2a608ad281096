"""The prediction-drift baseline: the final model's own predictions on the held-out rows.

Prediction drift compares what a served model predicts with what the same model predicted on
held-out data at training time, never with the training labels (a model that predicts 24 %
positives against 30 % positive labels has not drifted). The training Job counts the final ONNX
model's held-out predictions in the slots the serving pods count live predictions in:

- a classifier: one slot per class label (as a string), in the model's class order, as
  `flywheel_predictions_total{class=...}`;
- a regressor: the positions of the label's baseline histogram (`label.histogram.edges` of the
  Dataset version's `flywheel.dev/stats/v1` document), binned by serving's own
  :class:`flywheel_serving.bins.NumericBins` and named by
  :func:`flywheel_serving.names.numeric_slots`, as `flywheel_prediction_values_total{bin=...}`.
  A label without a histogram gives no baseline (serving counts no predictions then either).

Pure functions: the Job reads the stats document and runs the model, these only count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from flywheel.interfaces.jobs import PredictionCounts
from flywheel_serving.bins import NumericBins
from flywheel_serving.names import numeric_slots

PREDICTION = "prediction"
"""The one feature name of the regressor's prediction bins, as serving builds them."""


def label_edges(stats: dict[str, Any]) -> list[float] | None:
    """The edges of the label's histogram in a stats document, or None when it has none (a
    categorical label, or a numeric one without a histogram)."""
    label = stats.get("label")
    histogram = label.get("histogram") if isinstance(label, dict) else None
    edges = histogram.get("edges") if isinstance(histogram, dict) else None
    if not isinstance(edges, list) or len(edges) < 2:
        return None
    return [float(edge) for edge in edges]


def class_counts(
    predicted: Sequence[str] | np.ndarray[Any, Any], classes: Sequence[str]
) -> PredictionCounts:
    """Predicted labels counted per class, every class present in the model's order; a label
    the model does not have is an error (an ONNX classifier predicts only its classes)."""
    seen = Counter(str(label) for label in predicted)
    unknown = sorted(set(seen) - set(classes))
    if unknown:
        raise ValueError(f"predicted labels {unknown[:5]} are not among the model's classes")
    counts = {str(label): seen.get(str(label), 0) for label in classes}
    return PredictionCounts(rows=sum(counts.values()), counts=counts)


def value_counts(values: np.ndarray[Any, Any], edges: Sequence[float]) -> PredictionCounts:
    """Predicted values counted per position of the label histogram's edges, with serving's
    binning; NaN and infinite values are left out, as serving rejects them (`non_finite`)."""
    finite = np.asarray(values, dtype=np.float64).ravel()
    finite = finite[np.isfinite(finite)]
    bins = NumericBins.build([(PREDICTION, list(edges))])
    tally = bins.count(finite.reshape(-1, 1)).tolist()
    slots = numeric_slots(len(edges))
    counts = {slot: int(count) for slot, count in zip(slots, tally, strict=True)}
    return PredictionCounts(rows=len(finite), counts=counts)


def prediction_baseline(
    predictions: np.ndarray[Any, Any],
    *,
    classes: Sequence[str] | None,
    stats: dict[str, Any] | None,
) -> PredictionCounts | None:
    """The baseline of a classifier (`classes` given) or a regressor (binned on the label
    histogram of the `stats` document); None for a regressor without one, or no rows."""
    if len(predictions) == 0:
        return None
    if classes is not None:
        return class_counts(predictions, classes)
    edges = label_edges(stats) if stats is not None else None
    return value_counts(predictions, edges) if edges is not None else None
