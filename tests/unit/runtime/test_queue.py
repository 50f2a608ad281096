"""The work queue: coalescing, one worker per key, delayed adds, per-key back-off."""

from __future__ import annotations

import asyncio
import time

import pytest

from flywheel.runtime.queue import Backoff, WorkQueue


async def test_keys_coalesce_and_come_out_in_order() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "c", "b"):
        queue.add(key)
    assert len(queue) == 3
    assert [await queue.get() for _ in range(3)] == ["a", "b", "c"]


async def test_a_key_is_never_handed_to_two_workers_at_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert await queue.get() == "a"
    queue.add("a")  # an event while "a" is being reconciled
    assert len(queue) == 0, "held back while processing"
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    queue.done("a")
    assert await asyncio.wait_for(waiter, 1) == "a", "queued again once the first is done"
    queue.done("a")
    queue.done("a")
    assert len(queue) == 0, "done without a new add queues nothing"


async def test_a_delayed_add_keeps_the_earliest_time() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 30)
    queue.add_after("a", 0.01)
    queue.add_after("a", 60)
    assert queue.waiting == 1
    assert await asyncio.wait_for(queue.get(), 1) == "a"
    assert queue.waiting == 0


async def test_failures_back_off_exponentially_until_forgotten() -> None:
    queue: WorkQueue[str] = WorkQueue(backoff=Backoff(base=0.5, cap=8))
    assert [queue.retry("a") for _ in range(6)] == [0.5, 1, 2, 4, 8, 8]
    queue.forget("a")
    assert queue.retry("a") == 0.5
    assert queue.retry("b", Backoff(base=1, cap=300)) == 1, "another policy for another cause"
    queue.drop("a")
    queue.drop("b")
    assert queue.waiting == 0


async def test_a_closed_queue_stops_its_workers() -> None:
    queue: WorkQueue[str] = WorkQueue()
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.close()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiter, 1)


async def test_a_long_reconcile_stops_counting_as_just_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    await queue.get()
    assert (queue.processing, queue.started_within(1.0)) == (1, 1)
    later = time.monotonic() + 2.0
    monkeypatch.setattr("flywheel.runtime.queue.time.monotonic", lambda: later)
    assert (queue.processing, queue.started_within(1.0)) == (1, 0)
    queue.done("a")
    assert queue.processing == 0
