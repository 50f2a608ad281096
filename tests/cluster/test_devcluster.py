"""The local cluster's own lifecycle: idempotent up, reachable API, down leaves nothing; reuse
that never stops a live component; distinct slots for concurrent `up`s."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from devcluster import claims
from devcluster.binaries import ensure_binaries
from devcluster.controlplane import COMPONENTS, NODE, Cluster
from devcluster.node import network
from devcluster.node.network import PodNetwork
from devcluster.processes import alive, cmdline, mentioning
from tests.support.clusters import own_cluster
from tests.support.examples import ROOT
from tests.support.kube import Kubectl


def _devcluster(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devcluster", *args],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "hack"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_up_is_idempotent_and_down_leaves_no_process(tmp_path: Path) -> None:
    directory = tmp_path / "cluster"
    try:
        assert _devcluster("up", "--dir", str(directory)).returncode == 0
        cluster = Cluster(directory, ensure_binaries())
        first = cluster.load_state().pids
        assert set(first) == set(COMPONENTS)

        again = _devcluster("up", "--dir", str(directory))
        assert again.returncode == 0, again.stderr
        assert "cluster reused" in again.stderr
        assert cluster.load_state().pids == first, "a running cluster is reused, not restarted"

        env = _devcluster("env", "--dir", str(directory)).stdout
        assert f"export KUBECONFIG={directory / 'kubeconfig'}" in env
        kubectl = cluster.binaries.path("kubectl")
        readyz = subprocess.run(
            [kubectl, f"--kubeconfig={cluster.kubeconfig}", "get", "--raw", "/readyz"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert readyz.stdout.strip() == "ok"
        status = _devcluster("status", "--dir", str(directory))
        assert status.returncode == 0
        assert status.stdout.count("running") == len(COMPONENTS)

        plan = PodNetwork(cluster.load_state().network_index)
        _run_a_pod(kubectl, cluster.kubeconfig)
        assert network.leftover_namespaces(plan), "the pod has its own network namespace"

        down = _devcluster("down", "--dir", str(directory))
        assert down.returncode == 0, down.stderr
        assert list(mentioning(str(directory))) == []
        assert network.leftover_namespaces(plan) == []
        links = subprocess.run(
            ["ip", "-br", "link"], capture_output=True, text=True, check=True
        ).stdout
        assert plan.bridge not in links
        mounts = Path("/proc/self/mountinfo").read_text()
        assert str(directory) not in mounts, "no mount of the cluster is left on the host"
        assert _devcluster("status", "--dir", str(directory)).returncode == 3
        assert not (directory / "etcd").exists()
    finally:  # a failed assertion must not leave a cluster running
        _devcluster("down", "--dir", str(directory))


def _run_a_pod(kubectl: str, kubeconfig: Path) -> None:
    """A long-running pod, left running for `down` to clean up."""
    base = [kubectl, f"--kubeconfig={kubeconfig}"]
    subprocess.run(
        [
            *base,
            "run",
            "sleeper",
            "--image=python:3.11",
            "--restart=Never",
            "--command",
            "--",
            "python",
            "-c",
            "import time; time.sleep(3600)",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*base, "wait", "--for=condition=Ready", "pod/sleeper", "--timeout=60s"],
        check=True,
        capture_output=True,
    )


SLEEPERS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: sleepers}
spec:
  replicas: 2
  selector: {matchLabels: {app: sleepers}}
  template:
    metadata: {labels: {app: sleepers}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: python:3.11
        command: [python, -c, "import time; time.sleep(3600)"]
        livenessProbe:
          exec: {command: ["true"]}
          periodSeconds: 2
          timeoutSeconds: 10
          failureThreshold: 3
"""


def _pods(kubectl: Kubectl) -> dict[str, tuple[str, int]]:
    """uid -> (phase, restart count) of the sleepers."""
    items = kubectl.json("get", "pods", "-l", "app=sleepers")["items"]
    return {
        p["metadata"]["uid"]: (
            p["status"].get("phase", ""),
            sum(c["restartCount"] for c in p["status"].get("containerStatuses", [])),
        )
        for p in items
    }


@pytest.mark.slow
def test_up_against_a_stalled_api_server_keeps_every_pod_running(tmp_path: Path) -> None:
    with own_cluster(tmp_path / "cluster", crds=False) as (cluster, kubectl):
        kubectl.apply(SLEEPERS)
        kubectl("rollout", "status", "deployment/sleepers", "--timeout=90s")
        pods = _pods(kubectl)
        state = cluster.load_state()
        apiserver = state.pids["kube-apiserver"]
        os.kill(apiserver, signal.SIGSTOP)
        resume = threading.Timer(10, os.kill, (apiserver, signal.SIGCONT))
        resume.start()
        started = time.monotonic()
        try:
            cluster.up()  # a second `make cluster-up` on a busy machine
        finally:
            resume.join()
            os.kill(apiserver, signal.SIGCONT)
        assert time.monotonic() - started >= 8, "up() waited for the stalled API server"
        assert cluster.load_state().pids == state.pids, "no component was restarted"
        assert _pods(kubectl) == pods, "same pods, no container restarted"
        assert set(pods.values()) == {("Running", 0)}


@pytest.mark.slow
def test_down_stops_what_its_state_records_and_spares_what_mentions_the_directory(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "cluster"
    # Like the caller's own `make demo --cluster-dir <dir>`, which an old sweep killed.
    bystander = subprocess.Popen(
        ["bash", "-c", f'exec -a "make demo --cluster-dir {directory}" sleep 300']
    )
    try:
        with own_cluster(directory, crds=False) as (cluster, kubectl):
            kubectl.apply(SLEEPERS)
            kubectl("rollout", "status", "deployment/sleepers", "--timeout=90s")
            plan = PodNetwork(cluster.load_state().network_index)
            namespaces = network.leftover_namespaces(plan)
            in_pods = [pid for ns in namespaces for pid in network.pids_in_namespace(ns)]
            assert in_pods, "the pods' processes live in their network namespaces"
            # A node agent killed outright leaves its pods running: down() stops them (they
            # are inside this cluster's pod namespaces) and only them.
            agent = cluster.load_state().pids[NODE]
            os.kill(agent, signal.SIGKILL)
            assert str(directory) in " ".join(cmdline(bystander.pid))
        assert bystander.poll() is None, "down() left the process that mentions the directory"
        assert not [p for p in in_pods if cmdline(p)], "the pods' processes are gone"
        assert network.leftover_namespaces(plan) == []
        assert not network.bridge_exists(plan)
        assert not alive(agent, sys.executable)
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.slow
def test_two_clusters_started_at_the_same_moment_both_come_up_apart(tmp_path: Path) -> None:
    binaries = ensure_binaries()
    clusters = [Cluster(tmp_path / f"c{i}", binaries) for i in range(2)]
    barrier = threading.Barrier(len(clusters))
    errors: list[BaseException] = []

    def up(cluster: Cluster) -> None:
        barrier.wait()
        try:
            cluster.up()
        except BaseException as error:  # reported by the test, not as a thread warning
            errors.append(error)

    threads = [threading.Thread(target=up, args=(c,)) for c in clusters]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not errors, errors
        first, second = (c.load_state() for c in clusters)
        assert first.network_index != second.network_index
        assert not set(first.ports.values()) & set(second.ports.values())
        for cluster, state in zip(clusters, (first, second), strict=True):
            assert _readyz(cluster) == "ok"
            assert network.bridge_exists(PodNetwork(state.network_index))
            owner = claims.Registry().owner(state.network_index)
            assert owner == str(cluster.directory)

        clusters[0].down()
        assert _readyz(clusters[1]) == "ok", "down() of one leaves the other running"
        assert network.bridge_exists(PodNetwork(second.network_index))
        assert not network.bridge_exists(PodNetwork(first.network_index))
        assert claims.Registry().owner(first.network_index) is None
        assert all(clusters[1].running().values())
    finally:
        for cluster in clusters:
            cluster.down()


def _readyz(cluster: Cluster) -> str:
    kubectl = Kubectl(cluster.binaries.path("kubectl"), cluster.kubeconfig)
    return kubectl("get", "--raw", "/readyz").strip()


def _rules() -> str:
    return subprocess.run(["ip", "rule", "list"], capture_output=True, text=True).stdout


def test_a_two_node_cluster_keeps_its_nodes_and_down_removes_both_networks(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "cluster"
    try:
        up = _devcluster("up", "--dir", str(directory), "--nodes", "2")
        assert up.returncode == 0, up.stderr
        cluster = Cluster(directory, ensure_binaries())
        state = cluster.load_state()
        plans = [PodNetwork(i) for i in state.node_indices()]
        assert len(plans) == 2
        assert state.network_index == plans[0].index
        assert set(state.pids) == {*COMPONENTS, f"{NODE}-2"}
        owner = claims.Registry()
        assert [owner.owner(p.index) for p in plans] == [str(directory)] * 2
        for plan in plans:
            assert network.bridge_exists(plan)
            assert f"iif {plan.bridge} lookup {plan.route_table}" in _rules()

        again = _devcluster("up", "--dir", str(directory))  # NODES=1: the two are kept
        assert again.returncode == 0, again.stderr
        assert "cluster reused" in again.stderr
        assert cluster.load_state().pids == state.pids
        more = _devcluster("up", "--dir", str(directory), "--nodes", "3")
        assert more.returncode == 1
        assert "runs 2 node(s); 3 were asked for" in more.stderr
        assert cluster.load_state().pids == state.pids, "refusing touches nothing"

        os.kill(state.pids[f"{NODE}-2"], signal.SIGKILL)
        revived = _devcluster("up", "--dir", str(directory))
        assert revived.returncode == 0, revived.stderr
        assert f"restarted {NODE}-2 in" in revived.stderr
        kubectl = Kubectl(cluster.binaries.path("kubectl"), cluster.kubeconfig)
        kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")

        assert _devcluster("down", "--dir", str(directory)).returncode == 0
        assert list(mentioning(str(directory))) == []
        for plan in plans:
            assert not network.bridge_exists(plan)
            assert plan.bridge not in _rules()
            assert owner.read(plan.index) is None or owner.owner(plan.index) != str(directory)
        assert not (directory / "node-2").exists()
    finally:
        _devcluster("down", "--dir", str(directory))


# Claims without a cluster: the registry's own rules, in a scratch claims directory.


def test_concurrent_claims_get_distinct_slots_and_ports(tmp_path: Path) -> None:
    names = ("etcd-client", "apiserver")
    got: dict[int, claims.Claim] = {}
    barrier = threading.Barrier(6)

    def claim(n: int) -> None:
        barrier.wait()
        registry = claims.Registry(tmp_path)
        with registry.locked():
            got[n] = registry.claim(tmp_path / f"cluster-{n}", names)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(c.index for c in got.values()) == list(range(6))
    ports = [port for c in got.values() for port in c.ports.values()]
    assert len(set(ports)) == len(ports)
    assert all(claims.PORT_BASE <= port < claims.ephemeral_low() for port in ports)


def test_a_stale_claim_is_taken_over_and_release_removes_only_its_own(tmp_path: Path) -> None:
    registry = claims.Registry(tmp_path)
    owner = tmp_path / "running"
    owner.mkdir()
    (owner / "state.json").write_text(
        json.dumps({"pids": {"etcd": os.getpid()}, "network_index": 1})
    )
    with registry.locked():
        (tmp_path / "claims" / "0.json").write_text(
            json.dumps({"index": 0, "directory": str(tmp_path / "crashed"), "claimer": 2**22})
        )
        (tmp_path / "claims" / "1.json").write_text(
            json.dumps({"index": 1, "directory": str(owner), "claimer": 2**22})
        )
        mine = registry.claim(tmp_path / "new", ("api",), wanted_index=1)
        assert mine.index == 0, "slot 1 is live (its state records a live process); 0 is stale"
        assert registry.release(tmp_path / "other") == []
        assert registry.release(tmp_path / "new") == [0]
    assert registry.owner(1) == str(owner)


def test_a_cluster_claims_one_slot_per_node_and_keeps_its_own(tmp_path: Path) -> None:
    registry = claims.Registry(tmp_path)
    with registry.locked():
        other = registry.claim(tmp_path / "other", ("api",), wanted_index=1)
        slots = registry.claim_slots(tmp_path / "mine", ("api",), 2, wanted_indices=[1, 3])
        assert [s.index for s in slots] == [3, 0], "a wanted slot held by another is skipped"
        assert slots[0].ports, "the first slot records the ports"
        assert not slots[1].ports
        assert other.ports["api"] != slots[0].ports["api"]
        again = registry.claim_slots(tmp_path / "mine", ("api",), 2)
        assert [s.index for s in again] == [3, 0], "its own slots are kept"
        fewer = registry.claim_slots(tmp_path / "mine", ("api",), 1)
        assert [s.index for s in fewer] == [3]
        assert registry.read(0) is None, "a slot beyond the count is given back"
        with pytest.raises(claims.ClaimError, match="free local-cluster slot"):
            registry.claim_slots(tmp_path / "big", ("api",), claims.SLOTS)
