"""The monitor counts in batches, and a scrape always sees every row answered before it."""

from __future__ import annotations

import numpy as np

from flywheel_serving.model import Inputs, Prediction
from flywheel_serving.monitoring import FLUSH_ROWS, Monitor

BASELINE = {
    "features": [
        {"name": "x", "histogram": {"edges": [0.0, 1.0, 2.0]}},
        {"name": "city", "categories": [{"value": "Paris"}], "otherValues": ["Lyon"]},
    ]
}


def _monitor() -> Monitor:
    return Monitor(
        "m",
        "1",
        BASELINE,
        features=[("x", "numeric"), ("city", "categorical")],
        class_labels=["a", "b"],
    )


def _request(values: list[float], cities: list[str | None]) -> tuple[Inputs, Prediction]:
    rows = len(values)
    numeric = np.array(values, dtype=np.float32).reshape(rows, 1)
    labels = np.array(["a" if v < 1 else "b" for v in values], dtype=object)
    probabilities = np.array(
        [[0.95, 0.05] if v < 1 else [0.3, 0.7] for v in values], dtype=np.float32
    )
    return Inputs(numeric, {"city": np.array(cities, dtype=object)}, rows), Prediction(
        labels, probabilities, None
    )


def _sample(monitor: Monitor, name: str, **labels: str) -> float:
    for family in monitor.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {name} {labels}")


def test_a_scrape_counts_every_pending_row() -> None:
    monitor = _monitor()
    monitor.observe(*_request([0.5, 1.5, 3.0], ["Paris", "Lyon", None]))
    monitor.observe(*_request([-1.0], ["Oslo"]))
    assert monitor.rows == 0, "below the batch size nothing is counted yet"
    assert _sample(monitor, "flywheel_monitored_rows_total") == 4
    assert _sample(monitor, "flywheel_feature_values_total", feature="x", bin="0") == 1
    assert _sample(monitor, "flywheel_feature_values_total", feature="x", bin="1") == 1
    assert _sample(monitor, "flywheel_feature_values_total", feature="x", bin="2") == 1
    assert _sample(monitor, "flywheel_feature_values_total", feature="x", bin="3") == 1
    for city, count in (("Paris", 1), ("__other__", 1), ("__unseen__", 1), ("__null__", 1)):
        assert _sample(monitor, "flywheel_feature_values_total", feature="city", bin=city) == count
    assert _sample(monitor, "flywheel_predictions_total", **{"class": "a"}) == 2
    assert _sample(monitor, "flywheel_prediction_score_bucket", le="0.6") == 0
    assert _sample(monitor, "flywheel_prediction_score_bucket", le="0.7") == 2
    assert _sample(monitor, "flywheel_prediction_score_bucket", le="0.95") == 4
    # A second scrape adds nothing: every row is counted once.
    assert _sample(monitor, "flywheel_monitored_rows_total") == 4


def test_a_full_batch_is_counted_without_a_scrape() -> None:
    monitor = _monitor()
    values = list(np.linspace(-1, 3, FLUSH_ROWS))
    monitor.observe(*_request(values, ["Paris"] * FLUSH_ROWS))
    assert monitor.rows == FLUSH_ROWS
    assert int(monitor.features.sum()) == 2 * FLUSH_ROWS
