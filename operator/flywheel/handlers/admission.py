"""The common first step of every reconcile: post initial status, parse the spec once.

`admit` is called by each kind's handler before any work. It writes `observedGeneration` and
the initial conditions on the first visit, and turns a spec that the API server accepted but the
operator cannot act on into `Stalled=True`/`Ready=False` (reason `InvalidSpec`) with a Warning
Event. Such an object is not retried: kopf calls the handler again only when the spec changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import BaseModel, ValidationError

from flywheel.api.kinds import Kind
from flywheel.conditions import STALLED, find_condition, parse_conditions
from flywheel.handlers.context import OperatorContext
from flywheel.status import (
    accepted_patch,
    first_visit_patch,
    invalid_spec_verdict,
    stalled_patch,
)


def admit(
    kind: Kind,
    *,
    body: kopf.Body,
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    generation: int | None,
    patch: kopf.Patch,
    context: OperatorContext,
    logger: kopf.Logger,
) -> BaseModel | None:
    """The parsed spec, or None when it is invalid (status and Event are then taken care of)."""
    now = datetime.now(UTC)
    current: dict[str, Any] = dict(status)
    first = first_visit_patch(current, generation=generation, kind=kind.kind, now=now)
    if first is not None:
        current.update(first)
    try:
        parsed = kind.spec.model_validate(dict(spec))
    except ValidationError as error:
        verdict = invalid_spec_verdict(error)
        announced = _already_stalled(current, generation, verdict.message)
        patch.status.update(stalled_patch(current, verdict, generation=generation, now=now))
        context.metrics.reconciles.labels(kind=kind.kind, result="invalid_spec").inc()
        if not announced:
            logger.warning("%s", verdict.message)
            kopf.event(body, type="Warning", reason=verdict.reason, message=verdict.message)
        return None
    patch.status.update(accepted_patch(current, generation=generation, kind=kind.kind, now=now))
    return parsed


def _already_stalled(status: Mapping[str, Any], generation: int | None, message: str) -> bool:
    """Whether this exact verdict was already posted for this generation (operator restarts)."""
    stalled = find_condition(parse_conditions(status.get("conditions")), STALLED)
    return (
        stalled is not None
        and stalled.status == "True"
        and stalled.observed_generation == generation
        and stalled.message == message
    )
