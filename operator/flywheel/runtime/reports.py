"""Children first, reports after: statuses written behind the work they report on.

A reconcile's actions (the Jobs, Deployments and ModelVersions it creates: the work) are
written before it returns. Its status and Events report on that work. Under a burst, writing
every report as soon as it is decided makes each object's work wait behind every other
object's reports: the API server's capacity goes to what nobody is waiting for. So, in the
operator (tests and tools use :class:`DirectStatus`, which writes at once):

- the status fields a reconcile decides are held in the watch cache (the next reconcile reads
  them back at once, see :mod:`.store`) and written by a few writers when no reconciler has
  work waiting or a reconcile just started, or once the object's oldest unwritten decision is
  :data:`MAX_LAG` seconds old (:class:`Pace`);
- an object's decisions coalesce: the write is the merge patch from the API server's copy to
  the fields decided, so "Reconciling, Job created" and "Job started" become one write; fields
  nobody decided here (another controller's links) are the API server's, never overwritten;
- the write is conditional on the object's resourceVersion: an object changed meanwhile is
  read again and the difference recomputed, and one deleted and created again under the same
  name (another uid) never receives its predecessor's status;
- one write per object at a time; a decision made during a write is written after it;
- an unanswered write is retried (0.5 s doubling to 5 s); a refused one is logged and the
  object reconciled again with the same back-off as a failed reconcile.

Nothing is lost by a restart in between: every decision is taken again from the children
and the API server's copy, which is how a reconcile always starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from flywheel.core.admission import merge_diff, merge_patch
from flywheel.core.objects import Obj, meta_of
from flywheel.core.resources import Resource
from flywheel.kube.api import KubeApi
from flywheel.kube.errors import Conflict, KubeError, NotFound, Unavailable
from flywheel.runtime.queue import Backoff
from flywheel.runtime.store import CachedStore, Held, Store

logger = logging.getLogger("flywheel")

MAX_LAG = 10.0
"""Seconds a decided status (or Event) waits at most for the reconcilers to be idle."""
RETRY = Backoff(base=0.5, cap=5.0)
CONFLICTS = 3
"""Times a status write is tried against a fresh copy before it counts as refused."""
Key = tuple[Resource, str, str]


@dataclass
class Pace:
    """When reports may go: the reconcilers have no work, or the report has waited long enough."""

    busy: Callable[[], bool]
    max_lag: float = MAX_LAG
    tick: float = 0.05
    hurried: bool = False

    async def turn(self, since: float) -> None:
        """Return when a report decided at `since` (monotonic seconds) may be written."""
        while not self.hurried and self.busy() and time.monotonic() - since < self.max_lag:
            await asyncio.sleep(self.tick)

    def hurry(self) -> None:
        """Shutting down: write everything now."""
        self.hurried = True


class StatusSink(Protocol):
    """Where a reconcile's status patch goes."""

    async def report(self, resource: Resource, body: Obj, patch: Mapping[str, Any]) -> None:
        """Write (or hold) the status of `body` with `patch` merged in."""


@dataclass
class DirectStatus:
    """Write each status patch before going on."""

    kube: KubeApi
    store: Store

    async def report(self, resource: Resource, body: Obj, patch: Mapping[str, Any]) -> None:
        """Patch it now."""
        ref = resource.ref(meta_of(body)["namespace"], meta_of(body)["name"])
        answer = await self.kube.merge_patch(ref, {"status": dict(patch)}, subresource="status")
        self.store.wrote(resource, answer)


Refused = Callable[[Key, KubeError], None]
"""Told when the API server refused a status write (the object's reconcile retries it)."""


@dataclass
class StatusLane:
    """Statuses held in the cache and written behind the children (see the module docstring)."""

    kube: KubeApi
    store: CachedStore
    pace: Pace
    refused: Refused | None = None
    workers: int = 2
    _queue: asyncio.Queue[Key] = field(default_factory=asyncio.Queue)
    _taken: set[Key] = field(default_factory=set)
    """Keys queued or being written: each is in the queue at most once."""

    async def report(self, resource: Resource, body: Obj, patch: Mapping[str, Any]) -> None:
        """Hold the status fields the patch decides (over what is held already); write them
        when the pace allows."""
        found = meta_of(body)
        key = (resource, str(found["namespace"]), str(found["name"]))
        decided = merge_patch(body.get("status") or {}, dict(patch))
        fields = {name: decided.get(name) for name in patch}
        before = self.store.pending(*key)
        if before is not None and before.uid == found.get("uid"):
            held = Held(before.uid, {**before.fields, **fields}, before.since)
        else:
            held = Held(found.get("uid"), fields, time.monotonic())
        self.store.hold(*key, held)
        self._enqueue(key)

    @property
    def pending(self) -> int:
        """Objects whose decided status is not written yet."""
        return len(self._taken)

    def _enqueue(self, key: Key) -> None:
        if key not in self._taken:
            self._taken.add(key)
            self._queue.put_nowait(key)

    async def run(self) -> None:
        """Write until cancelled."""
        await asyncio.gather(*(self._work() for _ in range(self.workers)))

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            try:
                held = self.store.pending(*key)
                if held is not None:
                    await self.pace.turn(held.since)
                    await self._write_until_answered(key)
            finally:
                self._taken.discard(key)
                self._queue.task_done()
            if self.store.pending(*key) is not None:
                self._enqueue(key)  # decided again while it was written

    async def _write_until_answered(self, key: Key) -> None:
        failures = 0
        while True:
            try:
                await self._write(key)
                return
            except Unavailable as error:
                failures += 1
                delay = RETRY.delay(failures)
                logger.warning(
                    "%s: the API server did not answer a status write (%s); retrying in %.1fs",
                    _name(key),
                    error,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _write(self, key: Key) -> None:
        held = self.store.pending(*key)
        if held is None:
            return
        try:
            await self._patch(key, held)
        except Unavailable:
            raise
        except KubeError as error:
            logger.error("%s: status not written: %s", _name(key), error)
            if self.refused is not None:
                self.refused(key, error)
        except Exception:
            logger.exception("%s: status not written", _name(key))
        self.store.release(*key, held)

    async def _patch(self, key: Key, held: Held) -> None:
        """Patch the held fields onto the object, conditional on its resourceVersion: an
        object changed meanwhile is read again (and one created again under the name, with
        another uid, is left alone)."""
        resource, namespace, name = key
        ref = resource.ref(namespace, name)
        for _ in range(CONFLICTS):
            current = self.store.server(*key)
            if current is None or meta_of(current).get("uid") != held.uid:
                return  # deleted (and perhaps created again) meanwhile
            server = current.get("status") or {}
            diff = merge_diff({k: server[k] for k in held.fields if k in server}, held.over({}))
            if not diff:
                return
            version = meta_of(current).get("resourceVersion")
            patch = {"metadata": {"resourceVersion": version}, "status": diff}
            try:
                answer = await self.kube.merge_patch(ref, patch, subresource="status")
            except NotFound:
                return
            except Conflict:
                fresh = await self.kube.get(resource, namespace, name)
                if fresh is None:
                    return
                self.store.wrote(resource, fresh)
                continue
            self.store.wrote(resource, answer)
            return
        raise Conflict(409, f"{_name(key)} kept changing while its status was written")

    async def flush(self, timeout: float) -> None:
        """Write what is held now (at most `timeout` seconds)."""
        self.pace.hurry()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)


def _name(key: Key) -> str:
    resource, namespace, name = key
    return f"{resource.kind} {namespace}/{name}"
