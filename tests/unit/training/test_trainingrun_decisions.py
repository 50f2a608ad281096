"""Pure TrainingRun decisions: pinning, the Job, failure reasons, the ModelVersion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from flywheel.api.kinds import MODEL_VERSION
from flywheel.api.modelversion import ModelVersionSpec
from flywheel.api.trainingrun import TrainingRunSpec
from flywheel.controllers.trainingrun.decide import next_version
from flywheel.controllers.trainingrun.pinning import pin_dataset
from flywheel.controllers.trainingrun.render import (
    PinnedDataset,
    render_model_version,
    render_training_job,
)
from flywheel.core.conditions import Finding
from flywheel.core.target import parse_meta
from flywheel.interfaces.jobs import TrainArgs, TrainReport
from flywheel.settings import OperatorSettings
from tests.support.crdcheck import crd_schema, validate
from tests.support.examples import CRDS

SPEC = TrainingRunSpec.model_validate(
    yaml.safe_load(Path("examples/quickstart/02-trainingrun.yaml").read_text())["spec"]
)
V1 = {
    "version": "aaaaaaaaaaaa",
    "digest": "sha256:" + "a" * 64,
    "snapshotURI": "pvc://c/a/data.parquet",
    "statsURI": "pvc://c/a/stats.json",
}
V2 = {
    "version": "bbbbbbbbbbbb",
    "digest": "sha256:" + "b" * 64,
    "snapshotURI": "pvc://c/b/data.parquet",
    "statsURI": "pvc://c/b/stats.json",
}
READY = [{"type": "Ready", "status": "True"}]


def _dataset(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "iris"}, "status": status}


def test_pinning_waits_for_a_ready_dataset() -> None:
    assert pin_dataset(SPEC, None) == Finding("DatasetNotReady", "Dataset iris does not exist.")
    assert isinstance(pin_dataset(SPEC, _dataset()), Finding)
    pinned = pin_dataset(SPEC, _dataset(**V2, history=[V2, V1], conditions=READY))
    assert isinstance(pinned, PinnedDataset)
    assert pinned.digest == V2["digest"]


def test_pinning_an_explicit_version_from_history() -> None:
    spec = SPEC.model_copy(
        update={"dataset_ref": SPEC.dataset_ref.model_copy(update={"version": "aaaaaaaaaaaa"})}
    )
    pinned = pin_dataset(spec, _dataset(**V2, history=[V2, V1], conditions=READY))
    assert isinstance(pinned, PinnedDataset)
    assert pinned.snapshot_uri == V1["snapshotURI"]
    missing = spec.model_copy(
        update={"dataset_ref": SPEC.dataset_ref.model_copy(update={"version": "cccccccccccc"})}
    )
    assert isinstance(pin_dataset(missing, _dataset(**V2, history=[V2], conditions=READY)), Finding)


def _pinned() -> PinnedDataset:
    return PinnedDataset("iris", V1["version"], V1["digest"], V1["snapshotURI"], V1["statsURI"])


def test_the_job_does_not_retry_spec_problems() -> None:
    body = {"metadata": {"name": "iris-rf-1", "namespace": "ml", "uid": "u-1"}}
    job = render_training_job(parse_meta(body), SPEC, _pinned(), OperatorSettings())
    (rule,) = job["spec"]["podFailurePolicy"]["rules"]
    assert rule == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "train", "operator": "In", "values": [3]},
    }
    assert job["spec"]["backoffLimit"] == SPEC.backoff_limit
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--digest") + 1] == V1["digest"]
    assert TrainArgs.parse(command[3:]).spec == SPEC, "the Job parses what the operator renders"


def test_the_model_version_is_schema_valid_and_traceable() -> None:
    result = TrainReport.model_validate(
        {
            "sha256": "c" * 64,
            "modelURI": "pvc://c/models/ml/iris/iris-rf-1/model.onnx",
            "metrics": {"accuracy": 0.97},
            "libraries": {"scikit-learn": "1.9.1"},
            "signature": {
                "task": "classification",
                "classLabels": ["0", "1", "2"],
                "features": [{"name": "sepal length (cm)", "type": "numeric"}],
            },
        }
    )
    run = {"metadata": {"name": "iris-rf-1", "namespace": "ml", "uid": "u-1"}}
    version = next_version([1, 2])
    obj = render_model_version(parse_meta(run), SPEC, result, version, _pinned())
    assert obj["metadata"]["name"] == "iris-v3"
    assert obj["metadata"]["labels"]["flywheel.dev/run-uid"] == "u-1"
    ModelVersionSpec.model_validate(obj["spec"])
    assert validate(crd_schema(json.loads(json.dumps(_crd()))), obj) == []
    assert obj["spec"]["lineage"]["datasetDigest"] == V1["digest"]
    assert next_version([]) == 1


def _crd() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load((CRDS / f"{MODEL_VERSION.crd_name}.yaml").read_text())
    return crd
