"""The monitor counts in batches, and a scrape always sees every row answered before it."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from flywheel_serving import names
from flywheel_serving.errors import Unprocessable
from flywheel_serving.model import Inputs, Prediction
from flywheel_serving.monitor_metrics import families
from flywheel_serving.monitoring import FLUSH_ROWS, WHY, Monitor

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
    for family in families(monitor):
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


# --- One request cannot spoil the others' counts (issue 20, item 4) ---------------------------

REGRESSION_BASELINE = {
    "features": [{"name": "x", "histogram": {"edges": [0.0, 1.0, 2.0]}}],
    "label": {"histogram": {"edges": [0.0, 10.0, 20.0]}},
}


def _regressor() -> Monitor:
    return Monitor("r", "1", REGRESSION_BASELINE, features=[("x", "numeric")], class_labels=[])


def _values_request(values: list[float]) -> tuple[Inputs, Prediction]:
    rows = len(values)
    numeric = np.full((rows, 1), 0.5, dtype=np.float32)
    return Inputs(numeric, {}, rows), Prediction(None, None, np.array(values, dtype=np.float32))


def _samples(monitor: Monitor) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): float(sample.value)
        for family in families(monitor)
        for sample in family.samples
    }


def _total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def _rejected(monitor: Monitor) -> dict[str, float]:
    return {
        dict(labels)["reason"]: value
        for (name, labels), value in _samples(monitor).items()
        if name == "flywheel_monitoring_rejected_rows_total"
    }


def _assert_consistent(monitor: Monitor, rows: int) -> None:
    """Every monitored row is in every histogram, once."""
    samples = _samples(monitor)
    assert _total(samples, "flywheel_monitored_rows_total") == rows
    assert _total(samples, "flywheel_predictions_total") == rows
    assert _total(samples, "flywheel_prediction_score_count") == rows
    score_inf = [
        v
        for (n, labels), v in samples.items()
        if n == "flywheel_prediction_score_bucket" and dict(labels)["le"] == "+Inf"
    ]
    assert score_inf == [rows]
    for feature in ("x", "city"):
        counted = sum(
            v
            for (n, labels), v in samples.items()
            if n == "flywheel_feature_values_total" and dict(labels)["feature"] == feature
        )
        assert counted == rows, feature


def test_every_rejection_reason_is_exposed_and_explained() -> None:
    assert set(WHY) == set(names.REJECT_REASONS)
    assert _rejected(_monitor()) == dict.fromkeys(names.REJECT_REASONS, 0.0)


def test_a_request_with_nan_probabilities_spoils_no_other_request() -> None:
    monitor = _monitor()
    rng = np.random.default_rng(0)
    valid_rows = 0
    for position in range(32):  # the 32nd request flushes the batch
        size = int(rng.integers(1, 40))
        inputs, prediction = _request(list(rng.uniform(-1, 3, size)), ["Paris"] * size)
        if position == 17:
            assert prediction.probabilities is not None
            prediction.probabilities[size // 2] = np.nan
            poisoned = size
        else:
            valid_rows += size
        monitor.observe(inputs, prediction)
    assert monitor.rows == valid_rows, "counted at the 32nd request, all but the NaN one"
    _assert_consistent(monitor, valid_rows)
    assert _rejected(monitor)["non_finite"] == poisoned
    # The next batch counts normally.
    monitor.observe(*_request([0.5, 1.5], ["Lyon", None]))
    _assert_consistent(monitor, valid_rows + 2)


def test_infinite_probabilities_and_nan_inputs_are_left_out() -> None:
    monitor = _monitor()
    monitor.observe(*_request([0.5, 1.5], ["Paris", "Paris"]))
    inputs, prediction = _request([0.5, 1.5, 2.5], ["Paris"] * 3)
    assert prediction.probabilities is not None
    prediction.probabilities[0, 1] = np.inf
    monitor.observe(inputs, prediction)
    nan_inputs, nan_prediction = _request([0.5, 1.5, 2.5, 0.1], ["Paris"] * 4)
    nan_inputs.numeric[2, 0] = np.nan
    monitor.observe(nan_inputs, nan_prediction)
    monitor.observe(*_request([2.5], ["Lyon"]))
    _assert_consistent(monitor, 3)
    assert _rejected(monitor)["non_finite"] == 7


def test_requests_whose_shapes_do_not_fit_the_model_never_join_a_batch() -> None:
    monitor = _monitor()
    good_inputs, good = _request([0.5, 1.5], ["Paris", "Lyon"])
    assert good.probabilities is not None
    assert good.labels is not None
    misfits = [
        # Three probabilities for a two-class model.
        (good_inputs, Prediction(good.labels, np.full((2, 3), 0.3, np.float32), None)),
        # Two numeric columns for one numeric feature.
        (Inputs(np.zeros((2, 2), np.float32), good_inputs.categorical, 2), good),
        # The categorical feature missing.
        (Inputs(good_inputs.numeric, {}, 2), good),
        # A categorical column of three rows in a two-row request.
        (Inputs(good_inputs.numeric, {"city": np.array(["a", "b", "c"], object)}, 2), good),
        # One label for two rows.
        (good_inputs, Prediction(good.labels[:1], good.probabilities, None)),
        # Values from a classifier.
        (good_inputs, Prediction(good.labels, good.probabilities, np.zeros(2, np.float32))),
        # Probabilities that are not numbers.
        (good_inputs, Prediction(good.labels, good.probabilities.astype(object), None)),
    ]
    for inputs, prediction in misfits:
        monitor.observe(inputs, prediction)
        assert not monitor._pending, "a misfit never waits to spoil a batch"
    monitor.observe(good_inputs, good)
    _assert_consistent(monitor, 2)
    assert _rejected(monitor)["shape"] == 2 * len(misfits)


def test_a_class_the_model_does_not_have_is_left_out() -> None:
    monitor = _monitor()
    monitor.observe(*_request([0.5, 1.5], ["Paris", "Lyon"]))
    inputs, prediction = _request([0.5, 0.7, 1.5], ["Paris"] * 3)
    assert prediction.labels is not None
    prediction.labels[1] = "z"
    monitor.observe(inputs, prediction)
    _assert_consistent(monitor, 2)
    assert _rejected(monitor)["unknown_class"] == 3
    assert _sample(monitor, "flywheel_predictions_total", **{"class": "__unseen__"}) == 0


def test_a_request_that_cannot_be_counted_drops_nothing_else() -> None:
    monitor = _monitor()
    monitor.observe(*_request([0.5, 1.5], ["Paris", "Lyon"]))
    inputs, prediction = _request([0.5], ["Paris"])
    city = np.empty(1, dtype=object)
    city[0] = ["not", "hashable"]  # fits every shape, and breaks the categorical count
    monitor.observe(Inputs(inputs.numeric, {"city": city}, 1), prediction)
    monitor.observe(*_request([2.5, 0.1, 1.1], ["Oslo", None, "Paris"]))
    _assert_consistent(monitor, 5)
    assert _rejected(monitor)["error"] == 1


def test_regressor_values_that_are_not_finite_are_left_out() -> None:
    monitor = _regressor()
    monitor.observe(*_values_request([1.0, 12.0]))
    monitor.observe(*_values_request([float("nan"), 3.0, 4.0]))
    monitor.observe(*_values_request([float("inf")]))
    monitor.observe(*_values_request([25.0]))
    samples = _samples(monitor)
    assert _total(samples, "flywheel_monitored_rows_total") == 3
    assert _total(samples, "flywheel_prediction_values_total") == 3
    assert _rejected(monitor)["non_finite"] == 4


def test_feedback_that_would_overflow_is_refused_and_counts_nothing() -> None:
    monitor = _regressor()
    monitor.feedback([3.0, 5.0], [1.0, 5.5])
    before = (monitor.labels, monitor.absolute_error, monitor.squared_error)
    assert before == (2, 2.5, 4.25)
    refused: list[tuple[list[Any], list[Any], str]] = [
        ([-1e308], [1e308], "prediction - label"),  # the difference overflows
        ([1.0, 1e200], [0.0, 0.0], "(prediction - label)^2"),  # the square overflows
        ([1.2e154, 1.2e154], [0.0, 0.0], "sum beyond float64"),  # the sum overflows
        ([float("nan")], [1.0], "not a finite number"),
        ([1.0], ["high"], "finite numbers"),
    ]
    for predicted, actual, message in refused:
        with pytest.raises(Unprocessable, match=re.escape(message)) as refusal:
            monitor.feedback(predicted, actual)
        assert refusal.value.status == 422
        assert (monitor.labels, monitor.absolute_error, monitor.squared_error) == before
    # Each one is finite, but the running total would not be.
    monitor.feedback([1.3e154], [0.0])
    with pytest.raises(Unprocessable, match="error totals"):
        monitor.feedback([1.3e154], [0.0])
    assert monitor.labels == 3
    assert np.isfinite(monitor.squared_error)
    samples = _samples(monitor)
    for name in ("flywheel_feedback_absolute_error_total", "flywheel_feedback_squared_error_total"):
        assert np.isfinite(_total(samples, name))
