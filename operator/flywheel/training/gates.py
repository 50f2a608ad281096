"""Validation gates: absolute thresholds and the comparison with the champion.

Pure and light (no scikit-learn import), so the operator judges results itself. Every check
returns its observed value, bound and outcome, which land in the ModelVersion's status, and
`verdict` says whether the version is `Validated`.
"""

from __future__ import annotations

from flywheel.api.estimators import better
from flywheel.api.trainingrun import GateCheck, ValidationGates, ValidationVerdict


def threshold_checks(gates: ValidationGates, metrics: dict[str, float]) -> list[GateCheck]:
    """One check per bound of every threshold."""
    checks = []
    for threshold in gates.thresholds or ():
        observed = metrics.get(threshold.metric)
        for op, bound in ((">=", threshold.min), ("<=", threshold.max)):
            if bound is None:
                continue
            name = f"{threshold.metric} {op} {bound:g}"
            if observed is None:
                checks.append(
                    GateCheck(
                        name=name,
                        metric=threshold.metric,
                        observed=None,
                        bound=bound,
                        passed=False,
                        message=f"{threshold.metric} was not computed",
                    )
                )
                continue
            passed = observed >= bound if op == ">=" else observed <= bound
            verdict = "passed" if passed else "failed"
            checks.append(
                GateCheck(
                    name=name,
                    metric=threshold.metric,
                    observed=observed,
                    bound=bound,
                    passed=passed,
                    message=f"{threshold.metric} = {observed:.4g}, {verdict} {op} {bound:g}",
                )
            )
    return checks


def champion_check(
    gates: ValidationGates,
    metrics: dict[str, float],
    champion: dict[str, float] | None,
    champion_version: int | None,
    note: str | None = None,
) -> GateCheck | None:
    """The comparison with the champion, re-scored on the same held-out rows (None: no gate)."""
    comparison = gates.compare_to
    if comparison is None:
        return None
    metric = comparison.metric
    name = f"{metric} vs champion" + (f" v{champion_version}" if champion_version else "")
    new = metrics.get(metric)
    if new is None:
        return GateCheck(
            name=name,
            metric=metric,
            observed=None,
            bound=None,
            passed=False,
            message=f"{metric} was not computed",
        )
    if champion is None or metric not in champion:
        return GateCheck(
            name=name,
            metric=metric,
            observed=new,
            bound=None,
            passed=True,
            message=f"no champion to compare with ({note}): passes"
            if note
            else "no champion to compare with: passes",
        )
    old = champion[metric]
    required = comparison.min_improvement * (abs(old) if comparison.mode == "Relative" else 1.0)
    gain = better(metric, new, old)
    passed = gain >= required - 1e-12
    direction = "lower" if better(metric, 0.0, 1.0) > 0 else "higher"
    bound = old - required if direction == "lower" else old + required
    return GateCheck(
        name=name,
        metric=metric,
        observed=new,
        bound=bound,
        passed=passed,
        message=(
            f"{metric} {new:.4g} vs champion {old:.4g} ({direction} is better): improvement "
            f"{gain:+.4g}, required {required:.4g} ({comparison.mode.lower()})"
            + (f"; {note}" if note else "")
        )[:1024],
    )


def verdict(
    gates: ValidationGates | None,
    metrics: dict[str, float],
    champion: dict[str, float] | None = None,
    champion_version: int | None = None,
    champion_note: str | None = None,
) -> ValidationVerdict:
    """All checks and whether they all passed."""
    if gates is None:
        return ValidationVerdict(passed=True, checks=[])
    checks = threshold_checks(gates, metrics)
    compared = champion_check(gates, metrics, champion, champion_version, champion_note)
    if compared is not None:
        checks.append(compared)
    return ValidationVerdict(
        passed=all(c.passed for c in checks),
        checks=checks,
        champion_version=champion_version
        if compared is not None and champion is not None
        else None,
    )
