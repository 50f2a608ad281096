"""Building blocks shared by the five kinds: the model base, bounded string types, conditions.

Every kind module in :mod:`flywheel.api` builds on these. Field docstrings become the CRD field
descriptions (`kubectl explain`), so they are written for users, not for developers. Bounds
(`max_length`, `max_items`) are everywhere because the API server estimates the cost of CEL
rules from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from annotated_types import MaxLen
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from flywheel.api.checks import (
    CRON_PATTERN,
    CRON_SCHEDULE,
    DNS_1035_LABEL,
    DNS_LABEL,
    LABEL_KEY,
    QUALIFIED_NAME,
    Check,
    Rules,
    SchemaExtra,
    cel_quote,
    parse_quantity,
    re2,
    uri_checks,
)
from flywheel.api.checks import DURATION_PATTERN as DURATION_PATTERN

API_GROUP = "flywheel.dev"
API_VERSION = "v1alpha1"

DNS_LABEL_PATTERN = DNS_LABEL
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

ObjectName = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
]
"""The name of a Kubernetes object in the same namespace (a DNS-1123 subdomain)."""

ModelName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)
]
"""A registered model name. It is used as a label value, hence a DNS-1123 label."""

DatasetName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)
]
"""The name of a Dataset (a DNS-1123 label of at most 63 characters, as the Dataset kind
requires)."""

DeploymentName = Annotated[
    str, StringConstraints(min_length=1, max_length=55, pattern=DNS_1035_LABEL)
]
"""The name of a ModelDeployment (a DNS-1035 label of at most 55 characters, as the
ModelDeployment kind requires)."""

LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=316), LABEL_KEY]
"""A label key such as `topology.kubernetes.io/zone` (an optional DNS-subdomain prefix and `/`,
then a name of at most 63 characters)."""

ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=253)]
"""The name of a column in a dataset."""

ShortText = Annotated[str, StringConstraints(max_length=253)]
"""A short free-form string."""

Uri = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
"""A URI such as `pvc://claim/path` or `https://host/file.csv`."""

ARTIFACT_SCHEMES = ("pvc", "file")
"""What the model server reads (`flywheel_serving.model.resolve`)."""

MAX_SPEC_JSON_BYTES = 65_536
"""The largest spec a Job is given: the ingest and training Jobs receive the spec as JSON in one
command-line argument, which Linux limits to 128 KiB (MAX_ARG_STRLEN)."""


def _fits_a_job(spec: Any) -> bool:
    text = spec.model_dump_json(by_alias=True, exclude_none=True)
    return len(text.encode()) <= MAX_SPEC_JSON_BYTES


SPEC_FITS_A_JOB = Check(
    None,
    f"the spec is too large: at most {MAX_SPEC_JSON_BYTES // 1024} KiB as JSON, since its Job "
    "receives it on the command line",
    _fits_a_job,
)
"""Only the operator knows a spec's serialized size; the API server bounds each field."""

ArtifactUri = Annotated[
    Uri,
    Rules(
        Check(
            "self.matches('^pvc://') || self.matches('^file:///')",
            "must be pvc://<claim>/<path> or file:///<path>: the model server reads only these",
            lambda value: value.startswith(("pvc://", "file:///")),
        ),
        uri_checks(ARTIFACT_SCHEMES),
    ),
]
"""A stored artifact: `pvc://<claim>/<path>` (a file on a PersistentVolumeClaim in this
namespace) or `file:///<path>` (a file inside the serving image)."""

Duration = Annotated[str, StringConstraints(max_length=32, pattern=DURATION_PATTERN)]
"""A duration such as `30s`, `5m` or `1h30m` (units ms, s, m, h)."""

CronSchedule = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=CRON_PATTERN), CRON_SCHEDULE
]
"""A cron schedule with five fields (`0 3 * * *`: minute, hour, day of month, month, day of
week; `*`, ranges, steps and lists) or a macro such as `@daily`."""

Sha256Hex = Annotated[
    str, StringConstraints(min_length=64, max_length=64, pattern=r"^[a-f0-9]{64}$")
]
"""A sha256 digest as 64 lower-case hex characters."""


PARAM_STRING_MAX_LENGTH = 256
"""The longest string parameter: scikit-learn's string parameters are short names (`lbfgs`,
`balanced`), and a spec must stay far below the object size limit."""


def _require_scalar(value: Any) -> Any:
    if not isinstance(value, str | int | float | bool):
        raise ValueError(f"must be a string, number or boolean, not {type(value).__name__}")
    if isinstance(value, str) and len(value) > PARAM_STRING_MAX_LENGTH:
        raise ValueError(f"a string parameter has at most {PARAM_STRING_MAX_LENGTH} characters")
    return value


Scalar = Annotated[
    str | int | float | bool,
    BeforeValidator(_require_scalar),
    SchemaExtra((("maxLength", PARAM_STRING_MAX_LENGTH),)),
]
"""A scalar parameter value (strings of at most 256 characters, numbers, booleans; no lists or
mappings)."""

QUANTITY = Check(
    "isQuantity(string(self)) && !quantity(string(self)).isLessThan(quantity('0'))",
    "must be a non-negative Kubernetes quantity, such as 500m, 1Gi or 2",
    lambda value: (found := parse_quantity(value)) is not None and found >= 0,
)

Quantity = Annotated[int | Annotated[str, StringConstraints(max_length=64)], Rules(QUANTITY)]
"""A Kubernetes resource quantity such as `500m`, `1Gi` or `2`."""

_EXTENDED_RESOURCE = (
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
    r"/([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$"
)
_HUGEPAGES = r"^hugepages-[0-9]+(Ki|Mi|Gi)$"
_STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def is_resource_name(name: str) -> bool:
    """A container resource name Kubernetes accepts: standard, huge pages or extended."""
    return (
        name in _STANDARD_RESOURCES
        or re2(_HUGEPAGES).search(name) is not None
        or (
            re2(_EXTENDED_RESOURCE).search(name) is not None
            and "kubernetes.io/" not in name
            and not name.startswith("requests.")
        )
    )


def _overcommittable(name: str) -> bool:
    """Extended resources and huge pages must be requested exactly as limited."""
    return "/" not in name and not name.startswith("hugepages-")


ResourceList = Annotated[
    dict[Annotated[str, StringConstraints(max_length=63)], Quantity],
    MaxLen(8),
    Rules(
        Check(
            "self.all(k, k in ['cpu', 'memory', 'ephemeral-storage'] || "
            f"k.matches('{_HUGEPAGES}') || (k.matches('{cel_quote(_EXTENDED_RESOURCE)}') && "
            "!k.contains('kubernetes.io/') && !k.startsWith('requests.')))",
            "resource names are cpu, memory, ephemeral-storage, hugepages-<size> or an "
            "extended resource <domain>/<name>",
            lambda found: all(is_resource_name(k) for k in found),
        ),
        Check(
            "self.all(k, !k.contains('/') || !isQuantity(string(self[k])) || "
            "quantity(string(self[k])).isInteger())",
            "extended resources (<domain>/<name>) take whole numbers",
            lambda found: all(
                "/" not in k or (q := parse_quantity(v)) is None or q == q.to_integral_value()
                for k, v in found.items()
            ),
        ),
    ),
]
"""Resource names and quantities, as in a container's `resources.requests` or `limits`."""


def _limits_cover_requests(found: Any) -> bool:
    requests, limits = found.requests or {}, found.limits or {}
    for name, value in requests.items():
        request, limit = parse_quantity(value), parse_quantity(limits.get(name, ""))
        if request is not None and limit is not None and request > limit:
            return False
    return True


def _exact_where_required(found: Any) -> bool:
    requests, limits = found.requests or {}, found.limits or {}
    for name, value in requests.items():
        if _overcommittable(name) or parse_quantity(value) is None:
            continue
        if name not in limits or parse_quantity(limits[name]) != parse_quantity(value):
            return False
    return True


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
    """Base of every API model: camelCase in YAML, snake_case in Python, unknown fields refused.

    `cel_checks` are rules on the whole object that both sides apply: the CEL in the CRD, the
    test (on the parsed model) when the operator parses a spec.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="forbid",
        frozen=True,
    )

    cel_checks: ClassVar[tuple[Check, ...]] = ()

    @model_validator(mode="after")
    def _apply_cel_checks(self) -> Self:
        for check in self.cel_checks:
            if not check.test(self):
                raise ValueError(check.message)
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        found = handler(schema)
        rules = [c.cel() for c in cls.cel_checks]
        if any(rules):
            target = handler.resolve_ref_schema(found)
            # A new list: the existing one may be the model_config's own (json_schema_extra).
            existing = target.get("x-kubernetes-validations", [])
            target["x-kubernetes-validations"] = [*existing, *(r for r in rules if r)]
        return found


class LocalObjectReference(ApiModel):
    """A reference to an object of a known kind in the same namespace."""

    name: ObjectName
    """The object's name."""


class DeploymentReference(ApiModel):
    """A ModelDeployment in the same namespace."""

    name: DeploymentName
    """The ModelDeployment's name."""


class ResourceRequirements(ApiModel):
    """Compute resources of a container, as in a Pod spec."""

    cel_checks = (
        Check(
            "!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits)"
            " || !isQuantity(string(self.requests[k])) || !isQuantity(string(self.limits[k])) ||"
            " !quantity(string(self.requests[k])).isGreaterThan(quantity(string(self.limits[k]))))",
            "a request must not be greater than its limit",
            _limits_cover_requests,
        ),
        Check(
            "!has(self.requests) || self.requests.all(k, (!k.contains('/') && "
            "!k.startsWith('hugepages-')) || !isQuantity(string(self.requests[k])) || "
            "(has(self.limits) && k in self.limits && isQuantity(string(self.limits[k])) && "
            "quantity(string(self.limits[k])).compareTo(quantity(string(self.requests[k]))) == 0))",
            "extended resources and hugepages cannot be overcommitted: a request needs an equal "
            "limit",
            _exact_where_required,
        ),
    )

    requests: ResourceList | None = None
    """Minimum resources, e.g. `{cpu: 500m, memory: 1Gi}`: names are `cpu`, `memory`,
    `ephemeral-storage`, `hugepages-<size>` or extended resources (`<domain>/<name>`), values
    non-negative quantities."""

    limits: ResourceList | None = None
    """Maximum resources, e.g. `{memory: 2Gi}`; each at least its request. An extended resource
    or huge pages requested must be limited to the same amount."""


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """One aspect of the object's state, in the shape of metav1.Condition."""

    type: Annotated[str, StringConstraints(max_length=316, pattern=QUALIFIED_NAME)]
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
