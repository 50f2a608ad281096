"""Pure ModelVersion decisions: the `Validated` verdict, from the run that registered the
version or from an approver.

The TrainingRun controller judges a trained model (thresholds and champion, see
:mod:`flywheel.controllers.trainingrun`) and records the verdict in the run's status as it
registers the ModelVersion, naming that version and its artifact digest; the ModelVersion
controller copies the verdict into its own status. The two controllers cooperate only through
status. A run vouches for a version only when all three hold: the version's
`flywheel.dev/run-uid` label is the run's UID, the run's `status.modelVersionRef` names this
version, and the digest recorded there is this version's `spec.artifact.sha256`. A copied label
or lineage vouches for nothing.

A version no run vouches for (imported from elsewhere, made by hand, or whose run is gone) is
`Validated=False` (`NoVerdict`, or `Unvouched` when its run registered something else) until an
approver writes `status.approval` naming its digest (`Approved`); no `LatestValidated`
deployment picks it up before that. A run's verdict is final (the spec is immutable); an
approval is judged again whenever it changes.

A version that a ModelDeployment serves carries the finalizer `flywheel.dev/in-use` (as
`kubernetes.io/pvc-protection` guards a claim in use): deleting it waits, saying so, until no
ModelDeployment serves it any more.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from flywheel.api.common import ConditionStatus
from flywheel.api.modelversion import Approval, ModelVersionSpec
from flywheel.api.trainingrun import ValidationVerdict
from flywheel.core.conditions import READY, RECONCILING, STALLED, ConditionUpdate, raw_condition
from flywheel.core.links import link, listed
from flywheel.core.objects import Obj, meta_of, status_of
from flywheel.core.outcome import Action, Event, EventType, MergePatch, Outcome
from flywheel.core.resources import MODEL_VERSIONS
from flywheel.core.statuses import RUN_UID, VALIDATED, run_finished
from flywheel.core.target import Meta

FINAL = ("GatesPassed", "GatesFailed")
"""Validated reasons that come from a run's verdict: never judged again."""
IN_USE = "flywheel.dev/in-use"
"""The finalizer of a served version."""


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
    approval: Approval | None = None
    """An approver's sign-off (`status.approval`)."""
    finalizers: tuple[str, ...] = ()
    resource_version: str = ""
    protect: bool = True
    """Protection finalizers are on (`FLYWHEEL_PROTECTION_FINALIZERS`)."""


def protection(inputs: ModelVersionInputs, served_by: list[str]) -> tuple[Action, ...]:
    """Add the in-use finalizer while served, remove it once not (conditional on the version's
    resourceVersion, so no other finalizer is lost to a concurrent change)."""
    held = IN_USE in inputs.finalizers
    served_by = served_by if inputs.protect else []
    if bool(served_by) == held:
        return ()
    kept = [f for f in inputs.finalizers if f != IN_USE] + ([IN_USE] if served_by else [])
    ref = MODEL_VERSIONS.ref(inputs.meta.namespace, inputs.meta.name)
    patch = {"metadata": {"finalizers": kept, "resourceVersion": inputs.resource_version}}
    return (MergePatch(ref, patch),)


def deletion_waits(inputs: ModelVersionInputs, served_by: list[str]) -> Outcome:
    """A served version being deleted: it stays until nothing serves it."""
    names = ", ".join(served_by)
    message = (
        f"Deletion waits: ModelDeployment {names} serves this version. Point it at another "
        "version (or delete it); the version is deleted once nothing serves it."
    )
    before = raw_condition(inputs.raw_status, RECONCILING).get("reason")
    return Outcome(
        conditions=(
            ConditionUpdate(READY, "False", "InUse", message),
            ConditionUpdate(RECONCILING, "True", "InUse", message),
            ConditionUpdate(STALLED, "False", "InUse", message),
        ),
        events=() if before == "InUse" else (Event("Warning", "InUse", message),),
    )


def vouching_run(meta: Meta, spec: ModelVersionSpec, run: Obj | None) -> Obj | None:
    """The TrainingRun that registered exactly this version and digest, or None."""
    uid = meta.labels.get(RUN_UID)
    if run is None or not uid or meta_of(run).get("uid") != uid:
        return None
    registered = status_of(run).get("modelVersionRef") or {}
    digest = registered.get("sha256")
    if registered.get("name") != meta.name or digest not in (None, spec.artifact.sha256):
        return None  # (a run that registered before digests were recorded names only the version)
    return run


def verdict_holds(inputs: ModelVersionInputs, reason: str | None) -> bool:
    """A run's verdict already copied still stands: it names this version's run and digest (or,
    copied by an operator before vouchers were recorded, its run is gone), and the run does not
    name another version. A verdict written by hand is judged again."""
    if reason not in FINAL or contradicted(inputs):
        return False
    vouched = inputs.raw_status.get("vouchedBy") or {}
    if vouched:
        return bool(
            vouched.get("sha256") == inputs.spec.artifact.sha256
            and vouched.get("uid") == inputs.meta.labels.get(RUN_UID)
        )
    run, uid = inputs.run, inputs.meta.labels.get(RUN_UID)
    run_gone = run is None or meta_of(run).get("uid") != uid
    return bool(uid) and run_gone and inputs.raw_status.get("validation") is not None


def contradicted(inputs: ModelVersionInputs) -> bool:
    """The run labelled as this version's registered another version or digest: a verdict
    copied before runs named their version (an older operator) no longer holds."""
    run, uid = inputs.run, inputs.meta.labels.get(RUN_UID)
    if run is None or not uid or meta_of(run).get("uid") != uid:
        return False
    registered = status_of(run).get("modelVersionRef") or {}
    return bool(registered) and vouching_run(inputs.meta, inputs.spec, run) is None


def decide(inputs: ModelVersionInputs, now: datetime) -> Outcome:
    """Judge the version (see the module docstring), and drop the links of deployments that
    no longer exist."""
    shown = listed({"status": inputs.raw_status})
    stale = [d for d in shown if d not in inputs.deployments]
    served_by = [d for d in shown if d in inputs.deployments]
    unlinks = protection(inputs, served_by) + tuple(  # first: it is conditional on the version
        link(inputs.meta.namespace, inputs.meta.name, d, serving=False) for d in stale
    )
    if inputs.meta.deleting:
        return (
            replace(deletion_waits(inputs, served_by), actions=unlinks)
            if served_by
            else (Outcome(actions=unlinks))
        )
    status = inputs.raw_status
    before = raw_condition(status, VALIDATED)
    if verdict_holds(inputs, before.get("reason")):
        return Outcome(actions=unlinks)
    run_name = inputs.spec.lineage.training_run
    run = vouching_run(inputs.meta, inputs.spec, inputs.run)
    if run is not None:
        verdict = status_of(run).get("validation")
        if verdict is not None:
            outcome = judged(verdict, run_name, inputs.spec.metrics)
            vouched = {
                "trainingRun": run_name,
                "uid": meta_of(run).get("uid"),
                "sha256": inputs.spec.artifact.sha256,
            }
            if before.get("reason") in FINAL:
                outcome = outcome.without_events()  # the same verdict, now with its voucher
            return replace(
                outcome, status={**outcome.status, "vouchedBy": vouched}, actions=unlinks
            )
    if _registering(inputs):
        return Outcome(actions=unlinks)  # the run's status, once it names us, wakes us
    outcome = unvouched(inputs)
    if any(c.type == VALIDATED and c.reason == before.get("reason") for c in outcome.conditions):
        outcome = outcome.without_events()  # said already
    return replace(outcome, actions=unlinks)


def _registering(inputs: ModelVersionInputs) -> bool:
    """The run labelled as ours has not finished registering: its verdict is still to come."""
    run, uid = inputs.run, inputs.meta.labels.get(RUN_UID)
    if run is None or not uid or meta_of(run).get("uid") != uid:
        return False
    return not run_finished(status_of(run)) and not status_of(run).get("modelVersionRef")


def unvouched(inputs: ModelVersionInputs) -> Outcome:
    """A version no run vouches for: approved by an approver for this digest, or not valid."""
    digest, approval = inputs.spec.artifact.sha256, inputs.approval
    metrics = inputs.spec.metrics
    if approval is not None and approval.sha256 == digest:
        note = f": {approval.comment}" if approval.comment else ""
        message = f"Approved by {approval.approved_by} for sha256 {digest[:12]}…{note}"
        return _verdict(metrics, "True", "Approved", message[:1024], "Normal")
    if approval is not None:
        message = (
            f"The approval by {approval.approved_by} names sha256 {approval.sha256[:12]}…, "
            f"not this version's artifact ({digest[:12]}…); approve the digest that is served."
        )
        return _verdict(metrics, "False", "ApprovalMismatch", message, "Warning")
    run_name = inputs.spec.lineage.training_run
    path = (
        " A model imported from elsewhere is validated by an approver: see docs/operations.md "
        "(Importing a model)."
    )
    if inputs.run is not None and meta_of(inputs.run).get("uid") == inputs.meta.labels.get(RUN_UID):
        registered = status_of(inputs.run).get("modelVersionRef") or {}
        message = (
            f"Unvouched: TrainingRun {run_name} registered "
            f"{registered.get('name', 'no version')} (sha256 "
            f"{str(registered.get('sha256') or 'unknown')[:12]}…), not this version and digest."
        )
        return _verdict(metrics, "False", "Unvouched", message + path, "Warning")
    message = (
        f"No verdict: TrainingRun {run_name} (which would have judged this version) does not "
        "exist or did not register it."
    )
    return _verdict(metrics, "False", "NoVerdict", message + path, "Normal")


def _verdict(
    metrics: dict[str, float],
    status: ConditionStatus,
    reason: str,
    message: str,
    kind: EventType,
) -> Outcome:
    return Outcome(
        status={"keyMetric": key_metric(metrics, None)},
        conditions=(ConditionUpdate(VALIDATED, status, reason, message), *_registered()),
        events=(Event(kind, reason, message),),
    )


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


def _registered() -> list[ConditionUpdate]:
    message = "The version is registered; its artifact and sha256 are recorded."
    return [
        ConditionUpdate(READY, "True", "Registered", message),
        ConditionUpdate(RECONCILING, "False", "Registered", message),
        ConditionUpdate(STALLED, "False", "Registered", message),
    ]
