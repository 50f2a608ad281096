"""The drift decision's distribution functions against scipy's."""

from __future__ import annotations

import pytest
from scipy import stats

from flywheel.drift.special import binomial_tail, chi2_quantile, chi2_survival


@pytest.mark.parametrize("freedom", [1, 2, 3, 5, 9, 19, 30, 100, 500, 2000, 20000])
@pytest.mark.parametrize("alpha", [0.5, 0.3, 0.05, 0.01, 0.0025, 0.0005, 1e-5, 1e-8, 1e-12])
def test_chi2_quantile_matches_scipy(freedom: int, alpha: float) -> None:
    expected = float(stats.chi2.isf(alpha, freedom))
    assert chi2_quantile(freedom, alpha) == pytest.approx(expected, rel=1e-9)
    assert chi2_survival(chi2_quantile(freedom, alpha), freedom) == pytest.approx(alpha, rel=1e-9)


def test_chi2_quantile_refuses_an_impossible_alpha() -> None:
    for alpha in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="not in"):
            chi2_quantile(3, alpha)


@pytest.mark.parametrize("trials", [1, 5, 20, 100, 1000, 50_000])
@pytest.mark.parametrize("probability", [0.001, 0.01, 0.2, 0.5, 0.9])
def test_binomial_tail_matches_scipy(trials: int, probability: float) -> None:
    for successes in sorted({0, 1, 2, trials // 10, trials // 3, trials // 2, trials, trials + 1}):
        expected = float(stats.binom.sf(successes - 1, trials, probability))
        found = binomial_tail(successes, trials, probability)
        assert found == pytest.approx(expected, rel=1e-9, abs=1e-300), (successes, trials)
