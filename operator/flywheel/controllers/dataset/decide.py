"""Pure Dataset decisions: when to ingest, and what an ingest's result means for the status.

One ingest Job at a time. A new one starts on creation, on a spec change, on a refresh request
(the `flywheel.dev/refresh-requested-at` annotation, as Flux's `requestedAt`), when the refresh
schedule is due, and after `SourceUnavailable` with a back-off (10 s doubling to 10 minutes).
A failed ingest keeps the last good version serving (`Ready=True`, reason `PreviousVersion`);
a source that cannot be parsed is `Stalled` until the data or the spec changes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from croniter import croniter

from flywheel.api.dataset import DatasetSpec, DatasetStatus, IngestAttempt, RefreshPolicy
from flywheel.controllers.dataset.render import IngestPlan, job_name, render_ingest_job
from flywheel.core.conditions import READY, RECONCILING, STALLED, ConditionUpdate
from flywheel.core.objects import Obj
from flywheel.core.outcome import Create, Ensure, Event, Outcome
from flywheel.core.podspec import render_artifacts_claim, render_service_account
from flywheel.core.statuses import REFRESH_REQUESTED
from flywheel.core.target import Meta
from flywheel.core.times import rfc3339
from flywheel.interfaces.jobs import FailureReason, IngestReport, JobFailure
from flywheel.settings import OperatorSettings

HISTORY = 20
RETRY_BASE = timedelta(seconds=10)
RETRY_MAX = timedelta(minutes=10)
VALIDATED = "Validated"
SOURCE_AVAILABLE = "SourceAvailable"


@dataclass(frozen=True)
class DatasetInputs:
    """Everything one Dataset decision looks at."""

    meta: Meta
    spec: DatasetSpec
    status: DatasetStatus
    settings: OperatorSettings
    job: Obj | None = None
    """The Job of the ingest in progress (None: none in progress, or it vanished)."""
    result: IngestReport | JobFailure | None = None
    """What that Job reported, once it finished."""

    @property
    def requested(self) -> str | None:
        """The refresh annotation's value."""
        return self.meta.annotations.get(REFRESH_REQUESTED)


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


def next_due(spec: DatasetSpec, status: DatasetStatus) -> datetime | None:
    """When a clock next calls for an ingest: a retry's back-off or the refresh schedule."""
    last = status.last_ingest
    if last is None or last.completion_time is None:
        return None
    times = []
    if last.result == "SourceUnavailable":
        times.append(last.completion_time + retry_delay(last.retries))
    if spec.refresh is not None:
        times.append(next_refresh(spec.refresh, status.last_checked or last.completion_time))
    return min(times, default=None)


def decide(inputs: DatasetInputs, now: datetime) -> Outcome:
    """Follow the ingest in progress, or start one when due, or wait for the next clock."""
    status = inputs.status
    last = status.last_ingest
    if last is not None and last.completion_time is None:
        if inputs.job is None:
            gone = f"the ingest Job {last.job_name} disappeared"
            return finished(
                inputs, last, JobFailure(reason=FailureReason.NO_RESULT, message=gone), now
            )
        if inputs.result is None:
            return Outcome()  # running: the Job's next event wakes the Dataset
        return finished(inputs, last, inputs.result, now)
    plan = ingest_due(inputs.spec, status, inputs.meta.generation, now, inputs.requested)
    if plan is None:
        return Outcome(requeue_after=_until(next_due(inputs.spec, status), now))
    return start(inputs, plan, now)


def _until(when: datetime | None, now: datetime) -> timedelta | None:
    if when is None:
        return None
    return max(when - now, timedelta(0)) + timedelta(milliseconds=100)


def start(inputs: DatasetInputs, plan: IngestPlan, now: datetime) -> Outcome:
    """Create the plan's ingest Job (and what the namespace needs first) and record it."""
    meta, status, settings = inputs.meta, inputs.status, inputs.settings
    name = job_name(meta.name, plan)
    last = status.last_ingest
    retries = last.retries if last is not None and plan.trigger == "Retry" else 0
    attempt = IngestAttempt(
        job_name=name,
        trigger=plan.trigger,
        generation=meta.generation,
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
        fields["lastHandledRefreshAt"] = inputs.requested
    job = render_ingest_job(meta, inputs.spec, plan, status.digest, settings)
    return Outcome(
        status=fields,
        conditions=tuple(conditions),
        events=(Event("Normal", "IngestStarted", message),),
        actions=(
            Ensure(render_artifacts_claim(meta.namespace, settings)),
            Ensure(render_service_account(meta.namespace, settings.job_service_account)),
            Create(job),
        ),
    )


def finished(
    inputs: DatasetInputs,
    attempt: IngestAttempt,
    result: IngestReport | JobFailure,
    now: datetime,
) -> Outcome:
    """Turn an ingest result into the Dataset's new status, and when to look again."""
    status, spec = inputs.status, inputs.spec
    done = {"completionTime": rfc3339(now)}
    refresh = next_refresh(spec.refresh, now) if spec.refresh is not None else None
    # With nulls: the status is merge-patched, so stale fields (a past message) must be cleared.
    base = attempt.model_dump(by_alias=True, mode="json")
    if isinstance(result, IngestReport):
        outcome = _success(status, {**base, **done, "retries": 0}, result, now)
        return _later(outcome, refresh, now)
    reason = str(result.reason)
    message = result.message[:4000]
    retries = attempt.retries + 1 if reason == FailureReason.SOURCE_UNAVAILABLE else 0
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
    retry_at = None
    if reason == FailureReason.SOURCE_UNAVAILABLE:
        delay = retry_delay(retries)
        retry_at = now + delay
        text = f"{message} (retry in {int(delay.total_seconds())}s)"
        conditions.append(ConditionUpdate(SOURCE_AVAILABLE, "False", reason, text))
    else:
        conditions.append(
            ConditionUpdate(SOURCE_AVAILABLE, "True", "SourceRead", "The source was read.")
        )
    if reason in (FailureReason.PARSE_ERROR, FailureReason.VALIDATION_FAILED):
        conditions.append(ConditionUpdate(VALIDATED, "False", reason, message))
    if reason == FailureReason.PARSE_ERROR:
        conditions.append(ConditionUpdate(STALLED, "True", reason, message))
    outcome = Outcome(
        status={"lastIngest": last, "lastChecked": done["completionTime"]},
        conditions=tuple(conditions),
        events=(Event("Warning", reason, message),),
    )
    wake = min((t for t in (retry_at, refresh) if t is not None), default=None)
    return _later(outcome, wake, now)


def _later(outcome: Outcome, when: datetime | None, now: datetime) -> Outcome:
    return outcome if when is None else replace(outcome, requeue_after=_until(when, now))


def _success(status: DatasetStatus, last: Obj, result: IngestReport, now: datetime) -> Outcome:
    changed = result.digest != status.digest
    last["result"] = "Published" if changed else "Unchanged"
    checked = rfc3339(now)
    fields: Obj = {"lastIngest": last, "lastChecked": checked}
    if changed:
        record = {
            "version": result.version,
            "digest": result.digest,
            "rows": result.rows,
            "columns": result.columns,
            "snapshotURI": result.snapshot_uri,
            "statsURI": result.stats_uri,
        }
        history = [h.model_dump(by_alias=True, mode="json") for h in status.history or []]
        fields |= record | {"history": [{**record, "createdAt": checked}, *history][:HISTORY]}
    message = f"Version {result.version}: {result.rows} rows, {result.columns} columns."
    conditions = (
        ConditionUpdate(READY, "True", "VersionPublished" if changed else "Unchanged", message),
        ConditionUpdate(VALIDATED, "True", "RulesPassed", "Every quality rule passed."),
        ConditionUpdate(SOURCE_AVAILABLE, "True", "SourceRead", "The source was read."),
        ConditionUpdate(RECONCILING, "False", "Idle", "Waiting for the next trigger."),
        ConditionUpdate(STALLED, "False", "Ingested", "The latest ingest succeeded."),
    )
    if changed:
        event = Event("Normal", "VersionPublished", message)
    else:
        event = Event("Normal", "Unchanged", f"No new content; still version {result.version}.")
    return Outcome(status=fields, conditions=conditions, events=(event,))
