"""What a decision asks for: the one result type of every controller's `decide`.

An :class:`Outcome` carries the status fields and conditions to write, the Events to post, the
actions on other objects (children created or server-side applied, deleted, patched) and when to
look again. :mod:`flywheel.runtime.act` carries it out, always in the same order: actions first,
then the status, then the Events, so a status never claims a child that failed to be written.
Decisions build outcomes; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Literal

from flywheel.core.conditions import ConditionUpdate
from flywheel.core.objects import Obj, ObjectRef

FIELD_MANAGER = "flywheel"
"""The field manager of everything the operator applies, unless an action names another."""

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Event:
    """An Event to post about the reconciled object."""

    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class Create:
    """Create the object unless one of its name exists (create-or-get).

    With `identity` (a label and its value), an existing object without that label value, or
    for which `matches` is False, is someone else's: the rest of the outcome is dropped and the
    object reconciled again at once, so a decision that raced for a name (a version number) is
    taken again on fresh reads, and an object made by someone else under the name (copying the
    label) is never taken for ours.
    """

    body: Obj
    identity: tuple[str, str] | None = None
    matches: Callable[[Obj], bool] | None = None
    failpoint: str | None = None
    """Testing only: the operator exits right after this create when the setting names it."""


@dataclass(frozen=True)
class Ensure:
    """Create the object when absent and leave it alone afterwards (a namespace's artifacts
    claim, the workloads' ServiceAccounts); each is checked at most once a minute per process."""

    body: Obj


@dataclass(frozen=True)
class Apply:
    """Server-side apply of an apply configuration (exactly the fields the manager owns).

    `force` takes fields back from whoever changed them by hand; fields others added stay
    theirs. With `subresource="status"`, the object's status is applied instead.
    """

    body: Obj
    manager: str = FIELD_MANAGER
    subresource: Literal["status"] | None = None


@dataclass(frozen=True)
class Delete:
    """Delete an object; already gone is fine."""

    ref: ObjectRef


@dataclass(frozen=True)
class MergePatch:
    """A JSON merge patch of an object that exists (gone is fine: nothing to patch)."""

    ref: ObjectRef
    patch: Obj


Action = Create | Ensure | Apply | Delete | MergePatch


@dataclass(frozen=True)
class Outcome:
    """What one reconcile decided.

    `status` holds top-level status fields to merge (None removes a field); `conditions` are
    applied in order over the current ones (transition times move only when a status flips).
    """

    status: Mapping[str, Any] = field(default_factory=dict)
    conditions: tuple[ConditionUpdate, ...] = ()
    events: tuple[Event, ...] = ()
    actions: tuple[Action, ...] = ()
    requeue_after: timedelta | None = None
    """Look again after this long (a real clock: a schedule, a back-off, an interval)."""

    def event(self, type_: EventType, reason: str, message: str) -> Outcome:
        """The same outcome with one more Event."""
        return replace(self, events=(*self.events, Event(type_, reason, message)))

    def without_events(self) -> Outcome:
        """The same outcome, silent."""
        return replace(self, events=())
