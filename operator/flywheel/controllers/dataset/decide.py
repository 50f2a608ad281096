"""Pure Dataset decisions: when to ingest, and what an ingest's result means for the status.

One ingest Job at a time. A new one starts on creation, on a spec change, on a refresh request
(the `flywheel.dev/refresh-requested-at` annotation, as Flux's `requestedAt`), when the refresh
schedule is due, and after a transient source failure (`SourceUnavailable`, `SourceTimeout`:
:data:`~flywheel.interfaces.jobs.SOURCE_TRANSIENT`) with a back-off (10 s doubling to 10
minutes, said in `Reconciling`).

A permanent source failure (`SourceInvalid`, `SourceNotFound`, `SourceForbidden`,
`SourceUntrusted`, `SourceTooLarge`: :data:`~flywheel.interfaces.jobs.SOURCE_PERMANENT`) stalls
the generation:
`Stalled=True`, `Ready=False` (the last good version stays current, and the message says so),
and neither the back-off nor the refresh schedule runs again; a spec change or a refresh
request does. Other failures keep the last good version serving (`Ready=True`, reason
`PreviousVersion`); content that cannot be parsed is `Stalled` until the data or the spec
changes.

Events mark transitions: a failure's Warning once per reason and generation (a back-off's
retries failing the same way, or every refresh failing the same rule, say nothing more);
`IngestStarted` for the ingests a person or a spec asked for, not for the clock's (refresh ticks,
retries); `Unchanged` once until something else happens.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, get_args

from croniter import croniter

from flywheel.api.common import Condition
from flywheel.api.dataset import (
    DatasetSpec,
    DatasetStatus,
    IngestAttempt,
    IngestResult,
    RefreshPolicy,
)
from flywheel.controllers.dataset.render import IngestPlan, job_name, render_ingest_job
from flywheel.core.conditions import (
    READY,
    RECONCILING,
    STALLED,
    ConditionUpdate,
    find_condition,
)
from flywheel.core.objects import Obj
from flywheel.core.outcome import Create, Ensure, Event, Outcome
from flywheel.core.podspec import render_artifacts_claim, render_service_account
from flywheel.core.statuses import REFRESH_REQUESTED
from flywheel.core.target import Meta
from flywheel.core.times import rfc3339
from flywheel.interfaces.jobs import (
    SOURCE_PERMANENT,
    SOURCE_TRANSIENT,
    FailureReason,
    IngestReport,
    JobFailure,
)
from flywheel.settings import OperatorSettings

HISTORY = 20
RETRY_BASE = timedelta(seconds=10)
RETRY_MAX = timedelta(minutes=10)
VALIDATED = "Validated"
SOURCE_AVAILABLE = "SourceAvailable"
RECORDED_RESULTS: frozenset[str] = frozenset(get_args(IngestResult))
"""What `status.lastIngest.result` may hold (the CRD's enum)."""
ANNOUNCED_STARTS = frozenset({"Created", "SpecChanged", "Requested"})
"""Triggers whose ingest gets an `IngestStarted` Event; the clock's (Refresh, Retry) are routine."""


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


def recorded_result(reason: str) -> str:
    """The failure reason as `status.lastIngest.result` records it: itself when the API's enum
    lists it, else `Failed` (the conditions, the Event and the message carry the reason)."""
    return reason if reason in RECORDED_RESULTS else str(FailureReason.NO_RESULT)


def source_stalled(status: DatasetStatus, generation: int) -> Condition | None:
    """The `Stalled` condition of a permanent source failure of this generation, if stalled."""
    stalled = find_condition(status.conditions, STALLED)
    if (
        stalled is not None
        and stalled.status == "True"
        and stalled.reason in SOURCE_PERMANENT
        and stalled.observed_generation == generation
    ):
        return stalled
    return None


def retry_delay(retries: int) -> timedelta:
    """Back-off after `retries` consecutive transient source failures: 10 s doubling to 10 min."""
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
    if last.result in SOURCE_TRANSIENT and now >= last.completion_time + retry_delay(last.retries):
        return IngestPlan("Retry", f"g{generation}r{last.retries}")
    if requested and requested != status.last_handled_refresh_at:
        tick = hashlib.sha256(requested.encode()).hexdigest()[:8]
        return IngestPlan("Requested", f"g{generation}q{tick}")
    if source_stalled(status, generation):
        return None  # a permanent source failure: the spec or a request must change first
    if spec.refresh is not None:
        due = next_refresh(spec.refresh, status.last_checked or last.completion_time)
        if now >= due:
            return IngestPlan("Refresh", f"g{generation}t{int(due.timestamp())}")
    return None


def next_due(spec: DatasetSpec, status: DatasetStatus, generation: int) -> datetime | None:
    """When a clock next calls for an ingest: a retry's back-off or the refresh schedule (none
    while a permanent source failure stalls the generation)."""
    last = status.last_ingest
    if last is None or last.completion_time is None or source_stalled(status, generation):
        return None
    times = []
    if last.result in SOURCE_TRANSIENT:
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
        wake = next_due(inputs.spec, status, inputs.meta.generation)
        return Outcome(requeue_after=_until(wake, now))
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
    announced = plan.trigger in ANNOUNCED_STARTS
    stalled = find_condition(status.conditions, STALLED)
    if announced and stalled is not None and stalled.status == "True":
        # A request acts on a stalled generation: not stalled while its Job runs.
        conditions.append(ConditionUpdate(STALLED, "False", "Ingesting", message))
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
        events=(Event("Normal", "IngestStarted", message),) if announced else (),
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
    spec = inputs.spec
    done = {"completionTime": rfc3339(now)}
    refresh = next_refresh(spec.refresh, now) if spec.refresh is not None else None
    # With nulls: the status is merge-patched, so stale fields (a past message) must be cleared.
    base = attempt.model_dump(by_alias=True, mode="json")
    if isinstance(result, IngestReport):
        outcome = _success(inputs, {**base, **done, "retries": 0}, result, now)
        return _later(outcome, refresh, now)
    reason = str(result.reason)
    message = result.message[:4000]
    retries = attempt.retries + 1 if reason in SOURCE_TRANSIENT else 0
    recorded = recorded_result(reason)
    last = {
        **base,
        **done,
        "result": recorded,
        "message": message if recorded == reason else f"{reason}: {message}",
        "retries": retries,
    }
    fields = {"lastIngest": last, "lastChecked": done["completionTime"]}
    if reason in SOURCE_PERMANENT:
        outcome = _stalled(inputs, reason, message)
        wake = None  # nothing is retried until the spec changes
    elif reason in SOURCE_TRANSIENT:
        retry_at = now + retry_delay(retries)
        outcome = _retrying(inputs, reason, message, retries, retry_at, now)
        wake = min(retry_at, refresh) if refresh is not None else retry_at
    else:
        outcome = _failed(inputs, reason, message)
        wake = refresh
    return _later(replace(outcome, status=fields), wake, now)


def _previous_version(status: DatasetStatus, reason: str, message: str) -> ConditionUpdate:
    """Ready after a failure that does not stall: the last good version still serves."""
    if status.version is None:
        return ConditionUpdate(READY, "False", reason, message)
    latest = f"Serving version {status.version}; the latest ingest failed: {reason}."
    return ConditionUpdate(READY, "True", "PreviousVersion", latest)


def _announce(
    inputs: DatasetInputs,
    condition: str,
    reason: str,
    message: str,
    conditions: list[ConditionUpdate],
) -> Outcome:
    """The outcome with a Warning Event, unless `condition` already said `reason` for this
    generation (a retry failing as before, a refresh failing the same rule)."""
    current = find_condition(inputs.status.conditions, condition)
    said = (
        current is not None
        and current.status != "True"
        and current.reason == reason
        and current.observed_generation == inputs.meta.generation
    )
    events = () if said else (Event("Warning", reason, message),)
    return Outcome(conditions=tuple(conditions), events=events)


def _stalled(inputs: DatasetInputs, reason: str, message: str) -> Outcome:
    """A permanent source failure: Stalled, not Ready, nothing retried until the spec changes."""
    version = inputs.status.version
    kept = f" Version {version} stays current but is not refreshed." if version else ""
    text = f"{message.rstrip('.')}.{kept} Not retried until the spec changes."
    conditions = [
        ConditionUpdate(SOURCE_AVAILABLE, "False", reason, message),
        ConditionUpdate(STALLED, "True", reason, message),
        ConditionUpdate(READY, "False", reason, text),
        ConditionUpdate(RECONCILING, "False", reason, "Waiting for a spec change."),
    ]
    return _announce(inputs, SOURCE_AVAILABLE, reason, text, conditions)


def _retrying(
    inputs: DatasetInputs,
    reason: str,
    message: str,
    retries: int,
    retry_at: datetime,
    now: datetime,
) -> Outcome:
    """A transient source failure: still reconciling, retried with back-off."""
    seconds = int((retry_at - now).total_seconds())
    when = f"retry {retries} in {seconds}s, at {rfc3339(retry_at)}"
    conditions = [
        _previous_version(inputs.status, reason, message),
        ConditionUpdate(SOURCE_AVAILABLE, "False", reason, f"{message} (retry in {seconds}s)"),
        ConditionUpdate(RECONCILING, "True", reason, f"{message}; {when}."),
        ConditionUpdate(STALLED, "False", reason, "A transient failure: retried with back-off."),
    ]
    text = f"{message}; retrying in {seconds}s, with back-off while it lasts."
    return _announce(inputs, SOURCE_AVAILABLE, reason, text, conditions)


def _failed(inputs: DatasetInputs, reason: str, message: str) -> Outcome:
    """The content failed (ParseError, ValidationFailed) or the Job gave no result (Failed)."""
    conditions = [
        _previous_version(inputs.status, reason, message),
        ConditionUpdate(RECONCILING, "False", reason, "Waiting for the next trigger."),
    ]
    if reason == FailureReason.NO_RESULT:
        # The Job ended without a word: whether the source can be read is not known.
        unknown = f"Not known: the ingest Job ended without a result ({message})."
        conditions.append(ConditionUpdate(SOURCE_AVAILABLE, "Unknown", reason, unknown))
        carrier = SOURCE_AVAILABLE
    else:
        conditions.append(
            ConditionUpdate(SOURCE_AVAILABLE, "True", "SourceRead", "The source was read.")
        )
        conditions.append(ConditionUpdate(VALIDATED, "False", reason, message))
        carrier = VALIDATED
    if reason == FailureReason.PARSE_ERROR:
        conditions.append(ConditionUpdate(STALLED, "True", reason, message))
    else:
        again = "Ingested again on the next refresh, request or spec change."
        conditions.append(ConditionUpdate(STALLED, "False", reason, again))
    return _announce(inputs, carrier, reason, message, conditions)


def _later(outcome: Outcome, when: datetime | None, now: datetime) -> Outcome:
    return outcome if when is None else replace(outcome, requeue_after=_until(when, now))


def _success(inputs: DatasetInputs, last: Obj, result: IngestReport, now: datetime) -> Outcome:
    status = inputs.status
    changed = result.digest != status.digest
    last["result"] = "Published" if changed else "Unchanged"
    last["sourceBytes"] = result.source_bytes
    last["peakMemoryBytes"] = result.peak_memory_bytes
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
        events: tuple[Event, ...] = (Event("Normal", "VersionPublished", message),)
    else:
        ready = find_condition(status.conditions, READY)
        routine = (  # a refresh finding what the previous one found: no news
            ready is not None
            and ready.reason == "Unchanged"
            and ready.observed_generation == inputs.meta.generation
        )
        same = f"No new content; still version {result.version}."
        events = () if routine else (Event("Normal", "Unchanged", same),)
    return Outcome(status=fields, conditions=conditions, events=events)
