"""The TrainingRun kind: one training of a scikit-learn model on a pinned Dataset version.

A TrainingRun is like a Job template: its spec is immutable, and training again means creating a
new TrainingRun. A successful run exports ONNX, checks parity with scikit-learn, evaluates the
held-out split, applies the validation gates and registers exactly one ModelVersion.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import ConfigDict, Field, field_validator, model_validator

from flywheel.api.checks import DNS_LABEL, NameRule
from flywheel.api.common import (
    SPEC_FITS_A_JOB,
    ApiModel,
    DatasetName,
    DeploymentReference,
    ModelName,
    ObjectName,
    ResourceRequirements,
    Scalar,
    Sha256Hex,
    StatusBase,
    cel,
    validations,
)
from flywheel.api.estimators import (
    ESTIMATORS,
    TRANSFORMERS,
    ClassificationMetric,
    MetricName,
    RegressionMetric,
    task_of,
)

EstimatorPath = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        pattern=r"^sklearn(\.[a-z_][a-z0-9_]*)+\.[A-Z][A-Za-z0-9]*$",
    ),
]
ParamName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z_][a-z0-9_]*$")]
Params = Annotated[
    dict[ParamName, Scalar],
    Field(max_length=64),
]
Task = Literal["classification", "regression"]

NAME_RULE = NameRule(
    63,
    DNS_LABEL,
    "it is the value of the label flywheel.dev/trainingrun on its training Job and pods, and "
    "the Job is named after its first 52 characters (`<name>-train`)",
)
"""TrainingRun names: a label value (63 characters at most); the Job `<name[:52]>-train` (58)
must not cut the name after a dot, hence no dots."""


class DatasetReference(ApiModel):
    """The Dataset to train on, and optionally the exact version."""

    name: DatasetName
    """The Dataset's name, in the same namespace."""

    version: Annotated[str, Field(min_length=12, max_length=64, pattern=r"^[a-f0-9]+$")] | None = (
        None
    )
    """A version (short digest) from the Dataset's history. When omitted, the Dataset's current
    Ready version at the start of the run is pinned in `status.datasetVersion`."""


class PipelineStep(ApiModel):
    """One step of a custom pipeline: an allow-listed scikit-learn class and its parameters."""

    class_: EstimatorPath = Field(alias="class")
    """The import path, e.g. `sklearn.preprocessing.StandardScaler`."""

    params: Params = Field(default_factory=dict)
    """Constructor parameters (scalars only)."""


class Estimator(ApiModel):
    """The model to fit: one allow-listed estimator, or a pipeline of steps ending in one."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.class) != has(self.steps)",
                "estimator needs exactly one of class and steps",
            )
        )
    )

    class_: EstimatorPath | None = Field(default=None, alias="class")
    """The import path of a scikit-learn estimator, e.g.
    `sklearn.ensemble.RandomForestClassifier`. Only allow-listed estimators that export to ONNX
    are accepted."""

    params: Params = Field(default_factory=dict)
    """Constructor parameters of the estimator, e.g. `{n_estimators: 100, max_depth: 5}`."""

    steps: list[PipelineStep] | None = Field(default=None, min_length=1, max_length=16)
    """A custom pipeline: transformers followed by a final estimator. Features are still
    one-hot encoded / passed through by type before the first step."""

    @field_validator("class_")
    @classmethod
    def _allow_listed(cls, value: str | None) -> str | None:
        if value is not None and value not in ESTIMATORS:
            raise ValueError(
                f"estimator {value} is not in the allow-list of ONNX-exportable estimators"
            )
        return value

    @field_validator("steps")
    @classmethod
    def _steps_allow_listed(cls, steps: list[PipelineStep] | None) -> list[PipelineStep] | None:
        if steps is None:
            return None
        *transformers, final = steps
        for step in transformers:
            if step.class_ not in TRANSFORMERS:
                raise ValueError(f"pipeline step {step.class_} is not an allow-listed transformer")
        if final.class_ not in ESTIMATORS:
            raise ValueError(
                f"the last pipeline step {final.class_} is not an allow-listed estimator"
            )
        return steps

    @property
    def final_class(self) -> str:
        """The import path of the estimator that makes the predictions."""
        if self.steps:
            return self.steps[-1].class_
        assert self.class_ is not None  # guaranteed by the CEL rule and the validators
        return self.class_


class Preprocessing(ApiModel):
    """How features are prepared by type before the estimator."""

    scale_numeric: bool = False
    """Standardise numeric features (zero mean, unit variance). Categorical features are always
    one-hot encoded, with unknown categories ignored at prediction time."""


class Split(ApiModel):
    """How the snapshot is split into training and held-out rows."""

    test_fraction: float = Field(default=0.2, ge=0.05, le=0.9)
    """The share of rows held out for evaluation and validation gates."""

    seed: int = Field(default=42, ge=0, le=4_294_967_295)
    """The random seed of the split and of the estimator (when it takes `random_state`)."""

    stratify: bool = True
    """Keep class proportions in both parts (classification only)."""


class Threshold(ApiModel):
    """An absolute bound on one held-out metric, e.g. `accuracy >= 0.9` or `rmse <= 3`."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("has(self.min) || has(self.max)", "a threshold needs min or max"),
            cel(
                "!has(self.min) || !has(self.max) || self.min <= self.max",
                "min must not be greater than max",
            ),
        )
    )

    metric: MetricName
    """The metric to check."""

    min: float | None = None
    """The lowest acceptable value."""

    max: float | None = None
    """The highest acceptable value."""


class ChampionComparison(ApiModel):
    """Compare the new model with the current champion on the same held-out rows."""

    deployment_ref: DeploymentReference | None = None
    """The ModelDeployment whose serving version is the champion. When omitted, the champion is
    the latest validated version of the same model."""

    metric: MetricName
    """The metric compared. Direction aware: lower is better for log_loss, mae and rmse."""

    min_improvement: float = Field(default=0.0, ge=0)
    """How much better the new model must be. 0 means at least as good."""

    mode: Literal["Absolute", "Relative"] = "Absolute"
    """`Absolute`: a difference in metric units. `Relative`: a fraction of the champion's value."""


class ValidationGates(ApiModel):
    """Gates a trained model must pass to be `Validated`; only validated versions are deployed."""

    thresholds: list[Threshold] | None = Field(default=None, max_length=16)
    """Absolute bounds on held-out metrics."""

    compare_to: ChampionComparison | None = None
    """A comparison with the champion. A model with no champion passes it."""


class TrainingRunSpec(ApiModel):
    """The desired training. Immutable once created."""

    cel_checks = (SPEC_FITS_A_JOB,)

    @model_validator(mode="after")
    def _metrics_fit_the_task(self) -> TrainingRunSpec:
        estimator_task = task_of(self.estimator.final_class)
        if self.task is not None and estimator_task is not None and self.task != estimator_task:
            estimator = self.estimator.final_class
            raise ValueError(f"task is {self.task} but {estimator} is a {estimator_task} estimator")
        task = self.task or estimator_task
        if task is None:
            return self
        allowed = set(
            get_args(ClassificationMetric if task == "classification" else RegressionMetric)
        )
        named = [("metrics", m) for m in self.metrics or ()]
        gates = self.validation
        named += [
            ("validation.thresholds", t.metric) for t in (gates.thresholds if gates else None) or ()
        ]
        if gates is not None and gates.compare_to is not None:
            named.append(("validation.compareTo.metric", gates.compare_to.metric))
        wrong = [f"{where}: {metric}" for where, metric in named if metric not in allowed]
        if wrong:
            raise ValueError(
                f"{', '.join(wrong)} cannot be computed for a {task} model "
                f"({self.estimator.final_class}); {task} metrics are {', '.join(sorted(allowed))}"
            )
        return self

    model: ModelName
    """The registered model this run produces a version of."""

    dataset_ref: DatasetReference
    """The Dataset to train on."""

    estimator: Estimator
    """What to fit."""

    task: Task | None = None
    """`classification` or `regression`. Inferred from the estimator when omitted."""

    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    """How features are prepared by type."""

    split: Split = Field(default_factory=Split)
    """The train/held-out split."""

    metrics: list[MetricName] | None = Field(default=None, max_length=16)
    """Held-out metrics to compute. Defaults: accuracy, f1_macro and roc_auc for classifiers;
    mae, rmse and r2 for regressors. Metrics named by gates are always computed."""

    validation: ValidationGates | None = None
    """Gates for the `Validated` verdict of the registered ModelVersion."""

    resources: ResourceRequirements | None = None
    """Resources of the training container. Defaults come from the operator settings."""

    backoff_limit: int = Field(default=2, ge=0, le=10)
    """Retries of the training pod on failures other than invalid input."""

    active_deadline_seconds: int = Field(default=3600, ge=30, le=604_800)
    """How long the training Job may run before it fails with `DeadlineExceeded`."""


class GateCheck(ApiModel):
    """The outcome of one validation gate."""

    name: Annotated[str, Field(max_length=253)]
    """What was checked, e.g. `accuracy >= 0.9` or `f1_macro vs champion v3`."""

    metric: Annotated[str, Field(max_length=63)]
    """The metric checked."""

    observed: float | None = None
    """The new model's value (absent when it was not computed)."""

    bound: float | None = None
    """The value it was compared with (absent when there is nothing to compare with)."""

    passed: bool
    """Whether the check passed."""

    message: Annotated[str, Field(max_length=1024)]
    """A sentence explaining the outcome."""


class ValidationVerdict(ApiModel):
    """The result of the validation gates."""

    passed: bool
    """Whether every check passed."""

    checks: list[GateCheck] = Field(default_factory=list, max_length=32)
    """Each check with its observed value, bound and outcome."""

    champion_version: int | None = Field(default=None, ge=1)
    """The champion version compared with, if any."""


class RegisteredVersion(ApiModel):
    """The ModelVersion a run registered, written by the operator only."""

    name: ObjectName
    """The ModelVersion's name."""

    sha256: Sha256Hex | None = None
    """The sha256 of the artifact it registered."""


class TrainingRunStatus(StatusBase):
    """The observed state of a TrainingRun. Conditions: Ready, Reconciling, Stalled, Succeeded."""

    job_name: Annotated[str, Field(max_length=63)] | None = None
    """The training Job."""

    start_time: datetime | None = None
    """When the training Job was created."""

    completion_time: datetime | None = None
    """When the run succeeded or failed."""

    attempts: int | None = Field(default=None, ge=0)
    """Training pods started so far."""

    dataset_version: Annotated[str, Field(max_length=64)] | None = None
    """The Dataset version pinned at start."""

    dataset_digest: Annotated[str, Field(max_length=71)] | None = None
    """The sha256 of the pinned snapshot."""

    metrics: dict[Annotated[str, Field(max_length=63)], float] | None = Field(
        default=None, max_length=32
    )
    """Held-out metrics of the trained model."""

    model_version_ref: RegisteredVersion | None = None
    """The ModelVersion registered by this run, with its artifact's sha256: the only version
    this run vouches for (a ModelVersion naming this run is validated only if both match)."""

    validation: ValidationVerdict | None = None
    """The validation gates' verdict, copied to the registered ModelVersion's status."""
