"""The objects the operator benchmark creates: bodies, and 1,000 idle objects already finished.

Finished objects cannot be made by running 1,000 Jobs (an hour of CPU here), so the benchmark
writes them as an operator would have left them: Datasets with a published version and no
refresh, TrainingRuns that succeeded, validated ModelVersions, and ModelDeployments of zero
replicas serving one of them. Either operator version then has nothing to do with them; what
it still asks the API server while they sit there is what is measured.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

API = "flywheel.dev/v1alpha1"
DIGEST = "sha256:" + "a" * 64
TIME = "2026-12-01T12:00:00Z"
Obj = dict[str, Any]


def condition(type_: str, status: str, reason: str) -> Obj:
    """A condition as a controller writes it."""
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": reason,
        "lastTransitionTime": TIME,
        "observedGeneration": 1,
    }


def settled(*conditions: Obj) -> list[Obj]:
    """Conditions of a finished object: the kind's own, then Ready/Reconciling/Stalled."""
    return [
        *conditions,
        condition("Reconciling", "False", "Idle"),
        condition("Stalled", "False", "Idle"),
    ]


def dataset(name: str, uri: str = "sklearn://iris") -> Obj:
    """A Dataset."""
    return {
        "apiVersion": API,
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {"source": {"uri": uri}},
    }


def training_run(name: str, dataset_name: str, model: str) -> Obj:
    """A TrainingRun of a logistic regression."""
    return {
        "apiVersion": API,
        "kind": "TrainingRun",
        "metadata": {"name": name},
        "spec": {
            "model": model,
            "datasetRef": {"name": dataset_name},
            "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
        },
    }


def _dataset_status() -> Obj:
    record = {
        "version": "a" * 12,
        "digest": DIGEST,
        "rows": 150,
        "columns": 5,
        "snapshotURI": "pvc://flywheel-artifacts/d/data.parquet",
        "statsURI": "pvc://flywheel-artifacts/d/stats.json",
    }
    return {
        **record,
        "observedGeneration": 1,
        "lastChecked": TIME,
        "jobName": "done",
        "history": [{**record, "createdAt": TIME}],
        "lastIngest": {
            "jobName": "done",
            "trigger": "Created",
            "generation": 1,
            "startTime": TIME,
            "completionTime": TIME,
            "result": "Published",
            "retries": 0,
        },
        "conditions": settled(
            condition("Ready", "True", "VersionPublished"),
            condition("Validated", "True", "RulesPassed"),
            condition("SourceAvailable", "True", "SourceRead"),
        ),
    }


def _run_status(model: str) -> Obj:
    return {
        "observedGeneration": 1,
        "jobName": "done",
        "startTime": TIME,
        "completionTime": TIME,
        "attempts": 1,
        "metrics": {"accuracy": 0.9},
        "validation": {"passed": True, "checks": []},
        "modelVersionRef": {"name": f"{model}-v1"},
        "conditions": settled(
            condition("Succeeded", "True", "ModelVersionRegistered"),
            condition("Ready", "True", "ModelVersionRegistered"),
        ),
    }


def model_version(model: str) -> Obj:
    """Version 1 of a model."""
    return {
        "apiVersion": API,
        "kind": "ModelVersion",
        "metadata": {"name": f"{model}-v1", "labels": {"flywheel.dev/model": model}},
        "spec": {
            "model": model,
            "version": 1,
            "artifact": {
                "uri": f"pvc://flywheel-artifacts/m/{model}/model.onnx",
                "sha256": "b" * 64,
            },
            "signature": {
                "task": "classification",
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
                "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1]}],
                "features": [{"name": "x", "type": "numeric"}],
                "classLabels": ["a", "b"],
            },
            "lineage": {
                "trainingRun": f"{model}-run",
                "dataset": "d",
                "datasetVersion": "a" * 12,
                "datasetDigest": DIGEST,
                "estimator": "sklearn.linear_model.LogisticRegression",
            },
            "metrics": {"accuracy": 0.9},
            "baseline": {"statsURI": "pvc://flywheel-artifacts/d/stats.json"},
        },
    }


def _version_status() -> Obj:
    return {
        "observedGeneration": 1,
        "validation": {"passed": True, "checks": []},
        "keyMetric": "accuracy=0.9",
        "conditions": settled(
            condition("Validated", "True", "GatesPassed"), condition("Ready", "True", "Registered")
        ),
    }


def model_deployment(model: str) -> Obj:
    """A ModelDeployment of zero replicas serving version 1."""
    return {
        "apiVersion": API,
        "kind": "ModelDeployment",
        "metadata": {"name": model},
        "spec": {"model": model, "version": 1, "replicas": 0},
    }


Create = Callable[[str, Obj], Awaitable[Obj]]
"""Create an object in a namespace; the created object."""
PatchStatus = Callable[[str, Obj, Obj], Awaitable[None]]
"""Write an object's status (namespace, object, status)."""


async def idle_objects(
    namespace: str, create: Create, patch_status: PatchStatus, count: int
) -> int:
    """`count` finished objects: 40 % Datasets, 40 % TrainingRuns, 10 % ModelVersions, 10 %
    ModelDeployments (whose status the operator writes itself); how many were made."""
    tenth = count // 10
    limit = asyncio.Semaphore(16)

    async def made(body: Obj, status: Obj | None) -> None:
        async with limit:
            created = await create(namespace, body)
            if status is not None:
                await patch_status(namespace, created, status)

    work = [made(dataset(f"idle-ds-{i}"), _dataset_status()) for i in range(4 * tenth)]
    work += [
        made(training_run(f"idle-tr-{i}", "idle-ds-0", f"idle-m{i}"), _run_status(f"idle-m{i}"))
        for i in range(4 * tenth)
    ]
    work += [made(model_version(f"idle-m{i}"), _version_status()) for i in range(tenth)]
    await asyncio.gather(*work)
    await asyncio.gather(*(made(model_deployment(f"idle-m{i}"), None) for i in range(tenth)))
    return 10 * tenth
