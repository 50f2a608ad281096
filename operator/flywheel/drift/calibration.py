"""Critical values of the drift statistics at a window's and a baseline's sizes.

Under no drift a window of `n` rows and a baseline of `m` rows are two samples of one
distribution over `k` non-empty slots, and the two-sample Pearson statistic
`X² = Σ (w·√(m/n) - b·√(n/m))² / (w + b)` is approximately chi-square with `k - 1` degrees of
freedom. PSI and the Jensen-Shannon divergence are, to second order, the same quadratic form:
`PSI ≈ X²·(1/n + 1/m)` and `JSD (nats) ≈ X²·(1/n + 1/m) / 8`, so each gets its critical value
from the chi-square quantile (`chi2_critical`).

The approximation needs enough expected counts in every slot (Cochran's rule: none below 1,
at most a fifth below 5, on the smaller sample). Where it does not hold (sparse categoricals,
small windows), and always for Wasserstein and L-infinity (which have no chi-square form), the
critical value comes from a parametric bootstrap that redraws both the baseline and the window
from the pooled proportions (`bootstrap_critical`), seeded by the counts so a decision is
reproducible. Every statistic here is vectorised over the bootstrap's replicates; the
distribution functions are in :mod:`.special` (no scipy in the operator).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from flywheel.drift.special import binomial_tail, chi2_quantile, chi2_survival

__all__ = [
    "SMOOTHING",
    "Method",
    "approximation_holds",
    "binomial_tail",
    "bootstrap_critical",
    "chi2_critical",
    "chi2_quantile",
    "chi2_survival",
    "statistic",
]

Method = Literal["psi", "jensenshannon", "wasserstein", "linf", "chisquare"]
Array = np.ndarray[Any, Any]
SMOOTHING = 1e-4
"""The proportion an empty slot gets in PSI only (PSI divides by it; Evidently does the same).
No other statistic smooths: chi-square and Jensen-Shannon run over non-empty slots as they are."""
MIN_REPLICATES = 2_000
MAX_REPLICATES = 20_000
TAIL_REPLICATES = 20
"""Replicates beyond the critical value wanted: the bootstrap draws 20 / alpha of them (within the
bounds above), so the (1 - alpha) quantile rests on about 20 draws."""


def statistic(method: Method, b: Array, w: Array, positions: Array | None, scale: float) -> Array:
    """The statistic for rows of baseline counts `b` and window counts `w` (same shape, last
    axis the slots; every row non-empty on both sides). `psi`, `chisquare` (the two-sample X²),
    `jensenshannon` (distance, base 2), `linf` (largest share difference), `wasserstein`
    (earth mover's distance over `positions` divided by `scale`; left as it is when the
    baseline has no spread)."""
    m = b.sum(axis=-1, keepdims=True)
    n = w.sum(axis=-1, keepdims=True)
    pb, pw = b / m, w / n
    if method == "psi":
        sb = np.where(pb > 0, pb, SMOOTHING)
        sw = np.where(pw > 0, pw, SMOOTHING)
        result: Array = np.sum((sw - sb) * np.log(sw / sb), axis=-1)
    elif method == "chisquare":
        pooled = b + w
        safe = np.where(pooled > 0, pooled, 1.0)
        terms = (w * np.sqrt(m / n) - b * np.sqrt(n / m)) ** 2 / safe
        result = np.sum(np.where(pooled > 0, terms, 0.0), axis=-1)
    elif method == "jensenshannon":
        mid = (pb + pw) / 2
        result = np.sqrt(np.maximum((_kl(pb, mid) + _kl(pw, mid)) / 2, 0.0) / math.log(2))
    elif method == "linf":
        result = np.max(np.abs(pb - pw), axis=-1)
    else:
        assert positions is not None
        gaps = np.abs(np.cumsum(pb, axis=-1) - np.cumsum(pw, axis=-1))[..., :-1]
        distance = np.sum(gaps * np.diff(positions), axis=-1)
        result = distance / scale if scale > 0 else distance  # no spread: not normalised
    return result


def _kl(p: Array, q: Array) -> Array:
    safe_q = np.where(q > 0, q, 1.0)
    result: Array = np.sum(
        np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / safe_q), 0.0), axis=-1
    )
    return result


def chi2_critical(method: Method, freedom: int, n: float, m: float, alpha: float) -> float | None:
    """The critical value of `method`'s statistic from the chi-square approximation, or None for
    methods without one (Wasserstein, L-infinity)."""
    quantile = chi2_quantile(freedom, alpha)
    spread = 1 / n + 1 / m
    if method == "chisquare":
        return quantile
    if method == "psi":
        return quantile * spread
    if method == "jensenshannon":
        return math.sqrt(quantile * spread / (8 * math.log(2)))
    return None


def approximation_holds(b: Sequence[float], w: Sequence[float]) -> bool:
    """Cochran's rule on the smaller sample at the pooled proportions (non-empty slots only;
    plain Python: a feature has a few dozen slots at most)."""
    pooled = [x + y for x, y in zip(b, w, strict=True)]
    scale = min(math.fsum(b), math.fsum(w)) / math.fsum(pooled)
    expected = [scale * p for p in pooled]
    return min(expected) >= 1 and sum(e < 5 for e in expected) <= 0.2 * len(expected)


def bootstrap_critical(
    method: Method,
    b: Array,
    w: Array,
    alpha: float,
    positions: Array | None = None,
    scale: float = 1.0,
) -> float:
    """The (1 - alpha) quantile of the statistic when baseline and window are redrawn, at their
    own sizes, from the pooled proportions: what the statistic reaches without drift."""
    m, n = round(b.sum()), round(w.sum())
    pooled = (b + w) / (b + w).sum()
    replicates = int(min(MAX_REPLICATES, max(MIN_REPLICATES, math.ceil(TAIL_REPLICATES / alpha))))
    rng = np.random.default_rng(_seed(b, w))
    base = rng.multinomial(m, pooled, size=replicates).astype(np.float64)
    window = rng.multinomial(n, pooled, size=replicates).astype(np.float64)
    values = statistic(method, base, window, positions, scale)
    return float(np.quantile(values, 1 - alpha, method="higher"))


def _seed(b: Array, w: Array) -> int:
    digest = hashlib.blake2b(np.concatenate([b, w]).tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little")
