"""Pure builders of what the TrainingRun controller creates: the training Job and the
ModelVersion, with deterministic names."""

from __future__ import annotations

from dataclasses import dataclass

from flywheel.api.common import API_GROUP, API_VERSION
from flywheel.api.trainingrun import TrainingRunSpec
from flywheel.core.objects import Obj, annotations_of
from flywheel.core.podspec import (
    MANAGED_BY,
    RESTRICTED_CONTAINER,
    RESTRICTED_POD,
    artifact_mounts,
    artifact_volumes,
    container_resources,
    owner_reference,
)
from flywheel.core.statuses import RUN_UID
from flywheel.core.target import Meta
from flywheel.interfaces.jobs import (
    MOUNT_ROOT,
    Champion,
    ExitCode,
    PredictionCounts,
    TrainArgs,
    TrainReport,
)
from flywheel.settings import OperatorSettings

NO_CHAMPION = f"{API_GROUP}/no-champion"
"""Job annotation: why the `compareTo` gate had no champion when the run started."""
_PIN_KEYS = ("name", "version", "digest", "snapshot-uri", "stats-uri")


@dataclass(frozen=True)
class PinnedDataset:
    """The Dataset version a run trains on."""

    name: str
    version: str
    digest: str
    snapshot_uri: str
    stats_uri: str


def job_name(run: str) -> str:
    """One Job per TrainingRun (the spec is immutable)."""
    return f"{run[:52]}-train"


def model_version_name(model: str, version: int) -> str:
    """`<model>-v<N>`: deterministic, so a retried registration finds its own object."""
    return f"{model}-v{version}"


def pinned_from_job(job: Obj) -> PinnedDataset | None:
    """The dataset a training Job was created with (its annotations), if it carries them."""
    notes = annotations_of(job)
    fields = [notes.get(f"{API_GROUP}/dataset-{key}") for key in _PIN_KEYS]
    if not all(fields):
        return None
    return PinnedDataset(*[str(f) for f in fields])


def render_training_job(
    meta: Meta,
    spec: TrainingRunSpec,
    pinned: PinnedDataset,
    settings: OperatorSettings,
    champion: Champion | None = None,
    no_champion: str | None = None,
) -> Obj:
    """The training Job: retries on crashes, none on a spec/code problem (podFailurePolicy).

    The pinned dataset is recorded in the Job's annotations too: if the operator stops between
    creating the Job and writing the run's status, the next reconcile reads the pin from the Job.
    """
    claim = settings.artifacts_claim
    args = TrainArgs(
        spec=spec,
        namespace=meta.namespace,
        run=meta.name,
        snapshot=pinned.snapshot_uri,
        digest=pinned.digest,
        claim=claim,
        champion=champion,
        stats=pinned.stats_uri,
    )
    resources = container_resources(spec.resources, settings.job_cpu, settings.job_memory)
    labels = {
        **MANAGED_BY,
        "app.kubernetes.io/component": "train",
        f"{API_GROUP}/trainingrun": meta.name,
        f"{API_GROUP}/model": spec.model,
    }
    pin = (pinned.name, pinned.version, pinned.digest, pinned.snapshot_uri, pinned.stats_uri)
    notes = {f"{API_GROUP}/dataset-{k}": v for k, v in zip(_PIN_KEYS, pin, strict=True)}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(meta.name),
            "namespace": meta.namespace,
            "labels": labels,
            "annotations": notes | ({NO_CHAMPION: no_champion} if no_champion else {}),
            "ownerReferences": [owner_reference("TrainingRun", meta.name, meta.uid)],
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
                            "values": [int(ExitCode.NOT_RETRYABLE)],
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
                            "command": args.command(),
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


def model_version_baseline(stats_uri: str, predictions: PredictionCounts | None) -> Obj:
    """The drift baseline a ModelVersion records: the Dataset version's statistics and, when
    the training Job reported them, the model's own held-out predictions."""
    recorded = {"rows": predictions.rows, "counts": predictions.counts} if predictions else None
    return {"statsURI": stats_uri, **({"predictions": recorded} if recorded else {})}


def render_model_version(
    meta: Meta, spec: TrainingRunSpec, result: TrainReport, version: int, pinned: PinnedDataset
) -> Obj:
    """The immutable registry entry of a successful run."""
    signature = result.signature
    classes = signature.class_labels
    features = [f.model_dump(mode="json") for f in signature.features]
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "ModelVersion",
        "metadata": {
            "name": model_version_name(spec.model, version),
            "namespace": meta.namespace,
            "labels": {
                f"{API_GROUP}/model": spec.model,
                f"{API_GROUP}/version": str(version),
                RUN_UID: meta.uid,
                **MANAGED_BY,
            },
        },
        "spec": {
            "model": spec.model,
            "version": version,
            "artifact": {
                "uri": result.model_uri,
                "format": "onnx",
                "sha256": result.sha256,
                **({"examplesURI": result.examples_uri} if result.examples_uri else {}),
            },
            "signature": {
                "task": signature.task,
                "inputs": [
                    {
                        "name": f.name,
                        "datatype": "FP32" if f.type == "numeric" else "BYTES",
                        "shape": [-1, 1],
                    }
                    for f in signature.features
                ],
                "outputs": (
                    [
                        {"name": "label", "datatype": "BYTES", "shape": [-1]},
                        {
                            "name": "probabilities",
                            "datatype": "FP32",
                            "shape": [-1, len(classes or [])],
                        },
                    ]
                    if signature.task == "classification"
                    else [{"name": "variable", "datatype": "FP32", "shape": [-1, 1]}]
                ),
                "features": features,
                **({"classLabels": classes} if classes else {}),
            },
            "lineage": {
                "trainingRun": meta.name,
                "dataset": pinned.name,
                "datasetVersion": pinned.version,
                "datasetDigest": pinned.digest,
                "estimator": spec.estimator.final_class,
                "params": dict(spec.estimator.params),
                "seed": spec.split.seed,
                "libraries": result.libraries,
            },
            "metrics": result.metrics,
            "baseline": model_version_baseline(pinned.stats_uri, result.prediction_baseline),
        },
    }
