"""Events go out in the background, bounded, a failure to post one is one log line, and an
object's Event that repeats its last reason is not posted again."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from flywheel.api.kinds import DATASET
from flywheel.core.outcome import Event, Outcome
from flywheel.core.target import Target
from flywheel.kube.errors import Unavailable
from flywheel.runtime.controller import Controller, Env
from flywheel.runtime.events import EventQueue, LastReasons
from tests.support.fakekube import FakeCluster, Harness

REGARDING = {
    "apiVersion": "flywheel.dev/v1alpha1",
    "kind": "Dataset",
    "metadata": {"name": "iris", "namespace": "ns", "uid": "u"},
}


async def test_events_are_posted_in_the_background_and_flushed() -> None:
    cluster = FakeCluster()
    queue = EventQueue(cluster)
    await queue.post(REGARDING, Event("Normal", "IngestStarted", "Job j"))
    assert cluster.events == [], "the reconcile does not wait for it"
    worker = asyncio.create_task(queue.run())
    await queue.flush(timeout=1)
    worker.cancel()
    assert [(where, e.reason) for where, e in cluster.events] == [
        ("Dataset ns/iris", "IngestStarted")
    ]


async def test_a_full_queue_drops_and_a_failed_post_is_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = FakeCluster()
    queue = EventQueue(cluster, capacity=1)
    await queue.post(REGARDING, Event("Normal", "A", "first"))
    await queue.post(REGARDING, Event("Normal", "B", "second"))
    assert queue.dropped == 1
    assert "Dataset ns/iris: Event B dropped" in caplog.text
    cluster.fail_next("create", Unavailable(0, "ConnectError"))
    worker = asyncio.create_task(queue.run())
    await queue.flush(timeout=1)
    worker.cancel()
    assert cluster.events == []
    assert "Dataset ns/iris: Event A not posted" in caplog.text
    assert "Traceback" not in caplog.text


# At most one Event per reason per object until the reason changes (issue: event floods).


def _about(uid: str = "u", generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "web", "namespace": "ns", "uid": uid, "generation": generation},
    }


FAILED = Event("Warning", "RolloutFailed", "web v1 did not become ready")


def test_an_event_repeating_the_objects_last_reason_is_dropped_until_the_reason_changes() -> None:
    last = LastReasons()
    assert last.admit(_about(), FAILED)
    assert not last.admit(_about(), FAILED), "the same reason again"
    assert not last.admit(_about(), replace(FAILED, message="another sentence")), "reason only"
    assert last.admit(_about(), Event("Normal", "RollingOut", "v2"))
    assert last.admit(_about(), FAILED), "the reason changed in between"
    assert last.admit(_about("other"), FAILED), "per object"
    assert last.admit(_about(generation=2), FAILED), "a new spec may say it once again"
    assert not last.admit(_about(generation=2), FAILED)


def test_objects_are_told_apart_by_uid_and_memory_is_bounded() -> None:
    last = LastReasons(capacity=2)
    assert last.admit(_about("a"), FAILED)
    assert last.admit(_about("b"), FAILED)
    assert not last.admit(_about("a"), FAILED)  # "a" is now the most recently used
    assert last.admit(_about("c"), FAILED)  # forgets "b", the least recently used
    assert len(last) == 2
    assert not last.admit(_about("a"), FAILED)
    assert last.admit(_about("b"), FAILED), "forgotten: one more Event, never a flood"
    last.forget("b")
    assert last.admit(_about("b"), FAILED)
    no_uid = {"kind": "Dataset", "metadata": {"name": "x", "namespace": "ns"}}
    assert last.admit(no_uid, FAILED)
    assert last.admit(no_uid, FAILED), "no uid: nothing to tell objects apart by"


def test_an_event_not_posted_does_not_silence_the_next() -> None:
    last = LastReasons()
    assert last.admit(_about(), FAILED)
    last.unsent(_about(), FAILED)
    assert last.admit(_about(), FAILED)
    last.unsent(_about(), Event("Normal", "RollingOut", "v2"))  # not the last one: no effect
    assert not last.admit(_about(), FAILED)


async def test_the_queue_posts_a_repeated_event_once_and_again_after_a_failed_post() -> None:
    cluster = FakeCluster()
    queue = EventQueue(cluster)
    for _ in range(212):  # a poll every few seconds for 13 minutes
        await queue.post(_about(), FAILED)
    assert queue.pending == 1
    assert queue.repeated == 211
    cluster.fail_next("create", Unavailable(0, "ConnectError"))
    worker = asyncio.create_task(queue.run())
    await queue.flush(timeout=1)
    assert cluster.events == []
    await queue.post(_about(), FAILED)  # the first was not posted: this one goes
    await queue.flush(timeout=1)
    worker.cancel()
    assert [e.reason for _, e in cluster.events] == ["RolloutFailed"]


async def test_a_full_queue_does_not_silence_the_next_event() -> None:
    queue = EventQueue(FakeCluster(), capacity=1)
    await queue.post(_about("a"), Event("Normal", "A", "first"))
    await queue.post(_about(), FAILED)
    assert queue.dropped == 1
    assert not queue.last.admit(_about("a"), Event("Normal", "A", "first"))
    assert queue.last.admit(_about(), FAILED), "dropped, so not the last Event posted"


async def test_a_decision_that_says_the_same_thing_at_every_poll_posts_one_event() -> None:
    """Whatever a controller decides, the runtime posts Events on transitions only."""
    said = [FAILED]

    async def gather(env: Env, target: Target[Any, Any], now: datetime) -> None:
        return None

    def decide(inputs: None, now: datetime) -> Outcome:
        return Outcome(events=tuple(said))

    h = Harness(Controller(kind=DATASET, gather=gather, decide=decide))
    h.cluster.add(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": "iris", "namespace": "ns"},
            "spec": {"source": {"uri": "sklearn://iris"}},
        }
    )
    for _ in range(212):
        await h.reconcile("iris")
    assert h.events("iris") == ["RolloutFailed"]
    said[:] = [Event("Normal", "RolloutComplete", "serving v1")]
    await h.reconcile("iris")
    said[:] = [FAILED]
    for _ in range(3):
        await h.reconcile("iris")
    assert h.events("iris") == ["RolloutFailed", "RolloutComplete", "RolloutFailed"]
