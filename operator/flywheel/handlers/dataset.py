"""The Dataset controller: ingest Jobs on creation, spec change, refresh and retry.

Thin kopf glue around :mod:`flywheel.datasets` (pure decisions and builders) and
:mod:`flywheel.kube` (I/O). The same `step` runs on create/update/resume and on a timer, which
follows running Jobs and notices refresh schedules and retry back-offs; deterministic Job names
make concurrent steps harmless.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import BaseModel

from flywheel.api.dataset import DatasetSpec, DatasetStatus, IngestAttempt
from flywheel.conditions import (
    READY,
    RECONCILING,
    ConditionUpdate,
)
from flywheel.datasets import (
    REFRESH_REQUESTED,
    ingest_due,
    job_name,
    outcome,
    render_ingest_job,
)
from flywheel.handlers.context import OperatorContext
from flywheel.handlers.outcome import apply
from flywheel.handlers.workloads import ensure_job_prerequisites
from flywheel.jobresult import Outcome, job_finished, read_result
from flywheel.kube import Kube, namespaced


async def step(
    kube: Kube, body: kopf.Body, spec: DatasetSpec, status: DatasetStatus, context: OperatorContext
) -> Outcome | None:
    """Advance the Dataset by one step: follow the running Job, or start one if due."""
    meta = body["metadata"]
    namespace, generation = meta["namespace"], int(meta.get("generation", 0))
    now = datetime.now(UTC)
    last = status.last_ingest
    if last is not None and last.completion_time is None:
        job = await kube.get_or_none(namespaced("batch/v1", namespace, "jobs", last.job_name))
        if job is None:
            result = {
                "ok": False,
                "reason": "Failed",
                "message": f"the ingest Job {last.job_name} disappeared",
            }
            return outcome(status, last, result, now)
        if job_finished(job) is None:
            return None
        pods = await kube.get(
            namespaced("v1", namespace, "pods") + f"?labelSelector=job-name%3D{last.job_name}"
        )
        return outcome(status, last, read_result(job, pods.get("items", [])), now)
    requested = (meta.get("annotations") or {}).get(REFRESH_REQUESTED)
    plan = ingest_due(spec, status, generation, now, requested)
    if plan is None:
        return None
    settings = context.settings
    await ensure_job_prerequisites(kube, namespace, context)
    job = render_ingest_job(dict(body), spec, plan, status, settings)
    await kube.create_or_get(namespaced("batch/v1", namespace, "jobs"), job)
    name = job_name(meta["name"], plan)
    retries = last.retries if last is not None and plan.trigger == "Retry" else 0
    attempt = IngestAttempt(
        job_name=name,
        trigger=plan.trigger,
        generation=generation,
        start_time=now.replace(microsecond=0),
        retries=retries,
    )
    message = f"Ingest Job {name} ({plan.trigger})."
    conditions = [ConditionUpdate(RECONCILING, "True", "Ingesting", message)]
    if status.version is None:
        conditions.append(ConditionUpdate(READY, "Unknown", "Ingesting", message))
    # With nulls: a merge patch keeps what it does not mention (the previous attempt's result).
    fields: dict[str, Any] = {
        "lastIngest": attempt.model_dump(by_alias=True, mode="json"),
        "jobName": name,
    }
    if plan.trigger == "Requested":
        fields["lastHandledRefreshAt"] = requested
    return Outcome(fields, conditions, "Normal", "IngestStarted", message)


async def work(
    body: kopf.Body,
    spec: BaseModel,
    status: dict[str, Any],
    patch: kopf.Patch,
    memo: OperatorContext,
) -> None:
    """The Dataset controller's part of a reconcile (the spec is already admitted)."""
    assert isinstance(spec, DatasetSpec)
    result = await step(memo.kube, body, spec, _status(status), memo)
    if result is not None:
        apply(result, status, patch, body, body["metadata"].get("generation"))


def _status(raw: dict[str, Any]) -> DatasetStatus:
    """The typed status; fields the operator did not write are ignored."""
    return DatasetStatus.model_validate({k: v for k, v in raw.items() if k in _STATUS_KEYS})


_STATUS_KEYS = {f.alias or n for n, f in DatasetStatus.model_fields.items()}
