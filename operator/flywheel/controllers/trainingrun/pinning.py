"""What a run is measured on and against: the Dataset version it pins and the champion its
`compareTo` gate re-scores. Pure functions over the objects the controller read."""

from __future__ import annotations

from flywheel.api.modelversion import FeatureSignature
from flywheel.api.trainingrun import TrainingRunSpec
from flywheel.controllers.trainingrun.render import PinnedDataset
from flywheel.core.conditions import Finding
from flywheel.core.objects import Obj, status_of
from flywheel.core.statuses import is_ready, is_validated, serving_version, version_number
from flywheel.interfaces.jobs import Champion

DATASET_NOT_READY = "DatasetNotReady"


def pin_dataset(spec: TrainingRunSpec, dataset: Obj | None) -> PinnedDataset | Finding:
    """The version to train on, or why the run must wait (`DatasetNotReady`)."""
    name = spec.dataset_ref.name
    if dataset is None:
        return Finding(DATASET_NOT_READY, f"Dataset {name} does not exist.")
    status = status_of(dataset)
    wanted = spec.dataset_ref.version
    records = [status, *(status.get("history") or [])]
    for record in records:
        if record.get("digest") and (
            wanted is None
            or str(record.get("version", "")).startswith(wanted)
            or record["digest"].removeprefix("sha256:").startswith(wanted)
        ):
            if wanted is None and not is_ready(dataset):
                break
            return PinnedDataset(
                name, record["version"], record["digest"], record["snapshotURI"], record["statsURI"]
            )
    if wanted is not None:
        return Finding(DATASET_NOT_READY, f"Dataset {name} has no version {wanted} in its history.")
    return Finding(DATASET_NOT_READY, f"Dataset {name} has no Ready version yet.")


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
        serving = serving_version(deployment)
        if serving is None:
            return None, f"ModelDeployment {reference.name} serves no version yet"
        match = [v for v in versions if version_number(v) == serving]
        if not match:
            return None, f"ModelDeployment {reference.name} serves v{serving}, which is not found"
        return match[0], None
    validated = [v for v in versions if is_validated(v)]
    if not validated:
        return None, f"model {spec.model} has no validated version yet"
    return max(validated, key=version_number), None


def champion_argument(version: Obj) -> Champion:
    """What the training Job needs to re-score a champion."""
    spec = version["spec"]
    return Champion(
        version=spec["version"],
        uri=spec["artifact"]["uri"],
        sha256=spec["artifact"]["sha256"],
        features=[FeatureSignature.model_validate(f) for f in spec["signature"]["features"]],
        class_labels=spec["signature"].get("classLabels"),
        metrics=spec.get("metrics", {}),
    )
