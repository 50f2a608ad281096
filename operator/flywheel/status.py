"""Pure status decisions shared by every kind: the first visit and the invalid spec.

Each function takes what the handler read (the object's status and generation, the clock) and
returns the status patch to write. Handlers in :mod:`flywheel.handlers` apply the patch and post
the Event; nothing here talks to Kubernetes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from flywheel.conditions import (
    READY,
    RECONCILING,
    STALLED,
    ConditionUpdate,
    Verdict,
    dump_conditions,
    find_condition,
    parse_conditions,
    set_conditions,
)

INVALID_SPEC = "InvalidSpec"
INITIALIZING = "Initializing"
MAX_ERRORS_IN_MESSAGE = 10


def first_visit_patch(
    status: Mapping[str, Any] | None,
    *,
    generation: int | None,
    kind: str,
    now: datetime,
) -> dict[str, Any] | None:
    """The status to write when the operator sees an object for the first time, else None.

    API conventions ask controllers to post their conditions on the first visit, even Unknown;
    and kstatus (Flux) treats an object without conditions as Current, which would let a
    GitOps sync report success before anything ran.
    """
    conditions = parse_conditions((status or {}).get("conditions"))
    if conditions:
        return None
    updates = [
        ConditionUpdate(READY, "Unknown", INITIALIZING, f"The {kind} controller is starting."),
        ConditionUpdate(RECONCILING, "True", INITIALIZING, f"The {kind} controller is starting."),
    ]
    return {
        "observedGeneration": generation,
        "conditions": dump_conditions(
            set_conditions(conditions, updates, generation=generation, now=now)
        ),
    }


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


def invalid_spec_verdict(error: ValidationError) -> Verdict:
    """The verdict for a spec the API server accepted but the operator cannot act on."""
    return Verdict(INVALID_SPEC, f"The spec is invalid: {describe_validation_error(error)}.")


def stalled_patch(
    status: Mapping[str, Any] | None,
    verdict: Verdict,
    *,
    generation: int | None,
    now: datetime,
) -> dict[str, Any]:
    """The status of an object the operator gives up on until its spec changes."""
    updates = [
        ConditionUpdate(STALLED, "True", verdict.reason, verdict.message),
        ConditionUpdate(READY, "False", verdict.reason, verdict.message),
        ConditionUpdate(RECONCILING, "False", verdict.reason, "Waiting for a spec change."),
    ]
    conditions = parse_conditions((status or {}).get("conditions"))
    return {
        "observedGeneration": generation,
        "conditions": dump_conditions(
            set_conditions(conditions, updates, generation=generation, now=now)
        ),
    }


def accepted_patch(
    status: Mapping[str, Any] | None,
    *,
    generation: int | None,
    kind: str,
    now: datetime,
) -> dict[str, Any]:
    """The status of a valid spec that the kind's controller now works on: Stalled cleared.

    Empty when this generation was already accepted (a resume after an operator restart): the
    controller's own conditions stand, and Reconciling is not raised again for nothing.
    """
    conditions = parse_conditions((status or {}).get("conditions"))
    stalled = find_condition(conditions, STALLED)
    if (
        (status or {}).get("observedGeneration") == generation
        and stalled is not None
        and stalled.status == "False"
    ):
        return {}
    message = f"The {kind} controller is reconciling generation {generation}."
    updates = [
        ConditionUpdate(STALLED, "False", "SpecAccepted", "The spec is valid."),
        ConditionUpdate(RECONCILING, "True", "Reconciling", message),
    ]
    ready = find_condition(conditions, READY)
    if ready is not None and ready.reason == INVALID_SPEC:
        # Ready=False belonged to the old, invalid spec; the new one is not judged yet.
        updates.append(ConditionUpdate(READY, "Unknown", "Reconciling", message))
    return {
        "observedGeneration": generation,
        "conditions": dump_conditions(
            set_conditions(conditions, updates, generation=generation, now=now)
        ),
    }
