"""Pure TrainingRun outcomes and champion selection."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from flywheel.api.kinds import TRAINING_RUN
from flywheel.api.trainingrun import TrainingRunSpec
from flywheel.controllers.trainingrun.decide import (
    failed,
    failure_reason,
    is_waiting,
    judge,
    progressed,
    started,
    succeeded,
    waiting,
)
from flywheel.controllers.trainingrun.pinning import champion_argument, select_champion
from flywheel.controllers.trainingrun.render import (
    NO_CHAMPION,
    PinnedDataset,
    pinned_from_job,
    render_training_job,
)
from flywheel.core.conditions import Finding
from flywheel.core.outcome import Outcome
from flywheel.core.statuses import run_finished as finished
from flywheel.core.target import parse_meta
from flywheel.interfaces.jobs import JobFailure, TrainReport
from flywheel.settings import OperatorSettings
from tests.support.crdcheck import crd_schema, validate
from tests.support.examples import CRDS

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
BASE = yaml.safe_load(Path("examples/quickstart/02-trainingrun.yaml").read_text())["spec"]
SPEC = TrainingRunSpec.model_validate(BASE)
COMPARED = TrainingRunSpec.model_validate(
    {**BASE, "validation": {"compareTo": {"metric": "accuracy", "minImprovement": 0.01}}}
)
PINNED = PinnedDataset("iris", "a" * 12, "sha256:" + "a" * 64, "pvc://c/d.parquet", "pvc://c/s")
RUN = {"metadata": {"name": "iris-rf-1", "namespace": "ml", "uid": "u-1"}}


def _failed_job(reason: str, message: str = "") -> dict[str, Any]:
    condition = {"type": "Failed", "status": "True", "reason": reason, "message": message}
    condition["lastTransitionTime"] = "2026-11-30T12:05:00Z"
    return {"metadata": {"name": "j"}, "status": {"failed": 1, "conditions": [condition]}}


def _conditions(outcome: Any) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in outcome.conditions}


def _event(outcome: Outcome) -> tuple[str, str, str]:
    return (
        (outcome.events[0].type, outcome.events[0].reason, outcome.events[0].message)
        if outcome.events
        else ("", "", "")
    )


def _status_schema_errors(fields: dict[str, Any]) -> list[str]:
    crd = yaml.safe_load((CRDS / f"{TRAINING_RUN.crd_name}.yaml").read_text())
    obj = {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "x"},
        "spec": BASE,
        "status": json.loads(json.dumps(fields)),
    }
    return validate(crd_schema(crd), obj)


def test_failure_reasons_prefer_the_deadline_then_the_runs_own_report() -> None:
    parity = JobFailure(reason="OnnxParityFailed", message="worst 0.3")
    assert failure_reason(_failed_job("DeadlineExceeded"), parity).reason == "DeadlineExceeded"
    by_rule = failure_reason(_failed_job("PodFailurePolicy"), parity)
    assert by_rule == Finding("OnnxParityFailed", "worst 0.3")
    crash = JobFailure(reason="Failed", message="Traceback ... MemoryError")
    crashed = failure_reason(
        _failed_job("BackoffLimitExceeded", "Job has reached the limit"), crash
    )
    assert crashed.reason == "BackoffLimitExceeded"
    assert "MemoryError" in crashed.message
    assert failure_reason({}, None).reason == "TrainingFailed"


def test_a_failed_run_is_stalled_with_the_reason_and_the_jobs_time() -> None:
    report = JobFailure(reason="InvalidEstimator", message="bad param")
    outcome = failed(_failed_job("PodFailurePolicy"), report, NOW)
    assert _conditions(outcome) == {
        "Succeeded": ("False", "InvalidEstimator"),
        "Ready": ("False", "InvalidEstimator"),
        "Stalled": ("True", "InvalidEstimator"),
        "Reconciling": ("False", "InvalidEstimator"),
    }
    assert outcome.status == {"completionTime": "2026-11-30T12:05:00Z", "attempts": 1}
    assert _event(outcome)[0] == "Warning"


def test_waiting_for_the_dataset_posts_its_event_once() -> None:
    why = Finding("DatasetNotReady", "Dataset iris has no Ready version yet.")
    first = waiting(why, already_waiting=False)
    assert (_event(first)[1], _conditions(first)["Succeeded"]) == (
        "DatasetNotReady",
        ("Unknown", "DatasetNotReady"),
    )
    assert _conditions(first)["Ready"] == ("False", "DatasetNotReady")
    assert waiting(why, already_waiting=True).events == ()
    status = {
        "conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "DatasetNotReady"}]
    }
    assert is_waiting(status)
    assert not finished(status)


def test_started_and_retries_are_recorded_from_the_job() -> None:
    job = {"metadata": {"name": "iris-rf-1-train", "creationTimestamp": "2026-11-30T11:59:00Z"}}
    outcome = started(job, PINNED.version, PINNED.digest, NOW)
    assert outcome.status["startTime"] == "2026-11-30T11:59:00Z", "a repeated step writes the same"
    assert outcome.status["datasetVersion"] == PINNED.version
    running = {"metadata": {"name": "j"}, "status": {"active": 1}}
    assert progressed(running, 1, 2) is None
    retry = progressed({"metadata": {"name": "j"}, "status": {"active": 1, "failed": 1}}, 1, 2)
    assert retry is not None
    assert (retry.status, _event(retry)[1]) == ({"attempts": 2}, "Retrying")


RESULT = TrainReport.model_validate(
    {
        "sha256": "c" * 64,
        "modelURI": "pvc://c/models/ml/iris/iris-rf-1/model.onnx",
        "metrics": {"accuracy": 0.9, "f1_macro": 0.89},
        "champion": {"version": 2, "metrics": {"accuracy": 0.95}, "rescored": True},
        "signature": {"task": "classification", "features": [{"name": "x", "type": "numeric"}]},
    }
)


def test_success_registers_and_judges_with_the_rescored_champion() -> None:
    verdict = judge(COMPARED, RESULT, None)
    assert not verdict.passed
    assert verdict.champion_version == 2
    job = {
        "metadata": {"name": "j"},
        "status": {"succeeded": 1, "completionTime": "2026-11-30T12:03:00Z"},
    }
    outcome = succeeded(job, RESULT, verdict, "iris-v3", NOW)
    assert _conditions(outcome)["Succeeded"] == ("True", "ModelVersionRegistered")
    assert "NOT validated" in _event(outcome)[2]
    assert "accuracy vs champion v2" in _event(outcome)[2]
    assert outcome.status["modelVersionRef"] == {"name": "iris-v3", "sha256": RESULT.sha256}
    assert outcome.status["completionTime"] == "2026-11-30T12:03:00Z"
    assert _status_schema_errors(dict(outcome.status)) == []
    alone = judge(
        COMPARED,
        RESULT.model_copy(update={"champion": None}),
        "model iris has no validated version yet",
    )
    assert alone.passed
    assert "no validated version yet" in alone.checks[0].message


def test_champion_selection() -> None:
    def version(n: int, validated: bool) -> dict[str, Any]:
        condition = {"type": "Validated", "status": "True" if validated else "False"}
        spec = {
            "version": n,
            "artifact": {"uri": f"pvc://c/v{n}/model.onnx", "sha256": "f" * 64},
            "signature": {"features": [{"name": "x", "type": "numeric"}], "classLabels": ["a"]},
            "metrics": {"accuracy": 0.9},
        }
        return {"spec": spec, "status": {"conditions": [condition]}}

    versions = [version(1, True), version(2, True), version(3, False)]
    assert select_champion(SPEC, None, versions) == (None, None), "no compareTo, no champion"
    chosen, why = select_champion(COMPARED, None, versions)
    assert chosen is not None
    assert chosen["spec"]["version"] == 2
    assert why is None
    assert select_champion(COMPARED, None, [version(1, False)])[1] == (
        "model iris has no validated version yet"
    )
    by_deployment = TrainingRunSpec.model_validate(
        {
            **BASE,
            "validation": {"compareTo": {"metric": "accuracy", "deploymentRef": {"name": "web"}}},
        }
    )
    serving = {"status": {"servingVersion": 1}}
    chosen, _ = select_champion(by_deployment, serving, versions)
    assert chosen is not None
    assert chosen["spec"]["version"] == 1
    assert "does not exist" in str(select_champion(by_deployment, None, versions)[1])
    assert "serves no version" in str(select_champion(by_deployment, {"status": {}}, versions)[1])
    argument = champion_argument(versions[1])
    assert (argument.version, argument.uri) == (2, "pvc://c/v2/model.onnx")


def test_the_job_records_its_pin_and_champion() -> None:
    meta = parse_meta({"metadata": {**RUN["metadata"]}})
    champion = champion_argument(
        {
            "spec": {
                "version": 2,
                "artifact": {"uri": "pvc://c/v2/model.onnx", "sha256": "f" * 64},
                "signature": {"features": [{"name": "x", "type": "numeric"}]},
            }
        }
    )
    job = render_training_job(meta, COMPARED, PINNED, OperatorSettings(), champion, None)
    assert pinned_from_job(job) == PINNED
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert json.loads(command[command.index("--champion") + 1])["version"] == 2
    lonely = render_training_job(meta, COMPARED, PINNED, OperatorSettings(), None, "none yet")
    assert "--champion" not in lonely["spec"]["template"]["spec"]["containers"][0]["command"]
    assert lonely["metadata"]["annotations"][NO_CHAMPION] == "none yet"
    assert pinned_from_job({"metadata": {}}) is None
