"""Carrying out an :class:`~flywheel.core.outcome.Outcome`: the only place a reconcile writes.

Always in the same order: the actions (children created or applied, objects patched or
deleted), then one merge patch of the status (only when something changed), then the Events.
The actions are written before `act` returns; in the operator the status and Events are
reports written behind them (:mod:`.reports`, :mod:`.events`), in tests at once.
Every answer of the API server goes into the watch cache, so the next reconcile reads it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flywheel.core import resources
from flywheel.core.admission import status_patch
from flywheel.core.objects import Obj, labels_of, meta_of, owned_by
from flywheel.core.outcome import Action, Apply, Create, Delete, Ensure, MergePatch, Outcome
from flywheel.core.resources import Resource
from flywheel.kube.errors import Conflict, NotFound
from flywheel.runtime.controller import Env
from flywheel.runtime.events import DirectEvents, EventSink
from flywheel.runtime.reports import DirectStatus, StatusSink

ENSURE_RECHECK = 60.0
"""Seconds an ensured object (a namespace's claim or ServiceAccount) is trusted to exist."""
FAILPOINT_EXIT = 17


class Abandon(Exception):
    """A create lost a race for its name: the outcome is dropped and the object reconciled
    again at once, on fresh reads."""


class NameTaken(Exception):
    """A child's name is held by an object this owner did not create (no controller owner
    reference to it): never adopted; the owner says so until the name is free."""


Log = logging.Logger | logging.LoggerAdapter[logging.Logger]


@dataclass
class Actor:
    """Writes outcomes through the environment's client; one per operator, shared by every
    controller (so a namespace's prerequisites are ensured once for all kinds)."""

    env: Env
    events: EventSink | None = None
    """Where Events go (default: posted directly, before `act` returns)."""
    statuses: StatusSink | None = None
    """Where status patches go (default: written directly, before `act` returns)."""
    ensured: dict[tuple[str, str, str], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.events is None:
            self.events = DirectEvents(self.env.kube)
        if self.statuses is None:
            self.statuses = DirectStatus(self.env.kube, self.env.store)

    async def act(
        self,
        body: Obj,
        kind: str,
        outcome: Outcome,
        now: datetime,
        log: Log,
        *,
        valid: bool = True,
    ) -> bool:
        """Write the outcome; whether the status changed."""
        for action in outcome.actions:
            await self.perform(action, log)
        status: Mapping[str, Any] = body.get("status") or {}
        patch = status_patch(
            status,
            generation=meta_of(body).get("generation"),
            kind=kind,
            outcome=outcome,
            now=now,
            valid=valid,
        )
        if patch:
            assert self.statuses is not None
            resource = resources.BY_KIND[(str(body["apiVersion"]), kind)]
            await self.statuses.report(resource, body, patch)
        for event in outcome.events:
            log.info("%s: %s", event.reason, event.message)
            assert self.events is not None
            await self.events.post(body, event)
        return bool(patch)

    async def perform(self, action: Action, log: Log) -> None:
        """One action."""
        match action:
            case Create(body=child, identity=identity, matches=matches, failpoint=failpoint):
                await self._create(child, identity, matches, log)
                if failpoint and failpoint == self.env.settings.failpoint:
                    log.warning("failpoint %s: exiting", failpoint)
                    os._exit(FAILPOINT_EXIT)
            case Ensure(body=child):
                await self._ensure(child, log)
            case Apply(body=child, manager=manager, subresource=subresource):
                answer = await self.env.kube.apply(child, manager=manager, subresource=subresource)
                self.env.store.wrote(_resource(child), answer)
            case Delete(ref=ref):
                if await self.env.kube.delete(ref):
                    log.info("deleted %s", ref)
                resource = resources.BY_KIND[(ref.api_version, ref.kind)]
                self.env.store.deleted(resource, ref.namespace, ref.name)
            case MergePatch(ref=ref, patch=patch):
                try:
                    answer = await self.env.kube.merge_patch(ref, patch)
                except NotFound:
                    return  # deleted in between: nothing to patch
                except Conflict as error:
                    raise Abandon(f"{ref} changed while it was patched") from error
                self.env.store.wrote(resources.BY_KIND[(ref.api_version, ref.kind)], answer)

    async def _create(
        self,
        child: Obj,
        identity: tuple[str, str] | None,
        matches: Callable[[Obj], bool] | None,
        log: Log,
    ) -> None:
        resource = _resource(child)
        try:
            answer = await self.env.kube.create(child)
        except Conflict:
            found = meta_of(child)
            existing = await self.env.kube.get(resource, found["namespace"], found["name"])
            if existing is None:
                raise Abandon(
                    f"{child['kind']} {found['name']} was deleted as it was created"
                ) from None
            owner = _controller_uid(child)
            if owner is not None and not owned_by(existing, owner):
                raise NameTaken(
                    f"{child['kind']} {found['name']} exists and was not created by this object "
                    "(it has no owner reference to it), so it is never adopted: delete it, or "
                    "create this object under another name."
                ) from None
            if (identity is not None and labels_of(existing).get(identity[0]) != identity[1]) or (
                matches is not None and not matches(existing)
            ):  # made by someone else under the name: decide again (another number)
                raise Abandon(f"{child['kind']} {found['name']} is taken") from None
            self.env.store.wrote(resource, existing)
            return
        log.info("created %s %s", child["kind"], meta_of(child)["name"])
        self.env.store.wrote(resource, answer)

    async def _ensure(self, child: Obj, log: Log) -> None:
        found = meta_of(child)
        key = (str(child["kind"]), str(found["namespace"]), str(found["name"]))
        if time.monotonic() - self.ensured.get(key, -ENSURE_RECHECK) < ENSURE_RECHECK:
            return
        try:
            await self.env.kube.create(child)
            log.info("created %s %s", child["kind"], found["name"])
        except Conflict:
            pass  # it exists: left alone
        self.ensured[key] = time.monotonic()


def _resource(body: Obj) -> Resource:
    return resources.BY_KIND[(str(body["apiVersion"]), str(body["kind"]))]


def _controller_uid(body: Obj) -> str | None:
    """The uid of the child's controlling owner, as the body sets it."""
    for owner in meta_of(body).get("ownerReferences") or ():
        if owner.get("controller"):
            return str(owner.get("uid"))
    return None
