"""One of our objects, parsed once at the edge: its metadata, typed spec and typed status.

The spec is parsed strictly (an invalid one is the object's problem, reported as
`InvalidSpec`); the status leniently, since people and older operator versions write it too: a
field that does not parse is left out rather than failing the reconcile.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from flywheel.api.common import StatusBase
from flywheel.api.kinds import Kind
from flywheel.core.admission import INVALID_SPEC, invalid_spec_finding
from flywheel.core.conditions import Finding
from flywheel.core.objects import Obj, meta_of, status_of
from flywheel.core.times import parse_time

SpecT = TypeVar("SpecT", bound=BaseModel)
StatusT = TypeVar("StatusT", bound=StatusBase)


@dataclass(frozen=True)
class Meta:
    """The metadata decisions use."""

    name: str
    namespace: str
    uid: str
    generation: int
    created: datetime | None
    labels: dict[str, str]
    annotations: dict[str, str]
    deleting: bool

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Target(Generic[SpecT, StatusT]):
    """An object of one of our kinds, ready for a controller."""

    body: Obj
    """As read (owner references of children point at it)."""
    meta: Meta
    spec: SpecT
    status: StatusT
    raw_status: Obj
    """The status as stored: conditions are read from here."""


@dataclass(frozen=True)
class InvalidSpec:
    """An object whose spec the API server accepted but the operator cannot act on."""

    body: Obj
    meta: Meta
    finding: Finding
    raw_status: Obj


def parse_meta(body: Obj) -> Meta:
    """The metadata of an object read from the API."""
    found = meta_of(body)
    return Meta(
        name=str(found.get("name", "")),
        namespace=str(found.get("namespace", "")),
        uid=str(found.get("uid", "")),
        generation=int(found.get("generation") or 0),
        created=parse_time(found.get("creationTimestamp")),
        labels=dict(found.get("labels") or {}),
        annotations=dict(found.get("annotations") or {}),
        deleting=bool(found.get("deletionTimestamp")),
    )


def parse_status(model: type[StatusT], raw: Obj) -> StatusT:
    """The typed status; unknown or malformed fields are left out, one at a time."""
    fields = model.model_fields
    known = {f.alias or name: name for name, f in fields.items()}
    kept: dict[str, Any] = {k: v for k, v in raw.items() if k in known}
    try:
        return model.model_validate(kept)
    except ValidationError:
        good: dict[str, Any] = {}
        for key, value in kept.items():
            try:
                model.model_validate({key: value})
            except ValidationError:
                continue
            good[key] = value
        return model.model_validate(good)


def parse_target(kind: Kind, body: Obj) -> Target[Any, Any] | InvalidSpec:
    """The object ready for its controller, or why its spec cannot be acted on."""
    found = parse_meta(body)
    raw_status = status_of(body)
    rule = kind.name_rule
    if rule is not None and not rule.test(found.name):
        # Created before the CRD had the rule: its children would be refused forever.
        return InvalidSpec(body, found, Finding(INVALID_SPEC, f"{rule.message}."), raw_status)
    try:
        spec = kind.spec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        return InvalidSpec(body, found, invalid_spec_finding(error), raw_status)
    return Target(body, found, spec, parse_status(kind.status, raw_status), raw_status)
