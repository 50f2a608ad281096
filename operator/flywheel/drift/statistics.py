"""Distances between a baseline's binned distribution and a window's, from counts alone.

Every function takes two count vectors over the same slots (a feature's histogram positions
including underflow, overflow and null, or a categorical feature's categories with `__other__`,
`__unseen__` and `__null__`) and returns a score; larger means further apart. They are the
one-pair forms of :func:`flywheel.drift.calibration.statistic`, which the decision and its
bootstrap use vectorised.

Empty slots: PSI alone replaces a zero proportion by `SMOOTHING` (1e-4), since it divides by
it and takes its logarithm (as Evidently does). The chi-square statistic is the two-sample one
over the slots non-empty on either side: no expected count is invented for a slot that neither
sample filled. Jensen-Shannon, Wasserstein and L-infinity need no smoothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from flywheel.drift.calibration import SMOOTHING, Method, chi2_survival, statistic

__all__ = [
    "SMOOTHING",
    "EmptyDistribution",
    "Method",
    "bin_positions",
    "chi2_survival",
    "chi_square",
    "jensen_shannon",
    "linf",
    "proportions",
    "psi",
    "wasserstein",
]

CountsLike = np.ndarray[Any, Any] | Sequence[float]


class EmptyDistribution(ValueError):
    """A count vector with no observations: there is nothing to compare."""


def _pair(baseline: CountsLike, window: CountsLike) -> tuple[np.ndarray[Any, Any], ...]:
    b = np.asarray(baseline, dtype=np.float64)
    w = np.asarray(window, dtype=np.float64)
    if b.sum() <= 0 or w.sum() <= 0:
        raise EmptyDistribution("no observations")
    return b, w


def proportions(counts: CountsLike) -> np.ndarray[Any, Any]:
    """Counts as a probability vector."""
    values = np.asarray(counts, dtype=np.float64)
    total = values.sum()
    if total <= 0:
        raise EmptyDistribution("no observations")
    result: np.ndarray[Any, Any] = values / total
    return result


def _one(method: Method, baseline: CountsLike, window: CountsLike) -> float:
    b, w = _pair(baseline, window)
    return float(statistic(method, b, w, None, 1.0))


def psi(baseline: CountsLike, window: CountsLike) -> float:
    """Population stability index: sum of (w - b) ln(w / b) over slots."""
    return _one("psi", baseline, window)


def jensen_shannon(baseline: CountsLike, window: CountsLike) -> float:
    """Jensen-Shannon distance in base 2 (0 identical, 1 disjoint): the square root of the
    divergence, as `scipy.spatial.distance.jensenshannon(base=2)`."""
    return _one("jensenshannon", baseline, window)


def linf(baseline: CountsLike, window: CountsLike) -> float:
    """The largest difference of a slot's share."""
    return _one("linf", baseline, window)


def wasserstein(
    baseline: CountsLike,
    window: CountsLike,
    positions: CountsLike,
    scale: float | None = None,
) -> float:
    """Earth mover's distance between the two histograms with each slot's mass at `positions`
    (sorted), divided by `scale` (default: the baseline's standard deviation on those
    positions), so 0.1 means "moved by a tenth of a standard deviation"."""
    b, w = _pair(baseline, window)
    x = np.asarray(positions, dtype=np.float64)
    if scale is None:
        p = b / b.sum()
        mean = float(np.sum(p * x))
        scale = float(np.sqrt(np.sum(p * (x - mean) ** 2)))
    return float(statistic("wasserstein", b, w, x, scale))


def chi_square(baseline: CountsLike, window: CountsLike) -> tuple[float, float]:
    """The two-sample chi-square test of "same distribution" over the slots non-empty on
    either side: (statistic, p-value) with non-empty slots - 1 degrees of freedom."""
    b, w = _pair(baseline, window)
    value = float(statistic("chisquare", b, w, None, 1.0))
    freedom = max(int(((b + w) > 0).sum()) - 1, 1)
    return value, chi2_survival(value, freedom)


def bin_positions(edges: list[float]) -> list[float]:
    """Where a numeric histogram's positions sit for Wasserstein: underflow at the first edge,
    each bin at its midpoint, overflow at the last edge (the null slot is left out)."""
    middles = [(a + b) / 2 for a, b in itertools.pairwise(edges)]
    return [edges[0], *middles, edges[-1]]
