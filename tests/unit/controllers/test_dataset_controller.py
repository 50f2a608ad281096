"""The Dataset controller's gather → decide → act over the in-memory fake: the ingest Job, its
result, retries, refresh, and the generic paths (invalid spec, transient and RBAC failures)."""

from __future__ import annotations

from typing import Any

from flywheel.controllers.dataset import CONTROLLER
from flywheel.core.resources import CLAIMS, DATASETS, JOBS, SERVICE_ACCOUNTS
from flywheel.interfaces.jobs import IngestArgs, IngestReport, JobFailure, encode_result
from flywheel.kube.errors import Forbidden, Unavailable
from tests.support.fakekube import Harness

NS = "ns"


def _dataset(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "iris", "namespace": NS},
        "spec": {"source": {"uri": "sklearn://iris"}, **spec},
    }


REPORT = IngestReport(
    version="abc123abc123",
    digest="sha256:" + "a" * 64,
    rows=150,
    columns=5,
    snapshot_uri="pvc://c/d/data.parquet",
    stats_uri="pvc://c/d/stats.json",
)


def _finish(h: Harness, job: str, result: IngestReport | JobFailure, *, ok: bool = True) -> None:
    """The Job controller and the pod report (what the local cluster does for real)."""
    kind = "Complete" if ok else "Failed"
    h.cluster.set_status(
        JOBS, NS, job, {"conditions": [{"type": kind, "status": "True"}], "succeeded": int(ok)}
    )
    h.cluster.add(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{job}-pod", "namespace": NS, "labels": {"job-name": job}},
            "status": {
                "containerStatuses": [
                    {"state": {"terminated": {"exitCode": 0, "message": encode_result(result)}}}
                ]
            },
        }
    )


def _job(h: Harness) -> str:
    status = h.status(DATASETS, "iris")
    return str(status["lastIngest"]["jobName"])


async def test_a_new_dataset_gets_its_job_and_first_status_in_one_pass() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_dataset())
    requeue, result = await h.reconcile("iris")
    assert (requeue, result) == (None, "success")
    job = _job(h)
    assert h.cluster.named(JOBS, NS) == [job]
    assert h.cluster.named(CLAIMS, NS) == ["flywheel-artifacts"]
    assert h.cluster.named(SERVICE_ACCOUNTS, NS) == ["flywheel-job"]
    assert h.cluster.writes() == [
        ("create", "persistentvolumeclaims", "flywheel-artifacts"),
        ("create", "serviceaccounts", "flywheel-job"),
        ("create", "jobs", job),
        ("patch", "datasets", "iris"),
        ("create", "events", "iris"),
    ], "the Job first, then one status write, then the Event"
    status = h.status(DATASETS, "iris")
    assert status["observedGeneration"] == 1
    assert h.condition(DATASETS, "iris", "Ready") == ("Unknown", "Ingesting")
    assert h.condition(DATASETS, "iris", "Reconciling") == ("True", "Ingesting")
    assert h.condition(DATASETS, "iris", "Stalled") == ("False", "SpecAccepted")
    assert h.events("iris") == ["IngestStarted"]
    command = h.cluster.obj(JOBS, NS, job)["spec"]["template"]["spec"]["containers"][0]["command"]
    args = IngestArgs.parse(command[3:])
    assert (args.namespace, args.name, args.spec.source.uri) == (NS, "iris", "sklearn://iris")


async def test_a_running_job_costs_no_request_and_its_result_publishes_the_version() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_dataset())
    await h.reconcile("iris")
    before = len(h.cluster.requests)
    await h.reconcile("iris")
    assert h.cluster.requests[before:] == [], "the Job is read from the cache"
    _finish(h, _job(h), REPORT)
    requeue, _ = await h.reconcile("iris")
    assert requeue is None, "no refresh schedule: nothing to wake up for"
    status = h.status(DATASETS, "iris")
    assert (status["version"], status["rows"]) == ("abc123abc123", 150)
    assert status["history"][0]["digest"] == REPORT.digest
    assert h.condition(DATASETS, "iris", "Ready") == ("True", "VersionPublished")
    assert h.events("iris") == ["IngestStarted", "VersionPublished"]
    settled = len(h.cluster.requests)
    await h.reconcile("iris")
    assert h.cluster.requests[settled:] == [], "an idle Dataset makes no request"


async def test_an_unavailable_source_is_retried_after_its_back_off() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_dataset())
    await h.reconcile("iris")
    first = _job(h)
    failure = JobFailure(reason="SourceUnavailable", message="GET x: connection refused")
    _finish(h, first, failure, ok=False)
    requeue, _ = await h.reconcile("iris")
    assert requeue is not None
    assert 10 <= requeue.total_seconds() <= 11, "10 s after the first failure"
    assert h.condition(DATASETS, "iris", "SourceAvailable") == ("False", "SourceUnavailable")
    h.clock.advance(seconds=5)
    await h.reconcile("iris")
    assert _job(h) == first, "not before the back-off"
    h.clock.advance(seconds=6)
    await h.reconcile("iris")
    assert _job(h) != first
    assert h.status(DATASETS, "iris")["lastIngest"]["trigger"] == "Retry"


async def test_a_refresh_schedule_is_a_clock_and_a_request_an_annotation() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_dataset(refresh={"intervalSeconds": 600}))
    await h.reconcile("iris")
    _finish(h, _job(h), REPORT)
    requeue, _ = await h.reconcile("iris")
    assert requeue is not None
    assert 600 <= requeue.total_seconds() <= 601
    h.clock.advance(seconds=600)
    await h.reconcile("iris")
    assert h.status(DATASETS, "iris")["lastIngest"]["trigger"] == "Refresh"
    _finish(h, _job(h), REPORT)
    await h.reconcile("iris")
    assert h.condition(DATASETS, "iris", "Ready") == ("True", "Unchanged")
    body = h.cluster.objects[("datasets", NS, "iris")]
    body["metadata"]["annotations"] = {"flywheel.dev/refresh-requested-at": "2026-12-01T13:00:00Z"}
    await h.reconcile("iris")
    status = h.status(DATASETS, "iris")
    assert status["lastIngest"]["trigger"] == "Requested"
    assert status["lastHandledRefreshAt"] == "2026-12-01T13:00:00Z"


async def test_a_vanished_job_fails_the_ingest_and_keeps_the_version() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_dataset())
    await h.reconcile("iris")
    _finish(h, _job(h), REPORT)
    await h.reconcile("iris")
    h.cluster.objects[("datasets", NS, "iris")]["metadata"]["generation"] = 2
    await h.reconcile("iris")
    del h.cluster.objects[("jobs", NS, _job(h))]
    await h.reconcile("iris")
    status = h.status(DATASETS, "iris")
    assert "disappeared" in status["lastIngest"]["message"]
    assert h.condition(DATASETS, "iris", "Ready") == ("True", "PreviousVersion")


async def test_an_invalid_spec_stalls_once_and_is_not_retried() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_dataset(bogus=1))
    assert (await h.reconcile("iris"))[1] == "invalid_spec"
    assert h.condition(DATASETS, "iris", "Stalled") == ("True", "InvalidSpec")
    assert h.condition(DATASETS, "iris", "Ready") == ("False", "InvalidSpec")
    assert h.cluster.named(JOBS, NS) == []
    writes = len(h.cluster.writes())
    await h.reconcile("iris")
    assert len(h.cluster.writes()) == writes, "no second status write, no second Event"
    assert h.events("iris") == ["InvalidSpec"]


async def test_a_transient_failure_is_retried_quickly_and_loses_nothing() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_dataset())
    h.cluster.fail_next("create", Unavailable(0, "ConnectError: connection refused"))
    assert await h.handle("iris") == "retry"
    assert h.reconciler.queue.waiting == 1, "queued again after a short back-off"
    assert "status" not in h.cluster.obj(DATASETS, NS, "iris")
    assert await h.handle("iris") == "success"
    assert h.cluster.named(JOBS, NS) == [_job(h)]


async def test_a_refusal_by_rbac_is_reported_on_the_object() -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_dataset())
    refused = 'persistentvolumeclaims is forbidden: cannot create resource "persistentvolumeclaims"'
    h.cluster.fail_next("create", Forbidden(403, refused))
    assert await h.handle("iris") == "forbidden"
    assert h.condition(DATASETS, "iris", "Ready") == ("False", "Forbidden")
    assert h.events("iris") == ["Forbidden"]


async def test_what_earlier_versions_left_on_an_object_is_removed() -> None:
    h = Harness(CONTROLLER)
    legacy = _dataset()
    legacy["metadata"]["finalizers"] = ["flywheel.dev/finalizer", "example.com/keep"]
    legacy["metadata"]["annotations"] = {"flywheel.dev/last-handled-spec": "{}", "team": "ml"}
    h.cluster.add(legacy)
    await h.reconcile("iris")
    found = h.cluster.obj(DATASETS, NS, "iris")["metadata"]
    assert found["finalizers"] == ["example.com/keep"]
    assert found["annotations"] == {"team": "ml"}
