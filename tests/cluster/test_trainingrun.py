"""The TrainingRun and ModelVersion controllers on the real cluster: training Jobs really run."""

from __future__ import annotations

import hashlib
import subprocess

from tests.cluster.conftest import OperatorFactory, OperatorProcess
from tests.cluster.lifecycle import (
    QUICKSTART,
    artifact_path,
    cond,
    dataset_ready,
    get,
    run_manifest,
    versions,
)
from tests.support.kube import Kubectl, eventually


def test_a_run_trains_exports_and_registers_a_verified_version(
    k: Kubectl, operator: OperatorProcess
) -> None:
    dataset = dataset_ready(k)
    k.apply((QUICKSTART / "02-trainingrun.yaml").read_text())
    k("wait", "--for=condition=Succeeded", "--timeout=240s", "trainingrun/iris-rf-1")
    run = get(k, "trainingrun", "iris-rf-1")
    status = run["status"]
    assert status["datasetVersion"] == dataset["status"]["version"]
    assert status["datasetDigest"] == dataset["status"]["digest"]
    assert status["attempts"] == 1
    assert status["metrics"]["accuracy"] >= 0.85
    assert status["observedGeneration"] == run["metadata"]["generation"]
    assert cond(run, "Ready")["status"] == "True"
    assert status["modelVersionRef"]["name"] == "iris-v1"

    k("wait", "--for=condition=Validated", "--timeout=60s", "modelversion/iris-v1")
    (version,) = versions(k, "iris")
    spec = version["spec"]
    assert status["modelVersionRef"]["sha256"] == spec["artifact"]["sha256"], "what it vouches for"
    model = artifact_path(k, spec["artifact"]["uri"]).read_bytes()
    assert hashlib.sha256(model).hexdigest() == spec["artifact"]["sha256"]
    assert spec["lineage"]["datasetDigest"] == dataset["status"]["digest"]
    assert spec["lineage"]["trainingRun"] == "iris-rf-1"
    assert spec["metrics"] == status["metrics"]
    assert spec["baseline"]["statsURI"] == dataset["status"]["statsURI"]
    # The prediction-drift baseline: the model's own held-out predictions, per class slot.
    predicted = spec["baseline"]["predictions"]
    assert predicted["rows"] > 0
    assert sum(predicted["counts"].values()) == predicted["rows"]
    assert set(predicted["counts"]) == set(spec["signature"]["classLabels"]), "every class"
    checks = version["status"]["validation"]["checks"]
    assert [(c["name"], c["passed"]) for c in checks] == [("accuracy >= 0.85", True)]
    assert cond(version, "Ready")["status"] == "True"

    table = k("get", "modelversions", "-l", "flywheel.dev/model=iris")
    header, row = table.split("\n")[:2]
    assert header.split() == [
        "NAME",
        "MODEL",
        "VERSION",
        "VALIDATED",
        "KEY",
        "METRIC",
        "READY",
        "AGE",
    ]
    accuracy = f"accuracy={status['metrics']['accuracy']:.4g}"
    assert row.split()[:6] == ["iris-v1", "iris", "1", "True", accuracy, "True"]

    # A weaker model that misses its threshold and loses to the champion (v1), re-scored on
    # the same held-out rows: registered as v2, not validated, every failed check explained.
    k.apply(
        run_manifest(
            "iris-stump",
            estimator={
                "class": "sklearn.tree.DecisionTreeClassifier",
                "params": {"max_depth": 1},
            },
            validation={
                "thresholds": [{"metric": "accuracy", "min": 0.9}],
                "compareTo": {"metric": "accuracy"},
            },
        )
    )
    k("wait", "--for=condition=Succeeded", "--timeout=240s", "trainingrun/iris-stump")
    k("wait", "--for=condition=Validated=False", "--timeout=60s", "modelversion/iris-v2")
    weak = get(k, "modelversion", "iris-v2")
    message = cond(weak, "Validated")["message"]
    assert "accuracy >= 0.9" in message
    assert "accuracy vs champion v1" in message
    verdict = weak["status"]["validation"]
    assert verdict["championVersion"] == 1
    assert not any(c["passed"] for c in verdict["checks"])
    champion_check = verdict["checks"][1]
    assert champion_check["bound"] == status["metrics"]["accuracy"], "v1 re-scored, same rows"
    events = k.json("get", "events", "--field-selector", "involvedObject.name=iris-v2")["items"]
    assert "ValidationFailed" in {e["reason"] for e in events}
    assert [v["metadata"]["name"] for v in versions(k, "iris")] == ["iris-v1", "iris-v2"]


def test_an_invalid_estimator_fails_fast_without_retries(
    k: Kubectl, operator: OperatorProcess
) -> None:
    dataset_ready(k)
    bad = {"class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_trees": 3}}
    k.apply(run_manifest("bad-params", estimator=bad, backoffLimit=4))
    k("wait", "--for=condition=Succeeded=False", "--timeout=180s", "trainingrun/bad-params")
    run = get(k, "trainingrun", "bad-params")
    succeeded = cond(run, "Succeeded")
    assert succeeded["reason"] == "InvalidEstimator"
    assert "n_trees" in succeeded["message"]
    assert cond(run, "Stalled")["status"] == "True"
    assert run["status"]["attempts"] == 1, "a code problem is not retried (podFailurePolicy)"
    job = get(k, "job", run["status"]["jobName"])
    assert job["status"].get("failed") == 1
    assert versions(k, "iris") == []


def test_a_crash_after_registration_still_yields_exactly_one_version(
    k: Kubectl, start_operator: OperatorFactory
) -> None:
    first = start_operator(FLYWHEEL_FAILPOINT="exit-after-model-version-created")
    dataset_ready(k)
    k.apply((QUICKSTART / "02-trainingrun.yaml").read_text())
    try:
        code = first.process.wait(timeout=240)
    except subprocess.TimeoutExpired as error:
        raise AssertionError("the operator never reached its failpoint") from error
    assert code == 17, "stopped at the failpoint, between registration and status"
    run = get(k, "trainingrun", "iris-rf-1")
    assert "modelVersionRef" not in run["status"], "the crash window was really hit"
    assert len(versions(k, "iris")) == 1

    start_operator()
    k("wait", "--for=condition=Succeeded", "--timeout=120s", "trainingrun/iris-rf-1")
    k("wait", "--for=condition=Validated", "--timeout=60s", "modelversion/iris-v1")
    found = versions(k, "iris")
    assert [v["metadata"]["name"] for v in found] == ["iris-v1"]
    run = get(k, "trainingrun", "iris-rf-1")
    assert run["status"]["modelVersionRef"] == {
        "name": "iris-v1",
        "sha256": found[0]["spec"]["artifact"]["sha256"],
    }, "the version created before the crash is adopted: its spec is exactly the run's"
    assert found[0]["metadata"]["labels"]["flywheel.dev/run-uid"] == run["metadata"]["uid"]


def test_a_run_finishes_from_its_snapshot_when_the_dataset_is_deleted(
    k: Kubectl, operator: OperatorProcess
) -> None:
    dataset = dataset_ready(k)
    k.apply((QUICKSTART / "02-trainingrun.yaml").read_text())
    job_name = eventually(
        lambda: get(k, "trainingrun", "iris-rf-1").get("status", {}).get("jobName"),
        what="the training Job",
    )
    k("delete", "dataset", "iris", "--wait=true")
    job = get(k, "job", job_name)
    assert not job["status"].get("succeeded"), "deleted while the Job was still running"
    k("wait", "--for=condition=Succeeded", "--timeout=240s", "trainingrun/iris-rf-1")
    (version,) = versions(k, "iris")
    assert version["spec"]["lineage"]["datasetDigest"] == dataset["status"]["digest"]


def test_a_run_waits_for_its_dataset(k: Kubectl, operator: OperatorProcess) -> None:
    k.apply((QUICKSTART / "02-trainingrun.yaml").read_text())
    k(
        "wait",
        "--for=jsonpath={.status.conditions[?(@.type=='Succeeded')].reason}=DatasetNotReady",
        "--timeout=60s",
        "trainingrun/iris-rf-1",
    )
    run = get(k, "trainingrun", "iris-rf-1")
    assert cond(run, "Ready")["status"] == "False"
    assert "Dataset iris does not exist" in cond(run, "Succeeded")["message"]
    assert "jobName" not in run["status"]
    dataset_ready(k)
    k("wait", "--for=condition=Succeeded", "--timeout=240s", "trainingrun/iris-rf-1")
    events = k.json("get", "events", "--field-selector", "involvedObject.name=iris-rf-1")["items"]
    waits = [e for e in events if e["reason"] == "DatasetNotReady"]
    assert len(waits) == 1, "posted once, not on every re-check"
    assert waits[0].get("count", 1) == 1
