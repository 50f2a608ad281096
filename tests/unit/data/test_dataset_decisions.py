"""Pure Dataset decisions: when to ingest, the Job, what a result means."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from flywheel.api.dataset import (
    DatasetSpec,
    DatasetStatus,
    DataSource,
    IngestAttempt,
    IngestResult,
    RefreshPolicy,
)
from flywheel.controllers.dataset.decide import (
    DatasetInputs,
    decide,
    finished,
    ingest_due,
    next_due,
    next_refresh,
    recorded_result,
    retry_delay,
    start,
)
from flywheel.controllers.dataset.render import (
    IngestPlan,
    job_name,
    render_ingest_job,
    source_limit,
)
from flywheel.core.jobs import read_result
from flywheel.core.outcome import Outcome
from flywheel.core.target import parse_meta
from flywheel.interfaces.jobs import (
    SOURCE_PERMANENT,
    FailureReason,
    IngestReport,
    JobFailure,
    TrainReport,
    decode_result,
    encode_result,
)
from flywheel.settings import OperatorSettings

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SPEC = DatasetSpec.model_validate({"source": {"uri": "sklearn://iris"}})


def _attempt(**fields: Any) -> IngestAttempt:
    base = {"job_name": "d-ingest-1", "trigger": "Created", "generation": 1, "start_time": T0}
    return IngestAttempt.model_validate({**base, **fields})


def _status(**fields: Any) -> DatasetStatus:
    return DatasetStatus.model_validate(fields)


def test_first_ingest_then_one_job_at_a_time() -> None:
    assert ingest_due(SPEC, _status(), 1, T0) == IngestPlan("Created", "g1")
    running = _status(last_ingest=_attempt())
    assert ingest_due(SPEC, running, 1, T0) is None


def test_a_spec_change_triggers_a_new_ingest() -> None:
    done = _status(last_ingest=_attempt(completion_time=T0, result="Published"))
    assert ingest_due(SPEC, done, 1, T0 + timedelta(hours=1)) is None
    assert ingest_due(SPEC, done, 2, T0) == IngestPlan("SpecChanged", "g2")


def test_source_unavailable_is_retried_with_back_off() -> None:
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3, 10)] == [10, 20, 40, 600]
    failed = _status(
        last_ingest=_attempt(completion_time=T0, result="SourceUnavailable", retries=2)
    )
    assert ingest_due(SPEC, failed, 1, T0 + timedelta(seconds=19)) is None
    assert ingest_due(SPEC, failed, 1, T0 + timedelta(seconds=20)) == IngestPlan("Retry", "g1r2")


def test_a_refresh_request_ingests_once_per_new_value() -> None:
    done = _status(last_ingest=_attempt(completion_time=T0, result="Published"))
    asked = "2026-11-30T13:00:00Z"
    plan = ingest_due(SPEC, done, 1, T0, requested=asked)
    assert plan is not None
    assert plan.trigger == "Requested"
    handled = _status(
        last_ingest=_attempt(completion_time=T0, result="Unchanged"), last_handled_refresh_at=asked
    )
    assert ingest_due(SPEC, handled, 1, T0 + timedelta(hours=1), requested=asked) is None
    again = ingest_due(SPEC, handled, 1, T0, requested="2026-11-30T14:00:00Z")
    assert again is not None
    assert job_name("d", again) != job_name("d", plan)
    running = _status(last_ingest=_attempt())
    assert ingest_due(SPEC, running, 1, T0, requested=asked) is None, "one Job at a time"


def test_parse_and_validation_failures_wait_for_a_change() -> None:
    for result in ("ParseError", "ValidationFailed"):
        failed = _status(last_ingest=_attempt(completion_time=T0, result=result))
        assert ingest_due(SPEC, failed, 1, T0 + timedelta(days=1)) is None


def test_refresh_by_interval_and_by_cron() -> None:
    assert next_refresh(RefreshPolicy(interval_seconds=600), T0) == T0 + timedelta(minutes=10)
    assert next_refresh(RefreshPolicy(schedule="0 3 * * *"), T0) == datetime(
        2026, 12, 1, 3, tzinfo=UTC
    )
    assert next_refresh(RefreshPolicy(schedule="@hourly"), T0) == T0 + timedelta(hours=1)
    spec = DatasetSpec.model_validate(
        {"source": {"uri": "https://x/d.csv"}, "refresh": {"intervalSeconds": 60}}
    )
    checked = _status(last_ingest=_attempt(completion_time=T0, result="Unchanged"), last_checked=T0)
    assert ingest_due(spec, checked, 1, T0 + timedelta(seconds=59)) is None
    plan = ingest_due(spec, checked, 1, T0 + timedelta(seconds=60))
    assert plan is not None
    assert plan.trigger == "Refresh"
    assert job_name("d", plan) == job_name("d", plan), (
        "deterministic: concurrent steps create one Job"
    )
    assert job_name("d", plan) != job_name("d", IngestPlan("Refresh", "g1t0"))


def test_the_ingest_job_is_restricted_and_owned() -> None:
    body = {"metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "generation": 1}}
    plan = IngestPlan("Created", "g1")
    job = render_ingest_job(parse_meta(body), SPEC, plan, None, OperatorSettings())
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert job["spec"]["backoffLimit"] == 0
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["command"][:3] == ["python", "-m", "flywheel.jobs.ingest"]
    assert {
        "name": "artifacts",
        "persistentVolumeClaim": {"claimName": "flywheel-artifacts"},
    } in pod["volumes"]


def _job_pod(message: str) -> dict[str, Any]:
    return {
        "metadata": {"creationTimestamp": "2026-11-30T12:00:00Z"},
        "status": {
            "containerStatuses": [{"state": {"terminated": {"exitCode": 0, "message": message}}}]
        },
    }


def test_results_are_read_from_the_termination_message() -> None:
    pod = _job_pod(encode_result(RESULT))
    assert read_result({}, [pod], IngestReport) == RESULT
    broken = read_result({}, [_job_pod("Traceback: boom")], IngestReport)
    assert isinstance(broken, JobFailure)
    assert broken.reason == "Failed"
    assert "boom" in broken.message
    none = read_result(
        {"status": {"conditions": [{"type": "Failed", "reason": "DeadlineExceeded"}]}},
        [],
        IngestReport,
    )
    assert isinstance(none, JobFailure)
    assert "DeadlineExceeded" in none.message
    large = TrainReport.model_validate(
        {
            "sha256": "c" * 64,
            "modelURI": "pvc://c/m/model.onnx",
            "metrics": {f"metric_{i}": i / 400 for i in range(200)},
            "signature": {
                "task": "classification",
                "features": [{"name": f"feature_{i}", "type": "numeric"} for i in range(100)],
            },
        }
    )
    packed = encode_result(large)
    assert len(packed) < 4096 < len(large.model_dump_json(by_alias=True)), "compressed to fit"
    assert read_result({}, [_job_pod(packed)], TrainReport) == large
    running: dict[str, Any] = {
        "metadata": {},
        "status": {"containerStatuses": [{"state": {"running": {}}}]},
    }
    still = read_result({}, [running], IngestReport)
    assert isinstance(still, JobFailure), "a pod still running reports nothing yet"
    oom_killed = {
        "metadata": {"creationTimestamp": "2026-11-30T12:00:00Z"},
        "spec": {"containers": [{"name": "ingest", "resources": {"limits": {"memory": "1Gi"}}}]},
        "status": {
            "containerStatuses": [
                {
                    "name": "ingest",
                    "state": {
                        "terminated": {
                            "exitCode": 137,
                            "reason": "OOMKilled",
                            "message": "reading rows",  # FallbackToLogsOnError: the log tail
                        }
                    },
                }
            ]
        },
    }
    killed = read_result({}, [oom_killed], IngestReport)
    assert isinstance(killed, JobFailure)
    assert killed.message == (
        "OOMKilled: container ingest used more than its memory limit (1Gi) and was killed "
        "(exit code 137); last output: reading rows"
    )
    alien = decode_result('{"ok": true, "digest": 3}', IngestReport)
    assert isinstance(alien, JobFailure), "a result that breaks the protocol is a failure"
    assert "protocol" in alien.message


RESULT = IngestReport(
    version="abc123abc123",
    digest="sha256:" + "a" * 64,
    rows=10,
    columns=3,
    snapshot_uri="pvc://c/d/data.parquet",
    stats_uri="pvc://c/d/stats.json",
)


def _inputs(
    status: DatasetStatus,
    spec: DatasetSpec = SPEC,
    generation: int = 1,
    annotations: dict[str, str] | None = None,
) -> DatasetInputs:
    meta = parse_meta(
        {
            "metadata": {
                "name": "d",
                "namespace": "ns",
                "uid": "u",
                "generation": generation,
                "annotations": annotations or {},
            }
        }
    )
    return DatasetInputs(meta, spec, status, OperatorSettings())


def _finished(
    status: DatasetStatus,
    result: IngestReport | JobFailure,
    spec: DatasetSpec = SPEC,
    **attempt: Any,
) -> Outcome:
    return finished(_inputs(status, spec), _attempt(**attempt), result, T0)


def _event(outcome: Outcome) -> str:
    return outcome.events[0].reason if outcome.events else ""


def test_a_new_version_is_published_with_history() -> None:
    result = _finished(_status(), RESULT)
    assert _event(result) == "VersionPublished"
    assert result.status["digest"] == RESULT.digest
    assert result.status["history"][0]["version"] == "abc123abc123"
    assert result.status["lastIngest"]["result"] == "Published"
    assert {c.type: c.status for c in result.conditions}["Ready"] == "True"
    same = _finished(_status(digest=RESULT.digest, version="abc123abc123"), RESULT)
    assert _event(same) == "Unchanged"
    assert "history" not in same.status


def test_failures_keep_the_previous_version_ready() -> None:
    current = _status(digest=RESULT.digest, version="abc123abc123")
    failed = _finished(current, JobFailure(reason="ValidationFailed", message="minRows: 3"))
    conditions = {c.type: (c.status, c.reason) for c in failed.conditions}
    assert conditions["Ready"] == ("True", "PreviousVersion")
    assert conditions["Validated"] == ("False", "ValidationFailed")
    assert conditions["Stalled"] == ("False", "ValidationFailed"), "the next refresh may pass"
    parse = _finished(_status(), JobFailure(reason="ParseError", message="line 3"))
    conditions = {c.type: (c.status, c.reason) for c in parse.conditions}
    assert conditions["Stalled"] == ("True", "ParseError")
    assert conditions["Ready"] == ("False", "ParseError")
    offline = _finished(_status(), JobFailure(reason="SourceUnavailable", message="x"), retries=1)
    assert offline.status["lastIngest"]["retries"] == 2
    assert "retry in 20s" in next(
        c.message for c in offline.conditions if c.type == "SourceAvailable"
    )


# Permanent and transient source failures ---------------------------------------------------

REFRESHED = DatasetSpec.model_validate(
    {"source": {"uri": "file:///data/d.csv"}, "refresh": {"intervalSeconds": 60}}
)
SERVING = {"digest": RESULT.digest, "version": "abc123abc123"}


def _conditions(outcome: Outcome) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in outcome.conditions}


def _condition(type_: str, status: str, reason: str, generation: int = 1) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": "m",
        "observedGeneration": generation,
        "lastTransitionTime": T0,
    }


def _after(outcome: Outcome, status: DatasetStatus) -> DatasetStatus:
    """The status the outcome leaves (conditions applied, observedGeneration 1)."""
    current = {c["type"]: c for c in status.model_dump(by_alias=True)["conditions"]}
    for c in outcome.conditions:
        current[c.type] = _condition(c.type, c.status, c.reason)
    fields = {**status.model_dump(by_alias=True, exclude_none=True), **outcome.status}
    return DatasetStatus.model_validate({**fields, "conditions": list(current.values())})


def test_a_permanent_source_failure_stalls_and_keeps_the_version_current() -> None:
    forbidden = JobFailure(
        reason="SourceForbidden", message="file:///data/d.csv: Permission denied"
    )
    outcome = _finished(_status(**SERVING), forbidden, REFRESHED)
    conditions = _conditions(outcome)
    assert conditions["Stalled"] == ("True", "SourceForbidden", forbidden.message)
    assert conditions["SourceAvailable"] == ("False", "SourceForbidden", forbidden.message)
    assert conditions["Reconciling"][:2] == ("False", "SourceForbidden")
    ready_status, ready_reason, ready_message = conditions["Ready"]
    assert (ready_status, ready_reason) == ("False", "SourceForbidden")
    assert "Version abc123abc123 stays current" in ready_message
    assert "Not retried until the spec changes" in ready_message
    assert outcome.requeue_after is None, "no retry, and not even the refresh schedule"
    assert [(e.type, e.reason) for e in outcome.events] == [("Warning", "SourceForbidden")]
    last = outcome.status["lastIngest"]
    assert last["retries"] == 0
    if last["result"] == "Failed":  # while the API's enum does not list the permanent reasons
        assert last["message"] == f"SourceForbidden: {forbidden.message}"
    else:
        assert (last["result"], last["message"]) == ("SourceForbidden", forbidden.message)
    assert "digest" not in outcome.status, "the version stays as it was"
    without = _conditions(_finished(_status(), forbidden))
    assert without["Ready"][:2] == ("False", "SourceForbidden")
    assert "stays current" not in without["Ready"][2]


def test_a_stalled_generation_waits_for_the_spec_or_a_request() -> None:
    invalid = JobFailure(reason="SourceInvalid", message="http:///data.csv: the URI has no host")
    before = _status(**SERVING, last_checked=T0, last_ingest=_attempt())
    stalled = _after(_finished(before, invalid, REFRESHED), before)
    days = T0 + timedelta(days=3)
    assert ingest_due(REFRESHED, stalled, 1, days) is None, "neither retried nor refreshed"
    assert next_due(REFRESHED, stalled, 1) is None
    idle = decide(_inputs(stalled, REFRESHED), days)
    assert idle == Outcome(), "no Event, no write, no timer while stalled"
    changed = ingest_due(REFRESHED, stalled, 2, days)
    assert changed is not None
    assert changed.trigger == "SpecChanged"
    asked = ingest_due(REFRESHED, stalled, 1, days, requested="2026-12-03T12:00:00Z")
    assert asked is not None
    assert asked.trigger == "Requested"
    request = {REQUEST: "2026-12-03T12:00:00Z"}
    begun = start(_inputs(stalled, REFRESHED, annotations=request), asked, days)
    assert _conditions(begun)["Stalled"][:2] == ("False", "Ingesting"), "acting on a request"
    assert [e.reason for e in begun.events] == ["IngestStarted"]


REQUEST = "flywheel.dev/refresh-requested-at"


def test_a_transient_failure_says_when_it_retries() -> None:
    refused = JobFailure(
        reason="SourceUnavailable", message="GET http://s/d.csv: Connection refused"
    )
    outcome = _finished(_status(**SERVING), refused, REFRESHED, retries=2)
    conditions = _conditions(outcome)
    assert conditions["Reconciling"][:2] == ("True", "SourceUnavailable")
    assert "retry 3 in 40s, at 2026-11-30T12:00:40Z" in conditions["Reconciling"][2]
    assert conditions["Stalled"][:2] == ("False", "SourceUnavailable")
    assert conditions["SourceAvailable"][:2] == ("False", "SourceUnavailable")
    assert conditions["Ready"][:2] == ("True", "PreviousVersion")
    assert outcome.requeue_after is not None
    assert 40 <= outcome.requeue_after.total_seconds() <= 41, "the retry comes before the refresh"
    assert outcome.status["lastIngest"]["result"] == "SourceUnavailable"
    assert outcome.status["lastIngest"]["retries"] == 3
    assert [(e.type, e.reason) for e in outcome.events] == [("Warning", "SourceUnavailable")]
    first = _conditions(_finished(_status(), refused))
    assert first["Ready"][:2] == ("False", "SourceUnavailable"), "no version to fall back on"


def test_failure_events_are_posted_once_per_reason_and_generation() -> None:
    refused = JobFailure(reason="SourceUnavailable", message="GET x: Connection refused")
    said = _status(conditions=[_condition("SourceAvailable", "False", "SourceUnavailable")])
    again = _finished(said, refused, trigger="Retry", retries=1)
    assert again.events == (), "a retry failing as before says nothing new"
    assert _conditions(again)["Reconciling"][:2] == ("True", "SourceUnavailable")
    gone = JobFailure(reason="SourceNotFound", message="GET x: HTTP 404 Not Found")
    changed = _finished(said, gone, trigger="Retry", retries=1)
    assert [e.reason for e in changed.events] == ["SourceNotFound"], "the reason changed"
    older = _status(conditions=[_condition("SourceAvailable", "False", "SourceNotFound", 0)])
    assert [e.reason for e in _finished(older, gone).events] == ["SourceNotFound"], "a new spec"
    rules = JobFailure(reason="ValidationFailed", message="minRows: 3")
    checked = _status(conditions=[_condition("Validated", "False", "ValidationFailed")])
    assert _finished(checked, rules, trigger="Refresh").events == ()
    assert [e.type for e in _finished(_status(), rules).events] == ["Warning"]


def test_routine_ingests_post_no_events() -> None:
    unchanged = _status(**SERVING, conditions=[_condition("Ready", "True", "Unchanged")])
    assert _finished(unchanged, RESULT, trigger="Refresh").events == ()
    recovered = _status(**SERVING, conditions=[_condition("Ready", "True", "PreviousVersion")])
    assert [e.reason for e in _finished(recovered, RESULT).events] == ["Unchanged"]
    done = _status(**SERVING, last_ingest=_attempt(completion_time=T0, result="Unchanged"))
    for plan, events in [
        (IngestPlan("Refresh", "g1t1"), []),
        (IngestPlan("Retry", "g1r1"), []),
        (IngestPlan("Requested", "g1q1"), ["IngestStarted"]),
        (IngestPlan("SpecChanged", "g2"), ["IngestStarted"]),
    ]:
        begun = start(_inputs(done, REFRESHED), plan, T0)
        assert [(e.type, e.reason) for e in begun.events] == [("Normal", r) for r in events]
        assert _conditions(begun)["Reconciling"][:2] == ("True", "Ingesting")
    waiting = decide(_inputs(done, REFRESHED), T0 + timedelta(seconds=30))
    assert waiting.events == ()
    assert waiting.requeue_after is not None, "the schedule is a timer, not an Event"


def test_a_job_without_a_result_does_not_claim_the_source_was_read() -> None:
    crashed = JobFailure(reason="Failed", message="the ingest Job d-ingest-1 disappeared")
    conditions = _conditions(_finished(_status(**SERVING), crashed))
    assert conditions["SourceAvailable"][:2] == ("Unknown", "Failed")
    assert conditions["Ready"][:2] == ("True", "PreviousVersion")


def test_every_failure_reason_fits_the_recorded_result() -> None:
    allowed = set(get_args(IngestResult))
    for reason in FailureReason:
        assert recorded_result(reason) in allowed, reason
    assert recorded_result("SourceUnavailable") == "SourceUnavailable"
    for reason in SOURCE_PERMANENT:
        # Until the API lists the permanent reasons, lastIngest says Failed (and the message the
        # reason); decisions never depend on it.
        assert recorded_result(reason) in (reason, "Failed")


def test_a_source_timeout_is_retried_like_an_unavailable_source() -> None:
    crawled = JobFailure(
        reason="SourceTimeout",
        message="GET http://s/d.csv: only 12 bytes in 61s, less than 64 KiB within "
        "source.readTimeoutSeconds=60 (20 bytes in all)",
    )
    outcome = _finished(_status(**SERVING), crawled, REFRESHED, retries=1)
    conditions = _conditions(outcome)
    assert conditions["SourceAvailable"][:2] == ("False", "SourceTimeout"), "never SourceRead"
    assert conditions["Reconciling"][:2] == ("True", "SourceTimeout")
    assert conditions["Stalled"][:2] == ("False", "SourceTimeout")
    assert outcome.status["lastIngest"]["result"] == "SourceTimeout"
    assert outcome.status["lastIngest"]["retries"] == 2
    failed = _status(last_ingest=_attempt(completion_time=T0, result="SourceTimeout", retries=2))
    assert ingest_due(SPEC, failed, 1, T0 + timedelta(seconds=19)) is None
    assert ingest_due(SPEC, failed, 1, T0 + timedelta(seconds=20)) == IngestPlan("Retry", "g1r2")
    assert next_due(SPEC, failed, 1) == T0 + timedelta(seconds=20)


def test_a_source_too_large_stalls_until_the_spec_changes() -> None:
    large = JobFailure(
        reason="SourceTooLarge",
        message="GET http://s/d.csv: 99 bytes, more than the limit of 10 bytes (raise "
        "source.maxBytes to accept it)",
    )
    outcome = _finished(_status(**SERVING), large, REFRESHED)
    conditions = _conditions(outcome)
    assert conditions["Stalled"][:2] == ("True", "SourceTooLarge")
    assert conditions["SourceAvailable"][:2] == ("False", "SourceTooLarge")
    assert outcome.requeue_after is None
    assert outcome.status["lastIngest"]["result"] == "SourceTooLarge"


def test_the_source_limit_comes_from_the_spec_or_the_settings() -> None:
    settings = OperatorSettings(dataset_max_bytes="2Gi")
    assert source_limit(SPEC, settings) == 2 * 2**30
    own = SPEC.model_copy(update={"source": DataSource(uri="sklearn://iris", max_bytes="1500M")})
    assert source_limit(own, settings) == 1_500_000_000
    body = {"metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "generation": 1}}
    job = render_ingest_job(parse_meta(body), own, IngestPlan("Created", "g1"), None, settings)
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--max-bytes") + 1] == "1500000000"
