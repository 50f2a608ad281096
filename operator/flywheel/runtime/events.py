"""Events are posted in the background, as client-go's event broadcaster does.

A reconcile hands its Events over and goes on: under a burst the children and statuses that
matter are written first, and the Events follow as the API server has room. The queue is
bounded; when it is full an Event is dropped and logged (a backlog of Events is never worth
holding the operator's memory or the API server's capacity). A failed post is one log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Protocol

from flywheel.core.objects import Obj, meta_of
from flywheel.core.outcome import Event
from flywheel.kube.api import KubeApi
from flywheel.kube.errors import KubeError

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
    capacity: int = 4096
    workers: int = 2
    _queue: asyncio.Queue[tuple[Obj, Event]] = field(init=False)
    dropped: int = 0

    def __post_init__(self) -> None:
        self._queue = asyncio.Queue(self.capacity)

    async def post(self, regarding: Obj, event: Event) -> None:
        """Queue it; drop it (and say so) when the queue is full."""
        try:
            self._queue.put_nowait((regarding, event))
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

    async def run(self) -> None:
        """Post until cancelled."""
        await asyncio.gather(*(self._work() for _ in range(self.workers)))

    async def _work(self) -> None:
        while True:
            regarding, event = await self._queue.get()
            try:
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
        """Wait (at most `timeout` seconds) until every queued Event is posted."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
