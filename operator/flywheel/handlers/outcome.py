"""Writing a controller's :class:`~flywheel.jobresult.Outcome` through kopf's patch."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from flywheel.conditions import dump_conditions, parse_conditions, set_conditions
from flywheel.jobresult import Outcome


def apply(
    outcome: Outcome,
    current: dict[str, Any],
    patch: kopf.Patch,
    body: kopf.Body,
    generation: int | None,
) -> None:
    """Merge an outcome into the status patch and post its Event (if it has one)."""
    merged = {**current, **patch.status}
    conditions = set_conditions(
        parse_conditions(merged.get("conditions")),
        outcome.conditions,
        generation=generation,
        now=datetime.now(UTC),
    )
    patch.status.update(outcome.status)
    patch.status["conditions"] = dump_conditions(conditions)
    patch.status["observedGeneration"] = generation
    if outcome.event_reason:
        kopf.event(
            body,
            type=outcome.event_type,
            reason=outcome.event_reason,
            message=outcome.event_message,
        )
