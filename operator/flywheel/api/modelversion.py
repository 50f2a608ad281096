"""The ModelVersion kind: the registry entry of one trained model.

A ModelVersion is created by the TrainingRun controller and is immutable: the ONNX artifact's URI
and sha256, the model signature, the lineage back to the dataset digest, and the held-out metrics.
Serving verifies the sha256 before it reports ready. The validation verdict and the list of
deployments serving the version live in `status`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from flywheel.api.common import (
    ApiModel,
    ArtifactUri,
    ColumnName,
    ModelName,
    ObjectName,
    Scalar,
    Sha256Hex,
    ShortText,
    StatusBase,
)
from flywheel.api.dataset import Digest, FeatureType
from flywheel.api.trainingrun import Task, ValidationVerdict

TensorDatatype = Literal["BOOL", "INT32", "INT64", "FP32", "FP64", "BYTES"]


class Artifact(ApiModel):
    """The serialized model."""

    uri: ArtifactUri
    """Where the model file is stored: `pvc://<claim>/<path>` (a PersistentVolumeClaim in this
    namespace, e.g. `pvc://flywheel-artifacts/models/ns/iris/run-1/model.onnx`) or
    `file:///<path>` (inside the serving image)."""

    format: Literal["onnx"] = "onnx"
    """The file format. Only ONNX is served: serving never unpickles."""

    sha256: Sha256Hex
    """The sha256 of the file; serving refuses to become ready when it does not match."""

    examples_uri: ArtifactUri | None = Field(default=None, alias="examplesURI")
    """Held-out rows with the predictions recorded at training (`examples.json`, format
    flywheel.dev/examples/v1): what any server of this version must answer for them."""


class TensorSpec(ApiModel):
    """One input or output tensor of the ONNX graph."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    """The tensor name in the graph."""

    datatype: TensorDatatype
    """The element type, named as in the Open Inference Protocol."""

    shape: list[int] = Field(max_length=8)
    """The shape; -1 marks a dynamic dimension such as the batch."""


class FeatureSignature(ApiModel):
    """One model input feature, in column order."""

    name: ColumnName
    """The feature (column) name."""

    type: FeatureType
    """`numeric` or `categorical`."""


class Signature(ApiModel):
    """What the model takes and returns."""

    task: Task
    """`classification` or `regression`."""

    inputs: list[TensorSpec] = Field(min_length=1, max_length=512)
    """Input tensors of the ONNX graph."""

    outputs: list[TensorSpec] = Field(min_length=1, max_length=16)
    """Output tensors of the ONNX graph (label, probabilities or value)."""

    features: list[FeatureSignature] = Field(
        min_length=1,
        max_length=512,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """The input features in order, with their types."""

    class_labels: list[ShortText] | None = Field(default=None, max_length=1024)
    """The class labels of a classifier, in output order."""


class Lineage(ApiModel):
    """Where the model came from: run, data, code and libraries."""

    training_run: ObjectName
    """The TrainingRun that produced the model."""

    dataset: ObjectName
    """The Dataset it was trained on."""

    dataset_version: Annotated[str, Field(max_length=64)]
    """The Dataset version (short digest)."""

    dataset_digest: Digest
    """The sha256 of the dataset snapshot."""

    estimator: Annotated[str, Field(max_length=200)]
    """The import path of the final estimator."""

    params: dict[Annotated[str, Field(max_length=63)], Scalar] = Field(
        default_factory=dict, max_length=64
    )
    """The estimator's parameters."""

    seed: int | None = Field(default=None, ge=0)
    """The random seed of the split and the estimator."""

    libraries: dict[Annotated[str, Field(max_length=63)], Annotated[str, Field(max_length=63)]] = (
        Field(default_factory=dict, max_length=32)
    )
    """Versions of the libraries that trained and exported the model, e.g. `scikit-learn: 1.6.1`."""


class PredictionBaseline(ApiModel):
    """The model's own predictions on the training run's held-out rows, counted in the slots
    the serving pods count live predictions in."""

    rows: int = Field(ge=0, le=2**53)
    """The held-out rows predicted; the counts sum to it."""

    counts: dict[ShortText, Annotated[int, Field(ge=0, le=2**53)]] = Field(max_length=1024)
    """Predictions per slot, every slot present (zeros included): per class label of
    `signature.classLabels` (a classifier, as `flywheel_predictions_total{class}`), or per
    position of the label histogram in `statsURI`, `0` (underflow) to `B+1` (overflow) and `null`
    (a regressor, as `flywheel_prediction_values_total{bin}`). A map: its order is not kept."""


class Baseline(ApiModel):
    """The statistics that drift is measured against."""

    stats_uri: ArtifactUri = Field(alias="statsURI")
    """The training dataset's statistics (format flywheel.dev/stats/v1); serving bins its
    per-feature metrics on these edges."""

    predictions: PredictionBaseline | None = None
    """The model's own predictions on the training run's held-out rows, in the serving slots:
    the prediction-drift baseline; absent for versions registered before this field or without
    held-out rows (and for a regressor whose label has no histogram)."""


class ModelVersionSpec(ApiModel):
    """An immutable registry entry."""

    model: ModelName
    """The registered model name."""

    version: int = Field(ge=1, le=1_000_000)
    """The version number, increasing per model from 1."""

    artifact: Artifact
    """The ONNX file and its digest."""

    signature: Signature
    """Inputs, outputs and features."""

    lineage: Lineage
    """Run, data and libraries."""

    metrics: dict[Annotated[str, Field(max_length=63)], float] = Field(
        default_factory=dict, max_length=32
    )
    """Held-out metrics computed by the training run."""

    baseline: Baseline
    """The drift baseline."""


class DeploymentLink(ApiModel):
    """A ModelDeployment serving this version."""

    name: ObjectName
    """The ModelDeployment's name."""


class Approval(ApiModel):
    """A person's approval of a ModelVersion no TrainingRun vouches for (an imported model).

    Written with `kubectl patch modelversion <name> --subresource=status --type=merge`, which
    needs `patch` on `modelversions/status`: the `flywheel-approver` role grants it, the
    aggregated `edit` role does not. The approval holds only for the artifact digest it names.
    """

    sha256: Sha256Hex
    """The artifact digest approved; must equal `spec.artifact.sha256`."""

    approved_by: Annotated[str, Field(min_length=1, max_length=253)]
    """Who approved (a person or team, for the audit trail)."""

    comment: Annotated[str, Field(max_length=1024)] | None = None
    """Why: e.g. the evaluation the approver looked at."""


class VouchedBy(ApiModel):
    """The run whose verdict `Validated` copies, and the digest it vouched for."""

    training_run: ObjectName
    """The TrainingRun's name."""

    uid: Annotated[str, Field(max_length=64)]
    """Its UID (the version's `flywheel.dev/run-uid` label)."""

    sha256: Sha256Hex
    """The artifact digest the run registered."""


class ModelVersionStatus(StatusBase):
    """The observed state of a ModelVersion. Conditions: Ready, Reconciling, Stalled, Validated."""

    vouched_by: VouchedBy | None = None
    """The run that vouched for this version and digest (written with its verdict)."""

    approval: Approval | None = None
    """An approver's sign-off for a version no TrainingRun vouches for (see `Approval`)."""

    validation: ValidationVerdict | None = None
    """The validation verdict and its checks."""

    key_metric: Annotated[str, Field(max_length=100)] | None = None
    """The metric that matters most, with its value, e.g. `accuracy=0.974`: the one the gates
    judged first, else the first one computed. Shown by `kubectl get modelversions`."""

    deployments: list[DeploymentLink] | None = Field(
        default=None,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """The ModelDeployments currently serving this version."""
