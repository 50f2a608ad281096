"""Which reconciles a watch event wakes: the object itself on changes it acts on, the owner of a
child, and the objects another kind's mapping names."""

from __future__ import annotations

from typing import Any

from flywheel.controllers import dataset, modeldeployment, trainingrun
from flywheel.core.resources import (
    DATASETS,
    DEPLOYMENTS,
    JOBS,
    MODEL_DEPLOYMENTS,
    MODEL_VERSIONS,
    TRAINING_RUNS,
)
from flywheel.runtime.reconciler import Reconciler
from flywheel.runtime.store import CachedStore
from flywheel.wiring.routing import Router
from tests.support.fakekube import FakeIndex, Harness

API = "flywheel.dev/v1alpha1"


def _router() -> tuple[Router, dict[str, Reconciler], dict[Any, FakeIndex]]:
    store = CachedStore()
    watched = (DATASETS, TRAINING_RUNS, MODEL_VERSIONS, MODEL_DEPLOYMENTS, JOBS, DEPLOYMENTS)
    indexes = {r: FakeIndex() for r in watched}
    for resource, index in indexes.items():
        store.attach(resource, index)
    reconcilers = {
        c.kind.kind: Harness(c).reconciler
        for c in (dataset.CONTROLLER, trainingrun.CONTROLLER, modeldeployment.CONTROLLER)
    }
    return Router(store, list(reconcilers.values())), reconcilers, indexes


def _queued(reconciler: Reconciler) -> list[tuple[str, str]]:
    return list(reconciler.queue._ready)


def _dataset(generation: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Dataset",
        "metadata": {"name": "iris", "namespace": "ns", "generation": generation, **extra},
        "spec": {},
    }


async def test_own_events_wake_on_spec_and_metadata_changes_not_on_status() -> None:
    router, reconcilers, _ = _router()
    datasets = reconcilers["Dataset"]
    assert router.route(DATASETS, None, _dataset()) == 1, "listed at start: reconcile"
    key = await datasets.queue.get()
    datasets.queue.done(key)
    with_status = {**_dataset(), "status": {"observedGeneration": 1}}
    assert router.route(DATASETS, "MODIFIED", with_status) == 0, "its own status write"
    assert router.route(DATASETS, "MODIFIED", _dataset(generation=2)) == 1
    asked = _dataset(generation=2, annotations={"flywheel.dev/refresh-requested-at": "now"})
    assert router.route(DATASETS, "MODIFIED", asked) == 1, "a refresh request"
    assert router.route(DATASETS, "DELETED", asked) == 1, "gone: the reconcile forgets it"
    assert _queued(datasets) == [("ns", "iris")]


async def test_a_child_wakes_its_controlling_owner_of_that_kind_only() -> None:
    router, reconcilers, _ = _router()
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "r1-train",
            "namespace": "ns",
            "ownerReferences": [{"kind": "TrainingRun", "name": "r1", "controller": True}],
        },
    }
    router.route(JOBS, "MODIFIED", job)
    assert _queued(reconcilers["TrainingRun"]) == [("ns", "r1")]
    assert _queued(reconcilers["Dataset"]) == []
    stranger = {**job, "metadata": {**job["metadata"], "ownerReferences": []}}
    assert router.route(JOBS, "MODIFIED", stranger) == 0


async def test_a_dataset_wakes_the_runs_that_wait_for_it() -> None:
    router, reconcilers, indexes = _router()

    def run(name: str, dataset: str, finished: bool) -> dict[str, Any]:
        status = "True" if finished else "Unknown"
        return {
            "apiVersion": API,
            "kind": "TrainingRun",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"datasetRef": {"name": dataset}},
            "status": {"conditions": [{"type": "Succeeded", "status": status}]},
        }

    for body in (
        run("waiting", "iris", False),
        run("done", "iris", True),
        run("other", "x", False),
    ):
        indexes[TRAINING_RUNS].put(body)
    router.route(DATASETS, "MODIFIED", _dataset())
    assert _queued(reconcilers["TrainingRun"]) == [("ns", "waiting")]


async def test_a_version_wakes_the_deployments_of_its_model() -> None:
    router, reconcilers, indexes = _router()
    for name, model in (("web", "iris"), ("other", "wine")):
        indexes[MODEL_DEPLOYMENTS].put(
            {
                "apiVersion": API,
                "kind": "ModelDeployment",
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"model": model},
            }
        )
    version = {
        "apiVersion": API,
        "kind": "ModelVersion",
        "metadata": {"name": "iris-v2", "namespace": "ns"},
        "spec": {"model": "iris", "version": 2},
    }
    router.route(MODEL_VERSIONS, "MODIFIED", version)
    assert _queued(reconcilers["ModelDeployment"]) == [("ns", "web")]
