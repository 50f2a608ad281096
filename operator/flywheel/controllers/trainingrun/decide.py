"""Pure TrainingRun decisions: what each step of a run means for its status.

A run moves Pending (waiting for its Dataset) -> Training (the Job runs; attempts counted) ->
Succeeded=True (ModelVersion registered, gates judged) or Succeeded=False (the real reason,
Stalled=True: the spec is immutable, so nothing will change without a new TrainingRun).

Exactly one ModelVersion per run, whenever the operator stops: the controller reads the model's
versions fresh from the API once the Job has completed; a version labelled with the run's UID
whose spec is exactly what this run registers (same artifact and digest, metrics, lineage) is the
run's own (created before a crash), else the next number is created with the run's UID and spec
as its identity. The deterministic name `<model>-v<N>` makes the API server refuse a number
taken meanwhile, and the reconcile is taken again on fresh reads. The run's status names the
version and its artifact digest: the only version it vouches for (a copied label vouches for
nothing, see :mod:`flywheel.controllers.modelversion`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from flywheel.api.modelversion import ModelVersionSpec
from flywheel.api.trainingrun import TrainingRunSpec, TrainingRunStatus, ValidationVerdict
from flywheel.controllers.trainingrun.gates import judge_gates
from flywheel.controllers.trainingrun.pinning import (
    DATASET_NOT_READY,
    champion_argument,
    pin_dataset,
    select_champion,
)
from flywheel.controllers.trainingrun.render import (
    NO_CHAMPION,
    model_version_name,
    pinned_from_job,
    render_model_version,
    render_training_job,
)
from flywheel.core.admission import describe_validation_error
from flywheel.core.conditions import (
    READY,
    RECONCILING,
    STALLED,
    ConditionUpdate,
    Finding,
    raw_condition,
)
from flywheel.core.jobs import job_condition, job_finished, pods_started
from flywheel.core.objects import Obj, annotations_of, labels_of, meta_of, owned_by
from flywheel.core.outcome import Create, Ensure, Event, Outcome
from flywheel.core.podspec import render_artifacts_claim, render_service_account
from flywheel.core.statuses import RUN_UID, SUCCEEDED, run_finished, version_number
from flywheel.core.target import Meta
from flywheel.core.times import rfc3339
from flywheel.interfaces.jobs import TRAINING_REPORTED, JobFailure, TrainReport
from flywheel.settings import OperatorSettings

REGISTERED = "exit-after-model-version-created"
"""The failpoint right after the ModelVersion is created, before the run's status says so."""


@dataclass(frozen=True)
class TrainingRunInputs:
    """Everything one TrainingRun decision looks at."""

    meta: Meta
    spec: TrainingRunSpec
    status: TrainingRunStatus
    raw_status: Obj
    settings: OperatorSettings
    job: Obj | None = None
    dataset: Obj | None = None
    """The Dataset to pin (read until the Job exists)."""
    deployment: Obj | None = None
    """The `compareTo.deploymentRef` ModelDeployment (read until the Job exists)."""
    versions: list[Obj] = field(default_factory=list)
    """The model's ModelVersions: for the champion before the Job exists, read fresh from the
    API for the registration once it completed."""
    result: TrainReport | JobFailure | None = None
    """What the Job reported, once it finished."""


def _job_time(job: Obj, now: datetime, *keys: str) -> str:
    """A timestamp recorded on the Job, so a repeated decision writes the same status."""
    value: Any = job
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return str(value) if value else rfc3339(now)


def is_waiting(status: Obj) -> bool:
    """Whether the run already waits for its Dataset (so the Event was posted)."""
    return raw_condition(status, SUCCEEDED).get("reason") == DATASET_NOT_READY


def waiting(why: Finding, already_waiting: bool) -> Outcome:
    """The run waits for its Dataset (whose changes wake it); the Event is posted once."""
    message = f"{why.message} Waiting for the Dataset."
    return Outcome(
        conditions=(
            ConditionUpdate(SUCCEEDED, "Unknown", DATASET_NOT_READY, message),
            ConditionUpdate(READY, "False", DATASET_NOT_READY, message),
            ConditionUpdate(RECONCILING, "True", "WaitingForDataset", message),
        ),
        events=() if already_waiting else (Event("Normal", DATASET_NOT_READY, why.message),),
    )


def started(job: Obj, dataset_version: str, dataset_digest: str, now: datetime) -> Outcome:
    """The training Job exists; the dataset version is pinned."""
    name = meta_of(job)["name"]
    message = f"Training Job {name} on dataset version {dataset_version}."
    return Outcome(
        status={
            "jobName": name,
            "startTime": _job_time(job, now, "metadata", "creationTimestamp"),
            "datasetVersion": dataset_version,
            "datasetDigest": dataset_digest,
            "attempts": 0,
        },
        conditions=(
            ConditionUpdate(SUCCEEDED, "Unknown", "Training", message),
            ConditionUpdate(READY, "Unknown", "Training", message),
            ConditionUpdate(RECONCILING, "True", "Training", message),
            ConditionUpdate(STALLED, "False", "Training", message),
        ),
        events=(Event("Normal", "TrainingStarted", message),),
    )


def progressed(job: Obj, recorded_attempts: int, backoff_limit: int) -> Outcome | None:
    """A running Job started another pod (a retry after a crash), else None. The first
    attempt is not reported on its own (the run says `Training` already); the count is
    recorded when the run ends."""
    attempts = pods_started(job)
    if attempts <= max(recorded_attempts, 1):
        return None
    failed = int((job.get("status") or {}).get("failed") or 0)
    message = (
        f"Training Job {meta_of(job)['name']}: attempt {attempts} of at most {backoff_limit + 1}."
    )
    outcome = Outcome(
        status={"attempts": attempts},
        conditions=(ConditionUpdate(SUCCEEDED, "Unknown", "Training", message),),
    )
    if failed:
        return outcome.event("Warning", "Retrying", f"{message} {failed} failed so far.")
    return outcome


def failure_reason(job: Obj, result: TrainReport | JobFailure | None) -> Finding:
    """Why a training Job failed: the run's own report, else the Job's reason.

    A deadline kills the pod whatever it was doing, so `DeadlineExceeded` wins; otherwise a
    reason the container reported (exit code NOT_RETRYABLE) is the most precise; a crash that
    reported nothing leaves the Job's reason (`BackoffLimitExceeded`) with the log tail.
    """
    failed = job_condition(job, "Failed")
    job_reason = failed.get("reason") or "TrainingFailed"
    job_message = failed.get("message") or f"The training Job failed ({job_reason})."
    report = result if isinstance(result, JobFailure) else None
    reported = report is not None and report.reason in TRAINING_REPORTED
    if job_reason != "DeadlineExceeded" and report is not None and reported:
        return Finding(str(report.reason), report.message[:2000])
    if job_reason == "DeadlineExceeded":
        return Finding(job_reason, job_message)
    detail = report.message[-1500:] if report is not None else ""
    return Finding(job_reason, f"{job_message} Last output: {detail}" if detail else job_message)


def failed(job: Obj, result: TrainReport | JobFailure | None, now: datetime) -> Outcome:
    """A failed run: Succeeded=False with the real reason; nothing more will happen."""
    why = failure_reason(job, result)
    ended = job_condition(job, "Failed").get("lastTransitionTime") or rfc3339(now)
    return Outcome(
        status={"completionTime": ended, "attempts": pods_started(job)},
        conditions=(
            ConditionUpdate(SUCCEEDED, "False", why.reason, why.message),
            ConditionUpdate(READY, "False", why.reason, why.message),
            ConditionUpdate(STALLED, "True", why.reason, why.message),
            ConditionUpdate(RECONCILING, "False", why.reason, "The run is finished."),
        ),
        events=(Event("Warning", why.reason, why.message),),
    )


def judge(spec: TrainingRunSpec, result: TrainReport, no_champion: str | None) -> ValidationVerdict:
    """The gates' verdict on a successful result (champion re-scored by the Job, if any)."""
    champion = result.champion
    return judge_gates(
        spec.validation,
        result.metrics,
        champion=champion.metrics if champion else None,
        champion_version=champion.version if champion else None,
        champion_note=champion.note if champion else no_champion,
    )


def succeeded(
    job: Obj, result: TrainReport, verdict: ValidationVerdict, model_version: str, now: datetime
) -> Outcome:
    """A successful run: metrics, the verdict and the registered ModelVersion."""
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items())
    failed_checks = [c.name for c in verdict.checks if not c.passed]
    gates = "validated" if verdict.passed else f"NOT validated (failed: {', '.join(failed_checks)})"
    message = f"Registered ModelVersion {model_version} ({metrics}); {gates}."
    return Outcome(
        status={
            "completionTime": _job_time(job, now, "status", "completionTime"),
            "attempts": pods_started(job),
            "metrics": result.metrics,
            "validation": verdict.model_dump(by_alias=True, mode="json", exclude_none=True),
            "modelVersionRef": {"name": model_version, "sha256": result.sha256},
        },
        conditions=(
            ConditionUpdate(SUCCEEDED, "True", "ModelVersionRegistered", message),
            ConditionUpdate(READY, "True", "ModelVersionRegistered", message),
            ConditionUpdate(STALLED, "False", "Succeeded", "The run succeeded."),
            ConditionUpdate(RECONCILING, "False", "Succeeded", "The run is finished."),
        ),
        events=(Event("Normal", "ModelVersionRegistered", message),),
    )


def next_version(existing: list[int]) -> int:
    """The next version number of a model (1 for the first)."""
    return max(existing, default=0) + 1


def decide(inputs: TrainingRunInputs, now: datetime) -> Outcome:
    """The run's next step (see the module docstring)."""
    status = inputs.raw_status
    if run_finished(status):
        return Outcome()
    job = inputs.job
    if inputs.status.job_name is None:
        if job is None:
            return start(inputs, now)
        pinned = pinned_from_job(job) if owned_by(job, inputs.meta.uid) else None
        if pinned is None:
            return failed_outright(f"Job {meta_of(job)['name']} is not this run's training Job.")
        return started(job, pinned.version, pinned.digest, now)
    if job is None:
        gone = f"The training Job {inputs.status.job_name} was deleted before it finished."
        return failed({"status": {"conditions": [_failed("JobDeleted", gone)]}}, None, now)
    state = job_finished(job)
    if state is None:
        return progressed(job, inputs.status.attempts or 0, inputs.spec.backoff_limit) or Outcome()
    if state == "Failed":
        return failed(job, inputs.result, now)
    return register(inputs, job, now)


def start(inputs: TrainingRunInputs, now: datetime) -> Outcome:
    """Pin the dataset, pick the champion, create the Job; or wait for the Dataset."""
    pinned = pin_dataset(inputs.spec, inputs.dataset)
    if isinstance(pinned, Finding):
        return waiting(pinned, is_waiting(inputs.raw_status))
    spec, settings, namespace = inputs.spec, inputs.settings, inputs.meta.namespace
    champion, no_champion = select_champion(spec, inputs.deployment, inputs.versions)
    job = render_training_job(
        inputs.meta,
        spec,
        pinned,
        settings,
        champion_argument(champion) if champion else None,
        no_champion,
    )
    prerequisites = (
        Ensure(render_artifacts_claim(namespace, settings)),
        Ensure(render_service_account(namespace, settings.job_service_account)),
    )
    outcome = started(job, pinned.version, pinned.digest, now)
    return replace(outcome, actions=(*prerequisites, Create(job)))


def register(inputs: TrainingRunInputs, job: Obj, now: datetime) -> Outcome:
    """A completed Job: judge it and register its one ModelVersion."""
    result, pinned = inputs.result, pinned_from_job(job)
    if not isinstance(result, TrainReport) or pinned is None:
        detail = result.message if isinstance(result, JobFailure) else "no pin on the Job"
        why = f"the training Job completed but its result cannot be read: {detail}"
        return failed(job, JobFailure(reason="TrainingFailed", message=why), now)
    verdict = judge(inputs.spec, result, annotations_of(job).get(NO_CHAMPION))
    uid = inputs.meta.uid
    mine = [
        v
        for v in inputs.versions
        if labels_of(v).get(RUN_UID) == uid
        and same_version(
            v, render_model_version(inputs.meta, inputs.spec, result, version_number(v), pinned)
        )
    ]
    if mine:
        return succeeded(job, result, verdict, meta_of(mine[0])["name"], now)
    number = next_version([version_number(v) for v in inputs.versions])
    body = render_model_version(inputs.meta, inputs.spec, result, number, pinned)
    refused = registrable(body)
    if refused is not None:
        return failed(job, JobFailure(reason="TrainingFailed", message=refused), now)
    name = model_version_name(inputs.spec.model, number)
    create = Create(
        body,
        identity=(RUN_UID, uid),
        matches=lambda existing: same_version(existing, body),
        failpoint=REGISTERED,
    )
    return replace(succeeded(job, result, verdict, name, now), actions=(create,))


def same_version(found: Obj, rendered: Obj) -> bool:
    """Whether an existing ModelVersion is exactly the one this run registers: equal specs once
    both are read as the API type (server defaults applied to both; nothing added, e.g. an
    `examplesURI` or metrics the run never reported)."""
    try:
        mine = ModelVersionSpec.model_validate(rendered["spec"])
        theirs = ModelVersionSpec.model_validate(found.get("spec") or {})
    except ValidationError:
        return False
    return theirs.model_dump(mode="json") == mine.model_dump(mode="json")


def registrable(body: Obj) -> str | None:
    """Why the API server would refuse the ModelVersion (a result outside its schema, e.g.
    more class labels than a version records), so the run fails once instead of forever."""
    try:
        ModelVersionSpec.model_validate(body["spec"])
    except ValidationError as error:
        return f"the trained model cannot be registered: {describe_validation_error(error)}"
    return None


def failed_outright(message: str) -> Outcome:
    """A run that cannot go on for a reason of its own making."""
    return Outcome(
        conditions=(
            ConditionUpdate(SUCCEEDED, "False", "TrainingFailed", message),
            ConditionUpdate(READY, "False", "TrainingFailed", message),
            ConditionUpdate(STALLED, "True", "TrainingFailed", message),
            ConditionUpdate(RECONCILING, "False", "TrainingFailed", "The run is finished."),
        ),
        events=(Event("Warning", "TrainingFailed", message),),
    )


def _failed(reason: str, message: str) -> dict[str, str]:
    return {"type": "Failed", "status": "True", "reason": reason, "message": message}
