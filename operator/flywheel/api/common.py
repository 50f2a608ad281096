"""Building blocks shared by the five kinds: the model base, bounded string types, conditions.

Every kind module in :mod:`flywheel.api` builds on these. Field docstrings become the CRD field
descriptions (`kubectl explain`), so they are written for users, not for developers. Bounds
(`max_length`, `max_items`) are everywhere because the API server estimates the cost of CEL
rules from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

API_GROUP = "flywheel.dev"
API_VERSION = "v1alpha1"

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
CRON_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|hourly)|(\S+\s+){4}\S+)$"

ObjectName = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
]
"""The name of a Kubernetes object in the same namespace (a DNS-1123 subdomain)."""

ModelName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)
]
"""A registered model name. It is used as a label value, hence a DNS-1123 label."""

ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=253)]
"""The name of a column in a dataset."""

ShortText = Annotated[str, StringConstraints(max_length=253)]
"""A short free-form string."""

Uri = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
"""A URI such as `pvc://claim/path` or `https://host/file.csv`."""

Duration = Annotated[str, StringConstraints(max_length=32, pattern=DURATION_PATTERN)]
"""A duration such as `30s`, `5m` or `1h30m` (units ms, s, m, h)."""

CronSchedule = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=CRON_PATTERN)]
"""A cron schedule with five fields (`0 3 * * *`) or a macro such as `@daily`."""

Sha256Hex = Annotated[
    str, StringConstraints(min_length=64, max_length=64, pattern=r"^[a-f0-9]{64}$")
]
"""A sha256 digest as 64 lower-case hex characters."""


def _require_scalar(value: Any) -> Any:
    if not isinstance(value, str | int | float | bool):
        raise ValueError(f"must be a string, number or boolean, not {type(value).__name__}")
    return value


Scalar = Annotated[str | int | float | bool, BeforeValidator(_require_scalar)]
"""A scalar parameter value (strings, numbers, booleans; no lists or mappings)."""

Quantity = int | Annotated[str, StringConstraints(max_length=64)]
"""A Kubernetes resource quantity such as `500m`, `1Gi` or `2`."""


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry: a CEL rule with the message users see."""
    entry = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    """JSON-schema extras carrying CEL rules for a model or a field."""
    return {"x-kubernetes-validations": list(rules)}


class ApiModel(BaseModel):
    """Base of every API model: camelCase in YAML, snake_case in Python, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="forbid",
        frozen=True,
    )


class LocalObjectReference(ApiModel):
    """A reference to an object of a known kind in the same namespace."""

    name: ObjectName
    """The object's name."""


class ResourceRequirements(ApiModel):
    """Compute resources of a container, as in a Pod spec."""

    requests: dict[Annotated[str, StringConstraints(max_length=63)], Quantity] | None = Field(
        default=None, max_length=8
    )
    """Minimum resources, e.g. `{cpu: 500m, memory: 1Gi}`."""

    limits: dict[Annotated[str, StringConstraints(max_length=63)], Quantity] | None = Field(
        default=None, max_length=8
    )
    """Maximum resources, e.g. `{memory: 2Gi}`."""


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """One aspect of the object's state, in the shape of metav1.Condition."""

    type: Annotated[
        str,
        StringConstraints(
            max_length=316,
            pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
            r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        ),
    ]
    """The condition type in CamelCase, e.g. `Ready`."""

    status: ConditionStatus
    """`True`, `False` or `Unknown`."""

    observed_generation: int | None = Field(default=None, ge=0)
    """The `metadata.generation` the condition was set for."""

    last_transition_time: datetime
    """When the status last changed from one value to another."""

    reason: Annotated[
        str,
        StringConstraints(
            min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
        ),
    ]
    """A one-word CamelCase reason for the last transition, for machines and columns."""

    message: Annotated[str, StringConstraints(max_length=32768)]
    """A human-readable explanation of the state."""


Conditions = Annotated[
    list[Condition],
    Field(
        max_length=16,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    ),
]


class StatusBase(ApiModel):
    """The status fields every kind carries."""

    observed_generation: int | None = Field(default=None, ge=0)
    """The `metadata.generation` the operator last acted on."""

    conditions: Conditions = Field(default_factory=list)
    """The latest observations of the object's state: `Ready`, `Reconciling`, `Stalled`
    and the kind's own."""
