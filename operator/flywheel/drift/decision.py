"""One feature's drift verdict: an ordered chain of small pure checks on its counts.

Each check returns a :class:`Finding` (its statistic, the critical value it was held to and
whether it fired); the first that fires names the verdict's reason:

1. `Missing`: the share of missing values rose by more than `rule.max_new_share` and
   significantly (the null slot).
2. `NewValues`: the share of values the baseline never had (`__unseen__` categories, numeric
   underflow or overflow, each side on its own) rose by more than `rule.max_new_share` and
   significantly.
3. `Shift`: the distribution of the values within the baseline's slots (every slot but the
   missing and never-seen ones) moved: `Calibrated`, the method's statistic exceeds its
   critical value at the window's and the baseline's sizes (:mod:`.calibration`) and the change
   is material (total variation distance of at least `rule.min_effect`); `Threshold`, the score
   exceeds the fixed `rule.threshold`.

The three look at disjoint parts of the counts, so each is calibrated on its own.

Significance: alpha is per evaluation, split evenly (Bonferroni) over the `tests` features scored
and, within a feature, over the checks it has (three, or two for a classifier's predictions,
which have no missing values), so a window without drift raises an alarm on any
feature with probability at most about alpha. The share checks condition on the values seen in the
slots on both sides: under no drift the window's share of them is binomial with probability
n / (n + m), an exact one-sided test that needs no smoothing even when the baseline has none.
"""

from __future__ import annotations

import math
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


@dataclass(frozen=True)
class DriftRule:
    """How a feature's window is judged (a ModelMonitor's `dataDrift`, or its prediction
    drift)."""

    method: Method = "psi"
    decision: Literal["Calibrated", "Threshold"] = "Calibrated"
    threshold: float = 0.2
    """`Threshold` only: the fixed score above which a feature drifts."""
    alpha: float = 0.02
    """`Calibrated`: the chance of an alarm in one evaluation without drift."""
    min_effect: float = 0.01
    """`Calibrated`: the least total variation distance (share of values that changed slot)
    that counts as a shift, however significant."""
    max_new_share: float = 0.001
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
    """The counts of one feature on both sides (as numpy arrays for the statistic and as
    Python lists: a feature has a few dozen slots at most, where plain arithmetic beats numpy's
    per-call overhead), their totals, and the significance each check gets."""

    baseline: FeatureBaseline
    b: Array
    w: Array
    b_list: list[float]
    w_list: list[float]
    m: float
    n: float
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
    b_list, w_list = b.tolist(), w.tolist()
    m, n = math.fsum(b_list), math.fsum(w_list)
    if not (n > 0 and m > 0):
        return None
    null_slots = [baseline.null_slot] if baseline.null_slot is not None else []
    checks = 1 + bool(null_slots) + bool(baseline.new_slots)
    alpha = rule.alpha / max(tests, 1) / checks
    sample = _Sample(baseline, b, w, b_list, w_list, m, n, rule, alpha)
    shift, calibration = _shift(sample)
    missing = _share_check(sample, null_slots, floor=0.0)
    new = _share_check(sample, list(baseline.new_slots), floor=baseline.expected_new)
    findings: tuple[tuple[Reason, Finding], ...] = (
        ("Missing", missing),
        ("NewValues", new),
        ("Shift", shift),
    )
    reason = next((r for r, f in findings if f.fired), None)
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
    left_out = set(baseline.new_slots)
    if baseline.null_slot is not None:
        left_out.add(baseline.null_slot)
    kept = [i for i in range(len(sample.b_list)) if i not in left_out]
    b_kept = [sample.b_list[i] for i in kept]
    w_kept = [sample.w_list[i] for i in kept]
    m, n = math.fsum(b_kept), math.fsum(w_kept)
    if not (n > 0 and m > 0):
        return Finding(0.0, 0.0, False), "chi2"  # nothing within the range to compare
    b, w = sample.b[kept], sample.w[kept]
    positions: Array | None = None
    method: Method = rule.method
    scale = 1.0
    if method == "wasserstein" and baseline.positions is not None:
        positions = np.asarray(baseline.positions, dtype=np.float64)[kept]  # null: no position
        scale = baseline.std or _spread(b, positions)
    elif method == "wasserstein":
        method = "jensenshannon"  # categorical: no positions to move mass along
    value = float(statistic(method, b, w, positions, scale))
    effect = math.fsum(abs(x / m - y / n) for x, y in zip(b_kept, w_kept, strict=True)) / 2
    if rule.decision == "Threshold":
        return Finding(value, rule.threshold, value > rule.threshold, effect), "fixed"
    filled = [(x, y) for x, y in zip(b_kept, w_kept, strict=True) if x + y > 0]
    if len(filled) < 2:  # one slot holds every value on both sides: nothing moved
        return Finding(value, 0.0, False, effect), "chi2"
    critical = chi2_critical(method, len(filled) - 1, n, m, sample.alpha)
    calibration: Literal["chi2", "bootstrap"] = "chi2"
    if critical is None or not approximation_holds(*zip(*filled, strict=True)):
        critical = bootstrap_critical(method, b, w, sample.alpha, positions, scale)
        calibration = "bootstrap"
    fired = value > critical and effect >= rule.min_effect
    return Finding(value, critical, fired, effect), calibration


def _spread(b: Array, positions: Array) -> float:
    p = b / b.sum()
    mean = float(np.sum(p * positions))
    return float(np.sqrt(np.sum(p * (positions - mean) ** 2)))


def _share_check(sample: _Sample, slots: list[int], floor: float) -> Finding:
    """Checks 1 and 2: the window's share of some of `slots` rose by more than the rule's bound
    over the baseline's share there (counted as at least `floor` spread over the slots), and
    by more than chance explains: per slot, an exact one-sided test conditional on the values
    both sides hold there (binomial with probability n / (n + m)), Bonferroni over the slots.
    The baseline's own count is used as it is, except for a categorical `__unseen__` slot,
    which is empty by construction and counts at least `floor` (Good-Turing); a numeric
    feature's range slots are empty by construction too, but each side alone is exact as it is
    (`FeatureBaseline.beyond_range`)."""
    bound = sample.rule.max_new_share
    if not slots:
        return Finding(0.0, bound, False)
    n, m = sample.n, sample.m
    share = math.fsum(sample.w_list[i] for i in slots) / n
    p_value = 1.0
    for slot in slots:
        x, y = sample.w_list[slot], sample.b_list[slot]
        if x / n - max(y, floor / len(slots)) / m <= bound:
            continue
        if not sample.baseline.beyond_range:
            y = max(y, floor)
        p_value = min(p_value, binomial_tail(x, x + y, n / (n + m)) * len(slots))
    return Finding(share, bound, p_value < sample.alpha)
