"""Refused rows are not invisible: NaN counts in the null slot, `Monitor.refuse` adds only null
slots and the refused counter, and never raises; the signature layer counts missing values."""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np
import pytest

from flywheel_serving import names
from flywheel_serving.bins import NumericBins
from flywheel_serving.monitor_metrics import families
from flywheel_serving.monitoring import REFUSED_WHY, Monitor
from flywheel_serving.signature import Refused, count_missing, refusing
from tests.unit.serving.test_monitor_batches import _monitor, _request, _sample

EDGES = [[-1.0, 0.0, 0.5, 1.0], [10.0, 20.0], [0.2, 0.4, 0.6], [-3.0, 3.0]]


def _slow_count(values: np.ndarray[Any, Any], edges: list[list[float]]) -> list[int]:
    """One value at a time, the stats-format rule in float32: underflow, bins, overflow, null."""
    counts: list[int] = []
    for column, feature_edges in enumerate(edges):
        bounds = [np.float32(e) for e in feature_edges]
        slots = [0] * (len(bounds) + 2)
        for value in values[:, column].tolist():
            x = np.float32(value)
            if np.isnan(x):
                slots[-1] += 1
            elif x < bounds[0]:
                slots[0] += 1
            elif x > bounds[-1]:
                slots[len(bounds)] += 1
            elif x == bounds[-1]:
                slots[len(bounds) - 1] += 1
            else:
                slots[bisect.bisect_right(bounds, x)] += 1
        counts += slots
    return counts


def test_nan_counts_in_the_null_slot_as_a_slow_reference_counts() -> None:
    rng = np.random.default_rng(7)
    bins = NumericBins.build([(f"f{i}", e) for i, e in enumerate(EDGES)])
    values = np.round(rng.normal(0, 4, size=(500, 4)), 1).astype(np.float32)
    values[rng.random(values.shape) < 0.15] = np.nan  # NaN in every column but the last
    values[:, 3] = rng.choice([np.nan], size=500)  # a column of NaN only
    # Values equal to edges (the last edge belongs to the last bin), infinities, NaN beside them.
    values[:4, :3] = [[-1.0, 10.0, 0.2], [1.0, 20.0, 0.6], [np.inf, -np.inf, np.nan], [0.5] * 3]
    values[4:6, :3] = [[-np.inf, np.inf, np.inf], [np.nan, np.nan, -np.inf]]
    counted = bins.count(values).tolist()
    assert counted == _slow_count(values, EDGES)
    assert sum(counted) == values.size
    assert counted[-1] == 500, "the all-NaN column: every value in its null slot"


@pytest.mark.parametrize("rows", [0, 1, 2, 64])
def test_nan_counting_at_any_batch_size(rows: int) -> None:
    rng = np.random.default_rng(rows)
    bins = NumericBins.build([(f"f{i}", e) for i, e in enumerate(EDGES)])
    values = rng.normal(0, 5, size=(rows, 4)).astype(np.float32)
    values[rng.random(values.shape) < 0.3] = np.nan
    assert bins.count(values).tolist() == _slow_count(values, EDGES)
    clean = np.nan_to_num(values, nan=0.25)
    assert bins.count(clean).tolist() == _slow_count(clean, EDGES), "no NaN: the fast path"


def _refused(monitor: Monitor) -> dict[str, float]:
    return {
        sample.labels["reason"]: sample.value
        for family in families(monitor)
        for sample in family.samples
        if sample.name == names.total(names.REFUSED_ROWS)
    }


def test_refuse_adds_only_null_slots_and_the_refused_counter() -> None:
    monitor = _monitor()
    assert set(REFUSED_WHY) == set(names.REFUSE_REASONS)
    assert _refused(monitor) == dict.fromkeys(names.REFUSE_REASONS, 0.0), "every reason at 0"
    monitor.observe(*_request([0.5, 1.5], ["Paris", None]))
    monitor.settle()
    before = monitor.features.copy()
    monitor.refuse(5, names.REFUSED_MISSING, {"x": 3, "city": 2})
    monitor.refuse(2, names.REFUSED_BOOL, {"x": 0, "city": 0, "not monitored": 1})
    x_null = _sample(monitor, "flywheel_feature_values_total", feature="x", bin="null")
    city_null = _sample(monitor, "flywheel_feature_values_total", feature="city", bin="__null__")
    assert (x_null, city_null) == (3, 1 + 2)
    grown = np.flatnonzero(monitor.features != before).tolist()
    assert len(grown) == 2, "nothing but the two null slots"
    assert int((monitor.features - before).sum()) == 5
    assert _refused(monitor) == {
        **dict.fromkeys(names.REFUSE_REASONS, 0.0),
        names.REFUSED_MISSING: 5.0,
        names.REFUSED_BOOL: 2.0,
    }
    assert _sample(monitor, "flywheel_monitored_rows_total") == 2, "refused rows are not monitored"
    rejected = _sample(monitor, "flywheel_monitoring_rejected_rows_total", reason="shape")
    assert rejected == 0, "refused is not rejected"


GARBAGE: list[tuple[Any, Any, Any]] = [
    (0, names.REFUSED_MISSING, {}),
    (-3, names.REFUSED_MISSING, {"x": 1}),
    (True, names.REFUSED_MISSING, {}),
    ("3", names.REFUSED_MISSING, {}),
    (None, names.REFUSED_MISSING, {}),
    (2.0, names.REFUSED_MISSING, {}),
    (3, "no such reason", {"x": 1}),
    (3, None, {}),
    (3, ["missing"], {}),
    (3, names.REFUSED_MISSING, None),
    (3, names.REFUSED_MISSING, [("x", 1)]),
    (3, names.REFUSED_MISSING, {"x": 4}),
    (3, names.REFUSED_MISSING, {"x": -1}),
    (3, names.REFUSED_MISSING, {"x": 1.5}),
    (3, names.REFUSED_MISSING, {"x": "1"}),
    (3, names.REFUSED_MISSING, {"x": None}),
    (3, names.REFUSED_MISSING, {"x": 1, "city": True}),
    (3, names.REFUSED_MISSING, {("x",): 1, "city": 9}),
]


@pytest.mark.parametrize(("rows", "reason", "nulls"), GARBAGE)
def test_refuse_never_raises_and_counts_nothing_of_garbage(
    rows: Any, reason: Any, nulls: Any
) -> None:
    monitor = _monitor()
    monitor.refuse(rows, reason, nulls)
    assert not monitor.features.any()
    assert _refused(monitor) == dict.fromkeys(names.REFUSE_REASONS, 0.0)


def test_refuse_survives_a_broken_monitor() -> None:
    monitor = _monitor()
    monitor._null_slots = None  # type: ignore[assignment]  # a bug inside the monitor
    monitor.refuse(2, names.REFUSED_MISSING, {"x": 1})
    assert _refused(monitor)[names.REFUSED_MISSING] == 0


def test_numpy_counts_are_counts() -> None:
    monitor = _monitor()
    nulls: Any = {"x": np.int64(4), "city": np.int32(1)}  # as numpy's sums give them
    monitor.refuse(np.int64(4), names.REFUSED_MISSING, nulls)  # type: ignore[arg-type]
    assert _refused(monitor)[names.REFUSED_MISSING] == 4
    assert _sample(monitor, "flywheel_feature_values_total", feature="x", bin="null") == 4


def test_missing_values_are_counted_per_column_as_sent() -> None:
    floats = np.array([1.0, np.nan, np.nan, np.inf], dtype=np.float32)
    texts = np.array(["1.5", None, " NaN", "-nan", "x"], dtype=object)
    columns = {
        "a": floats,
        "b": texts,
        "c": texts,
        "d": np.array([1, 2], dtype=np.int64),
        "e": [1.0, None, None],
    }
    assert count_missing(columns, {"a", "b", "e"}) == {"a": 2, "b": 3, "c": 1, "d": 0, "e": 2}
    assert count_missing({"bad": object()}, ()) == {}, "never raises"


def test_a_refusal_raised_inside_carries_its_rows_and_nulls() -> None:
    columns = {"a": np.array([np.nan, 1.0, np.nan])}
    with pytest.raises(Refused) as raised, refusing(3, lambda: columns, {"a"}):
        raise Refused("input a: feature a has a missing value", names.REFUSED_MISSING)
    assert (raised.value.rows, raised.value.reason, raised.value.nulls) == (3, "missing", {"a": 2})
    assert (raised.value.status, raised.value.message) == (
        422,
        "input a: feature a has a missing value",
    )
    with pytest.raises(Refused) as unknown, refusing(0, lambda: columns, {"a"}):
        raise Refused("rows not known", names.REFUSED_MISSING)
    assert (unknown.value.rows, unknown.value.nulls) == (0, {})
