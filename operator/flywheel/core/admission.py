"""The part of every kind's status that does not depend on the kind: the first visit, a spec
accepted or refused, the operator's own permissions, and the one status patch a reconcile
writes.

API conventions ask controllers to post their conditions on the first visit, even Unknown, and
kstatus (Flux) treats an object without conditions as Current, which would let a GitOps sync
report success before anything ran: so the first write always carries `Ready`, `Reconciling`
and `Stalled`. A spec that the API server accepted but the operator cannot act on (an estimator
outside the allow-list) is `Stalled=True`/`Ready=False`, reason `InvalidSpec`, with one Warning
Event per generation and message; it is not retried until the spec changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from flywheel.api.common import API_GROUP
from flywheel.core.conditions import (
    READY,
    RECONCILING,
    STALLED,
    ConditionUpdate,
    Finding,
    dump_conditions,
    find_condition,
    parse_conditions,
    set_conditions,
)
from flywheel.core.objects import Obj, ObjectRef, annotations_of, meta_of
from flywheel.core.outcome import Event, MergePatch, Outcome

LEGACY_FINALIZER = f"{API_GROUP}/finalizer"
"""The finalizer operators before 0.2 (kopf timers) put on every object; nothing removes it now."""
LEGACY_DIFFBASE = f"{API_GROUP}/last-handled-spec"
"""kopf's copy of the last handled spec, written by operators before 0.2."""

INVALID_SPEC = "InvalidSpec"
INITIALIZING = "Initializing"
FORBIDDEN = "Forbidden"
MAX_ERRORS_IN_MESSAGE = 10


def describe_validation_error(error: ValidationError, *, prefix: str = "spec") -> str:
    """One sentence per problem, with the YAML path of the field (`spec.estimator.class`)."""
    problems = []
    for item in error.errors()[:MAX_ERRORS_IN_MESSAGE]:
        path = ".".join(str(part) for part in (prefix, *item["loc"]))
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{path}: {message}")
    extra = error.error_count() - MAX_ERRORS_IN_MESSAGE
    if extra > 0:
        problems.append(f"and {extra} more")
    return "; ".join(problems)


def invalid_spec_finding(error: ValidationError) -> Finding:
    """Why a spec the API server accepted cannot be acted on."""
    return Finding(INVALID_SPEC, f"The spec is invalid: {describe_validation_error(error)}.")


def invalid_spec_outcome(
    finding: Finding,
    status: Mapping[str, Any],
    generation: int | None,
    outcome_condition: str | None = None,
) -> Outcome:
    """Give up on this generation until the spec changes; the Event is posted once. The kind's
    `outcome_condition` (if any) is False with the same reason."""
    conditions: tuple[ConditionUpdate, ...] = (
        ConditionUpdate(STALLED, "True", finding.reason, finding.message),
        ConditionUpdate(READY, "False", finding.reason, finding.message),
        ConditionUpdate(RECONCILING, "False", finding.reason, "Waiting for a spec change."),
    )
    if outcome_condition is not None:
        conditions += (
            ConditionUpdate(outcome_condition, "False", finding.reason, finding.message),
        )
    announced = _already_stalled(status, generation, finding.message)
    events = () if announced else (Event("Warning", finding.reason, finding.message),)
    return Outcome(conditions=conditions, events=events)


def _already_stalled(status: Mapping[str, Any], generation: int | None, message: str) -> bool:
    stalled = find_condition(parse_conditions(status.get("conditions")), STALLED)
    return (
        stalled is not None
        and stalled.status == "True"
        and stalled.observed_generation == generation
        and stalled.message == message
    )


def ready_says(status: Mapping[str, Any], reason: str, message: str) -> bool:
    """Whether `Ready` already says this (its Event was posted)."""
    ready = find_condition(parse_conditions(status.get("conditions")), READY)
    return ready is not None and ready.reason == reason and ready.message == message


def forbidden_outcome(sentence: str, status: Mapping[str, Any]) -> Outcome:
    """The operator's own permissions are missing: say so on the object, with the API server's
    sentence, and in a Warning Event once per message."""
    message = f"The operator is not allowed to do its work: {sentence}"
    again = ready_says(status, FORBIDDEN, message)
    return Outcome(
        conditions=(
            ConditionUpdate(READY, "False", FORBIDDEN, message),
            ConditionUpdate(RECONCILING, "True", FORBIDDEN, message),
        ),
        events=() if again else (Event("Warning", FORBIDDEN, message),),
    )


NAME_TAKEN = "NameTaken"


def name_taken_outcome(sentence: str, status: Mapping[str, Any]) -> Outcome:
    """A child's name is held by an object someone else made: stalled until it is freed; the
    Warning Event once per message."""
    again = ready_says(status, NAME_TAKEN, sentence)
    return Outcome(
        conditions=(
            ConditionUpdate(READY, "False", NAME_TAKEN, sentence),
            ConditionUpdate(STALLED, "True", NAME_TAKEN, sentence),
            ConditionUpdate(RECONCILING, "False", NAME_TAKEN, "Waiting for the name to be free."),
        ),
        events=() if again else (Event("Warning", NAME_TAKEN, sentence),),
    )


def generic_updates(
    status: Mapping[str, Any], generation: int | None, kind: str, *, valid: bool
) -> list[ConditionUpdate]:
    """Conditions every kind gets before its controller's own: the first visit's, and a new
    generation's (a valid spec clears `Stalled` and withdraws an `InvalidSpec` verdict)."""
    conditions = parse_conditions(status.get("conditions"))
    updates = []
    if not conditions:
        starting = f"The {kind} controller is starting."
        updates += [
            ConditionUpdate(READY, "Unknown", INITIALIZING, starting),
            ConditionUpdate(RECONCILING, "True", INITIALIZING, starting),
        ]
    if valid and status.get("observedGeneration") != generation:
        message = f"The {kind} controller is reconciling generation {generation}."
        updates += [
            ConditionUpdate(STALLED, "False", "SpecAccepted", "The spec is valid."),
            ConditionUpdate(RECONCILING, "True", "Reconciling", message),
        ]
        ready = find_condition(conditions, READY)
        if ready is not None and ready.reason == INVALID_SPEC:
            # Ready=False belonged to the old, invalid spec; the new one is not judged yet.
            updates.append(ConditionUpdate(READY, "Unknown", "Reconciling", message))
    return updates


def status_patch(
    status: Mapping[str, Any],
    *,
    generation: int | None,
    kind: str,
    outcome: Outcome,
    now: datetime,
    valid: bool = True,
) -> dict[str, Any]:
    """The status fields to merge-patch for this outcome; empty when nothing would change.

    Conditions are written as a whole list (a merge patch replaces arrays); `observedGeneration`
    is the generation decided on.
    """
    updates = [*generic_updates(status, generation, kind, valid=valid), *outcome.conditions]
    current = parse_conditions(status.get("conditions"))
    conditions = dump_conditions(set_conditions(current, updates, generation=generation, now=now))
    patch = {
        key: value
        for key, value in outcome.status.items()
        if merge_patch(status.get(key), value) != status.get(key)
    }
    if conditions != dump_conditions(current) or len(current) != len(
        status.get("conditions") or ()
    ):
        patch["conditions"] = conditions
    if status.get("observedGeneration") != generation:
        patch["observedGeneration"] = generation
    return patch


def merge_patch(target: Any, patch: Any) -> Any:
    """`target` after a JSON merge patch (RFC 7386): objects merge, null removes, the rest
    replaces. Used to leave out status fields whose patch would change nothing."""
    if not isinstance(patch, Mapping):
        return patch
    merged = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def merge_diff(current: Mapping[str, Any], target: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that turns `current` into `target` (neither holding nulls):
    `merge_patch(current, merge_diff(current, target)) == target`. Empty when they are equal."""
    diff: dict[str, Any] = {key: None for key in current if key not in target}
    for key, value in target.items():
        old = current.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            nested = merge_diff(old, value)
            if nested:
                diff[key] = nested
        elif key not in current or old != value:
            diff[key] = value
    return diff


def legacy_cleanup(body: Obj) -> MergePatch | None:
    """Remove what earlier operator versions left on an object: kopf's finalizer (an object
    carrying it could never be deleted now) and its copy of the spec. The patch carries the
    resourceVersion, so it applies only to the object as read."""
    found = meta_of(body)
    finalizers = list(found.get("finalizers") or ())
    stale_finalizer = LEGACY_FINALIZER in finalizers
    stale_annotation = LEGACY_DIFFBASE in annotations_of(body)
    if not stale_finalizer and not stale_annotation:
        return None
    patch: Obj = {"resourceVersion": found.get("resourceVersion")}
    if stale_finalizer:
        patch["finalizers"] = [f for f in finalizers if f != LEGACY_FINALIZER]
    if stale_annotation:
        patch["annotations"] = {LEGACY_DIFFBASE: None}
    ref = ObjectRef(
        str(body.get("apiVersion")), str(body.get("kind")), found["namespace"], found["name"]
    )
    return MergePatch(ref, {"metadata": patch})
