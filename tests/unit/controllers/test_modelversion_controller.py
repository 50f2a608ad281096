"""The ModelVersion controller: its pure verdict (copied from the TrainingRun that vouches for the
version) and its gather → decide → act over the in-memory fake, which also drops the links of
ModelDeployments that no longer exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flywheel.api.trainingrun import TrainingRunSpec, ValidationVerdict
from flywheel.controllers.modelversion import (
    CONTROLLER,
    versions_linked_to,
    versions_of_run,
)
from flywheel.controllers.modelversion.decide import judged, no_verdict, vouching_run
from flywheel.controllers.trainingrun.decide import judge
from flywheel.core.links import link, link_manager
from flywheel.core.outcome import Outcome
from flywheel.core.resources import MODEL_DEPLOYMENTS, MODEL_VERSIONS, TRAINING_RUNS
from flywheel.core.statuses import RUN_UID
from flywheel.interfaces.jobs import TrainReport
from tests.support.fakekube import Harness

NS = "ns"
SHA = "a" * 64
ROOT = Path(__file__).resolve().parents[3]
BASE = yaml.safe_load((ROOT / "examples/quickstart/02-trainingrun.yaml").read_text())["spec"]
COMPARED = TrainingRunSpec.model_validate(
    {**BASE, "validation": {"compareTo": {"metric": "accuracy", "minImprovement": 0.01}}}
)
RESULT = TrainReport.model_validate(
    {
        "ok": True,
        "sha256": SHA,
        "modelURI": "pvc://art/models/ns/iris/iris-rf-1/model.onnx",
        "metrics": {"accuracy": 0.9, "f1_macro": 0.89},
        "champion": {"version": 2, "metrics": {"accuracy": 0.95}, "rescored": True},
        "signature": {"task": "classification", "features": [{"name": "x", "type": "numeric"}]},
    }
)
RUN = {"metadata": {"name": "iris-rf-1", "namespace": "ml", "uid": "u-1"}}
PASSED = ValidationVerdict(passed=True, checks=[]).model_dump(by_alias=True, mode="json")


def _conditions(outcome: Outcome) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in outcome.conditions}


def test_a_model_version_copies_its_runs_verdict() -> None:
    labels = {"flywheel.dev/run-uid": "u-1"}
    assert vouching_run(labels, RUN) == RUN
    assert vouching_run(labels, {"metadata": {"uid": "u-2"}}) is None, "a namesake run"
    assert vouching_run({}, RUN) is None
    verdict = judge(COMPARED, RESULT, None).model_dump(by_alias=True, mode="json")
    outcome = judged(verdict, "iris-rf-1", {"f1_macro": 0.5, "accuracy": 0.9})
    assert outcome.status["keyMetric"] == "accuracy=0.9", "the judged metric first"
    assert _conditions(outcome)["Validated"] == ("False", "GatesFailed")
    assert _conditions(outcome)["Ready"] == ("True", "Registered")
    assert [e.type for e in outcome.events] == ["Warning"]
    assert "accuracy vs champion v2" in outcome.events[0].message
    passed = judged(ValidationVerdict(passed=True, checks=[]).model_dump(), "r", {"mae": 1.25})
    assert passed.status["keyMetric"] == "mae=1.25"
    assert _conditions(passed)["Validated"] == ("True", "GatesPassed")
    assert _conditions(no_verdict("gone", {}))["Validated"] == ("False", "NoVerdict")


# Over the fake ---------------------------------------------------------------------------------


def _model_version(run_uid: str | None = "uid-iris-rf-1") -> dict[str, Any]:
    labels = {"flywheel.dev/model": "iris", "flywheel.dev/version": "1"}
    if run_uid is not None:
        labels[RUN_UID] = run_uid
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": "iris-v1", "namespace": NS, "labels": labels},
        "spec": {
            "model": "iris",
            "version": 1,
            "artifact": {"uri": "pvc://art/models/ns/iris/iris-rf-1/model.onnx", "sha256": SHA},
            "signature": {
                "task": "classification",
                "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 1]}],
                "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}],
                "features": [{"name": "x", "type": "numeric"}],
            },
            "lineage": {
                "trainingRun": "iris-rf-1",
                "dataset": "iris",
                "datasetVersion": "abc123abc123",
                "datasetDigest": "sha256:" + "b" * 64,
                "estimator": "sklearn.ensemble.RandomForestClassifier",
            },
            "metrics": {"f1_macro": 0.96, "accuracy": 0.97},
            "baseline": {"statsURI": "pvc://data/datasets/ns/iris/abc/stats.json"},
        },
    }


def _training_run(verdict: dict[str, Any] | None = None, uid: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "iris-rf-1", "namespace": NS}
    if uid is not None:
        metadata["uid"] = uid
    status: dict[str, Any] = {"modelVersionRef": {"name": "iris-v1"}}
    if verdict is not None:
        status["validation"] = verdict
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": metadata,
        "spec": BASE,
        "status": status,
    }


def _model_deployment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"model": "iris", "version": 1},
    }


def _linked(h: Harness) -> list[str]:
    return [str(d["name"]) for d in h.status(MODEL_VERSIONS, "iris-v1").get("deployments") or []]


async def _link(h: Harness, deployment: str) -> None:
    """What the ModelDeployment controller does once the version serves there."""
    action = link(NS, "iris-v1", deployment, serving=True)
    await h.cluster.apply(action.body, manager=action.manager, subresource=action.subresource)


async def test_the_verdict_is_copied_from_the_vouching_run_once() -> None:
    h = Harness(CONTROLLER)
    verdict = judge(COMPARED, RESULT, None).model_dump(by_alias=True, mode="json")
    h.cluster.add(_training_run(verdict))
    h.cluster.add(_model_version())
    assert await h.reconcile("iris-v1") == (None, "success")
    assert h.cluster.writes() == [
        ("patch", "modelversions", "iris-v1"),
        ("create", "events", "iris-v1"),
    ]
    status = h.status(MODEL_VERSIONS, "iris-v1")
    assert status["validation"] == verdict
    assert status["keyMetric"] == "accuracy=0.97", "the judged metric first"
    assert status["observedGeneration"] == 1
    assert h.condition(MODEL_VERSIONS, "iris-v1", "Validated") == ("False", "GatesFailed")
    assert h.condition(MODEL_VERSIONS, "iris-v1", "Ready") == ("True", "Registered")
    assert h.condition(MODEL_VERSIONS, "iris-v1", "Stalled") == ("False", "Registered")
    assert h.events("iris-v1") == ["ValidationFailed"]

    settled = len(h.cluster.requests)
    assert await h.reconcile("iris-v1") == (None, "success")
    assert h.cluster.requests[settled:] == [], "judged once: a second reconcile writes nothing"
    h.cluster.set_status(TRAINING_RUNS, NS, "iris-rf-1", {"validation": PASSED})
    await h.reconcile("iris-v1")
    assert h.cluster.requests[settled:] == [], "the spec is immutable: so is its verdict"
    assert h.condition(MODEL_VERSIONS, "iris-v1", "Validated") == ("False", "GatesFailed")


async def test_a_passing_verdict_validates_the_version() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_training_run(PASSED))
    h.cluster.add(_model_version())
    await h.reconcile("iris-v1")
    assert h.condition(MODEL_VERSIONS, "iris-v1", "Validated") == ("True", "GatesPassed")
    assert h.status(MODEL_VERSIONS, "iris-v1")["keyMetric"] == "f1_macro=0.96", "no gate: first"
    assert h.events("iris-v1") == ["Validated"]


async def test_a_namesake_run_does_not_vouch_for_the_version() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_training_run(PASSED, uid="uid-a-later-run"))
    h.cluster.add(_model_version())
    await h.reconcile("iris-v1")
    assert h.condition(MODEL_VERSIONS, "iris-v1", "Validated") == ("False", "NoVerdict")
    assert h.condition(MODEL_VERSIONS, "iris-v1", "Ready") == ("True", "Registered")
    assert "validation" not in h.status(MODEL_VERSIONS, "iris-v1")
    assert h.events("iris-v1") == ["NoVerdict"]
    settled = len(h.cluster.requests)
    await h.reconcile("iris-v1")
    assert h.cluster.requests[settled:] == []


async def test_a_version_without_a_run_uid_or_a_run_has_no_verdict() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_training_run(PASSED))
    h.cluster.add(_model_version(run_uid=None))
    await h.reconcile("iris-v1")
    assert h.condition(MODEL_VERSIONS, "iris-v1", "Validated") == ("False", "NoVerdict")

    alone = Harness(CONTROLLER)
    alone.cluster.add(_model_version())
    await alone.reconcile("iris-v1")
    assert alone.condition(MODEL_VERSIONS, "iris-v1", "Validated") == ("False", "NoVerdict")
    assert alone.events("iris-v1") == ["NoVerdict"]


async def test_a_run_without_its_verdict_yet_leaves_the_version_unjudged() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_training_run())
    h.cluster.add(_model_version())
    await h.reconcile("iris-v1")
    status = h.status(MODEL_VERSIONS, "iris-v1")
    assert set(status) == {"conditions", "observedGeneration"}, "only the first visit's status"
    assert h.condition(MODEL_VERSIONS, "iris-v1", "Validated") == ("", "")
    assert h.condition(MODEL_VERSIONS, "iris-v1", "Ready") == ("Unknown", "Initializing")
    assert h.events("iris-v1") == []
    settled = len(h.cluster.requests)
    await h.reconcile("iris-v1")
    assert h.cluster.requests[settled:] == []

    h.cluster.set_status(
        TRAINING_RUNS,
        NS,
        "iris-rf-1",
        {"modelVersionRef": {"name": "iris-v1"}, "validation": PASSED},
    )
    run = h.cluster.obj(TRAINING_RUNS, NS, "iris-rf-1")
    assert list(versions_of_run(run, h.reconciler.env.store)) == ["iris-v1"], (
        "the run's status change wakes the version"
    )
    await h.reconcile("iris-v1")
    assert h.condition(MODEL_VERSIONS, "iris-v1", "Validated") == ("True", "GatesPassed")
    assert h.events("iris-v1") == ["Validated"]


async def test_links_of_deleted_deployments_are_removed_and_others_kept() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_training_run(PASSED))
    h.cluster.add(_model_version())
    await h.reconcile("iris-v1")
    h.cluster.add(_model_deployment("web"))
    h.cluster.add(_model_deployment("gone"))
    await _link(h, "web")
    await _link(h, "gone")
    assert _linked(h) == ["web", "gone"]
    gone = h.cluster.obj(MODEL_DEPLOYMENTS, NS, "gone")
    del h.cluster.objects[(MODEL_DEPLOYMENTS.plural, NS, "gone")]
    assert list(versions_linked_to(gone, h.reconciler.env.store)) == ["iris-v1"], (
        "the deletion wakes the versions that list the deployment"
    )
    settled = len(h.cluster.requests)
    await h.reconcile("iris-v1")
    assert h.cluster.requests[settled:] == [("apply", "modelversions", "iris-v1")]
    assert _linked(h) == ["web"]
    key = (MODEL_VERSIONS.plural, NS, "iris-v1")
    assert h.cluster.links[key] == {
        link_manager("web"): [{"name": "web"}],
        link_manager("gone"): [],
    }
    assert h.condition(MODEL_VERSIONS, "iris-v1", "Validated") == ("True", "GatesPassed")
    settled = len(h.cluster.requests)
    await h.reconcile("iris-v1")
    assert h.cluster.requests[settled:] == []
