"""Statuses written behind the children: held and read back, coalesced, written when idle or
late enough, retried when unanswered, dropped when the object is gone."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from flywheel.controllers.dataset import CONTROLLER
from flywheel.core.admission import merge_diff, merge_patch
from flywheel.core.outcome import Event
from flywheel.core.resources import DATASETS
from flywheel.kube.errors import Forbidden, KubeError, Unavailable
from flywheel.runtime.events import EventQueue
from flywheel.runtime.reports import Pace, StatusLane
from flywheel.runtime.store import CachedStore
from tests.support.fakekube import FakeCluster, FakeIndex, Harness

BODY: dict[str, Any] = {
    "apiVersion": "flywheel.dev/v1alpha1",
    "kind": "Dataset",
    "metadata": {"name": "d", "namespace": "ns"},
    "spec": {},
}


class Busy:
    """Whether the reconcilers have work, as the test says."""

    def __init__(self) -> None:
        self.now = False

    def __call__(self) -> bool:
        return self.now


def _setup(max_lag: float = 10.0) -> tuple[FakeCluster, CachedStore, StatusLane, Busy]:
    cluster = FakeCluster()
    index = FakeIndex()
    index.put(cluster.add(BODY))
    store = CachedStore()
    store.attach(DATASETS, index)
    busy = Busy()
    lane = StatusLane(cluster, store, Pace(busy, max_lag=max_lag, tick=0.01))
    return cluster, store, lane, busy


def _patches(cluster: FakeCluster) -> int:
    return sum(1 for verb, plural, _ in cluster.requests if (verb, plural) == ("patch", "datasets"))


async def _report(lane: StatusLane, store: CachedStore, patch: dict[str, Any]) -> None:
    body = store.get(DATASETS, "ns", "d")
    assert body is not None
    await lane.report(DATASETS, body, patch)


async def _settled(lane: StatusLane) -> None:
    for _ in range(300):
        await asyncio.sleep(0.01)
        if lane.pending == 0:
            return
    raise AssertionError(f"{lane.pending} statuses still held")


async def test_a_held_status_is_read_back_and_reports_coalesce_while_busy() -> None:
    cluster, store, lane, busy = _setup()
    busy.now = True
    writer = asyncio.create_task(lane.run())
    await _report(lane, store, {"phase": "Pending", "conditions": [{"type": "Ready"}]})
    await _report(lane, store, {"phase": "Ingesting", "job": "d-ingest"})
    found = store.get(DATASETS, "ns", "d")
    assert found is not None
    assert found["status"] == {
        "phase": "Ingesting",
        "job": "d-ingest",
        "conditions": [{"type": "Ready"}],
    }, "the next reconcile reads what was decided"
    await asyncio.sleep(0.1)
    assert _patches(cluster) == 0, "nothing is written while the reconcilers have work"
    busy.now = False
    await _settled(lane)
    writer.cancel()
    assert _patches(cluster) == 1, "two decisions, one write"
    assert cluster.obj(DATASETS, "ns", "d")["status"]["phase"] == "Ingesting"
    assert store.pending(DATASETS, "ns", "d") is None


async def test_a_status_waits_at_most_max_lag_for_an_idle_moment() -> None:
    cluster, store, lane, busy = _setup(max_lag=0.2)
    busy.now = True
    writer = asyncio.create_task(lane.run())
    await _report(lane, store, {"phase": "Pending"})
    await _settled(lane)
    writer.cancel()
    assert busy.now, "written while still busy"
    assert cluster.obj(DATASETS, "ns", "d")["status"] == {"phase": "Pending"}


async def test_only_the_difference_from_the_servers_copy_is_written() -> None:
    cluster, store, lane, _ = _setup()
    writer = asyncio.create_task(lane.run())
    await _report(lane, store, {"phase": "Pending", "stats": {"a": 1, "b": 2}})
    await _settled(lane)
    await _report(lane, store, {"stats": {"b": None, "c": 3}})
    await _settled(lane)
    writer.cancel()
    assert cluster.obj(DATASETS, "ns", "d")["status"] == {
        "phase": "Pending",
        "stats": {"a": 1, "c": 3},
    }


async def test_a_decision_taken_during_a_write_is_written_after_it() -> None:
    cluster, store, lane, _ = _setup()
    writer = asyncio.create_task(lane.run())
    await _report(lane, store, {"phase": "Pending"})
    while not cluster.requests:  # the first write is in flight
        await asyncio.sleep(0)
    await _report(lane, store, {"phase": "Ready"})
    await _settled(lane)
    writer.cancel()
    assert cluster.obj(DATASETS, "ns", "d")["status"] == {"phase": "Ready"}
    assert _patches(cluster) == 2


async def test_an_unanswered_write_is_retried_and_a_refused_one_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster, store, lane, _ = _setup()
    cluster.fail_next("patch", Unavailable(0, "ConnectError"))
    writer = asyncio.create_task(lane.run())
    await _report(lane, store, {"phase": "Pending"})
    await _settled(lane)
    assert cluster.obj(DATASETS, "ns", "d")["status"] == {"phase": "Pending"}
    assert "Dataset ns/d: the API server did not answer a status write" in caplog.text

    cluster.fail_next("patch", Forbidden(403, "datasets/status is forbidden"))
    await _report(lane, store, {"phase": "Ready"})
    await _settled(lane)
    writer.cancel()
    assert "Dataset ns/d: status not written: 403" in caplog.text
    found = store.get(DATASETS, "ns", "d")
    assert found is not None
    assert found["status"] == {"phase": "Pending"}, "the refused decision is not read back"
    assert "Traceback" not in caplog.text


async def test_a_deleted_object_drops_its_held_status() -> None:
    cluster, store, lane, busy = _setup()
    busy.now = True
    writer = asyncio.create_task(lane.run())
    await _report(lane, store, {"phase": "Pending"})
    del cluster.objects[("datasets", "ns", "d")]
    busy.now = False
    await _settled(lane)
    writer.cancel()
    assert store.pending(DATASETS, "ns", "d") is None

    _, store, lane, _ = _setup()
    await _report(lane, store, {"phase": "Pending"})
    store.observed(DATASETS, {"metadata": {"name": "d", "namespace": "ns"}}, gone=True)
    assert store.pending(DATASETS, "ns", "d") is None, "a deletion event drops it too"


async def test_flush_writes_what_is_held_at_once() -> None:
    cluster, store, lane, busy = _setup()
    busy.now = True
    writer = asyncio.create_task(lane.run())
    await _report(lane, store, {"phase": "Pending"})
    await lane.flush(timeout=1)
    writer.cancel()
    assert cluster.obj(DATASETS, "ns", "d")["status"] == {"phase": "Pending"}


async def test_events_wait_for_the_same_pace() -> None:
    cluster = FakeCluster()
    busy = Busy()
    busy.now = True
    queue = EventQueue(cluster, Pace(busy, max_lag=10, tick=0.01))
    worker = asyncio.create_task(queue.run())
    await queue.post(BODY, Event("Normal", "IngestStarted", "Job d-ingest"))
    await asyncio.sleep(0.1)
    assert cluster.events == []
    busy.now = False
    await queue.flush(timeout=1)
    worker.cancel()
    assert [e.reason for _, e in cluster.events] == ["IngestStarted"]


def _random_tree(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key in rng.sample("abcdef", rng.randint(0, 4)):
        choice = rng.random()
        if choice < 0.3 and depth < 3:
            tree[key] = _random_tree(rng, depth + 1)
        elif choice < 0.5:
            tree[key] = [rng.randint(0, 2) for _ in range(rng.randint(0, 2))]
        else:
            tree[key] = rng.choice([0, 1, "x", True, 2.5, {}])
    return tree


def test_merge_diff_turns_one_status_into_another() -> None:
    rng = random.Random(17)
    for _ in range(2000):
        current, target = _random_tree(rng), _random_tree(rng)
        diff = merge_diff(current, target)
        assert merge_patch(current, diff) == target, (current, target, diff)
        assert merge_diff(target, target) == {}


async def test_a_held_status_never_reaches_an_object_created_again_under_its_name() -> None:
    cluster, store, lane, busy = _setup()
    busy.now = True
    writer = asyncio.create_task(lane.run())
    await _report(lane, store, {"phase": "Ingesting", "lastIngest": {"jobName": "old-job"}})
    del cluster.objects[("datasets", "ns", "d")]  # deleted and created again, before the
    again = cluster.add({**BODY, "metadata": {**BODY["metadata"], "uid": "uid-2"}})  # DELETED
    index = store.indexes[DATASETS]  # event arrived
    assert isinstance(index, FakeIndex)
    index.put(again)
    found = store.get(DATASETS, "ns", "d")
    assert found is not None
    assert "status" not in found, "the new object does not read the old one's decision"
    busy.now = False
    await _settled(lane)
    writer.cancel()
    assert "status" not in cluster.obj(DATASETS, "ns", "d"), "nor is it written onto it"
    assert store.pending(DATASETS, "ns", "d") is None


async def test_fields_another_writer_sets_meanwhile_are_kept_and_read() -> None:
    cluster, store, lane, busy = _setup()
    busy.now = True
    writer = asyncio.create_task(lane.run())
    await _report(lane, store, {"phase": "Validated", "deployments": [{"name": "old"}]})
    await lane.flush(timeout=1)
    busy.now, lane.pace.hurried = True, False
    await _report(lane, store, {"phase": "Ready"})
    link = {"status": {"deployments": [{"name": "old"}, {"name": "md"}]}}  # another controller
    ref = DATASETS.ref("ns", "d")
    store.wrote(DATASETS, await cluster.merge_patch(ref, link, subresource="status"))
    found = store.get(DATASETS, "ns", "d")
    assert found is not None
    assert found["status"]["deployments"] == [{"name": "old"}, {"name": "md"}], "read at once"
    busy.now = False
    await _settled(lane)
    writer.cancel()
    assert cluster.obj(DATASETS, "ns", "d")["status"] == {
        "phase": "Ready",
        "deployments": [{"name": "old"}, {"name": "md"}],
    }, "not erased by the held decision"


async def test_an_object_created_again_is_left_alone_while_the_watch_lags() -> None:
    cluster, store, lane, busy = _setup()
    busy.now = True
    writer = asyncio.create_task(lane.run())
    await _report(lane, store, {"phase": "Succeeded", "observedGeneration": 1})
    del cluster.objects[("datasets", "ns", "d")]
    cluster.add({**BODY, "metadata": {**BODY["metadata"], "uid": "uid-2"}})  # the index lags
    busy.now = False
    await _settled(lane)
    writer.cancel()
    assert "status" not in cluster.obj(DATASETS, "ns", "d")
    assert [verb for verb, plural, _ in cluster.requests if plural == "datasets"] == [
        "patch",
        "get",
    ], "the conditional write was refused, the fresh read showed another object"


async def test_a_refused_write_has_the_object_reconciled_again() -> None:
    cluster, store, lane, _ = _setup()
    told: list[tuple[Any, str]] = []
    lane.refused = lambda key, error: told.append((key, str(error)))
    cluster.fail_next("patch", KubeError(422, "status.phase: Unsupported value"))
    writer = asyncio.create_task(lane.run())
    await _report(lane, store, {"phase": "Bogus"})
    await _settled(lane)
    writer.cancel()
    assert told == [((DATASETS, "ns", "d"), "422 status.phase: Unsupported value")]

    harness = Harness(CONTROLLER)
    harness.reconciler.refused("ns", "d", KubeError(422, "status.phase: Unsupported value"))
    harness.reconciler.refused("ns", "e", Forbidden(403, "datasets/status is forbidden"))
    assert harness.reconciler.queue.waiting == 2, "both are reconciled again after a back-off"
    errors = harness.metrics.registry.get_sample_value(
        "flywheel_reconcile_errors_total", {"kind": "Dataset", "reason": "KubeError"}
    )
    assert errors == 1


async def test_a_bug_while_writing_is_a_traceback_and_releases_the_status(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, store, lane, _ = _setup()

    def broken(*_: Any) -> dict[str, Any]:
        raise ValueError("a bug")

    monkeypatch.setattr("flywheel.runtime.reports.merge_diff", broken)
    writer = asyncio.create_task(lane.run())
    await _report(lane, store, {"phase": "Pending"})
    await _settled(lane)
    await _report(lane, store, {"phase": "Ready"})
    await _settled(lane)
    writer.cancel()
    assert caplog.text.count("Dataset ns/d: status not written") == 2, "the writer survives"
    assert "ValueError: a bug" in caplog.text
    assert store.pending(DATASETS, "ns", "d") is None


async def test_coalesced_decisions_keep_the_oldest_ones_deadline() -> None:
    _, store, lane, _ = _setup()
    await _report(lane, store, {"phase": "Pending"})
    first = store.pending(DATASETS, "ns", "d")
    await asyncio.sleep(0.01)
    await _report(lane, store, {"phase": "Ingesting"})
    second = store.pending(DATASETS, "ns", "d")
    assert first is not None
    assert second is not None
    assert second.since == first.since
    assert second.fields == {"phase": "Ingesting"}
