"""Pure ModelVersion decisions: the `Validated` verdict copied from the registering run.

The TrainingRun controller judges a trained model (thresholds and champion, see
:mod:`flywheel.runoutcomes`) and records the verdict in the run's status before it registers the
ModelVersion; the ModelVersion controller copies it into its own status. The two controllers
cooperate only through status. A ModelVersion that no TrainingRun vouches for (created by hand,
or whose run is gone before its verdict was copied) is `Validated=False` with reason `NoVerdict`,
so no `LatestValidated` deployment picks it up.
"""

from __future__ import annotations

from typing import Any

from flywheel.api.common import API_GROUP
from flywheel.api.trainingrun import ValidationVerdict
from flywheel.conditions import READY, RECONCILING, STALLED, ConditionUpdate
from flywheel.jobresult import Outcome

Obj = dict[str, Any]
VALIDATED = "Validated"
RUN_UID = f"{API_GROUP}/run-uid"


def vouching_run(version: Obj, run: Obj | None) -> Obj | None:
    """The TrainingRun that registered this version: same name as the lineage, same UID."""
    if run is None:
        return None
    uid = version["metadata"].get("labels", {}).get(RUN_UID)
    return run if uid and run["metadata"].get("uid") == uid else None


def key_metric(metrics: dict[str, float], verdict: ValidationVerdict | None) -> str | None:
    """`name=value` of the metric the gates judged first, else of the first metric."""
    judged_first = [c.metric for c in (verdict.checks if verdict else []) if c.metric in metrics]
    names = judged_first or list(metrics)
    return f"{names[0]}={metrics[names[0]]:.4g}" if names else None


def judged(raw: Obj, run: str, metrics: dict[str, float]) -> Outcome:
    """The version's status from its run's verdict."""
    verdict = ValidationVerdict.model_validate(raw)
    failed = [c for c in verdict.checks if not c.passed]
    if verdict.passed:
        reason, kind, event = "GatesPassed", "Normal", "Validated"
        message = (
            f"Every gate of TrainingRun {run} passed: "
            + "; ".join(c.message for c in verdict.checks)
            if verdict.checks
            else f"TrainingRun {run} has no validation gates."
        )
    else:
        reason, kind, event = "GatesFailed", "Warning", "ValidationFailed"
        message = f"Failed gates of TrainingRun {run}: " + "; ".join(
            f"{c.name} ({c.message})" for c in failed
        )
    return Outcome(
        {
            "validation": verdict.model_dump(by_alias=True, mode="json", exclude_none=True),
            "keyMetric": key_metric(metrics, verdict),
        },
        [
            ConditionUpdate(VALIDATED, "True" if verdict.passed else "False", reason, message),
            *_registered(),
        ],
        kind,
        event,
        message,
    )


def no_verdict(run: str, metrics: dict[str, float]) -> Outcome:
    """A version no TrainingRun vouches for."""
    message = (
        f"No verdict: TrainingRun {run} (which would have judged this version) does not exist "
        "or did not register it. Versions are validated by the TrainingRun that registers them."
    )
    return Outcome(
        {"keyMetric": key_metric(metrics, None)},
        [ConditionUpdate(VALIDATED, "False", "NoVerdict", message), *_registered()],
        "Warning",
        "NoVerdict",
        message,
    )


def _registered() -> list[ConditionUpdate]:
    message = "The version is registered; its artifact and sha256 are recorded."
    return [
        ConditionUpdate(READY, "True", "Registered", message),
        ConditionUpdate(RECONCILING, "False", "Registered", message),
        ConditionUpdate(STALLED, "False", "Registered", message),
    ]
