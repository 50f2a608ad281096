"""Permanent and transient source failures through the Dataset controller's gather → decide →
act, with the ingest Job's real entrypoint run on the Job's own command against real files and
a real closed port (the fake cluster only carries its termination message to the pod)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from flywheel.controllers.dataset import CONTROLLER
from flywheel.core.resources import DATASETS, JOBS
from flywheel.interfaces.jobs import ExitCode, IngestArgs
from flywheel.jobs.ingest import main
from tests.support.fakekube import Harness
from tests.support.ports import free_port

NS = "ns"
CSV = "x,label\n1,0\n2,1\n3,0\n4,1\n"


def _dataset(uri: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "d", "namespace": NS},
        "spec": {"source": {"uri": uri}, **spec},
    }


def _run_job(h: Harness, root: Path) -> ExitCode:
    """Run the ingest Job the controller created, as its pod would, and report its end."""
    job = str(h.status(DATASETS, "d")["lastIngest"]["jobName"])
    command = h.cluster.obj(JOBS, NS, job)["spec"]["template"]["spec"]["containers"][0]["command"]
    args = IngestArgs.parse(command[3:])
    log = root / f"{job}.log"
    code = ExitCode(
        main([*command[3:], "--artifacts-root", str(root), "--termination-log", str(log)])
    )
    assert args.claim == "flywheel-artifacts"
    kind = "Complete" if code == ExitCode.SUCCESS else "Failed"
    h.cluster.set_status(JOBS, NS, job, {"conditions": [{"type": kind, "status": "True"}]})
    terminated = {"exitCode": int(code), "message": log.read_text()}
    h.cluster.add(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{job}-pod", "namespace": NS, "labels": {"job-name": job}},
            "status": {"containerStatuses": [{"state": {"terminated": terminated}}]},
        }
    )
    return code


def _set_spec(h: Harness, uri: str) -> None:
    body = h.cluster.objects[("datasets", NS, "d")]
    body["spec"]["source"]["uri"] = uri
    body["metadata"]["generation"] += 1


async def test_a_path_escaping_its_claim_stalls_until_the_spec_changes(tmp_path: Path) -> None:
    claim = tmp_path / "flywheel-artifacts"
    (claim / "raw").mkdir(parents=True)
    (claim / "raw" / "d.csv").write_text(CSV)
    (tmp_path / "secret.csv").write_text(CSV)
    h = Harness(CONTROLLER)
    h.cluster.add(_dataset("pvc://flywheel-artifacts/raw/d.csv", refresh={"intervalSeconds": 60}))
    await h.reconcile("d")
    assert _run_job(h, tmp_path) == ExitCode.SUCCESS
    await h.reconcile("d")
    version = h.status(DATASETS, "d")["version"]

    _set_spec(h, f"pvc://flywheel-artifacts/{tmp_path}/secret.csv")  # absolute: out of the claim
    await h.reconcile("d")
    assert _run_job(h, tmp_path) == ExitCode.NOT_RETRYABLE
    requeue, _ = await h.reconcile("d")
    assert requeue is None, "no back-off and no refresh timer"
    assert h.condition(DATASETS, "d", "Stalled") == ("True", "SourceInvalid")
    assert "escapes its claim" in h.message(DATASETS, "d", "Stalled")
    assert h.condition(DATASETS, "d", "Ready") == ("False", "SourceInvalid")
    assert f"Version {version} stays current" in h.message(DATASETS, "d", "Ready")
    assert h.condition(DATASETS, "d", "Reconciling") == ("False", "SourceInvalid")
    assert h.condition(DATASETS, "d", "SourceAvailable") == ("False", "SourceInvalid")
    status = h.status(DATASETS, "d")
    assert status["version"] == version, "the last good version stays current"
    assert status["lastIngest"]["result"] in ("SourceInvalid", "Failed"), "Failed: not in the enum"
    jobs = h.cluster.named(JOBS, NS)

    h.clock.advance(hours=6)
    writes = len(h.cluster.writes())
    assert await h.reconcile("d") == (None, "success")
    assert h.cluster.named(JOBS, NS) == jobs, "not retried, not refreshed"
    assert len(h.cluster.writes()) == writes, "and nothing written"

    _set_spec(h, "pvc://flywheel-artifacts/raw/d.csv")
    await h.reconcile("d")
    assert h.status(DATASETS, "d")["lastIngest"]["trigger"] == "SpecChanged"
    assert _run_job(h, tmp_path) == ExitCode.SUCCESS
    await h.reconcile("d")
    assert h.condition(DATASETS, "d", "Stalled") == ("False", "Ingested")
    assert h.condition(DATASETS, "d", "Ready") == ("True", "Unchanged")
    assert h.events("d") == [
        "IngestStarted",
        "VersionPublished",
        "IngestStarted",
        "SourceInvalid",
        "IngestStarted",
        "Unchanged",
    ]
    warnings = [e.type for w, e in h.cluster.events if e.reason == "SourceInvalid"]
    assert warnings == ["Warning"]


def _unreadable(tmp_path: Path) -> Path:
    """A real file this process may not read (as root, which reads any chmod 000 file, a
    write-only sysctl: procfs refuses root reading it)."""
    if os.geteuid() == 0:
        path = Path("/proc/sys/vm/compact_memory")
    else:
        path = tmp_path / "secret.csv"
        path.write_text(CSV)
        path.chmod(0)
    with pytest.raises(PermissionError):
        path.read_bytes()
    return path


async def test_a_forbidden_file_is_tried_again_on_request_only(tmp_path: Path) -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_dataset(f"file://{_unreadable(tmp_path)}", refresh={"intervalSeconds": 60}))
    await h.reconcile("d")
    assert _run_job(h, tmp_path) == ExitCode.NOT_RETRYABLE
    assert await h.reconcile("d") == (None, "success")
    assert h.condition(DATASETS, "d", "Stalled") == ("True", "SourceForbidden")
    assert "Permission denied" in h.message(DATASETS, "d", "Stalled")
    assert h.condition(DATASETS, "d", "Ready") == ("False", "SourceForbidden")
    body = h.cluster.objects[("datasets", NS, "d")]
    body["metadata"]["annotations"] = {"flywheel.dev/refresh-requested-at": "2026-12-01T13:00:00Z"}
    await h.reconcile("d")
    assert h.status(DATASETS, "d")["lastIngest"]["trigger"] == "Requested"
    assert h.condition(DATASETS, "d", "Stalled") == ("False", "Ingesting")
    assert _run_job(h, tmp_path) == ExitCode.NOT_RETRYABLE
    await h.reconcile("d")
    assert h.condition(DATASETS, "d", "Stalled") == ("True", "SourceForbidden")
    assert h.events("d") == ["IngestStarted", "SourceForbidden", "IngestStarted"], (
        "the same reason in the same generation is not announced twice"
    )


async def test_a_closed_port_is_retried_with_back_off_and_said_once(tmp_path: Path) -> None:
    h = Harness(CONTROLLER)
    h.cluster.add(_dataset(f"http://127.0.0.1:{free_port()}/d.csv"))
    await h.reconcile("d")
    delays = []
    for retry in range(1, 4):
        assert _run_job(h, tmp_path) == ExitCode.RETRYABLE
        requeue, _ = await h.reconcile("d")
        assert requeue is not None
        delays.append(round(requeue.total_seconds()))
        assert h.condition(DATASETS, "d", "Reconciling") == ("True", "SourceUnavailable")
        assert f"retry {retry} in {delays[-1]}s" in h.message(DATASETS, "d", "Reconciling")
        assert h.condition(DATASETS, "d", "Stalled") == ("False", "SourceUnavailable")
        assert h.condition(DATASETS, "d", "SourceAvailable") == ("False", "SourceUnavailable")
        h.clock.advance(seconds=requeue.total_seconds())
        await h.reconcile("d")
        assert h.status(DATASETS, "d")["lastIngest"]["trigger"] == "Retry"
    assert delays == [10, 20, 40]
    assert h.events("d") == ["IngestStarted", "SourceUnavailable"], "one Warning for the outage"
