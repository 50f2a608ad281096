"""Pure Dataset decisions and builders: when to ingest, the ingest Job, what a result means.

The handler (:mod:`flywheel.handlers.dataset`) reads the object and the Job, calls these, and
writes what they return. No I/O and no clock here: `now` is a parameter.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from croniter import croniter

from flywheel.api.common import API_GROUP
from flywheel.api.dataset import (
    DatasetSpec,
    DatasetStatus,
    IngestAttempt,
    IngestTrigger,
    RefreshPolicy,
)
from flywheel.artifacts import MOUNT_ROOT
from flywheel.conditions import READY, RECONCILING, STALLED, ConditionUpdate
from flywheel.jobresult import Outcome
from flywheel.podspec import (
    RESTRICTED_CONTAINER,
    RESTRICTED_POD,
    artifact_mounts,
    artifact_volumes,
    owner_reference,
)
from flywheel.settings import OperatorSettings

Obj = dict[str, Any]
HISTORY = 20
RETRY_BASE = timedelta(seconds=10)
RETRY_MAX = timedelta(minutes=10)
VALIDATED = "Validated"
SOURCE_AVAILABLE = "SourceAvailable"


def retry_delay(retries: int) -> timedelta:
    """Back-off after `retries` consecutive SourceUnavailable failures: 10 s doubling to 10 min."""
    delay: timedelta = RETRY_BASE * 2 ** max(retries - 1, 0)
    return min(delay, RETRY_MAX)


def next_refresh(policy: RefreshPolicy, last: datetime) -> datetime:
    """When the source is due to be read again after `last`."""
    if policy.interval_seconds is not None:
        return last + timedelta(seconds=policy.interval_seconds)
    assert policy.schedule is not None  # the CRD requires one of the two
    return croniter(policy.schedule, last).get_next(datetime)


@dataclass(frozen=True)
class IngestPlan:
    """A decision to ingest: why, and the tick that makes the Job name deterministic."""

    trigger: IngestTrigger
    tick: str


def ingest_due(
    spec: DatasetSpec,
    status: DatasetStatus,
    generation: int,
    now: datetime,
    requested: str | None = None,
) -> IngestPlan | None:
    """Whether to start an ingest now, and why (`requested`: the refresh annotation's value)."""
    last = status.last_ingest
    if last is None:
        return IngestPlan("Created", f"g{generation}")
    if last.completion_time is None:
        return None  # one Job at a time
    if last.generation != generation:
        return IngestPlan("SpecChanged", f"g{generation}")
    if last.result == "SourceUnavailable" and now >= last.completion_time + retry_delay(
        last.retries
    ):
        return IngestPlan("Retry", f"g{generation}r{last.retries}")
    if requested and requested != status.last_handled_refresh_at:
        tick = hashlib.sha256(requested.encode()).hexdigest()[:8]
        return IngestPlan("Requested", f"g{generation}q{tick}")
    if spec.refresh is not None:
        due = next_refresh(spec.refresh, status.last_checked or last.completion_time)
        if now >= due:
            return IngestPlan("Refresh", f"g{generation}t{int(due.timestamp())}")
    return None


REFRESH_REQUESTED = f"{API_GROUP}/refresh-requested-at"
"""Annotation asking for an ingest now; any new value (a timestamp by convention) asks again."""


def job_name(dataset: str, plan: IngestPlan) -> str:
    """A deterministic, DNS-safe Job name per (dataset, trigger tick)."""
    digest = hashlib.sha256(f"{dataset}/{plan.tick}".encode()).hexdigest()[:8]
    return f"{dataset[:45]}-ingest-{digest}"


def labels(dataset: str) -> dict[str, str]:
    """Labels of everything the Dataset controller creates."""
    return {
        "app.kubernetes.io/managed-by": "flywheel",
        "app.kubernetes.io/component": "ingest",
        f"{API_GROUP}/dataset": dataset,
    }


def render_artifacts_claim(namespace: str, settings: OperatorSettings) -> Obj:
    """The artifacts PersistentVolumeClaim the operator creates when a namespace has none."""
    spec: Obj = {
        "accessModes": [settings.artifacts_access_mode],
        "resources": {"requests": {"storage": settings.artifacts_size}},
    }
    if settings.artifacts_storage_class:
        spec["storageClassName"] = settings.artifacts_storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": settings.artifacts_claim,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "flywheel"},
        },
        "spec": spec,
    }


def render_ingest_job(
    body: Obj,
    spec: DatasetSpec,
    plan: IngestPlan,
    status: DatasetStatus,
    settings: OperatorSettings,
) -> Obj:
    """The ingest Job for a plan."""
    meta = body["metadata"]
    name = job_name(meta["name"], plan)
    claim = settings.artifacts_claim
    command = [
        "python",
        "-m",
        "flywheel.jobs.ingest",
        "--spec",
        json.dumps(spec.model_dump(by_alias=True, exclude_none=True, mode="json")),
        "--namespace",
        meta["namespace"],
        "--name",
        meta["name"],
        "--claim",
        claim,
        "--previous-digest",
        status.digest or "",
    ]
    tags = {**labels(meta["name"]), f"{API_GROUP}/trigger": plan.trigger.lower()}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": tags,
            "ownerReferences": [owner_reference(body, "Dataset")],
        },
        "spec": {
            "backoffLimit": 0,  # the controller retries SourceUnavailable itself, with back-off
            "activeDeadlineSeconds": settings.ingest_deadline_seconds,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": tags},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": settings.job_service_account,
                    "automountServiceAccountToken": False,  # the Job needs no API access
                    "securityContext": RESTRICTED_POD,
                    "containers": [
                        {
                            "name": "ingest",
                            "image": settings.job_image,
                            "command": command,
                            "env": [{"name": "HOME", "value": "/tmp"}],
                            "resources": {
                                "requests": {
                                    "cpu": settings.job_cpu,
                                    "memory": settings.job_memory,
                                },
                                "limits": {"memory": settings.job_memory},
                            },
                            "securityContext": RESTRICTED_CONTAINER,
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "volumeMounts": artifact_mounts(claim, str(MOUNT_ROOT)),
                        }
                    ],
                    "volumes": artifact_volumes(claim),
                },
            },
        },
    }


def outcome(status: DatasetStatus, attempt: IngestAttempt, result: Obj, now: datetime) -> Outcome:
    """Turn an ingest result into the Dataset's new status."""
    done = {"completionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
    # With nulls: the status is merge-patched, so stale fields (a past message) must be cleared.
    base = attempt.model_dump(by_alias=True, mode="json")
    if result.get("ok"):
        return _success(status, {**base, **done, "retries": 0}, result, now)
    reason = str(result.get("reason", "Failed"))
    message = str(result.get("message", ""))[:4000]
    retries = attempt.retries + 1 if reason == "SourceUnavailable" else 0
    last = {**base, **done, "result": reason, "message": message, "retries": retries}
    has_version = status.version is not None
    ready = ConditionUpdate(
        READY,
        "True" if has_version else "False",
        "PreviousVersion" if has_version else reason,
        f"Serving version {status.version}; the latest ingest failed: {reason}."
        if has_version
        else message,
    )
    conditions = [
        ready,
        ConditionUpdate(RECONCILING, "False", reason, "Waiting for the next trigger."),
    ]
    if reason == "SourceUnavailable":
        delay = int(retry_delay(retries).total_seconds())
        conditions.append(
            ConditionUpdate(SOURCE_AVAILABLE, "False", reason, f"{message} (retry in {delay}s)")
        )
    else:
        conditions.append(
            ConditionUpdate(SOURCE_AVAILABLE, "True", "SourceRead", "The source was read.")
        )
    if reason in ("ParseError", "ValidationFailed"):
        conditions.append(ConditionUpdate(VALIDATED, "False", reason, message))
    if reason == "ParseError":
        conditions.append(ConditionUpdate(STALLED, "True", reason, message))
    fields = {"lastIngest": last, "lastChecked": done["completionTime"]}
    return Outcome(fields, conditions, "Warning", reason, message)


def _success(status: DatasetStatus, last: Obj, result: Obj, now: datetime) -> Outcome:
    changed = result["digest"] != status.digest
    last["result"] = "Published" if changed else "Unchanged"
    checked = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    fields: Obj = {"lastIngest": last, "lastChecked": checked}
    if changed:
        record = {
            k: result[k]
            for k in ("version", "digest", "rows", "columns", "snapshotURI", "statsURI")
        }
        history = [h.model_dump(by_alias=True, mode="json") for h in status.history or []]
        fields |= record | {"history": [{**record, "createdAt": checked}, *history][:HISTORY]}
    version = result["version"]
    message = f"Version {version}: {result['rows']} rows, {result['columns']} columns."
    conditions = [
        ConditionUpdate(READY, "True", "VersionPublished" if changed else "Unchanged", message),
        ConditionUpdate(VALIDATED, "True", "RulesPassed", "Every quality rule passed."),
        ConditionUpdate(SOURCE_AVAILABLE, "True", "SourceRead", "The source was read."),
        ConditionUpdate(RECONCILING, "False", "Idle", "Waiting for the next trigger."),
        ConditionUpdate(STALLED, "False", "Ingested", "The latest ingest succeeded."),
    ]
    if changed:
        return Outcome(fields, conditions, "Normal", "VersionPublished", message)
    return Outcome(
        fields, conditions, "Normal", "Unchanged", f"No new content; still version {version}."
    )
