"""A work queue with controller-runtime's semantics, on asyncio.

- A key is queued at most once however often it is added (events coalesce).
- A key is never handed to two workers at once: added while being worked on, it is queued again
  when the worker is done, so the next reconcile sees the latest state.
- `add_after` keeps the earliest time asked for (a schedule, a back-off, an interval).
- Failures back off per key, exponentially from `base` to `cap`; `forget` resets a key after a
  success.

Keys are hashable values (the reconciler uses (namespace, name)).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Backoff:
    """Per-key exponential back-off after failures: base · 2^(failures-1), at most cap."""

    base: float = 0.5
    cap: float = 8.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failure in a row."""
        return float(min(self.cap, self.base * 2 ** max(failures - 1, 0)))


@dataclass
class WorkQueue(Generic[K]):
    """Keys waiting to be reconciled (see the module docstring)."""

    backoff: Backoff = field(default_factory=Backoff)
    _ready: deque[K] = field(default_factory=deque)
    _dirty: set[K] = field(default_factory=set)
    _processing: dict[K, float] = field(default_factory=dict)
    """Keys being worked on, and since when (monotonic seconds)."""
    _timers: dict[K, asyncio.TimerHandle] = field(default_factory=dict)
    _failures: dict[K, int] = field(default_factory=dict)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _closed: bool = False

    def add(self, key: K) -> None:
        """Queue the key now (a no-op if it is already waiting)."""
        if self._closed or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._ready.append(key)
            self._wakeup.set()

    def add_after(self, key: K, delay: float) -> None:
        """Queue the key after `delay` seconds, unless something queues it earlier."""
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def retry(self, key: K, backoff: Backoff | None = None) -> float:
        """Queue the key again after its next back-off (this queue's, or `backoff`); the delay
        chosen."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = (backoff or self.backoff).delay(failures)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """The key succeeded: its next failure backs off from the start."""
        self._failures.pop(key, None)

    def drop(self, key: K) -> None:
        """The object is gone: cancel its timer and forget its failures."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._failures.pop(key, None)

    async def get(self) -> K:
        """The next key to work on (it is then being processed until `done`)."""
        while not self._ready:
            if self._closed:
                raise asyncio.CancelledError
            self._wakeup.clear()
            await self._wakeup.wait()
        key = self._ready.popleft()
        self._dirty.discard(key)
        self._processing[key] = time.monotonic()
        return key

    def done(self, key: K) -> None:
        """Processing finished; a key added meanwhile is queued again."""
        self._processing.pop(key, None)
        if key in self._dirty:
            self._ready.append(key)
            self._wakeup.set()

    def close(self) -> None:
        """Stop handing out keys; cancel every timer."""
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._wakeup.set()

    def __len__(self) -> int:
        return len(self._ready)

    @property
    def processing(self) -> int:
        """Keys being worked on."""
        return len(self._processing)

    def started_within(self, seconds: float) -> int:
        """Keys being worked on that were handed out less than `seconds` ago."""
        since = time.monotonic() - seconds
        return sum(1 for started in self._processing.values() if started > since)

    @property
    def waiting(self) -> int:
        """Keys with a timer (requeue-after or back-off)."""
        return len(self._timers)
