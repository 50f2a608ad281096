"""The local node enforces resource limits with cgroups, as a kubelet does: a container over its
memory limit is OOMKilled (exit code 137) and its Job fails saying so, a CPU limit is a CFS
quota, a pod's processes are bounded, and no group outlives its pod or its cluster."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from devcluster.controlplane import NODE
from devcluster.node.cgroups import DEFAULT_POD_PIDS, RECORD
from flywheel.core.jobs import read_result
from flywheel.interfaces.jobs import IngestReport, JobFailure
from tests.support.clusters import own_cluster
from tests.support.kube import Kubectl, eventually

PYTHON = "python:3.11"  # recorded, not pulled: the node runs the project's environment
CGROUPS = Path("/sys/fs/cgroup")


def _job(name: str, code: str, resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": PYTHON,
                            "command": ["python", "-c", code],
                            "resources": resources,
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                        }
                    ],
                }
            },
        },
    }


def _pod(name: str, code: str, resources: dict[str, Any], **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": PYTHON, "command": ["python", "-c", code]}
    body = {"containers": [{**container, "resources": resources}], **spec}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": body}


def _ended(k: Kubectl, job: str) -> dict[str, Any] | None:
    for condition in k.json("get", "job", job).get("status", {}).get("conditions", []):
        if condition["type"] in ("Complete", "Failed") and condition["status"] == "True":
            return dict(condition)
    return None


def _groups(controller: str, uid: str, container: str = "") -> list[Path]:
    """The node's groups of a pod (or of one container run) in a controller's hierarchy."""
    pattern = f"**/flywheel/*/{uid}" + (f"/{container}" if container else "")
    return list((CGROUPS / controller).glob(pattern))


GREEDY = "b = bytearray(400 * 1024 * 1024); print('allocated', len(b))"


def test_a_job_over_its_memory_limit_is_oom_killed_and_fails_saying_so(k: Kubectl) -> None:
    k.apply(
        _job("greedy", f"print('starting', flush=True); {GREEDY}", {"limits": {"memory": "128Mi"}})
    )
    k.apply(
        _job(
            "modest",
            "b = bytearray(32 * 1024 * 1024); print('ok')",
            {"limits": {"memory": "128Mi"}},
        )
    )
    failed = eventually(lambda: _ended(k, "greedy"), timeout=120, what="the greedy Job to end")
    assert failed["type"] == "Failed", failed
    assert failed["reason"] == "BackoffLimitExceeded"
    (pod,) = k.json("get", "pods", "-l", "job-name=greedy")["items"]
    assert pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled", terminated
    assert terminated["exitCode"] == 137
    assert "allocated" not in terminated.get("message", ""), "killed before it could print"
    # What the operator makes of such a Job (its ingest and training Jobs are read this way).
    failure = read_result(k.json("get", "job", "greedy"), [pod], IngestReport)
    assert isinstance(failure, JobFailure)
    assert failure.message.startswith(
        "OOMKilled: container main used more than its memory limit (128Mi) and was killed "
        "(exit code 137)"
    ), failure.message
    assert "starting" in failure.message, "with the container's last output"
    # A container under its limit runs normally, and no group outlives its container.
    complete = eventually(lambda: _ended(k, "modest"), timeout=120, what="the modest Job to end")
    assert complete["type"] == "Complete", complete
    for job in ("greedy", "modest"):
        (pod,) = k.json("get", "pods", "-l", f"job-name={job}")["items"]
        for controller in ("memory", "pids"):
            assert _groups(controller, pod["metadata"]["uid"], "main-0") == []


def test_a_restarted_container_keeps_its_oom_kill_in_its_last_state(k: Kubectl) -> None:
    k.apply(_pod("restarting", GREEDY, {"limits": {"memory": "96Mi"}}, restartPolicy="OnFailure"))

    def restarted() -> dict[str, Any] | None:
        statuses = k.json("get", "pod", "restarting")["status"].get("containerStatuses", [])
        return statuses[0] if statuses and statuses[0]["restartCount"] >= 1 else None

    status = eventually(restarted, timeout=90, what="a restart after the OOM kill")
    last = status["lastState"]["terminated"]
    assert (last["reason"], last["exitCode"]) == ("OOMKilled", 137), status


SPIN = "import time\nwhile True: pass"


def test_a_cpu_limit_is_a_cfs_quota_that_throttles_a_busy_loop(k: Kubectl) -> None:
    resources = {"limits": {"cpu": "200m"}, "requests": {"cpu": "100m"}}
    k.apply(_pod("spin", SPIN, resources, terminationGracePeriodSeconds=0))
    k("wait", "--for=condition=Ready", "pod/spin", "--timeout=60s")
    uid = k.json("get", "pod", "spin")["metadata"]["uid"]
    (group,) = eventually(lambda: _groups("cpu", uid, "main-0"), what="the container's cpu group")
    assert (group / "cpu.cfs_period_us").read_text().strip() == "100000"
    assert (group / "cpu.cfs_quota_us").read_text().strip() == "20000", "0.2 CPU per period"
    assert (group / "cpu.shares").read_text().strip() == "102", "from the 100m request"
    (pid,) = (int(p) for p in (group / "cgroup.procs").read_text().split())

    def stat() -> dict[str, int]:
        lines = (group / "cpu.stat").read_text().splitlines()
        return {key: int(value) for key, value in (line.split() for line in lines)}

    def throttled_enough() -> dict[str, int] | None:
        found = stat()
        return found if found["nr_throttled"] >= 20 else None

    throttled = eventually(throttled_enough, timeout=60, what="20 throttled periods")
    # The loop always wants the CPU: it runs only while the quota lasts, and the kernel's
    # counters say so (its CPU time per elapsed time, both from /proc, is at most ~0.2).
    assert throttled["throttled_time"] > 0
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_seconds = (int(fields[11]) + int(fields[12])) / ticks
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    elapsed = uptime - int(fields[19]) / ticks
    assert elapsed > 1
    assert cpu_seconds / elapsed < 0.3, (cpu_seconds, elapsed)
    k("delete", "pod", "spin", "--wait=true", "--timeout=60s")
    # With a grace period of 0 the object goes at once, the node's teardown just after.
    eventually(lambda: _groups("cpu", uid) == [], timeout=30, what="the pod's groups gone")


PIDS = """
import json, subprocess, threading
release = threading.Event()
threads = []
try:
    while True:
        thread = threading.Thread(target=release.wait, daemon=True)
        thread.start()
        threads.append(thread)
except RuntimeError as error:
    stopped = str(error)
try:
    subprocess.run(["true"], check=True)
    spawn = "succeeded"
except OSError as error:
    spawn = f"{type(error).__name__}: {error.errno}"
release.set()
for thread in threads:
    thread.join()
after = subprocess.run(["true"]).returncode
report = {"threads": len(threads), "stopped": stopped, "spawn": spawn, "after": after}
open("/dev/termination-log", "w").write(json.dumps(report))
"""


def test_a_pods_processes_are_bounded_and_the_node_stays_healthy(k: Kubectl) -> None:
    k.apply(_pod("swarm", PIDS, {}, restartPolicy="Never"))

    def finished() -> dict[str, Any] | None:
        status = k.json("get", "pod", "swarm")["status"]
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status = eventually(finished, timeout=120, what="the swarm pod to finish")
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0, terminated
    report = json.loads(terminated["message"])
    # pids.max counts every task of the pod: its main thread plus the threads it started.
    assert DEFAULT_POD_PIDS - 8 <= report["threads"] < DEFAULT_POD_PIDS, report
    assert "can't start new thread" in report["stopped"]
    assert report["spawn"] == "BlockingIOError: 11", "fork fails with EAGAIN at the limit"
    assert report["after"] == 0, "once the threads end, the pod can spawn again"
    node = k.json("get", "nodes")["items"][0]
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert ready["Ready"] == "True"
    k.apply(_pod("after", "print('fine')", {}, restartPolicy="Never"))
    eventually(
        lambda: k.json("get", "pod", "after")["status"].get("phase") == "Succeeded",
        timeout=60,
        what="another pod to run",
    )


def _alive(pid: int) -> bool:
    """Running and not a zombie (the dead agent's children are reaped by whoever adopts them)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _cluster_groups(record: Path) -> list[Path]:
    return [Path(p) for p in json.loads(record.read_text())]


@pytest.mark.slow
def test_no_group_outlives_the_agent_or_the_cluster(tmp_path: Path) -> None:
    with own_cluster(tmp_path / "cluster", crds=False) as (cluster, kubectl):
        k = kubectl.in_namespace("default")
        record = cluster.directory / "node" / RECORD
        bases = _cluster_groups(record)
        slot = cluster.load_state().network_index
        assert {b.relative_to(CGROUPS).parts[0] for b in bases} == {"memory", "pids", "cpu"}
        assert all(b.name == str(slot) and b.parent.name == "flywheel" for b in bases), bases
        k.apply(_pod("sleeper", "import time; time.sleep(3600)", {"limits": {"cpu": "1"}}))
        k("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=60s")
        uid = k.json("get", "pod", "sleeper")["metadata"]["uid"]
        groups = [base / uid / "main-0" for base in bases]
        assert all(g.is_dir() for g in groups), groups
        (pid,) = {int(p) for p in (groups[0] / "cgroup.procs").read_text().split()}
        # An agent killed outright leaves its pods and their groups; the next one removes
        # both (and runs the pod again from the start).
        os.kill(cluster.load_state().pids[NODE], signal.SIGKILL)
        time.sleep(0.5)
        assert all(g.is_dir() for g in groups)
        cluster.up()
        eventually(lambda: not _alive(pid), what="the old pod's process gone")

        def rerun() -> list[Path] | None:
            found = [base / uid / "main-0" for base in _cluster_groups(record)]
            return found if all(g.is_dir() for g in found) else None

        groups = eventually(rerun, timeout=90, what="the pod running again under the new agent")
        os.kill(cluster.load_state().pids[NODE], signal.SIGKILL)
    # down() after a dead agent: its recorded groups are gone, and nothing else of the slot.
    assert not any(g.exists() for g in groups)
    assert not any(b.exists() for b in bases)
    assert not record.exists()
