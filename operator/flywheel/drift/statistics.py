"""Distances between a baseline's binned distribution and a window's, from counts alone.

Every function takes two count vectors over the same slots (a feature's histogram positions
including underflow, overflow and null, or a categorical feature's categories with `__other__`,
`__unseen__` and `__null__`) and returns a score; larger means further apart.

Empty bins: counts become proportions, and where a proportion is 0 it is replaced by
`SMOOTHING` (1e-4) for the measures that divide or take logarithms (PSI, chi-square), so a bin
the baseline never saw scores high but finite. Jensen-Shannon, Wasserstein and L-infinity need no
smoothing. No scipy: the chi-square p-value comes from a regularised incomplete gamma function
written here (tested against scipy).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

Method = Literal["psi", "jensenshannon", "wasserstein", "linf", "chisquare"]
Counts = np.ndarray[Any, Any]
CountsLike = np.ndarray[Any, Any] | Sequence[float]
SMOOTHING = 1e-4
"""The proportion an empty bin gets in PSI and chi-square (as Evidently does for PSI)."""


class EmptyDistribution(ValueError):
    """A count vector with no observations: there is nothing to compare."""


def proportions(counts: CountsLike) -> np.ndarray[Any, Any]:
    """Counts as a probability vector."""
    values = np.asarray(counts, dtype=np.float64)
    total = values.sum()
    if total <= 0:
        raise EmptyDistribution("no observations")
    result: np.ndarray[Any, Any] = values / total
    return result


def _smoothed(counts: CountsLike) -> np.ndarray[Any, Any]:
    return np.where((p := proportions(counts)) > 0, p, SMOOTHING)


def psi(baseline: CountsLike, window: CountsLike) -> float:
    """Population stability index: sum of (w - b) ln(w / b) over bins."""
    b, w = _smoothed(baseline), _smoothed(window)
    return float(np.sum((w - b) * np.log(w / b)))


def jensen_shannon(baseline: CountsLike, window: CountsLike) -> float:
    """Jensen-Shannon distance in base 2 (0 identical, 1 disjoint): the square root of the
    divergence, as `scipy.spatial.distance.jensenshannon(base=2)`."""
    b, w = proportions(baseline), proportions(window)
    m = (b + w) / 2

    def kl(p: np.ndarray[Any, Any]) -> float:
        mask = p > 0
        return float(np.sum(p[mask] * np.log2(p[mask] / m[mask])))

    return math.sqrt(max((kl(b) + kl(w)) / 2, 0.0))


def wasserstein(
    baseline: CountsLike,
    window: CountsLike,
    positions: CountsLike,
    scale: float | None = None,
) -> float:
    """Earth mover's distance between the two histograms with each bin's mass at `positions`
    (sorted), divided by `scale` (default: the baseline's standard deviation on those
    positions), so 0.1 means "moved by a tenth of a standard deviation"."""
    b, w = proportions(baseline), proportions(window)
    x = np.asarray(positions, dtype=np.float64)
    distance = float(np.sum(np.abs(np.cumsum(b) - np.cumsum(w))[:-1] * np.diff(x)))
    if scale is None:
        mean = float(np.sum(b * x))
        scale = math.sqrt(float(np.sum(b * (x - mean) ** 2)))
    return distance / scale if scale > 0 else (0.0 if distance == 0 else math.inf)


def linf(baseline: CountsLike, window: CountsLike) -> float:
    """The largest difference of a bin's share."""
    return float(np.max(np.abs(proportions(baseline) - proportions(window))))


def chi_square(baseline: CountsLike, window: CountsLike) -> tuple[float, float]:
    """Pearson's goodness-of-fit of the window's counts to the baseline's proportions:
    (statistic, p-value) with bins - 1 degrees of freedom."""
    observed = np.asarray(window, dtype=np.float64)
    expected = _smoothed(baseline) * observed.sum()
    if observed.sum() <= 0:
        raise EmptyDistribution("no observations in the window")
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    freedom = max(len(observed) - 1, 1)
    return statistic, chi2_survival(statistic, freedom)


def chi2_survival(statistic: float, freedom: int) -> float:
    """P(X >= statistic) for a chi-square variable: the regularised upper incomplete gamma
    function Q(freedom / 2, statistic / 2)."""
    if statistic <= 0:
        return 1.0
    return _gamma_q(freedom / 2, statistic / 2)


def _gamma_q(a: float, x: float) -> float:
    """Q(a, x) by the series (x < a + 1) or the continued fraction (Numerical Recipes 6.2)."""
    log_prefix = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        n = a
        for _ in range(10_000):
            n += 1
            term *= x / n
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(log_prefix) * h)


def score(
    method: Method,
    baseline: CountsLike,
    window: CountsLike,
    positions: CountsLike | None = None,
    scale: float | None = None,
) -> float:
    """One feature's drift score under `method`. `wasserstein` needs bin `positions` (numeric
    features); without them (categorical features) it falls back to Jensen-Shannon.
    `chisquare` scores 1 - p-value."""
    if method == "psi":
        return psi(baseline, window)
    if method == "jensenshannon" or (method == "wasserstein" and positions is None):
        return jensen_shannon(baseline, window)
    if method == "wasserstein":
        assert positions is not None
        return wasserstein(baseline, window, positions, scale)
    if method == "linf":
        return linf(baseline, window)
    return 1.0 - chi_square(baseline, window)[1]


def bin_positions(edges: list[float]) -> list[float]:
    """Where a numeric histogram's positions sit for Wasserstein: underflow at the first edge,
    each bin at its midpoint, overflow at the last edge (the null slot is left out)."""
    middles = [(a + b) / 2 for a, b in itertools.pairwise(edges)]
    return [edges[0], *middles, edges[-1]]
