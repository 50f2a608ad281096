"""The five kinds as data: names, spec and status types, printer columns, subresources.

This table is the single description of the API surface. The CRD generator
(:mod:`flywheel.crdgen`) renders it into `crds/`, and the handlers use it to register one
reconciler per kind.
"""

from __future__ import annotations

from dataclasses import dataclass

from flywheel.api import dataset, modeldeployment, modelmonitor, trainingrun
from flywheel.api.checks import NameRule
from flywheel.api.common import API_GROUP, API_VERSION, ApiModel, StatusBase
from flywheel.api.dataset import DatasetSpec, DatasetStatus
from flywheel.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from flywheel.api.modelmonitor import ModelMonitorSpec, ModelMonitorStatus
from flywheel.api.modelversion import ModelVersionSpec, ModelVersionStatus
from flywheel.api.trainingrun import TrainingRunSpec, TrainingRunStatus

CATEGORY = "flywheel"


@dataclass(frozen=True)
class PrinterColumn:
    """A column of `kubectl get`."""

    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class Kind:
    """Everything the CRD and the operator need to know about one kind."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    description: str
    spec: type[ApiModel]
    status: type[StatusBase]
    columns: tuple[PrinterColumn, ...]
    spec_rules: tuple[dict[str, str], ...] = ()
    """CEL rules on the whole spec that belong to this kind only (not to embedded copies)."""
    scale: dict[str, str] | None = None
    """The scale subresource's paths, for kinds that `kubectl scale` and an HPA can drive."""
    name_rule: NameRule | None = None
    """What `metadata.name` must be for every child name and label value derived from it to
    fit (a root-level CEL rule in the CRD); None: Kubernetes' own rule (a DNS-1123 subdomain)."""
    root_rules: tuple[dict[str, str], ...] = ()
    """CEL rules on the whole object (they may read `metadata.name` and the spec together)."""
    outcome_condition: str | None = None
    """A condition that says how the object ended (TrainingRun: `Succeeded`); an invalid spec
    sets it False too, since that spec can never succeed."""

    @property
    def singular(self) -> str:
        """The lower-case singular name."""
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        """The CustomResourceDefinition's name."""
        return f"{self.plural}.{API_GROUP}"

    @property
    def api_version(self) -> str:
        """The `apiVersion` of objects of this kind."""
        return f"{API_GROUP}/{API_VERSION}"


def _condition(type_: str, field: str = "status") -> str:
    return f'.status.conditions[?(@.type=="{type_}")].{field}'


# Reason and Message come from `Ready`, which every path writes (the first visit, an invalid
# spec, a refused permission), so they are never blank while the kind's own conditions are
# not written yet. A column shows no number of the operator's that can have many digits:
# printer columns cannot round, so a metric is shown as a status string the operator writes
# rounded to 4 significant digits (ModelVersion `status.keyMetric`).
READY = PrinterColumn("Ready", _condition("Ready"), description="Whether the object is ready.")
REASON = PrinterColumn("Reason", _condition("Ready", "reason"), description="Why, in one word.")
MESSAGE = PrinterColumn(
    "Message", _condition("Ready", "message"), description="Why, in a sentence.", priority=1
)
AGE = PrinterColumn("Age", ".metadata.creationTimestamp", type="date")

DATASET = Kind(
    kind="Dataset",
    plural="datasets",
    short_names=("fwds",),
    description="A data source ingested, validated and published as content-addressed versions "
    "with per-feature statistics (the drift baseline).",
    spec=DatasetSpec,
    status=DatasetStatus,
    name_rule=dataset.NAME_RULE,
    columns=(
        READY,
        REASON,
        PrinterColumn("Version", ".status.version", description="The current version."),
        PrinterColumn("Rows", ".status.rows", type="integer", description="Rows."),
        PrinterColumn("Source", ".spec.source.uri", priority=1, description="The source."),
        MESSAGE,
        AGE,
    ),
)

TRAINING_RUN = Kind(
    kind="TrainingRun",
    plural="trainingruns",
    short_names=("fwtr",),
    description="One training of a scikit-learn model on a pinned Dataset version, exported to "
    "ONNX, evaluated, gated and registered as a ModelVersion. Immutable.",
    spec=TrainingRunSpec,
    status=TrainingRunStatus,
    name_rule=trainingrun.NAME_RULE,
    outcome_condition="Succeeded",
    columns=(
        PrinterColumn("Model", ".spec.model", description="The registered model."),
        PrinterColumn("Dataset", ".spec.datasetRef.name", description="The Dataset."),
        PrinterColumn(
            "Succeeded", _condition("Succeeded"), description="Whether the run succeeded."
        ),
        REASON,
        PrinterColumn(
            "ModelVersion", ".status.modelVersionRef.name", description="The registered version."
        ),
        READY,
        MESSAGE,
        AGE,
    ),
    spec_rules=(
        {
            "rule": "self == oldSelf",
            "message": "TrainingRun spec is immutable; create a new TrainingRun to train again",
        },
    ),
)

MODEL_VERSION = Kind(
    kind="ModelVersion",
    plural="modelversions",
    short_names=("fwmv",),
    description="An immutable registry entry: the ONNX artifact with its sha256, signature, "
    "lineage and metrics; the validation verdict and serving deployments in status.",
    spec=ModelVersionSpec,
    status=ModelVersionStatus,
    root_rules=(
        {
            # (string(int) has no cost bound for the API server: the number is parsed instead)
            "rule": "self.metadata.name.startsWith(self.spec.model + '-v') && "
            "self.metadata.name.matches('-v[1-9][0-9]{0,6}$') && "
            "int(self.metadata.name.substring(size(self.spec.model) + 2)) == self.spec.version",
            "message": "metadata.name must be <spec.model>-v<spec.version> (e.g. iris-v3): one "
            "name per version number, so no second object can claim a version's number",
        },
    ),
    columns=(
        PrinterColumn("Model", ".spec.model", description="The registered model."),
        PrinterColumn("Version", ".spec.version", type="integer", description="The version."),
        PrinterColumn("Validated", _condition("Validated"), description="Whether gates passed."),
        PrinterColumn(
            "Key Metric",
            ".status.keyMetric",
            description="The metric the gates judged first, as name=value (4 significant digits).",
        ),
        READY,
        PrinterColumn(
            "Reason",
            _condition("Validated", "reason"),
            description="Why the version is or is not validated, in one word.",
            priority=1,
        ),
        PrinterColumn(
            "Message", _condition("Validated", "message"), description="The verdict.", priority=1
        ),
        AGE,
    ),
    spec_rules=(
        {
            "rule": "self == oldSelf",
            "message": "ModelVersion spec is immutable; register a new version instead",
        },
    ),
)

MODEL_DEPLOYMENT = Kind(
    kind="ModelDeployment",
    plural="modeldeployments",
    short_names=("fwmd",),
    description="Serves a ModelVersion with onnxruntime pods over the Open Inference Protocol v2, "
    "with autoscaling and safe rollouts.",
    spec=ModelDeploymentSpec,
    status=ModelDeploymentStatus,
    name_rule=modeldeployment.NAME_RULE,
    columns=(
        PrinterColumn("Model", ".spec.model", description="The registered model."),
        PrinterColumn("Policy", ".spec.policy", description="Pinned or LatestValidated."),
        PrinterColumn(
            "Serving", ".status.servingVersion", type="integer", description="The version served."
        ),
        PrinterColumn(
            "Ready",
            ".status.readyReplicasText",
            description="Ready serving pods of those wanted, e.g. 2/3.",
        ),
        REASON,
        PrinterColumn("Endpoint", ".status.endpoint", priority=1, description="The endpoint."),
        MESSAGE,
        AGE,
    ),
    scale={
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    },
)

MODEL_MONITOR = Kind(
    kind="ModelMonitor",
    plural="modelmonitors",
    short_names=("fwmm",),
    description="Measures data drift, prediction drift and labelled performance of a "
    "ModelDeployment from its serving metrics, and retrains with guardrails.",
    spec=ModelMonitorSpec,
    status=ModelMonitorStatus,
    name_rule=modelmonitor.NAME_RULE,
    columns=(
        PrinterColumn("Deployment", ".spec.deploymentRef.name", description="What is watched."),
        PrinterColumn("Mode", ".spec.mode", description="Auto or Suggest."),
        PrinterColumn("Drift", _condition("DriftDetected"), description="Whether drift is seen."),
        PrinterColumn(
            "Samples",
            ".status.lastEvaluation.samples",
            type="integer",
            description="Predictions in the last window.",
        ),
        READY,
        REASON,
        PrinterColumn(
            "Decision",
            ".status.lastDecision.reason",
            description="The latest retraining decision's reason (a trigger or a guardrail).",
            priority=1,
        ),
        MESSAGE,
        AGE,
    ),
)

KINDS: tuple[Kind, ...] = (DATASET, TRAINING_RUN, MODEL_VERSION, MODEL_DEPLOYMENT, MODEL_MONITOR)
KINDS_BY_NAME = {k.kind: k for k in KINDS}
