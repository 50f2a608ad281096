"""The ModelDeployment kind: serve a ModelVersion over the Open Inference Protocol v2.

The operator renders a Deployment of onnxruntime serving pods, a Service and, with `autoscaling`,
a HorizontalPodAutoscaler. `version` pins a version; `policy: LatestValidated` follows the newest
validated one. New versions roll out with zero unavailable pods and roll back on failure.
"""

from __future__ import annotations

from typing import Annotated, Literal

from annotated_types import MaxLen
from pydantic import ConfigDict, Field

from flywheel.api.checks import DNS_1035_LABEL, Check, NameRule, Rules
from flywheel.api.common import (
    ApiModel,
    LabelKey,
    ModelName,
    ResourceRequirements,
    ShortText,
    StatusBase,
    cel,
    validations,
)

VersionPolicy = Literal["Pinned", "LatestValidated"]

SERVING_SUFFIX = "-serving"
NAME_RULE = NameRule(
    63 - len(SERVING_SUFFIX),
    DNS_1035_LABEL,
    "its Service, Deployment and HorizontalPodAutoscaler are named `<name>-serving`, and a "
    "Service name is a DNS-1035 label of at most 63 characters",
)
"""ModelDeployment names: `<name>-serving` names the Service (a DNS-1035 label, 63 at most),
the Deployment and the HPA; the name is also the value of the labels
`app.kubernetes.io/instance` and `flywheel.dev/modeldeployment` of the serving pods."""


class Autoscaling(ApiModel):
    """Horizontal autoscaling on CPU; the operator then leaves the replica count to the HPA."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.minReplicas <= self.maxReplicas",
                "autoscaling.minReplicas must not be greater than maxReplicas",
            )
        )
    )

    min_replicas: int = Field(default=1, ge=1, le=100)
    """The fewest serving pods."""

    max_replicas: int = Field(ge=1, le=100)
    """The most serving pods."""

    target_cpu_utilization_percentage: int = Field(default=80, ge=1, le=100)
    """The average CPU utilisation (of requests) the HPA aims for."""


class ServingOptions(ApiModel):
    """Options of the model server."""

    max_batch_size: int = Field(default=1, ge=1, le=1024)
    """Adaptive batching: concurrent requests are merged into one inference of at most this many
    rows. 1 turns batching off."""

    max_batch_latency_ms: int = Field(default=2, ge=0, le=1000)
    """How long a request may wait for others to fill a batch."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """The server's log level."""

    monitoring: bool = True
    """Export per-feature and prediction histograms binned on the training baseline (needed by a
    ModelMonitor)."""


class Rollout(ApiModel):
    """How a new version replaces the serving one."""

    progress_deadline_seconds: int = Field(default=180, ge=10, le=3600)
    """How long new pods may take to become ready before the rollout is rolled back to the last
    good version."""

    max_surge: int = Field(default=1, ge=1, le=100)
    """Extra pods started during a rollout; no serving pod is removed before its replacement is
    ready."""


class TopologySpread(ApiModel):
    """One topology spread constraint of the serving pods, as in a Pod spec. The operator
    selects the serving pods of this ModelDeployment (`labelSelector`) and adds
    `matchLabelKeys: [pod-template-hash]`, so during a rollout only pods of the same revision
    are counted."""

    cel_checks = (
        Check(
            "!has(self.minDomains) || self.whenUnsatisfiable == 'DoNotSchedule'",
            "minDomains is only allowed with whenUnsatisfiable: DoNotSchedule",
            lambda found: found.min_domains is None or found.when_unsatisfiable == "DoNotSchedule",
        ),
    )

    topology_key: LabelKey
    """The node label whose values are the domains to spread over, e.g. `kubernetes.io/hostname`
    (each node) or `topology.kubernetes.io/zone` (each zone). Nodes without the label take no
    serving pod under `DoNotSchedule` and are the least preferred under `ScheduleAnyway`."""

    max_skew: int = Field(default=1, ge=1, le=100)
    """How much the number of serving pods may differ between two domains."""

    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]
    """`DoNotSchedule` keeps a pod Pending rather than exceed `maxSkew` (a hard rule);
    `ScheduleAnyway` schedules it anyway, preferring the nodes that reduce the skew (a
    preference)."""

    min_domains: int | None = Field(default=None, ge=1, le=100)
    """With `DoNotSchedule` only: the fewest domains to spread over. While fewer eligible
    domains exist, the skew is counted against an empty one, so pods beyond `maxSkew` per domain
    stay Pending until more domains appear (e.g. nodes added by a cluster autoscaler)."""


def _unique_topology_keys(found: list[TopologySpread]) -> bool:
    return len({c.topology_key for c in found}) == len(found)


TopologySpreadConstraints = Annotated[
    list[TopologySpread],
    MaxLen(8),
    Rules(
        Check(
            "self.all(a, self.exists_one(b, b.topologyKey == a.topologyKey))",
            "each topologyKey may appear only once",
            _unique_topology_keys,
        )
    ),
]
"""At most 8 topology spread constraints, each on its own topology key."""


def _cpu_for_autoscaling(spec: ModelDeploymentSpec) -> bool:
    if spec.autoscaling is None or spec.resources is None:
        return True
    return "cpu" in (spec.resources.requests or {}) or "cpu" in (spec.resources.limits or {})


class ModelDeploymentSpec(ApiModel):
    """The desired serving of a model."""

    cel_checks = (
        Check(
            "!has(self.autoscaling) || !has(self.resources) || (has(self.resources.requests) && "
            "'cpu' in self.resources.requests) || (has(self.resources.limits) && "
            "'cpu' in self.resources.limits)",
            "autoscaling targets a share of the pods' CPU request: resources must request cpu "
            "(or limit it), or be left to the operator's defaults",
            _cpu_for_autoscaling,
        ),
    )

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.policy != 'Pinned' || has(self.version)",
                "version is required when policy is Pinned",
            ),
            cel(
                "self.policy != 'LatestValidated' || !has(self.version)",
                "version must not be set when policy is LatestValidated",
            ),
        )
    )

    model: ModelName
    """The registered model to serve."""

    version: int | None = Field(default=None, ge=1, le=1_000_000)
    """The version to serve (with `policy: Pinned`). It must be validated."""

    policy: VersionPolicy = "Pinned"
    """`Pinned` serves `version`; `LatestValidated` serves the newest validated ModelVersion of
    the model and rolls out new ones as they are validated."""

    replicas: int = Field(default=1, ge=0, le=100)
    """Serving pods, when `autoscaling` is not set. Works with `kubectl scale`."""

    autoscaling: Autoscaling | None = None
    """CPU-based autoscaling."""

    resources: ResourceRequirements | None = None
    """Resources of the serving container. Defaults come from the operator settings. With
    `autoscaling`, they must request (or limit) cpu."""

    topology_spread_constraints: TopologySpreadConstraints | None = None
    """How the serving pods spread over nodes and zones, e.g. a hard spread over nodes
    (`topologyKey: kubernetes.io/hostname`, `whenUnsatisfiable: DoNotSchedule`). Omitted or
    empty: the operator renders none, and the scheduler's cluster-wide defaults apply (unless
    the cluster configures others, preferences for other nodes, `maxSkew` 3, and other zones,
    `maxSkew` 5, which nodes without a zone label do not defeat). Part of the pod template: a
    change rolls the serving pods."""

    serving: ServingOptions = Field(default_factory=ServingOptions)
    """Model server options."""

    rollout: Rollout = Field(default_factory=Rollout)
    """How new versions roll out."""


class FailedRollout(ApiModel):
    """A version whose pods did not become ready in time, and was rolled back."""

    version: int = Field(ge=1)
    """The version that failed."""

    generation: int = Field(ge=0)
    """The spec generation it failed under. It is not tried again until the spec changes
    (`LatestValidated` then moves on only to a newer validated version)."""

    spec_digest: Annotated[str, Field(max_length=64)] | None = None
    """A digest of the spec without `replicas` and `autoscaling`: scaling does not try the
    failed version again; any other spec change (resources, version, policy, spread) does."""

    reason: Annotated[str, Field(max_length=128)]
    """Why, in one word: the pods' reason, e.g. `ArtifactDigestMismatch` or `CrashLoopBackOff`."""

    message: Annotated[str, Field(max_length=4096)]
    """What the pods reported."""


class ModelDeploymentStatus(StatusBase):
    """The observed state. Conditions: Ready, Reconciling, Stalled, Progressing, Degraded."""

    ready_replicas_text: Annotated[str, Field(max_length=16)] | None = None
    """Ready pods of the wanted, e.g. `2/3`: the `READY` column."""

    serving_version: int | None = Field(default=None, ge=1)
    """The version every ready pod serves; changes only when a rollout completes."""

    target_version: int | None = Field(default=None, ge=1)
    """The version being rolled out, if a rollout is in progress."""

    last_good_version: int | None = Field(default=None, ge=1)
    """The version rolled back to when a rollout fails."""

    failed_rollout: FailedRollout | None = None
    """The last rollout that failed and was rolled back, until the spec changes."""

    replicas: int | None = Field(default=None, ge=0)
    """Serving pods that exist (the scale subresource reads it)."""

    ready_replicas: int | None = Field(default=None, ge=0)
    """Serving pods that are ready."""

    selector: Annotated[str, Field(max_length=1024)] | None = None
    """The label selector of the serving pods, as a string (for the scale subresource and HPA)."""

    endpoint: ShortText | None = None
    """The in-cluster URL of the Open Inference Protocol v2 model endpoint."""
