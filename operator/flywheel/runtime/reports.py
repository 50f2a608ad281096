"""Children first, reports after: statuses written behind the work they report on.

A reconcile's actions (the Jobs, Deployments and ModelVersions it creates: the work) are
written before it returns. Its status and Events report on that work. Under a burst, writing
every report as soon as it is decided makes each object's work wait behind every other
object's reports: the API server's capacity goes to what nobody is waiting for. So, in the
operator (tests and tools use :class:`DirectStatus`, which writes at once):

- a decided status is held in the watch cache (the next reconcile reads it back at once, see
  :mod:`.store`) and written by a few writers when no reconciler has work, or once the oldest
  unwritten decision of the object is :data:`MAX_LAG` seconds old (:class:`Pace`);
- an object's reports coalesce: the write is the merge patch from the API server's copy to the
  latest status decided, so "Reconciling, Job created" and "Job started" become one write;
- one write per object at a time; a decision made during a write is written after it;
- an unanswered write is retried (0.5 s doubling to 5 s); an object deleted meanwhile is
  dropped; a refused write is logged and dropped (the next reconcile decides it again).

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
from flywheel.kube.errors import KubeError, NotFound, Unavailable
from flywheel.runtime.queue import Backoff
from flywheel.runtime.store import CachedStore, Store

logger = logging.getLogger("flywheel")

MAX_LAG = 10.0
"""Seconds a decided status (or Event) waits at most for the reconcilers to be idle."""
RETRY = Backoff(base=0.5, cap=5.0)
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


@dataclass
class StatusLane:
    """Statuses held in the cache and written behind the children (see the module docstring)."""

    kube: KubeApi
    store: CachedStore
    pace: Pace
    workers: int = 2
    _since: dict[Key, float] = field(default_factory=dict)
    _queue: asyncio.Queue[Key] = field(default_factory=asyncio.Queue)
    _taken: set[Key] = field(default_factory=set)
    """Keys queued or being written: each is in the queue at most once."""

    async def report(self, resource: Resource, body: Obj, patch: Mapping[str, Any]) -> None:
        """Hold the new status; write it when the pace allows."""
        found = meta_of(body)
        key = (resource, str(found["namespace"]), str(found["name"]))
        self.store.hold(*key, merge_patch(body.get("status") or {}, dict(patch)))
        self._since.setdefault(key, time.monotonic())
        self._enqueue(key)

    @property
    def pending(self) -> int:
        """Objects whose decided status is not written yet."""
        return len(self._since)

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
                await self.pace.turn(self._since.get(key, time.monotonic()))
                await self._write_until_answered(key)
            finally:
                self._taken.discard(key)
                self._queue.task_done()
            if self.store.pending(*key) is not None:
                self._since[key] = time.monotonic()
                self._enqueue(key)  # decided again while it was written
            else:
                self._since.pop(key, None)

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
        status = self.store.pending(*key)
        if status is None:
            return
        resource, namespace, name = key
        current = self.store.server(*key)
        try:
            if current is None:
                raise NotFound(404, f"{_name(key)} is gone")
            diff = merge_diff(current.get("status") or {}, status)
            if diff:
                ref = resource.ref(namespace, name)
                answer = await self.kube.merge_patch(ref, {"status": diff}, subresource="status")
                self.store.wrote(resource, answer)
        except NotFound:
            pass  # deleted meanwhile
        except Unavailable:
            raise
        except KubeError as error:
            logger.error("%s: status not written: %s", _name(key), error)
        self.store.release(*key, status)

    async def flush(self, timeout: float) -> None:
        """Write what is held now (at most `timeout` seconds)."""
        self.pace.hurry()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)


def _name(key: Key) -> str:
    resource, namespace, name = key
    return f"{resource.kind} {namespace}/{name}"
