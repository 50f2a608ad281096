"""Events are posted in the background, as client-go's event broadcaster does.

A reconcile hands its Events over and goes on: under a burst the children are written first,
and the Events follow when the reconcilers are idle or an Event has waited `MAX_LAG` seconds
(the same :class:`~flywheel.runtime.reports.Pace` as the statuses). The queue is
bounded; when it is full an Event is dropped and logged (a backlog of Events is never worth
holding the operator's memory or the API server's capacity). A failed post is one log line.

Events report transitions, never the state at every look: an Event whose reason is the reason
of the last Event posted about the same object (same uid, same generation) is dropped, until
that object's reason changes (:class:`LastReasons`). A decision that says the same thing at
every poll (a failed rollout, a missing version) then posts it once, not a thousand times an
hour, whatever the controller does; a new spec (generation) may say it once again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

from flywheel.core.objects import Obj, meta_of
from flywheel.core.outcome import Event
from flywheel.kube.api import KubeApi
from flywheel.kube.errors import KubeError
from flywheel.runtime.reports import Pace

logger = logging.getLogger("flywheel")


LAST_REASONS = 10_000
"""Objects whose last Event reason is remembered (the least recently posted are forgotten)."""


@dataclass
class LastReasons:
    """The reason of the last Event posted about each object, for the `capacity` objects most
    recently posted about: at most one Event per reason per object until the reason changes.

    Keyed by uid, so an object deleted and created again under its name starts afresh, and the
    entry of a deleted object is never matched again (it ages out of the LRU). The generation
    is part of what is remembered: a changed spec may repeat its predecessor's reason once (one
    `InvalidSpec` Event per generation). Pure: no I/O, no clock.
    """

    capacity: int = LAST_REASONS
    _last: OrderedDict[str, tuple[object, str]] = field(default_factory=OrderedDict)

    def admit(self, regarding: Obj, event: Event) -> bool:
        """Whether to post the Event; when so, it is remembered as the object's last."""
        found = meta_of(regarding)
        uid = found.get("uid")
        if not uid:
            return True  # nothing to tell objects apart by (never the case for a stored object)
        key = str(uid)
        said = (found.get("generation"), event.reason)
        if self._last.get(key) == said:
            self._last.move_to_end(key)
            return False
        self._last[key] = said
        self._last.move_to_end(key)
        while len(self._last) > self.capacity:
            self._last.popitem(last=False)
        return True

    def unsent(self, regarding: Obj, event: Event) -> None:
        """The admitted Event was not posted (dropped, or refused): the next one may go."""
        key = str(meta_of(regarding).get("uid") or "")
        if self._last.get(key) == (meta_of(regarding).get("generation"), event.reason):
            del self._last[key]

    def forget(self, uid: str) -> None:
        """The object is gone."""
        self._last.pop(uid, None)

    def __len__(self) -> int:
        return len(self._last)


class EventSink(Protocol):
    """Where a reconcile's Events go."""

    async def post(self, regarding: Obj, event: Event) -> None:
        """Post (or queue) one Event about an object."""


@dataclass
class DirectEvents:
    """Post each Event before going on (tests, and anything that must see it at once)."""

    kube: KubeApi
    last: LastReasons = field(default_factory=LastReasons)
    repeated: int = 0
    """Events dropped because they repeated the object's last reason."""

    async def post(self, regarding: Obj, event: Event) -> None:
        """Post it now, unless it repeats the object's last reason."""
        if not self.last.admit(regarding, event):
            self.repeated += 1
            return
        try:
            await self.kube.post_event(regarding, event)
        except BaseException:
            self.last.unsent(regarding, event)
            raise


@dataclass
class EventQueue:
    """Events posted by a few background workers from a bounded queue."""

    kube: KubeApi
    pace: Pace | None = None
    """When Events may go (default: at once)."""
    capacity: int = 4096
    workers: int = 2
    _queue: asyncio.Queue[tuple[Obj, Event, float]] = field(init=False)
    dropped: int = 0
    last: LastReasons = field(default_factory=LastReasons)
    repeated: int = 0
    """Events dropped because they repeated the object's last reason."""

    def __post_init__(self) -> None:
        self._queue = asyncio.Queue(self.capacity)

    async def post(self, regarding: Obj, event: Event) -> None:
        """Queue it, unless it repeats the object's last reason; drop it (and say so) when the
        queue is full."""
        if not self.last.admit(regarding, event):
            self.repeated += 1
            return
        try:
            self._queue.put_nowait((regarding, event, time.monotonic()))
        except asyncio.QueueFull:
            self.last.unsent(regarding, event)
            self.dropped += 1
            found = meta_of(regarding)
            logger.warning(
                "%s %s/%s: Event %s dropped (%d Events waiting)",
                regarding.get("kind"),
                found.get("namespace"),
                found.get("name"),
                event.reason,
                self._queue.qsize(),
            )

    @property
    def pending(self) -> int:
        """Events queued."""
        return self._queue.qsize()

    async def run(self) -> None:
        """Post until cancelled."""
        await asyncio.gather(*(self._work() for _ in range(self.workers)))

    async def _work(self) -> None:
        while True:
            regarding, event, since = await self._queue.get()
            try:
                if self.pace is not None:
                    await self.pace.turn(since)
                await self.kube.post_event(regarding, event)
            except KubeError as error:
                self.last.unsent(regarding, event)
                found = meta_of(regarding)
                logger.warning(
                    "%s %s/%s: Event %s not posted: %s",
                    regarding.get("kind"),
                    found.get("namespace"),
                    found.get("name"),
                    event.reason,
                    error,
                )
            finally:
                self._queue.task_done()

    async def flush(self, timeout: float) -> None:
        """Post what is queued now (at most `timeout` seconds)."""
        if self.pace is not None:
            self.pace.hurry()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
