"""One feature's drift verdict: an ordered chain of small pure checks on its counts.

Each check returns a :class:`Finding` (its statistic, the critical value it was held to and
whether it fired); the first that fires names the verdict's reason:

1. `Missing`: the share of missing values rose by more than `rule.max_new_share` and
   significantly (the null slot).
2. `NewValues`: the share of values the baseline never had (`__unseen__` categories, numeric
   underflow and overflow) rose by more than `rule.max_new_share` and significantly.
3. `Shift`: the distribution of the values within the baseline's slots (every slot but the
   missing and never-seen ones) moved: `Calibrated`, the method's statistic exceeds its
   critical value at the window's and the baseline's sizes (:mod:`.calibration`) and the change
   is material (total variation distance of at least `rule.min_effect`); `Threshold`, the score
   exceeds the fixed `rule.threshold`.

The three look at disjoint parts of the counts, so each is calibrated on its own.

Significance: alpha is per evaluation, split evenly (Bonferroni) over the `tests` features scored
and, within a feature, over its three checks, so a window without drift raises an alarm on any
feature with probability at most about alpha. The share checks condition on the values seen in the
slots on both sides: under no drift the window's share of them is binomial with probability
n / (n + m), an exact one-sided test that needs no smoothing even when the baseline has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from flywheel.drift.baseline import FeatureBaseline
from flywheel.drift.calibration import (
    Method,
    approximation_holds,
    binomial_tail,
    bootstrap_critical,
    chi2_critical,
    statistic,
)

Array = np.ndarray[Any, Any]
Reason = Literal["Shift", "NewValues", "Missing"]
CHECKS_PER_FEATURE = 3


@dataclass(frozen=True)
class DriftRule:
    """How a feature's window is judged (a ModelMonitor's `dataDrift`, or its prediction
    drift)."""

    method: Method = "psi"
    decision: Literal["Calibrated", "Threshold"] = "Calibrated"
    threshold: float = 0.2
    """`Threshold` only: the fixed score above which a feature drifts."""
    alpha: float = 0.05
    """`Calibrated`: the chance of an alarm in one evaluation without drift."""
    min_effect: float = 0.01
    """`Calibrated`: the least total variation distance (share of values that changed slot)
    that counts as a shift, however significant."""
    max_new_share: float = 0.005
    """The rise in the share of missing or never-seen values tolerated (both decisions)."""


@dataclass(frozen=True)
class Finding:
    """One check: its statistic, the critical value it was held to, whether it fired."""

    value: float
    critical: float
    fired: bool
    effect: float = 0.0
    """The shift check's total variation distance (within the baseline's slots)."""


@dataclass(frozen=True)
class FeatureVerdict:
    """One feature's verdict: the method's score and critical value, the total variation
    distance, the shares of missing and never-seen values, and what fired first."""

    name: str
    score: float
    critical: float
    effect: float
    missing_share: float
    new_share: float
    calibration: Literal["chi2", "bootstrap", "fixed"]
    reason: Reason | None

    @property
    def drifted(self) -> bool:
        """Whether any check fired."""
        return self.reason is not None


@dataclass(frozen=True)
class _Sample:
    """The counts of one feature on both sides, and the significance each check gets."""

    baseline: FeatureBaseline
    b: Array
    w: Array
    rule: DriftRule
    alpha: float


def judge(
    baseline: FeatureBaseline, window: Array, rule: DriftRule, tests: int = 1
) -> FeatureVerdict | None:
    """The feature's verdict, or None when the window (or the baseline) has no value of it.
    `tests`: how many features this evaluation judges (the alpha correction)."""
    b = np.asarray(baseline.counts, dtype=np.float64)
    w = np.asarray(window, dtype=np.float64)
    if w.shape != b.shape:
        raise ValueError(f"feature {baseline.name}: {w.size} window slots, {b.size} baseline")
    if w.sum() <= 0 or b.sum() <= 0:
        return None
    sample = _Sample(baseline, b, w, rule, rule.alpha / max(tests, 1) / CHECKS_PER_FEATURE)
    shift, calibration = _shift(sample)
    missing = _share_check(sample, [baseline.null_slot] if baseline.null_slot is not None else [])
    new = _share_check(sample, list(baseline.new_slots))
    checks: tuple[tuple[Reason, Finding], ...] = (
        ("Missing", missing),
        ("NewValues", new),
        ("Shift", shift),
    )
    reason = next((r for r, f in checks if f.fired), None)
    return FeatureVerdict(
        name=baseline.name,
        score=shift.value,
        critical=shift.critical,
        effect=shift.effect,
        missing_share=missing.value,
        new_share=new.value,
        calibration=calibration,
        reason=reason,
    )


def _shift(sample: _Sample) -> tuple[Finding, Literal["chi2", "bootstrap", "fixed"]]:
    """Check 3: the method's statistic on the values within the baseline's slots (missing and
    never-seen values are checks 1 and 2: a slot the baseline cannot fill by construction
    would only miscalibrate this one) against the fixed threshold or its critical value."""
    rule, baseline = sample.rule, sample.baseline
    keep = np.ones(sample.b.size, dtype=bool)
    keep[list(baseline.new_slots)] = False
    if baseline.null_slot is not None:
        keep[baseline.null_slot] = False
    b, w = sample.b[keep], sample.w[keep]
    if w.sum() <= 0 or b.sum() <= 0:
        return Finding(0.0, 0.0, False), "chi2"  # nothing within the range to compare
    positions: Array | None = None
    method: Method = rule.method
    if method == "wasserstein" and baseline.positions is not None:
        positions = np.asarray(baseline.positions, dtype=np.float64)[keep[: len(keep) - 1]]
    elif method == "wasserstein":
        method = "jensenshannon"  # categorical: no positions to move mass along
    scale = baseline.std or _spread(b, positions)
    value = float(statistic(method, b, w, positions, scale))
    effect = _total_variation(b, w)
    if rule.decision == "Threshold":
        return Finding(value, rule.threshold, value > rule.threshold, effect), "fixed"
    filled = (b + w) > 0
    if int(filled.sum()) < 2:  # one slot holds every value on both sides: nothing moved
        return Finding(value, 0.0, False, effect), "chi2"
    critical = chi2_critical(method, int(filled.sum()) - 1, w.sum(), b.sum(), sample.alpha)
    calibration: Literal["chi2", "bootstrap"] = "chi2"
    if critical is None or not approximation_holds(b[filled], w[filled]):
        critical = bootstrap_critical(method, b, w, sample.alpha, positions, scale)
        calibration = "bootstrap"
    fired = value > critical and effect >= rule.min_effect
    return Finding(value, critical, fired, effect), calibration


def _total_variation(b: Array, w: Array) -> float:
    return float(np.abs(b / b.sum() - w / w.sum()).sum() / 2)


def _spread(b: Array, positions: Array | None) -> float:
    if positions is None:
        return 1.0
    p = b / b.sum()
    mean = float(np.sum(p * positions))
    return float(np.sqrt(np.sum(p * (positions - mean) ** 2)))


def _share_check(sample: _Sample, slots: list[int]) -> Finding:
    """Checks 1 and 2: the window's share of `slots` rose by more than the rule's bound, and
    more than the baseline's share explains (exact conditional binomial test). For the
    never-seen slots the baseline counts at least `expected_new`: it has none there by
    construction, not by chance."""
    if not slots:
        return Finding(0.0, sample.rule.max_new_share, False)
    n, m = float(sample.w.sum()), float(sample.b.sum())
    x, y = float(sample.w[slots].sum()), float(sample.b[slots].sum())
    if slots != [sample.baseline.null_slot]:
        y = max(y, sample.baseline.expected_new)  # what no drift brings: see FeatureBaseline
    share, rise = x / n, x / n - y / m
    if rise <= sample.rule.max_new_share:
        return Finding(share, sample.rule.max_new_share, False)
    p_value = binomial_tail(x, x + y, n / (n + m))
    return Finding(share, sample.rule.max_new_share, p_value < sample.alpha)
