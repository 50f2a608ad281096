"""Pure ModelVersion decisions: the `Validated` verdict copied from the registering run.

The TrainingRun controller judges a trained model (thresholds and champion, see
:mod:`flywheel.controllers.trainingrun`) and records the verdict in the run's status as it
registers the ModelVersion; the ModelVersion controller copies it into its own status. The two
controllers cooperate only through status. A ModelVersion that no TrainingRun vouches for
(created by hand, or whose run is gone before its verdict was copied) is `Validated=False` with
reason `NoVerdict`, so no `LatestValidated` deployment picks it up.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from flywheel.api.modelversion import ModelVersionSpec
from flywheel.api.trainingrun import ValidationVerdict
from flywheel.core.conditions import READY, RECONCILING, STALLED, ConditionUpdate, raw_condition
from flywheel.core.links import link, listed
from flywheel.core.objects import Obj, meta_of, status_of
from flywheel.core.outcome import Event, Outcome
from flywheel.core.statuses import RUN_UID, VALIDATED
from flywheel.core.target import Meta


@dataclass(frozen=True)
class ModelVersionInputs:
    """Everything one ModelVersion decision looks at."""

    meta: Meta
    spec: ModelVersionSpec
    raw_status: Obj
    run: Obj | None
    """The TrainingRun its lineage names."""
    deployments: frozenset[str]
    """The ModelDeployments of the namespace."""


def vouching_run(labels: dict[str, str], run: Obj | None) -> Obj | None:
    """The TrainingRun that registered this version: same name as the lineage, same UID."""
    if run is None:
        return None
    uid = labels.get(RUN_UID)
    return run if uid and meta_of(run).get("uid") == uid else None


def decide(inputs: ModelVersionInputs, now: datetime) -> Outcome:
    """Judge the version once (its spec is immutable), and drop the links of deployments that
    no longer exist."""
    stale = [d for d in listed({"status": inputs.raw_status}) if d not in inputs.deployments]
    unlinks = tuple(link(inputs.meta.namespace, inputs.meta.name, d, serving=False) for d in stale)
    status = inputs.raw_status
    if status.get("validation") is not None or raw_condition(status, VALIDATED):
        return Outcome(actions=unlinks)
    run_name = inputs.spec.lineage.training_run
    run = vouching_run(inputs.meta.labels, inputs.run)
    if run is None:
        return replace(no_verdict(run_name, inputs.spec.metrics), actions=unlinks)
    verdict = status_of(run).get("validation")
    if verdict is None:
        return Outcome(actions=unlinks)  # the run's status, once it has its verdict, wakes us
    return replace(judged(verdict, run_name, inputs.spec.metrics), actions=unlinks)


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
        reason = "GatesPassed"
        message = (
            f"Every gate of TrainingRun {run} passed: "
            + "; ".join(c.message for c in verdict.checks)
            if verdict.checks
            else f"TrainingRun {run} has no validation gates."
        )
        event = Event("Normal", "Validated", message)
    else:
        reason = "GatesFailed"
        message = f"Failed gates of TrainingRun {run}: " + "; ".join(
            f"{c.name} ({c.message})" for c in failed
        )
        event = Event("Warning", "ValidationFailed", message)
    return Outcome(
        status={
            "validation": verdict.model_dump(by_alias=True, mode="json", exclude_none=True),
            "keyMetric": key_metric(metrics, verdict),
        },
        conditions=(
            ConditionUpdate(VALIDATED, "True" if verdict.passed else "False", reason, message),
            *_registered(),
        ),
        events=(event,),
    )


def no_verdict(run: str, metrics: dict[str, float]) -> Outcome:
    """A version no TrainingRun vouches for."""
    message = (
        f"No verdict: TrainingRun {run} (which would have judged this version) does not exist "
        "or did not register it. Versions are validated by the TrainingRun that registers them."
    )
    return Outcome(
        status={"keyMetric": key_metric(metrics, None)},
        conditions=(ConditionUpdate(VALIDATED, "False", "NoVerdict", message), *_registered()),
        events=(Event("Warning", "NoVerdict", message),),
    )


def _registered() -> list[ConditionUpdate]:
    message = "The version is registered; its artifact and sha256 are recorded."
    return [
        ConditionUpdate(READY, "True", "Registered", message),
        ConditionUpdate(RECONCILING, "False", "Registered", message),
        ConditionUpdate(STALLED, "False", "Registered", message),
    ]
