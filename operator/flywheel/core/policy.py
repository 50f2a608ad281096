"""Ordered chains of small pure checks, in the manner of cert-manager's policy chains.

A check looks at one typed input and returns a :class:`~flywheel.core.conditions.Finding` (a
one-word reason and a sentence, ready for a condition or an Event) when the input violates it,
else None. A chain evaluates its checks in order and stops at the first finding, so the order
is the priority of the reasons (the retraining guardrails: a run in flight before the cooldown
before the daily budget). Gates that must all be reported run every check instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from flywheel.core.conditions import Finding

T = TypeVar("T")
Check = Callable[[T], Finding | None]
"""One pure check: the finding when the input violates it, else None."""


def first_finding(checks: Sequence[Check[T]], subject: T) -> Finding | None:
    """The first check that finds something, in order; None when every check passes."""
    for check in checks:
        found = check(subject)
        if found is not None:
            return found
    return None
