"""Pure Dataset decisions: when to ingest, the Job, what a result means."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flywheel.api.dataset import DatasetSpec, DatasetStatus, IngestAttempt, RefreshPolicy
from flywheel.controllers.dataset.decide import (
    DatasetInputs,
    finished,
    ingest_due,
    next_refresh,
    retry_delay,
)
from flywheel.controllers.dataset.render import IngestPlan, job_name, render_ingest_job
from flywheel.core.jobs import read_result
from flywheel.core.outcome import Outcome
from flywheel.core.target import parse_meta
from flywheel.interfaces.jobs import (
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


def _finished(status: DatasetStatus, result: IngestReport | JobFailure, **attempt: Any) -> Outcome:
    meta = parse_meta({"metadata": {"name": "d", "namespace": "ns", "uid": "u", "generation": 1}})
    inputs = DatasetInputs(meta, SPEC, status, OperatorSettings())
    return finished(inputs, _attempt(**attempt), result, T0)


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
    assert "Stalled" not in conditions
    parse = _finished(_status(), JobFailure(reason="ParseError", message="line 3"))
    conditions = {c.type: (c.status, c.reason) for c in parse.conditions}
    assert conditions["Stalled"] == ("True", "ParseError")
    assert conditions["Ready"] == ("False", "ParseError")
    offline = _finished(_status(), JobFailure(reason="SourceUnavailable", message="x"), retries=1)
    assert offline.status["lastIngest"]["retries"] == 2
    assert "retry in 20s" in next(
        c.message for c in offline.conditions if c.type == "SourceAvailable"
    )
