"""Validation gates: absolute thresholds and the comparison with the champion.

The operator judges a training result itself (pure, no scikit-learn). The gates are a chain of
small checks, each reporting its metric, observed value, bound, outcome and message; unlike the
retraining guardrails, every check runs, so the verdict lists everything that failed. It lands
in the run's and the ModelVersion's status, and `passed` says whether the version is
`Validated`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flywheel.api.estimators import better
from flywheel.api.trainingrun import GateCheck, ValidationGates, ValidationVerdict


@dataclass(frozen=True)
class GateInput:
    """What the gates judge: the new model's metrics and the champion's on the same rows."""

    gates: ValidationGates
    metrics: dict[str, float]
    champion: dict[str, float] | None = None
    champion_version: int | None = None
    champion_note: str | None = None


Gate = Callable[[GateInput], list[GateCheck]]


def threshold_checks(subject: GateInput) -> list[GateCheck]:
    """One check per bound of every threshold."""
    gates, metrics = subject.gates, subject.metrics
    checks = []
    for threshold in gates.thresholds or ():
        observed = metrics.get(threshold.metric)
        for op, bound in ((">=", threshold.min), ("<=", threshold.max)):
            if bound is None:
                continue
            name = f"{threshold.metric} {op} {bound:g}"
            metric = threshold.metric
            if observed is None:
                missing = f"{metric} was not computed"
                checks.append(_check(name, metric, None, bound, passed=False, message=missing))
                continue
            passed = observed >= bound if op == ">=" else observed <= bound
            said = f"{metric} = {observed:.4g}, {'passed' if passed else 'failed'} {op} {bound:g}"
            checks.append(_check(name, metric, observed, bound, passed=passed, message=said))
    return checks


def champion_checks(subject: GateInput) -> list[GateCheck]:
    """The comparison with the champion, re-scored on the same held-out rows (none without
    `compareTo`)."""
    comparison = subject.gates.compare_to
    if comparison is None:
        return []
    metrics, champion = subject.metrics, subject.champion
    champion_version, note = subject.champion_version, subject.champion_note
    metric = comparison.metric
    name = f"{metric} vs champion" + (f" v{champion_version}" if champion_version else "")
    new = metrics.get(metric)
    if new is None:
        missing = f"{metric} was not computed"
        return [_check(name, metric, None, None, passed=False, message=missing)]
    if champion is None or metric not in champion:
        alone = (
            f"no champion to compare with ({note}): passes"
            if note
            else ("no champion to compare with: passes")
        )
        return [_check(name, metric, new, None, passed=True, message=alone)]
    old = champion[metric]
    required = comparison.min_improvement * (abs(old) if comparison.mode == "Relative" else 1.0)
    gain = better(metric, new, old)
    passed = gain >= required - 1e-12
    direction = "lower" if better(metric, 0.0, 1.0) > 0 else "higher"
    bound = old - required if direction == "lower" else old + required
    message = (
        f"{metric} {new:.4g} vs champion {old:.4g} ({direction} is better): improvement "
        f"{gain:+.4g}, required {required:.4g} ({comparison.mode.lower()})"
        + (f"; {note}" if note else "")
    )
    return [_check(name, metric, new, bound, passed=passed, message=message[:1024])]


def _check(
    name: str,
    metric: str,
    observed: float | None,
    bound: float | None,
    *,
    passed: bool,
    message: str,
) -> GateCheck:
    return GateCheck(
        name=name, metric=metric, observed=observed, bound=bound, passed=passed, message=message
    )


GATES: Sequence[Gate] = (threshold_checks, champion_checks)
"""Every gate, in the order its checks are listed."""


def judge_gates(
    gates: ValidationGates | None,
    metrics: dict[str, float],
    champion: dict[str, float] | None = None,
    champion_version: int | None = None,
    champion_note: str | None = None,
) -> ValidationVerdict:
    """Every gate's checks and whether they all passed (no gates: validated)."""
    if gates is None:
        return ValidationVerdict(passed=True, checks=[])
    subject = GateInput(gates, metrics, champion, champion_version, champion_note)
    checks = [check for gate in GATES for check in gate(subject)]
    compared = gates.compare_to is not None and champion is not None
    return ValidationVerdict(
        passed=all(c.passed for c in checks),
        checks=checks,
        champion_version=champion_version if compared else None,
    )
