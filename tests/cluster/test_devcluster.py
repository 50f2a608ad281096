"""The local cluster's own lifecycle: idempotent up, reachable API, down leaves nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devcluster.binaries import ensure_binaries
from devcluster.controlplane import COMPONENTS, Cluster
from devcluster.node import network
from devcluster.node.network import PodNetwork
from devcluster.processes import mentioning
from tests.support.examples import ROOT


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
