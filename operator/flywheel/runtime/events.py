"""Events are posted in the background, as client-go's event broadcaster does.

A reconcile hands its Events over and goes on: under a burst the children are written first,
and the Events follow when the reconcilers are idle or an Event has waited `MAX_LAG` seconds
(the same :class:`~flywheel.runtime.reports.Pace` as the statuses). The queue is
bounded; when it is full an Event is dropped and logged (a backlog of Events is never worth
holding the operator's memory or the API server's capacity). A failed post is one log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from flywheel.core.objects import Obj, meta_of
from flywheel.core.outcome import Event
from flywheel.kube.api import KubeApi
from flywheel.kube.errors import KubeError
from flywheel.runtime.reports import Pace

logger = logging.getLogger("flywheel")


class EventSink(Protocol):
    """Where a reconcile's Events go."""

    async def post(self, regarding: Obj, event: Event) -> None:
        """Post (or queue) one Event about an object."""


@dataclass
class DirectEvents:
    """Post each Event before going on (tests, and anything that must see it at once)."""

    kube: KubeApi

    async def post(self, regarding: Obj, event: Event) -> None:
        """Post it now."""
        await self.kube.post_event(regarding, event)


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

    def __post_init__(self) -> None:
        self._queue = asyncio.Queue(self.capacity)

    async def post(self, regarding: Obj, event: Event) -> None:
        """Queue it; drop it (and say so) when the queue is full."""
        try:
            self._queue.put_nowait((regarding, event, time.monotonic()))
        except asyncio.QueueFull:
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
