"""Pure Dataset decisions: when to ingest, the Job, what a result means."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from flywheel.api.dataset import DatasetSpec, DatasetStatus, IngestAttempt, RefreshPolicy
from flywheel.datasets import (
    IngestPlan,
    ingest_due,
    job_name,
    next_refresh,
    outcome,
    render_ingest_job,
    retry_delay,
)
from flywheel.jobresult import read_result
from flywheel.jobs.train import encode_result
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
    job = render_ingest_job(body, SPEC, IngestPlan("Created", "g1"), _status(), OperatorSettings())
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
    assert read_result({}, [_job_pod('{"ok": true, "digest": "x"}')]) == {"ok": True, "digest": "x"}
    broken = read_result({}, [_job_pod("Traceback: boom")])
    assert (broken["ok"], broken["reason"]) == (False, "Failed")
    assert "boom" in broken["message"]
    none = read_result(
        {"status": {"conditions": [{"type": "Failed", "reason": "DeadlineExceeded"}]}}, []
    )
    assert "DeadlineExceeded" in none["message"]
    large = {"ok": True, "features": [f"feature_{i}" for i in range(400)]}
    packed = json.dumps(encode_result(large))
    assert len(packed) < 4096 < len(json.dumps(large)), "compressed to fit 4 KiB"
    assert read_result({}, [_job_pod(packed)]) == large
    running: dict[str, Any] = {
        "metadata": {},
        "status": {"containerStatuses": [{"state": {"running": {}}}]},
    }
    assert read_result({}, [running])["ok"] is False, "a pod still running reports nothing yet"


RESULT = {
    "ok": True,
    "version": "abc123abc123",
    "digest": "sha256:" + "a" * 64,
    "rows": 10,
    "columns": 3,
    "snapshotURI": "pvc://c/d/data.parquet",
    "statsURI": "pvc://c/d/stats.json",
}


def test_a_new_version_is_published_with_history() -> None:
    result = outcome(_status(), _attempt(), RESULT, T0)
    assert result.event_reason == "VersionPublished"
    assert result.status["digest"] == RESULT["digest"]
    assert result.status["history"][0]["version"] == "abc123abc123"
    assert result.status["lastIngest"]["result"] == "Published"
    assert {c.type: c.status for c in result.conditions}["Ready"] == "True"
    same = outcome(_status(digest=RESULT["digest"], version="abc123abc123"), _attempt(), RESULT, T0)
    assert same.event_reason == "Unchanged"
    assert "history" not in same.status


def test_failures_keep_the_previous_version_ready() -> None:
    current = _status(digest=RESULT["digest"], version="abc123abc123")
    failed = outcome(
        current,
        _attempt(),
        {"ok": False, "reason": "ValidationFailed", "message": "minRows: 3"},
        T0,
    )
    conditions = {c.type: (c.status, c.reason) for c in failed.conditions}
    assert conditions["Ready"] == ("True", "PreviousVersion")
    assert conditions["Validated"] == ("False", "ValidationFailed")
    assert "Stalled" not in conditions
    parse = outcome(
        _status(), _attempt(), {"ok": False, "reason": "ParseError", "message": "line 3"}, T0
    )
    conditions = {c.type: (c.status, c.reason) for c in parse.conditions}
    assert conditions["Stalled"] == ("True", "ParseError")
    assert conditions["Ready"] == ("False", "ParseError")
    offline = outcome(
        _status(),
        _attempt(retries=1),
        {"ok": False, "reason": "SourceUnavailable", "message": "x"},
        T0,
    )
    assert offline.status["lastIngest"]["retries"] == 2
    assert "retry in 20s" in next(
        c.message for c in offline.conditions if c.type == "SourceAvailable"
    )
