"""Events go out in the background, bounded, and a failure to post one is one log line."""

from __future__ import annotations

import asyncio

import pytest

from flywheel.core.outcome import Event
from flywheel.kube.errors import Unavailable
from flywheel.runtime.events import EventQueue
from tests.support.fakekube import FakeCluster

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
