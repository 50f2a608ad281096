"""The ModelVersion controller: its pure verdict (copied from the TrainingRun that vouches for the
version) and its gather → decide → act over the in-memory fake, which also drops the links of
ModelDeployments that no longer exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flywheel.api.modelversion import ModelVersionSpec
from flywheel.api.trainingrun import TrainingRunSpec, ValidationVerdict
from flywheel.controllers.modelversion import (
    CONTROLLER,
    versions_linked_to,
    versions_of_run,
)
from flywheel.controllers.modelversion.decide import IN_USE, judged, vouching_run
from flywheel.controllers.trainingrun.decide import judge
from flywheel.core.links import link, link_manager
from flywheel.core.outcome import Outcome
from flywheel.core.resources import MODEL_DEPLOYMENTS, MODEL_VERSIONS, TRAINING_RUNS
from flywheel.core.statuses import RUN_UID
from flywheel.core.target import Meta
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


def _meta(labels: dict[str, str], name: str = "iris-v1") -> Meta:
    return Meta(name, NS, "mv-uid", 1, None, labels, {}, deleting=False)


def test_a_run_vouches_only_for_the_version_and_digest_it_registered() -> None:
    spec = ModelVersionSpec.model_validate(_model_version()["spec"])
    labels = {"flywheel.dev/run-uid": "u-1"}
    registered = {**RUN, "status": {"modelVersionRef": {"name": "iris-v1", "sha256": SHA}}}
    assert vouching_run(_meta(labels), spec, registered) == registered
    namesake = {**registered, "metadata": {"uid": "u-2"}}
    assert vouching_run(_meta(labels), spec, namesake) is None, "a namesake run"
    assert vouching_run(_meta({}), spec, registered) is None, "no run label"
    assert vouching_run(_meta(labels), spec, RUN) is None, "the run registered nothing"
    assert vouching_run(_meta(labels, "iris-v9"), spec, registered) is None, "another version"
    forged = ModelVersionSpec.model_validate(
        {**_model_version()["spec"], "artifact": {"uri": "pvc://art/evil.onnx", "sha256": "c" * 64}}
    )
    assert vouching_run(_meta(labels), forged, registered) is None, "another digest"


def test_a_model_version_copies_its_runs_verdict() -> None:
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
    status: dict[str, Any] = {}
    if verdict is not None:
        status["validation"] = verdict
        status["modelVersionRef"] = {"name": "iris-v1", "sha256": SHA}
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
        {"modelVersionRef": {"name": "iris-v1", "sha256": SHA}, "validation": PASSED},
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
    assert h.cluster.requests[settled:] == [
        ("patch", "modelversions", "iris-v1"),  # the in-use finalizer: "web" serves it
        ("apply", "modelversions", "iris-v1"),
    ]
    assert _linked(h) == ["web"]
    assert h.cluster.obj(MODEL_VERSIONS, NS, "iris-v1")["metadata"]["finalizers"] == [IN_USE]
    key = (MODEL_VERSIONS.plural, NS, "iris-v1")
    assert h.cluster.links[key] == {
        link_manager("web"): [{"name": "web"}],
        link_manager("gone"): [],
    }
    assert h.condition(MODEL_VERSIONS, "iris-v1", "Validated") == ("True", "GatesPassed")
    settled = len(h.cluster.requests)
    await h.reconcile("iris-v1")
    assert h.cluster.requests[settled:] == []


def _forged(sha: str = "c" * 64, name: str = "iris-v2") -> dict[str, Any]:
    """A ModelVersion made by hand that copies a passing run's label and lineage."""
    forged = _model_version()
    forged["metadata"]["name"] = name
    forged["spec"]["version"] = 2
    forged["spec"]["artifact"] = {"uri": "pvc://art/mine/model.onnx", "sha256": sha}
    return forged


async def test_a_forged_version_copying_a_passing_runs_label_is_not_validated() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_training_run(PASSED))
    h.cluster.add(_model_version())
    h.cluster.add(_forged())
    await h.reconcile("iris-v1")
    await h.reconcile("iris-v2")
    assert h.condition(MODEL_VERSIONS, "iris-v1", "Validated") == ("True", "GatesPassed")
    assert h.condition(MODEL_VERSIONS, "iris-v2", "Validated") == ("False", "Unvouched")
    assert "registered iris-v1" in h.message(MODEL_VERSIONS, "iris-v2", "Validated")
    assert h.events("iris-v2") == ["Unvouched"]
    settled = len(h.cluster.requests)
    await h.reconcile("iris-v2")
    assert h.cluster.requests[settled:] == [], "said once"


async def test_the_same_digest_under_another_name_is_not_vouched_either() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_training_run(PASSED))
    h.cluster.add(_forged(sha=SHA))
    await h.reconcile("iris-v2")
    assert h.condition(MODEL_VERSIONS, "iris-v2", "Validated") == ("False", "Unvouched")


def _approve(h: Harness, approval: dict[str, Any] | None) -> None:
    """What `kubectl patch --subresource=status` by an approver does."""
    status = {**h.status(MODEL_VERSIONS, "imported"), "approval": approval}
    h.cluster.set_status(MODEL_VERSIONS, NS, "imported", {k: v for k, v in status.items() if v})


async def test_an_approver_validates_an_imported_version_for_its_digest_only() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_forged(name="imported"))
    await h.reconcile("imported")
    assert h.condition(MODEL_VERSIONS, "imported", "Validated") == ("False", "NoVerdict")
    assert "Importing a model" in h.message(MODEL_VERSIONS, "imported", "Validated")

    wrong = {"sha256": SHA, "approvedBy": "alice"}
    _approve(h, wrong)
    await h.reconcile("imported")
    assert h.condition(MODEL_VERSIONS, "imported", "Validated") == ("False", "ApprovalMismatch")

    right = {"sha256": "c" * 64, "approvedBy": "alice", "comment": "offline eval ok"}
    _approve(h, right)
    await h.reconcile("imported")
    assert h.condition(MODEL_VERSIONS, "imported", "Validated") == ("True", "Approved")
    assert "alice" in h.message(MODEL_VERSIONS, "imported", "Validated")
    assert h.events("imported") == ["NoVerdict", "ApprovalMismatch", "Approved"]

    _approve(h, None)
    await h.reconcile("imported")
    assert h.condition(MODEL_VERSIONS, "imported", "Validated") == ("False", "NoVerdict"), (
        "a withdrawn approval withdraws the validation"
    )


async def test_a_served_version_is_protected_from_deletion_until_nothing_serves_it() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_training_run(PASSED))
    version = _model_version()
    version["metadata"]["finalizers"] = ["someone.else/keep"]
    h.cluster.add(version)
    h.cluster.add(_model_deployment("web"))
    await _link(h, "web")
    await h.reconcile("iris-v1")
    meta = h.cluster.obj(MODEL_VERSIONS, NS, "iris-v1")["metadata"]
    assert meta["finalizers"] == ["someone.else/keep", IN_USE], "another finalizer is kept"

    stored = h.cluster.objects[(MODEL_VERSIONS.plural, NS, "iris-v1")]
    stored["metadata"]["deletionTimestamp"] = "2026-12-02T12:00:00Z"  # what a delete does
    await h.reconcile("iris-v1")
    assert h.condition(MODEL_VERSIONS, "iris-v1", "Ready") == ("False", "InUse")
    assert "ModelDeployment web serves this version" in h.message(
        MODEL_VERSIONS, "iris-v1", "Ready"
    )
    assert h.events("iris-v1")[-1] == "InUse"
    await h.reconcile("iris-v1")
    assert h.events("iris-v1").count("InUse") == 1, "said once"

    unlink = link(NS, "iris-v1", "web", serving=False)  # web moved to another version
    await h.cluster.apply(unlink.body, manager=unlink.manager, subresource=unlink.subresource)
    await h.reconcile("iris-v1")
    meta = h.cluster.obj(MODEL_VERSIONS, NS, "iris-v1")["metadata"]
    assert meta["finalizers"] == ["someone.else/keep"], "released; the other stays"


async def test_a_forgery_validated_by_an_older_operator_is_judged_again() -> None:
    """Validated=True GatesPassed copied before runs named their version: the run names another
    version, so the verdict no longer holds."""
    h = Harness(CONTROLLER)
    h.cluster.add(_training_run(PASSED))
    forged = _forged()
    forged["metadata"]["labels"][RUN_UID] = "uid-iris-rf-1"
    forged["status"] = {
        "conditions": [
            {"type": "Validated", "status": "True", "reason": "GatesPassed", "message": "old"}
        ]
    }
    h.cluster.add(forged)
    await h.reconcile("iris-v2")
    assert h.condition(MODEL_VERSIONS, "iris-v2", "Validated") == ("False", "Unvouched")


async def test_a_run_that_registered_before_digests_were_recorded_still_vouches() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(
        {
            **_training_run(PASSED),
            "status": {"modelVersionRef": {"name": "iris-v1"}, "validation": PASSED},
        }
    )
    h.cluster.add(_model_version())
    await h.reconcile("iris-v1")
    assert h.condition(MODEL_VERSIONS, "iris-v1", "Validated") == ("True", "GatesPassed")


async def test_a_verdict_written_by_hand_is_judged_again() -> None:
    h = Harness(CONTROLLER)
    made = _forged(name="imported")
    del made["metadata"]["labels"][RUN_UID]
    made["status"] = {
        "conditions": [
            {"type": "Validated", "status": "True", "reason": "GatesPassed", "message": "trust me"}
        ]
    }
    h.cluster.add(made)
    await h.reconcile("imported")
    assert h.condition(MODEL_VERSIONS, "imported", "Validated") == ("False", "NoVerdict")

    vouched = Harness(CONTROLLER)
    vouched.cluster.add(_training_run(PASSED))
    vouched.cluster.add(_model_version())
    await vouched.reconcile("iris-v1")
    status = vouched.status(MODEL_VERSIONS, "iris-v1")
    assert status["vouchedBy"] == {
        "trainingRun": "iris-rf-1",
        "uid": "uid-iris-rf-1",
        "sha256": SHA,
    }
