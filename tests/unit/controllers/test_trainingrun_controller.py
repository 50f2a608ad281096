"""The TrainingRun controller over the in-memory fake: waiting for the Dataset, the Job, the
result, and exactly one ModelVersion per run, whatever races or crashes happen."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from flywheel.controllers.trainingrun import CONTROLLER
from flywheel.controllers.trainingrun.decide import same_version
from flywheel.core.resources import DATASETS, JOBS, MODEL_VERSIONS, TRAINING_RUNS
from flywheel.interfaces.jobs import JobFailure, TrainArgs, TrainReport, encode_result
from flywheel.kube.errors import KubeError
from tests.support.fakekube import Harness

NS = "ns"
READY = {"type": "Ready", "status": "True", "reason": "VersionPublished", "message": ""}
DATASET_STATUS = {
    "version": "a" * 12,
    "digest": "sha256:" + "a" * 64,
    "snapshotURI": "pvc://c/d/data.parquet",
    "statsURI": "pvc://c/d/stats.json",
    "conditions": [{**READY, "lastTransitionTime": "2026-12-01T11:00:00Z"}],
}


def _run(name: str, model: str = "iris", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "model": model,
            "datasetRef": {"name": "iris"},
            "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
            **spec,
        },
    }


def _dataset(status: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "iris", "namespace": NS},
        "spec": {"source": {"uri": "sklearn://iris"}},
    }
    if status is not None:
        body["status"] = status
    return body


def _report(accuracy: float = 0.9) -> TrainReport:
    return TrainReport.model_validate(
        {
            "sha256": "c" * 64,
            "modelURI": "pvc://c/models/ns/iris/r/model.onnx",
            "metrics": {"accuracy": accuracy},
            "signature": {
                "task": "classification",
                "classLabels": ["a", "b"],
                "features": [{"name": "x", "type": "numeric"}],
            },
        }
    )


def _finish(h: Harness, run: str, result: TrainReport | JobFailure, *, ok: bool = True) -> None:
    job = f"{run}-train"
    condition = {"type": "Complete" if ok else "Failed", "status": "True"}
    if not ok:
        condition |= {"reason": "PodFailurePolicy", "lastTransitionTime": "2026-12-01T12:05:00Z"}
    h.cluster.set_status(
        JOBS, NS, job, {"conditions": [condition], "succeeded" if ok else "failed": 1}
    )
    h.cluster.add(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{job}-x", "namespace": NS, "labels": {"job-name": job}},
            "status": {
                "containerStatuses": [
                    {"state": {"terminated": {"exitCode": 0, "message": encode_result(result)}}}
                ]
            },
        }
    )


async def test_a_run_waits_for_its_dataset_and_says_so_once() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_run("r1"))
    await h.reconcile("r1")
    assert h.condition(TRAINING_RUNS, "r1", "Succeeded") == ("Unknown", "DatasetNotReady")
    assert h.cluster.named(JOBS, NS) == []
    writes = len(h.cluster.writes())
    await h.reconcile("r1")
    assert len(h.cluster.writes()) == writes, "waiting costs nothing; the Dataset's events wake it"
    assert h.events("r1") == ["DatasetNotReady"]
    h.cluster.add(_dataset(DATASET_STATUS))
    await h.reconcile("r1")
    (job,) = h.cluster.named(JOBS, NS)
    created = h.cluster.obj(JOBS, NS, job)
    command = created["spec"]["template"]["spec"]["containers"][0]["command"]
    args = TrainArgs.parse(command[3:])
    assert (args.digest, args.snapshot) == (DATASET_STATUS["digest"], DATASET_STATUS["snapshotURI"])
    notes = created["metadata"]["annotations"]
    assert notes["flywheel.dev/dataset-version"] == DATASET_STATUS["version"]
    assert h.condition(TRAINING_RUNS, "r1", "Succeeded") == ("Unknown", "Training")
    assert h.status(TRAINING_RUNS, "r1")["datasetDigest"] == DATASET_STATUS["digest"]


async def test_a_completed_job_registers_one_validated_version() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_dataset(DATASET_STATUS))
    h.cluster.add(_run("r1", validation={"thresholds": [{"metric": "accuracy", "min": 0.8}]}))
    await h.reconcile("r1")
    _finish(h, "r1", _report(0.9))
    await h.reconcile("r1")
    (version,) = h.cluster.named(MODEL_VERSIONS, NS)
    assert version == "iris-v1"
    mv = h.cluster.obj(MODEL_VERSIONS, NS, "iris-v1")
    assert mv["metadata"]["labels"]["flywheel.dev/run-uid"] == "uid-r1"
    assert mv["spec"]["lineage"]["datasetDigest"] == DATASET_STATUS["digest"]
    status = h.status(TRAINING_RUNS, "r1")
    assert status["modelVersionRef"] == {
        "name": "iris-v1",
        "sha256": mv["spec"]["artifact"]["sha256"],
    }
    assert status["validation"]["passed"] is True
    assert h.condition(TRAINING_RUNS, "r1", "Succeeded") == ("True", "ModelVersionRegistered")
    before = len(h.cluster.requests)
    await h.reconcile("r1")
    assert h.cluster.requests[before:] == [], "a finished run makes no request at all"


async def test_a_crash_after_registration_adopts_the_version() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_dataset(DATASET_STATUS))
    h.cluster.add(_run("r1"))
    await h.reconcile("r1")
    _finish(h, "r1", _report())
    h.cluster.fail_next("patch", _crash())
    assert await h.handle("r1") == "error"
    assert h.cluster.named(MODEL_VERSIONS, NS) == ["iris-v1"], "created before the crash"
    assert "modelVersionRef" not in h.status(TRAINING_RUNS, "r1")
    await h.reconcile("r1")
    assert h.cluster.named(MODEL_VERSIONS, NS) == ["iris-v1"], "found by its run UID"
    assert h.status(TRAINING_RUNS, "r1")["modelVersionRef"]["name"] == "iris-v1"


async def test_a_planted_version_with_the_runs_label_is_neither_adopted_nor_taken() -> None:
    """Someone creates the next version first, copying the run's UID label, with their own
    artifact: the run registers its own version under the next number and vouches only for
    that one."""
    h = Harness(CONTROLLER)
    h.cluster.add(_dataset(DATASET_STATUS))
    h.cluster.add(_run("r1"))
    await h.reconcile("r1")
    _finish(h, "r1", _report())
    planted = {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {
            "name": "iris-v1",
            "namespace": NS,
            "labels": {"flywheel.dev/model": "iris", "flywheel.dev/run-uid": "uid-r1"},
        },
        "spec": {"model": "iris", "version": 1, "artifact": {"uri": "pvc://x/evil.onnx"}},
    }
    h.cluster.add(planted)
    for _ in range(3):
        if "modelVersionRef" in h.status(TRAINING_RUNS, "r1"):
            break
        await h.handle("r1")
    ref = h.status(TRAINING_RUNS, "r1")["modelVersionRef"]
    assert ref["name"] == "iris-v2", "the planted version is not adopted"
    mine = h.cluster.obj(MODEL_VERSIONS, NS, "iris-v2")
    assert ref["sha256"] == mine["spec"]["artifact"]["sha256"]
    assert h.cluster.obj(MODEL_VERSIONS, NS, "iris-v1")["spec"]["artifact"]["uri"] == (
        "pvc://x/evil.onnx"
    ), "left alone"


def _crash() -> KubeError:
    return KubeError(500, "the operator stopped here")


async def test_concurrent_runs_of_one_model_get_distinct_numbers_once_each() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_dataset(DATASET_STATUS))
    runs = [f"r{i}" for i in range(6)]
    for run in runs:
        h.cluster.add(_run(run))
        await h.reconcile(run)
    # A version made outside the operator holds number 3.
    h.cluster.add(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "ModelVersion",
            "metadata": {
                "name": "iris-v3",
                "namespace": NS,
                "labels": {"flywheel.dev/model": "iris"},
            },
            "spec": {"model": "iris", "version": 3},
        }
    )
    for run in runs:
        _finish(h, run, _report())
    pending, raced = set(runs), 0
    for _ in range(20):
        results = await asyncio.gather(*(h.handle(r) for r in sorted(pending)))
        assert set(results) <= {"success", "retry"}, results
        raced += results.count("retry")
        pending = {r for r in pending if "modelVersionRef" not in h.status(TRAINING_RUNS, r)}
        if not pending:
            break
    assert not pending, "every run registered"
    assert raced > 0, "the runs really raced for numbers (the losers decided again)"
    registered = {r: h.status(TRAINING_RUNS, r)["modelVersionRef"]["name"] for r in runs}
    assert len(set(registered.values())) == len(runs), registered
    assert "iris-v3" not in registered.values(), "a taken number is skipped"
    owners = [
        h.cluster.obj(MODEL_VERSIONS, NS, v)["metadata"]["labels"]["flywheel.dev/run-uid"]
        for v in registered.values()
    ]
    assert sorted(owners) == sorted(f"uid-{r}" for r in runs), "one version per run, its own"
    assert len(h.cluster.named(MODEL_VERSIONS, NS)) == len(runs) + 1


async def test_a_failed_job_stalls_the_run_with_its_own_reason() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_dataset(DATASET_STATUS))
    h.cluster.add(_run("r1"))
    await h.reconcile("r1")
    _finish(h, "r1", JobFailure(reason="InvalidEstimator", message="bad param C"), ok=False)
    await h.reconcile("r1")
    assert h.condition(TRAINING_RUNS, "r1", "Succeeded") == ("False", "InvalidEstimator")
    assert h.condition(TRAINING_RUNS, "r1", "Stalled") == ("True", "InvalidEstimator")
    assert h.cluster.named(MODEL_VERSIONS, NS) == []


async def test_a_job_deleted_before_it_finished_fails_the_run() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_dataset(DATASET_STATUS))
    h.cluster.add(_run("r1"))
    await h.reconcile("r1")
    del h.cluster.objects[("jobs", NS, "r1-train")]
    await h.reconcile("r1")
    assert h.condition(TRAINING_RUNS, "r1", "Succeeded") == ("False", "JobDeleted")


async def test_the_champion_is_the_newest_validated_version() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_dataset(DATASET_STATUS))
    for number, validated in ((1, "True"), (2, "True"), (3, "False")):
        h.cluster.add(
            {
                "apiVersion": "flywheel.dev/v1alpha1",
                "kind": "ModelVersion",
                "metadata": {"name": f"iris-v{number}", "namespace": NS},
                "spec": {
                    "model": "iris",
                    "version": number,
                    "artifact": {"uri": f"pvc://c/v{number}/model.onnx", "sha256": "f" * 64},
                    "signature": {"features": [{"name": "x", "type": "numeric"}]},
                    "metrics": {"accuracy": 0.8},
                },
                "status": {"conditions": [{"type": "Validated", "status": validated}]},
            }
        )
    h.cluster.add(_run("r1", validation={"compareTo": {"metric": "accuracy"}}))
    await h.reconcile("r1")
    command = h.cluster.obj(JOBS, NS, "r1-train")["spec"]["template"]["spec"]["containers"][0]
    argv = command["command"]
    assert json.loads(argv[argv.index("--champion") + 1])["version"] == 2
    assert h.cluster.obj(DATASETS, NS, "iris")["status"]["version"] == DATASET_STATUS["version"]


async def test_a_pod_planted_with_the_jobs_label_reports_nothing() -> None:
    """Someone who may create pods makes one labelled `job-name=<the run's Job>` that exits
    with a forged result naming their own artifact: only the Job's own pods are read."""
    h = Harness(CONTROLLER)
    h.cluster.add(_dataset(DATASET_STATUS))
    h.cluster.add(_run("r1"))
    await h.reconcile("r1")
    job = h.status(TRAINING_RUNS, "r1")["jobName"]
    forged = _report().model_copy(update={"sha256": "e" * 64, "model_uri": "pvc://x/evil.onnx"})
    h.cluster.set_status(JOBS, NS, job, {"conditions": [{"type": "Complete", "status": "True"}]})
    h.cluster.add(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "planted",
                "namespace": NS,
                "labels": {"job-name": job},
                "ownerReferences": [],
            },
            "status": {
                "containerStatuses": [
                    {"state": {"terminated": {"exitCode": 0, "message": encode_result(forged)}}}
                ]
            },
        }
    )
    await h.reconcile("r1")
    assert h.cluster.named(MODEL_VERSIONS, NS) == [], "nothing registered from a planted pod"
    assert h.condition(TRAINING_RUNS, "r1", "Succeeded")[0] == "False"


def test_a_version_with_anything_added_is_not_the_runs_own() -> None:
    body: dict[str, Any] = {
        "spec": {
            "model": "iris",
            "version": 1,
            "artifact": {"uri": "pvc://a/m.onnx", "sha256": "a" * 64},
            "signature": {
                "task": "regression",
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
                "outputs": [{"name": "variable", "datatype": "FP32", "shape": [-1, 1]}],
                "features": [{"name": "x", "type": "numeric"}],
            },
            "lineage": {
                "trainingRun": "r1",
                "dataset": "d",
                "datasetVersion": "abc",
                "datasetDigest": "sha256:" + "b" * 64,
                "estimator": "sklearn.linear_model.Ridge",
            },
            "metrics": {"mae": 1.0},
            "baseline": {"statsURI": "pvc://a/stats.json"},
        }
    }
    assert same_version(body, body)
    served = {"spec": {**body["spec"], "lineage": {**body["spec"]["lineage"], "params": {}}}}
    assert same_version(served, body), "a server default is not a difference"
    for extra in (
        {"artifact": {**body["spec"]["artifact"], "examplesURI": "pvc://a/evil.json"}},
        {"metrics": {"mae": 1.0, "r2": 0.99}},
        {"signature": {**body["spec"]["signature"], "classLabels": ["x"]}},
    ):
        assert not same_version({"spec": {**body["spec"], **extra}}, body), extra


async def test_a_version_without_the_model_label_still_holds_its_number() -> None:
    """Numbers are taken by name (`<model>-v<N>`): an unlabelled version is counted, so the
    run registers the next number instead of losing the race for a taken one for ever."""
    h = Harness(CONTROLLER)
    h.cluster.add(_dataset(DATASET_STATUS))
    h.cluster.add(_run("r1"))
    await h.reconcile("r1")
    h.cluster.add(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "ModelVersion",
            "metadata": {"name": "iris-v1", "namespace": NS},
            "spec": {"model": "iris", "version": 1},
        }
    )
    _finish(h, "r1", _report())
    assert await h.handle("r1") == "success"
    assert h.status(TRAINING_RUNS, "r1")["modelVersionRef"]["name"] == "iris-v2"
