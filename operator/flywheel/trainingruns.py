"""Pure TrainingRun decisions and builders: the pinned dataset, the champion, the training Job.

The TrainingRun controller (:mod:`flywheel.handlers.trainingrun`) reads objects, calls these
and writes what they return; what a finished Job means is in :mod:`flywheel.runoutcomes`.
No I/O, no clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flywheel.api.common import API_GROUP, API_VERSION
from flywheel.api.trainingrun import TrainingRunSpec
from flywheel.artifacts import MOUNT_ROOT
from flywheel.conditions import READY, Verdict, raw_condition
from flywheel.podspec import (
    RESTRICTED_CONTAINER,
    RESTRICTED_POD,
    artifact_mounts,
    artifact_volumes,
    owner_reference,
)
from flywheel.settings import OperatorSettings

Obj = dict[str, Any]
NOT_RETRYABLE_EXIT = 3  # flywheel.jobs.train: a spec or code problem, retrying cannot help


@dataclass(frozen=True)
class PinnedDataset:
    """The Dataset version a run trains on."""

    name: str
    version: str
    digest: str
    snapshot_uri: str
    stats_uri: str


def pin_dataset(spec: TrainingRunSpec, dataset: Obj | None) -> PinnedDataset | Verdict:
    """The version to train on, or why the run must wait (`DatasetNotReady`)."""
    name = spec.dataset_ref.name
    if dataset is None:
        return Verdict("DatasetNotReady", f"Dataset {name} does not exist.")
    status = dataset.get("status", {})
    wanted = spec.dataset_ref.version
    records = [status, *(status.get("history") or [])]
    for record in records:
        if record.get("digest") and (
            wanted is None
            or str(record.get("version", "")).startswith(wanted)
            or record["digest"].removeprefix("sha256:").startswith(wanted)
        ):
            if wanted is None and not _ready(dataset):
                break
            return PinnedDataset(
                name, record["version"], record["digest"], record["snapshotURI"], record["statsURI"]
            )
    if wanted is not None:
        return Verdict("DatasetNotReady", f"Dataset {name} has no version {wanted} in its history.")
    return Verdict("DatasetNotReady", f"Dataset {name} has no Ready version yet.")


def _ready(dataset: Obj) -> bool:
    return raw_condition(dataset.get("status"), READY).get("status") == "True"


def select_champion(
    spec: TrainingRunSpec, deployment: Obj | None, versions: list[Obj]
) -> tuple[Obj | None, str | None]:
    """The champion ModelVersion for the `compareTo` gate, or None and why there is none.

    `versions` are the model's ModelVersions; `deployment` the ModelDeployment named by
    `compareTo.deploymentRef` (None when absent or not asked for).
    """
    gates = spec.validation
    if gates is None or gates.compare_to is None:
        return None, None
    reference = gates.compare_to.deployment_ref
    if reference is not None:
        if deployment is None:
            return None, f"ModelDeployment {reference.name} does not exist"
        serving = deployment.get("status", {}).get("servingVersion")
        if serving is None:
            return None, f"ModelDeployment {reference.name} serves no version yet"
        match = [v for v in versions if v.get("spec", {}).get("version") == serving]
        if not match:
            return None, f"ModelDeployment {reference.name} serves v{serving}, which is not found"
        return match[0], None
    validated = [v for v in versions if _validated(v)]
    if not validated:
        return None, f"model {spec.model} has no validated version yet"
    return max(validated, key=lambda v: int(v["spec"]["version"])), None


def _validated(version: Obj) -> bool:
    return raw_condition(version.get("status"), "Validated").get("status") == "True"


def champion_argument(version: Obj) -> Obj:
    """What the training Job needs to re-score a champion (flywheel.training.champion)."""
    spec = version["spec"]
    return {
        "version": spec["version"],
        "uri": spec["artifact"]["uri"],
        "sha256": spec["artifact"]["sha256"],
        "features": spec["signature"]["features"],
        "classLabels": spec["signature"].get("classLabels"),
        "metrics": spec.get("metrics", {}),
    }


def pinned_from_job(job: Obj) -> PinnedDataset | None:
    """The dataset a training Job was created with (its annotations), if it carries them."""
    notes = job.get("metadata", {}).get("annotations", {})
    fields = [notes.get(f"{API_GROUP}/dataset-{key}") for key in _PIN_KEYS]
    if not all(fields):
        return None
    return PinnedDataset(*[str(f) for f in fields])


_PIN_KEYS = ("name", "version", "digest", "snapshot-uri", "stats-uri")
NO_CHAMPION = f"{API_GROUP}/no-champion"
"""Job annotation: why the `compareTo` gate had no champion when the run started."""


def job_name(run: str) -> str:
    """One Job per TrainingRun (the spec is immutable)."""
    return f"{run[:52]}-train"


def render_training_job(
    body: Obj,
    spec: TrainingRunSpec,
    pinned: PinnedDataset,
    settings: OperatorSettings,
    champion: Obj | None = None,
    no_champion: str | None = None,
) -> Obj:
    """The training Job: retries on crashes, none on a spec/code problem (podFailurePolicy).

    The pinned dataset is recorded in the Job's annotations too: if the operator stops between
    creating the Job and writing the run's status, the next step reads the pin from the Job.
    """
    meta = body["metadata"]
    claim = settings.artifacts_claim
    command = [
        "python",
        "-m",
        "flywheel.jobs.train",
        "--spec",
        json.dumps(spec.model_dump(by_alias=True, exclude_none=True, mode="json")),
        "--namespace",
        meta["namespace"],
        "--run",
        meta["name"],
        "--snapshot",
        pinned.snapshot_uri,
        "--digest",
        pinned.digest,
        "--claim",
        claim,
    ]
    if champion is not None:
        command += ["--champion", json.dumps(champion, separators=(",", ":"))]
    resources = (
        spec.resources.model_dump(by_alias=True, exclude_none=True, mode="json")
        if spec.resources
        else {
            "requests": {"cpu": settings.job_cpu, "memory": settings.job_memory},
            "limits": {"memory": settings.job_memory},
        }
    )
    labels = {
        "app.kubernetes.io/managed-by": "flywheel",
        "app.kubernetes.io/component": "train",
        f"{API_GROUP}/trainingrun": meta["name"],
        f"{API_GROUP}/model": spec.model,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": {
                f"{API_GROUP}/dataset-{key}": value
                for key, value in zip(
                    _PIN_KEYS,
                    (
                        pinned.name,
                        pinned.version,
                        pinned.digest,
                        pinned.snapshot_uri,
                        pinned.stats_uri,
                    ),
                    strict=True,
                )
            }
            | ({NO_CHAMPION: no_champion} if no_champion else {}),
            "ownerReferences": [owner_reference(body, "TrainingRun")],
        },
        "spec": {
            "backoffLimit": spec.backoff_limit,
            "activeDeadlineSeconds": spec.active_deadline_seconds,
            "ttlSecondsAfterFinished": 86400,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": "train",
                            "operator": "In",
                            "values": [NOT_RETRYABLE_EXIT],
                        },
                    }
                ]
            },
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",  # required by podFailurePolicy
                    "serviceAccountName": settings.job_service_account,
                    "automountServiceAccountToken": False,
                    "securityContext": RESTRICTED_POD,
                    "containers": [
                        {
                            "name": "train",
                            "image": settings.job_image,
                            "command": command,
                            "env": [
                                {"name": "HOME", "value": "/tmp"},
                                {"name": "OMP_NUM_THREADS", "value": "1"},
                            ],
                            "resources": resources,
                            "securityContext": RESTRICTED_CONTAINER,
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "volumeMounts": artifact_mounts(claim, str(MOUNT_ROOT)),
                        }
                    ],
                    "volumes": artifact_volumes(claim),
                },
            },
        },
    }


def next_version(existing: list[int]) -> int:
    """The next version number of a model (1 for the first)."""
    return max(existing, default=0) + 1


def model_version_name(model: str, version: int) -> str:
    """`<model>-v<N>`: deterministic, so a retried registration finds its own object."""
    return f"{model}-v{version}"


def render_model_version(
    run: Obj, spec: TrainingRunSpec, result: Obj, version: int, pinned: PinnedDataset
) -> Obj:
    """The immutable registry entry of a successful run."""
    meta = run["metadata"]
    signature = result["signature"]
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "ModelVersion",
        "metadata": {
            "name": model_version_name(spec.model, version),
            "namespace": meta["namespace"],
            "labels": {
                f"{API_GROUP}/model": spec.model,
                f"{API_GROUP}/version": str(version),
                f"{API_GROUP}/run-uid": meta["uid"],
                "app.kubernetes.io/managed-by": "flywheel",
            },
        },
        "spec": {
            "model": spec.model,
            "version": version,
            "artifact": {
                "uri": result["modelURI"],
                "format": "onnx",
                "sha256": result["sha256"],
                **({"examplesURI": result["examplesURI"]} if result.get("examplesURI") else {}),
            },
            "signature": {
                "task": signature["task"],
                "inputs": [
                    {
                        "name": f["name"],
                        "datatype": "FP32" if f["type"] == "numeric" else "BYTES",
                        "shape": [-1, 1],
                    }
                    for f in signature["features"]
                ],
                "outputs": (
                    [
                        {"name": "label", "datatype": "BYTES", "shape": [-1]},
                        {
                            "name": "probabilities",
                            "datatype": "FP32",
                            "shape": [-1, len(signature.get("classLabels") or [])],
                        },
                    ]
                    if signature["task"] == "classification"
                    else [{"name": "variable", "datatype": "FP32", "shape": [-1, 1]}]
                ),
                "features": signature["features"],
                **(
                    {"classLabels": signature["classLabels"]}
                    if signature.get("classLabels")
                    else {}
                ),
            },
            "lineage": {
                "trainingRun": meta["name"],
                "dataset": pinned.name,
                "datasetVersion": pinned.version,
                "datasetDigest": pinned.digest,
                "estimator": spec.estimator.final_class,
                "params": dict(spec.estimator.params),
                "seed": spec.split.seed,
                "libraries": result.get("libraries", {}),
            },
            "metrics": result["metrics"],
            "baseline": {"statsURI": pinned.stats_uri},
        },
    }
