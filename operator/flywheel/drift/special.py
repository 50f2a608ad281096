"""The two distribution functions the drift decision needs, without scipy (the operator stays
numpy-only: `.importlinter`): the chi-square survival function and its inverse, and the upper
tail of the binomial distribution. Tested against scipy in tests/unit/test_drift_special.py.

- `chi2_survival(x, k) = Q(k/2, x/2)`, the regularised upper incomplete gamma function, by its
  series or its continued fraction (Numerical Recipes 6.2).
- `chi2_quantile(k, alpha)`: the x with `chi2_survival(x, k) = alpha`, by Newton's method from the
  Wilson-Hilferty approximation, safeguarded by bisection; cached (the degrees of freedom and alpha
  of one evaluation repeat across features).
- `binomial_tail(s, t, p) = P(X ≥ s)` for `X ~ Binomial(t, p)`: the regularised incomplete beta
  function `I_p(s, t - s + 1)` by its continued fraction (Numerical Recipes 6.4).
"""

from __future__ import annotations

import math
from functools import lru_cache

TINY = 1e-300
EPSILON = 1e-15
ITERATIONS = 10_000


def _gamma_q(a: float, x: float) -> float:
    """Q(a, x) by the series (x < a + 1) or the continued fraction."""
    log_prefix = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        n = a
        for _ in range(ITERATIONS):
            n += 1
            term *= x / n
            total += term
            if abs(term) < abs(total) * EPSILON:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    b = x + 1 - a
    c, d = 1 / TINY, 1 / b
    h = d
    for i in range(1, ITERATIONS):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = TINY if abs(d) < TINY else d
        c = b + an / c
        c = TINY if abs(c) < TINY else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < EPSILON:
            break
    return min(1.0, math.exp(log_prefix) * h)


def chi2_survival(value: float, freedom: float) -> float:
    """P(X ≥ value) for a chi-square variable with `freedom` degrees."""
    if value <= 0:
        return 1.0
    return _gamma_q(freedom / 2, value / 2)


@lru_cache(maxsize=4096)
def chi2_quantile(freedom: int, alpha: float) -> float:
    """The value a chi-square variable with `freedom` degrees exceeds with probability alpha."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha {alpha} is not in (0, 1)")
    k = float(freedom)
    z = _normal_quantile(1 - alpha)
    guess = k * (1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3
    low, high = 0.0, max(2 * guess, k + 40 * math.sqrt(2 * k) + 100)
    x = guess if 0 < guess < high else high / 2
    for _ in range(200):
        gap = chi2_survival(x, k) - alpha
        if abs(gap) <= 1e-12 * alpha:
            break
        if gap > 0:
            low = x  # survival too high: x is too small
        else:
            high = x
        density = math.exp(
            (k / 2 - 1) * math.log(x) - x / 2 - (k / 2) * math.log(2) - math.lgamma(k / 2)
        )
        step = x + gap / density if density > 0 else (low + high) / 2
        x = step if low < step < high else (low + high) / 2
        if high - low < 1e-13 * max(1.0, x):
            break
    return x


def _normal_quantile(p: float) -> float:
    """The standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9):
    only the starting point of the Newton iteration above."""
    a = (
        -39.6968302866538,
        220.946098424521,
        -275.928510446969,
        138.357751867269,
        -30.6647980661472,
        2.50662827745924,
    )
    b = (
        -54.4760987982241,
        161.585836858041,
        -155.698979859887,
        66.8013118877197,
        -13.2806815528857,
    )
    c = (
        -0.00778489400243029,
        -0.322396458041136,
        -2.40075827716184,
        -2.54973253934373,
        4.37466414146497,
        2.93816398269878,
    )
    d = (0.00778469570904146, 0.32246712907004, 2.445134137143, 3.75440866190742)
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1
        )
    if p > 1 - 0.02425:
        return -_normal_quantile(1 - p)
    q = p - 0.5
    r = q * q
    return (
        (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
        * q
        / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    )


def binomial_tail(successes: float, trials: float, probability: float) -> float:
    """P(X ≥ successes) for X ~ Binomial(trials, probability)."""
    s, t = round(successes), round(trials)
    if s <= 0:
        return 1.0
    if s > t or probability <= 0:
        return 0.0
    if probability >= 1:
        return 1.0
    return _beta_i(float(s), float(t - s + 1), probability)


def _beta_i(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    qab, qap, qam = a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (TINY if abs(d) < TINY else d)
    h = d
    for m in range(1, ITERATIONS):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1 + numerator * d
            d = 1 / (TINY if abs(d) < TINY else d)
            c = 1 + numerator / c
            c = TINY if abs(c) < TINY else c
            h *= d * c
        if abs(d * c - 1) < EPSILON:
            break
    return h
