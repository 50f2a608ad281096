"""Status conditions, the Kubernetes way, as pure functions over `metav1.Condition` lists.

`set_condition` keeps `lastTransitionTime` unless the status flips, so a reason or message
update does not look like a transition. Conditions are always written as a whole list because
custom resources support no strategic merge patch: a JSON merge patch replaces the array.
No I/O, no clock (callers pass `now`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flywheel.api.common import Condition, ConditionStatus

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"


@dataclass(frozen=True)
class ConditionUpdate:
    """A condition to set: its type, status, reason and message."""

    type: str
    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True)
class Finding:
    """A one-word reason and a sentence, ready for a condition or an Event: why something
    waits, stops or fails (a policy check's result, a pod's failure)."""

    reason: str
    message: str


def parse_conditions(raw: Iterable[Mapping[str, Any]] | None) -> list[Condition]:
    """Conditions read from an object's status; malformed entries (hand edits) are dropped."""
    parsed = []
    for item in raw or ():
        try:
            parsed.append(Condition.model_validate(dict(item)))
        except ValueError:
            continue
    return parsed


def set_condition(
    conditions: Sequence[Condition],
    update: ConditionUpdate,
    *,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """A new list with `update` applied; the transition time moves only when status flips."""
    current = find_condition(conditions, update.type)
    transition = (
        now if current is None or current.status != update.status else current.last_transition_time
    )
    new = Condition(
        type=update.type,
        status=update.status,
        reason=update.reason,
        message=update.message[:32768],
        observed_generation=generation,
        last_transition_time=transition,
    )
    if current is None:
        return [*conditions, new]
    return [new if c.type == update.type else c for c in conditions]


def set_conditions(
    conditions: Sequence[Condition],
    updates: Iterable[ConditionUpdate],
    *,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """Apply several updates in order."""
    result = list(conditions)
    for update in updates:
        result = set_condition(result, update, generation=generation, now=now)
    return result


def find_condition(conditions: Iterable[Condition], type_: str) -> Condition | None:
    """The condition of a type, if present."""
    return next((c for c in conditions if c.type == type_), None)


def raw_condition(status: Mapping[str, Any] | None, type_: str) -> dict[str, Any]:
    """The condition of a type as any object's status holds it (a Job's, a Dataset's), unparsed;
    an empty dict when absent."""
    for condition in (status or {}).get("conditions") or ():
        if condition.get("type") == type_:
            return dict(condition)
    return {}


def is_true(conditions: Iterable[Condition], type_: str) -> bool:
    """Whether the condition is present and True."""
    condition = find_condition(conditions, type_)
    return condition is not None and condition.status == "True"


def dump_conditions(conditions: Iterable[Condition]) -> list[dict[str, Any]]:
    """Conditions as they go into a status patch (camelCase, RFC 3339 times with `Z`)."""
    return [
        {
            **c.model_dump(by_alias=True, exclude_none=True, mode="json"),
            "lastTransitionTime": c.last_transition_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for c in conditions
    ]
