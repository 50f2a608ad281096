"""The artifacts claim: objects that need it wait with `ArtifactsUnavailable` while it is being
deleted (the generic reconcile, over the in-memory fake), and the guard keeps its protection
finalizer exactly while Flywheel objects of the namespace exist."""

from __future__ import annotations

from typing import Any

from flywheel.controllers.dataset import CONTROLLER as DATASETS_CONTROLLER
from flywheel.controllers.trainingrun import CONTROLLER as RUNS_CONTROLLER
from flywheel.core.claims import PROTECTION, claim_finding, protection
from flywheel.core.resources import CLAIMS, DATASETS, JOBS, TRAINING_RUNS
from flywheel.runtime.claims import ClaimGuard
from tests.support.fakekube import FakeCluster, FakeStore, Harness

NS = "ns"
CLAIM = "flywheel-artifacts"


def _claim(*, deleting: bool = False, finalizers: list[str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": CLAIM, "namespace": NS, "finalizers": finalizers or []}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-02T12:00:00Z"
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata}


def _dataset(name: str = "iris") -> dict[str, Any]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"source": {"uri": "sklearn://iris"}},
    }


def test_only_a_claim_being_deleted_is_unavailable() -> None:
    assert claim_finding(None, CLAIM) is None, "not created yet: the reconcile creates it"
    assert claim_finding(_claim(), CLAIM) is None
    found = claim_finding(_claim(deleting=True, finalizers=["kubernetes.io/pvc-protection"]), CLAIM)
    assert found is not None
    assert found.reason == "ArtifactsUnavailable"
    assert "kubernetes.io/pvc-protection" in found.message, "who still holds it"


def test_the_protection_is_added_while_in_use_and_removed_after() -> None:
    added = protection(_claim(finalizers=["x/y"]), in_use=True)
    assert added is not None
    assert added.patch["metadata"]["finalizers"] == ["x/y", PROTECTION], "others are kept"
    assert protection(_claim(finalizers=[PROTECTION]), in_use=True) is None
    assert protection(_claim(deleting=True), in_use=True) is None, "never added while deleting"
    removed = protection(_claim(deleting=True, finalizers=[PROTECTION, "x/y"]), in_use=False)
    assert removed is not None
    assert removed.patch["metadata"]["finalizers"] == ["x/y"]
    assert protection(_claim(), in_use=False) is None


async def test_a_dataset_waits_while_its_claim_is_deleted_and_creates_no_job() -> None:
    h = Harness(DATASETS_CONTROLLER)
    h.cluster.add(_claim(deleting=True, finalizers=[PROTECTION]))
    h.cluster.add(_dataset())
    assert await h.reconcile("iris") == (None, "artifacts_unavailable")
    assert h.condition(DATASETS, "iris", "Ready") == ("False", "ArtifactsUnavailable")
    assert h.condition(DATASETS, "iris", "Reconciling") == ("True", "ArtifactsUnavailable")
    assert h.condition(DATASETS, "iris", "Stalled") == ("False", "ArtifactsUnavailable")
    assert h.cluster.named(JOBS, NS) == [], "no pod left Pending on a terminating claim"
    assert h.events("iris") == ["ArtifactsUnavailable"]
    await h.reconcile("iris")
    assert h.events("iris") == ["ArtifactsUnavailable"], "said once"

    claim = h.cluster.obj(CLAIMS, NS, CLAIM)
    woken = DATASETS_CONTROLLER.watches[-1].map(claim, h.reconciler.env.store)
    assert list(woken) == ["iris"], "the claim's deletion wakes the namespace's Datasets"
    del h.cluster.objects[(CLAIMS.plural, NS, CLAIM)]
    await h.reconcile("iris")
    assert h.cluster.named(JOBS, NS), "the claim gone (created again): the ingest starts"


async def test_a_finished_run_does_not_need_the_claim() -> None:
    h = Harness(RUNS_CONTROLLER)
    h.cluster.add(_claim(deleting=True))
    run = {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "r1", "namespace": NS},
        "spec": {
            "model": "iris",
            "datasetRef": {"name": "iris"},
            "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
        },
        "status": {"conditions": [{"type": "Succeeded", "status": "True", "reason": "X"}]},
    }
    h.cluster.add(run)
    assert (await h.reconcile("r1"))[1] == "success"


async def test_the_guard_follows_the_namespaces_objects() -> None:
    cluster = FakeCluster()
    store = FakeStore(cluster)
    guard = ClaimGuard(cluster, store, CLAIM)
    cluster.add(_claim())
    await guard.guard(NS)
    assert cluster.obj(CLAIMS, NS, CLAIM)["metadata"]["finalizers"] == [], "nothing uses it"
    cluster.add(_dataset())
    await guard.guard(NS)
    assert cluster.obj(CLAIMS, NS, CLAIM)["metadata"]["finalizers"] == [PROTECTION]
    del cluster.objects[(DATASETS.plural, NS, "iris")]
    await guard.guard(NS)
    assert cluster.obj(CLAIMS, NS, CLAIM)["metadata"]["finalizers"] == [], "released"
    guard.changed(DATASETS, "other")
    guard.changed(JOBS, "elsewhere")
    assert guard.dirty == {"other"}, "only claims and the kinds that keep files on one"


async def test_a_child_name_held_by_someone_else_stalls_its_owner() -> None:
    """A Job someone made under the run's Job name (not labelled, so the watch cache never sees
    it): the create conflicts, the Job is not the run's (no owner reference), the run says so."""
    h = Harness(RUNS_CONTROLLER)
    h.cluster.add(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": "iris", "namespace": NS},
            "spec": {"source": {"uri": "sklearn://iris"}},
            "status": {
                "version": "abc123abc123",
                "digest": "sha256:" + "a" * 64,
                "snapshotURI": "pvc://c/d/data.parquet",
                "statsURI": "pvc://c/d/stats.json",
                "conditions": [{"type": "Ready", "status": "True", "reason": "Published"}],
            },
        }
    )
    run = {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "r1", "namespace": NS},
        "spec": {
            "model": "iris",
            "datasetRef": {"name": "iris"},
            "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
        },
    }
    h.cluster.add(run)
    squatter = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "r1-train", "namespace": NS},
    }
    original = h.cluster.create

    async def create(body: dict[str, Any]) -> dict[str, Any]:
        if body.get("kind") == "Job":
            h.cluster.add(squatter)  # it appears just before ours: the cache never saw it
        return await original(body)

    h.cluster.create = create  # type: ignore[method-assign]
    assert (await h.handle("r1")) == "name_taken"
    assert h.condition(TRAINING_RUNS, "r1", "Stalled") == ("True", "NameTaken")
    assert "never adopted" in h.message(TRAINING_RUNS, "r1", "Ready")
    assert h.events("r1")[-1] == "NameTaken"
