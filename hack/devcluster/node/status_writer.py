"""Getting a pod's status to the API server no matter how often single calls fail.

A pod worker marks its status dirty after every change; `StatusWriter` writes the latest
status, and when a write fails for any reason (an error answer, a timeout, a reset connection,
whatever the client raises under load) it logs the exception, keeps the status marked and tries
again with a capped exponential back-off. Only a 404 (the pod is gone) ends it. `flush()` waits
until the status as it is now has been written, so a pod's last state change is never lost when
its worker ends. `persist()` retries a single call (a terminating pod's final DELETE) the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from devcluster.node.api import ApiError

log = logging.getLogger(__name__)
T = TypeVar("T")

FIRST_RETRY = 0.1
MAX_RETRY = 5.0
PACE = 0.1
"""Pause after a successful write, so bursts of changes become one write."""


def _gone(error: BaseException) -> bool:
    return isinstance(error, ApiError) and error.status == 404


def _first_of_a_streak(error: BaseException, delay: float, first: float) -> bool:
    """Whether to log the traceback: for an unexpected kind of error, once per failure streak
    (an error answer or a timeout says all in its message)."""
    return delay == first and not isinstance(error, ApiError | TimeoutError)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class StatusWriter:
    """Writes a pod's status whenever it is marked dirty, retrying failed writes."""

    def __init__(
        self,
        write: Callable[[], Awaitable[None]],
        what: str,
        *,
        first_retry: float = FIRST_RETRY,
        max_retry: float = MAX_RETRY,
        pace: float = PACE,
    ) -> None:
        self.dirty = asyncio.Event()
        self.what = what
        self.gone = False
        """The pod no longer exists (a write answered 404); nothing more is written."""
        self.failures = 0
        """Failed writes so far (each was retried)."""
        self._write = write
        self._first_retry, self._max_retry, self._pace = first_retry, max_retry, pace
        self._begun = 0  # writes begun; a write numbered n carries every change marked before it
        self._written = 0  # number of the latest successful write
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin writing in the background."""
        self._task = asyncio.create_task(self._run(), name=f"status {self.what}")

    def mark(self) -> None:
        """The status changed: write it soon."""
        self.dirty.set()

    async def _run(self) -> None:
        delay = self._first_retry
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            self._begun += 1
            number = self._begun
            try:
                await self._write()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if _gone(error):
                    self.gone = True
                    self._pulse()
                    return
                self.failures += 1
                log.warning(
                    "status of %s not written (%s); retrying in %.1fs",
                    self.what,
                    _describe(error),
                    delay,
                    exc_info=_first_of_a_streak(error, delay, self._first_retry),
                )
                self.dirty.set()  # the next attempt writes whatever is latest by then
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_retry)
                continue
            delay = self._first_retry
            self._written = number
            self._pulse()
            await asyncio.sleep(self._pace)

    def _pulse(self) -> None:
        # Wake every flush() waiting now; clearing at once leaves their wake-ups in place.
        self._progress.set()
        self._progress.clear()

    async def flush(self) -> bool:
        """Wait until the status as it is now is written: True, or False when the pod is gone
        (or the writer was stopped)."""
        self.dirty.set()
        target = self._begun + 1  # the first write to begin after this mark
        while self._written < target and not self.gone:
            task = self._task
            if task is None or task.done():
                return False
            waiter = asyncio.ensure_future(self._progress.wait())
            try:
                await asyncio.wait([waiter, task], return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
        return self._written >= target

    async def stop(self) -> None:
        """Stop writing (after `flush`, nothing is lost)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def persist(
    call: Callable[[], Awaitable[T]],
    what: str,
    *,
    first_retry: float = FIRST_RETRY,
    max_retry: float = MAX_RETRY,
    final: tuple[int, ...] = (404,),
) -> T | None:
    """Run `call` until it succeeds, with the writer's back-off; None when it answers with a
    `final` status (404: gone; a DELETE with a uid precondition adds 409: replaced)."""
    delay = first_retry
    while True:
        try:
            return await call()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if isinstance(error, ApiError) and error.status in final:
                return None
            log.warning(
                "%s failed (%s); retrying in %.1fs",
                what,
                _describe(error),
                delay,
                exc_info=_first_of_a_streak(error, delay, first_retry),
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_retry)
