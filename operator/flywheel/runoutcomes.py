"""Pure TrainingRun outcomes: what each step of a run means for its status.

A run moves Pending (waiting for its Dataset) -> Training (the Job runs; attempts counted) ->
Succeeded=True (ModelVersion registered, gates judged) or Succeeded=False (the real reason,
Stalled=True: the spec is immutable, so nothing will change without a new TrainingRun).
Each function returns an :class:`~flywheel.jobresult.Outcome` for the handler to write.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flywheel.api.trainingrun import TrainingRunSpec, ValidationVerdict
from flywheel.conditions import (
    READY,
    RECONCILING,
    STALLED,
    ConditionUpdate,
    Verdict,
    raw_condition,
)
from flywheel.jobresult import Outcome, job_condition, pods_started
from flywheel.training.gates import verdict

Obj = dict[str, Any]
SUCCEEDED = "Succeeded"
DATASET_NOT_READY = "DatasetNotReady"


def _time(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def _job_time(job: Obj, now: datetime, *keys: str) -> str:
    """A timestamp recorded on the Job, so a repeated step writes the same status."""
    value: Any = job
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return str(value) if value else _time(now)


def waiting(why: Verdict, already_waiting: bool) -> Outcome:
    """The run waits for its Dataset; the Event is posted once, not on every re-check."""
    message = f"{why.message} Re-checked periodically."
    return Outcome(
        {},
        [
            ConditionUpdate(SUCCEEDED, "Unknown", DATASET_NOT_READY, message),
            ConditionUpdate(READY, "False", DATASET_NOT_READY, message),
            ConditionUpdate(RECONCILING, "True", "WaitingForDataset", message),
        ],
        *(() if already_waiting else ("Warning", DATASET_NOT_READY, why.message)),
    )


def started(job: Obj, dataset_version: str, dataset_digest: str, now: datetime) -> Outcome:
    """The training Job exists; the dataset version is pinned."""
    name = job["metadata"]["name"]
    message = f"Training Job {name} on dataset version {dataset_version}."
    return Outcome(
        {
            "jobName": name,
            "startTime": _job_time(job, now, "metadata", "creationTimestamp"),
            "datasetVersion": dataset_version,
            "datasetDigest": dataset_digest,
            "attempts": 0,
        },
        [
            ConditionUpdate(SUCCEEDED, "Unknown", "Training", message),
            ConditionUpdate(READY, "Unknown", "Training", message),
            ConditionUpdate(RECONCILING, "True", "Training", message),
            ConditionUpdate(STALLED, "False", "Training", message),
        ],
        "Normal",
        "TrainingStarted",
        message,
    )


def progressed(job: Obj, recorded_attempts: int, backoff_limit: int) -> Outcome | None:
    """A running Job started another pod (a retry after a crash), else None."""
    attempts = pods_started(job)
    if attempts <= recorded_attempts:
        return None
    failed = int(job.get("status", {}).get("failed") or 0)
    name = job["metadata"]["name"]
    message = f"Training Job {name}: attempt {attempts} of at most {backoff_limit + 1}."
    conditions = [ConditionUpdate(SUCCEEDED, "Unknown", "Training", message)]
    if failed:
        return Outcome(
            {"attempts": attempts},
            conditions,
            "Warning",
            "Retrying",
            f"{message} {failed} failed so far.",
        )
    return Outcome({"attempts": attempts}, conditions)


REPORTED_FAILURES = frozenset(
    {
        "InvalidEstimator",
        "InvalidSpec",
        "OnnxParityFailed",
        "DatasetDigestMismatch",
        "TrainingFailed",
    }
)
"""Reasons the training container reports itself (flywheel.jobs.train)."""


def failure_reason(job: Obj, result: Obj | None) -> Verdict:
    """Why a training Job failed: the run's own report, else the Job's reason.

    A deadline kills the pod whatever it was doing, so `DeadlineExceeded` wins; otherwise a
    reason the container reported (exit 3) is the most precise; a crash that reported nothing
    leaves the Job's reason (`BackoffLimitExceeded`) with the log tail as the message.
    """
    failed = job_condition(job, "Failed")
    job_reason = failed.get("reason") or "TrainingFailed"
    job_message = failed.get("message") or f"The training Job failed ({job_reason})."
    reported = (result or {}).get("reason")
    if job_reason != "DeadlineExceeded" and reported in REPORTED_FAILURES:
        return Verdict(str(reported), str((result or {}).get("message", ""))[:2000])
    if job_reason == "DeadlineExceeded":
        return Verdict(job_reason, job_message)
    detail = str((result or {}).get("message", ""))[-1500:]
    return Verdict(job_reason, f"{job_message} Last output: {detail}" if detail else job_message)


def failed(job: Obj, result: Obj | None, now: datetime) -> Outcome:
    """A failed run: Succeeded=False with the real reason; nothing more will happen."""
    why = failure_reason(job, result)
    ended = job_condition(job, "Failed").get("lastTransitionTime") or _time(now)
    return Outcome(
        {"completionTime": ended, "attempts": pods_started(job)},
        [
            ConditionUpdate(SUCCEEDED, "False", why.reason, why.message),
            ConditionUpdate(READY, "False", why.reason, why.message),
            ConditionUpdate(STALLED, "True", why.reason, why.message),
            ConditionUpdate(RECONCILING, "False", why.reason, "The run is finished."),
        ],
        "Warning",
        why.reason,
        why.message,
    )


def judge(spec: TrainingRunSpec, result: Obj, no_champion: str | None) -> ValidationVerdict:
    """The gates' verdict on a successful result (champion re-scored by the Job, if any)."""
    champion = result.get("champion") or None
    return verdict(
        spec.validation,
        result["metrics"],
        champion=champion["metrics"] if champion else None,
        champion_version=champion["version"] if champion else None,
        champion_note=champion.get("note") if champion else no_champion,
    )


def succeeded(
    job: Obj, result: Obj, judged: ValidationVerdict, model_version: str, now: datetime
) -> Outcome:
    """A successful run: metrics, the verdict and the registered ModelVersion."""
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in result["metrics"].items())
    failed_checks = [c.name for c in judged.checks if not c.passed]
    gates = "validated" if judged.passed else f"NOT validated (failed: {', '.join(failed_checks)})"
    message = f"Registered ModelVersion {model_version} ({metrics}); {gates}."
    return Outcome(
        {
            "completionTime": _job_time(job, now, "status", "completionTime"),
            "attempts": pods_started(job),
            "metrics": result["metrics"],
            "validation": judged.model_dump(by_alias=True, mode="json", exclude_none=True),
            "modelVersionRef": {"name": model_version},
        },
        [
            ConditionUpdate(SUCCEEDED, "True", "ModelVersionRegistered", message),
            ConditionUpdate(READY, "True", "ModelVersionRegistered", message),
            ConditionUpdate(STALLED, "False", "Succeeded", "The run succeeded."),
            ConditionUpdate(RECONCILING, "False", "Succeeded", "The run is finished."),
        ],
        "Normal",
        "ModelVersionRegistered",
        message,
    )


def finished(status: Obj) -> bool:
    """Whether the run reached its end (Succeeded True or False)."""
    return raw_condition(status, SUCCEEDED).get("status") in ("True", "False")


def is_waiting(status: Obj) -> bool:
    """Whether the run already waits for its Dataset (so the Event was posted)."""
    return raw_condition(status, SUCCEEDED).get("reason") == DATASET_NOT_READY
