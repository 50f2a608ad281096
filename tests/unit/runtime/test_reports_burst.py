"""A burst through the real Dataset controller, its reconciler and the reports lane: every
Job is created before any status or Event is written, and each object's reports coalesce into
one status write."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from flywheel.controllers.dataset import CONTROLLER
from flywheel.core.resources import CLAIMS, DATASETS, JOBS
from flywheel.opmetrics import OperatorMetrics
from flywheel.runtime.act import Actor
from flywheel.runtime.controller import Env
from flywheel.runtime.events import EventQueue
from flywheel.runtime.reconciler import Reconciler
from flywheel.runtime.reports import Pace, StatusLane
from flywheel.runtime.store import CachedStore
from flywheel.settings import OperatorSettings
from tests.support.fakekube import FakeCluster, FakeHttp, LiveIndex

NS = "ns"
BURST = 40


async def test_a_burst_gets_every_job_before_any_report() -> None:
    cluster = FakeCluster()
    store = CachedStore()
    for resource in (DATASETS, JOBS, CLAIMS):
        store.attach(resource, LiveIndex(cluster, resource))
    env = Env(kube=cluster, store=store, settings=OperatorSettings(), http=FakeHttp())
    reconciler: Reconciler
    pace = Pace(busy=lambda: reconciler.busy, tick=0.01)
    lane, events = StatusLane(cluster, store, pace), EventQueue(cluster, pace)
    metrics = OperatorMetrics(CollectorRegistry())
    reconciler = Reconciler(CONTROLLER, env, Actor(env, events, lane), metrics)
    names = [f"d{i}" for i in range(BURST)]
    for name in names:
        cluster.add(
            {
                "apiVersion": "flywheel.dev/v1alpha1",
                "kind": "Dataset",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"source": {"uri": "sklearn://iris"}},
            }
        )
        reconciler.enqueue(NS, name)
    tasks = [asyncio.create_task(t.run()) for t in (reconciler, lane, events)]
    for _ in range(500):
        await asyncio.sleep(0.01)
        if (
            not reconciler.busy
            and reconciler.queue.processing == 0
            and lane.pending == 0
            and events.pending == 0
        ):
            break
    await events.flush(timeout=1)
    for task in tasks:
        task.cancel()

    writes = cluster.writes()
    job_creates = [
        i for i, (verb, plural, _) in enumerate(writes) if (verb, plural) == ("create", "jobs")
    ]
    reports = [i for i, (_, plural, _) in enumerate(writes) if plural in ("datasets", "events")]
    assert len(job_creates) == BURST
    assert max(job_creates) < min(reports), "the work first, the reports after"
    status_writes = [
        name for verb, plural, name in writes if (verb, plural) == ("patch", "datasets")
    ]
    assert sorted(status_writes) == sorted(names), "one status write per object"
    for name in names:
        status = cluster.obj(DATASETS, NS, name)["status"]
        assert status["observedGeneration"] == 1
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("Unknown", "Ingesting")
        assert status["lastIngest"]["jobName"] in cluster.named(JOBS, NS)
    assert sorted(
        w.split("/")[1] for w, e in cluster.events if e.reason == "IngestStarted"
    ) == sorted(names)
