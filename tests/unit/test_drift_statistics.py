"""Drift statistics against hand-computed values and scipy's references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2, chi2_contingency, wasserstein_distance

from flywheel.drift.baseline import class_baseline, feature_baselines, prediction_baseline
from flywheel.drift.statistics import (
    SMOOTHING,
    EmptyDistribution,
    bin_positions,
    chi2_survival,
    chi_square,
    jensen_shannon,
    linf,
    psi,
    wasserstein,
)


def test_psi_by_hand() -> None:
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    expected = 0.25 * math.log(2) + 0.25 * math.log(1.5)
    assert psi([50, 50], [25, 75]) == pytest.approx(expected)
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)


def test_psi_smooths_an_empty_bin() -> None:
    # The empty share becomes SMOOTHING; the others are left as they are (as Evidently does).
    b, w = np.array([1.0, SMOOTHING]), np.array([0.5, 0.5])
    expected = float(np.sum((w - b) * np.log(w / b)))
    assert psi([100, 0], [50, 50]) == pytest.approx(expected)
    assert math.isfinite(psi([100, 0], [0, 100]))


def test_jensen_shannon_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        a, b = rng.integers(0, 50, 8), rng.integers(0, 50, 8)
        a[0] += 1
        b[0] += 1
        assert jensen_shannon(a, b) == pytest.approx(float(jensenshannon(a, b, base=2)), abs=1e-12)
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)
    assert jensen_shannon([3, 3], [1, 1]) == 0.0


def test_wasserstein_matches_scipy_and_is_normalised() -> None:
    positions = [0.0, 0.5, 1.5, 3.0, 4.0]
    a, b = [1, 4, 3, 2, 0], [0, 1, 3, 4, 2]
    raw = wasserstein_distance(positions, positions, u_weights=a, v_weights=b)
    assert wasserstein(a, b, positions, scale=1.0) == pytest.approx(raw)
    p = np.array(a) / sum(a)
    std = math.sqrt(float(np.sum(p * (np.array(positions) - np.sum(p * positions)) ** 2)))
    assert wasserstein(a, b, positions) == pytest.approx(raw / std)
    # All mass moved by one unit, scale 2: half a standard deviation.
    assert wasserstein([1, 0], [0, 1], [0.0, 1.0], scale=2.0) == pytest.approx(0.5)


def test_linf_by_hand() -> None:
    assert linf([50, 30, 20], [30, 30, 40]) == pytest.approx(0.2)


def test_chi_square_is_the_two_sample_test_of_scipy() -> None:
    baseline, window = [300, 500, 200], [40, 40, 20]
    statistic, p_value = chi_square(baseline, window)
    reference = chi2_contingency([baseline, window], correction=False)
    assert statistic == pytest.approx(reference.statistic)
    assert p_value == pytest.approx(reference.pvalue, rel=1e-9)


def test_chi_square_invents_no_counts_for_slots_nobody_filled() -> None:
    # Empty on both sides: no slot, no degree of freedom, no phantom expected count.
    with_empty = chi_square([300, 500, 0, 200, 0], [40, 40, 0, 20, 0])
    assert with_empty == pytest.approx(chi_square([300, 500, 200], [40, 40, 20]))
    # A slot only the window filled counts with what it holds.
    statistic, _ = chi_square([300, 500, 200, 0], [40, 40, 20, 5])
    reference = chi2_contingency([[300, 500, 200, 0], [40, 40, 20, 5]], correction=False)
    assert statistic == pytest.approx(reference.statistic)


@pytest.mark.parametrize("freedom", [1, 2, 3, 9, 30, 200])
@pytest.mark.parametrize("statistic", [0.01, 0.5, 1.0, 5.0, 20.0, 150.0, 400.0])
def test_chi2_survival_matches_scipy(statistic: float, freedom: int) -> None:
    expected = float(chi2.sf(statistic, freedom))
    assert chi2_survival(statistic, freedom) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_empty_counts_are_refused() -> None:
    with pytest.raises(EmptyDistribution):
        psi([1, 2], [0, 0])


def test_bin_positions() -> None:
    assert bin_positions([0.0, 1.0, 3.0]) == [0.0, 0.5, 2.0, 3.0]


STATS = {
    "label": {"categories": [{"value": "0", "count": 60}, {"value": "1", "count": 40}]},
    "features": [
        {
            "name": "x",
            "type": "numeric",
            "nulls": 0,
            "std": 1.0,
            "histogram": {"edges": [0.0, 1.0, 2.0], "counts": [0, 50, 50, 0]},
        },
        {
            "name": "city",
            "type": "categorical",
            "nulls": 5,
            "categories": [{"value": "Paris", "count": 70}],
            "__other__": 25,
        },
    ],
}


def test_baselines_line_up_with_the_serving_slots() -> None:
    baselines = feature_baselines(STATS)
    assert baselines["x"].counts.tolist() == [0, 50, 50, 0, 0]
    assert baselines["x"].positions == [0.0, 0.5, 1.5, 2.0]
    assert baselines["city"].counts.tolist() == [70, 25, 0, 5]
    assert class_baseline(STATS, ["0", "1"]).tolist() == [60, 40, 0]


def test_prediction_baseline_prefers_the_models_own_predictions() -> None:
    recorded, source = prediction_baseline(STATS, ["0", "1"], {"0": 70, "1": 30})
    assert source == "heldOutPredictions"
    assert recorded is not None
    assert recorded.counts.tolist() == [70, 30, 0]
    assert recorded.new_slots == (2,), "__unseen__ is the never-seen slot"
    label, source = prediction_baseline(STATS, ["0", "1"], None)
    assert source == "trainingLabel"
    assert label is not None
    assert label.counts.tolist() == [60, 40, 0]


def test_slot_kinds_of_the_baselines() -> None:
    baselines = feature_baselines(STATS)
    assert baselines["x"].new_slots == (0, 3), "underflow and overflow"
    assert baselines["x"].null_slot == 4
    assert baselines["city"].new_slots == (2,), "__unseen__"
    assert baselines["city"].null_slot == 3
