"""Fixtures for tests against a real control plane (tests/cluster).

The session starts a local cluster once (hack/devcluster: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler from pinned upstream builds) in a temporary directory,
or reuses one given by FLYWHEEL_TEST_KUBECONFIG. It installs crds/, gives every test its own
namespace (removed afterwards) and can run the operator against it with its log captured.
If the binaries cannot be built or the cluster cannot start, the tests FAIL with the log tail.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devcluster.binaries import BuildError, ensure_binaries
from devcluster.controlplane import Cluster, ClusterError
from tests.support.examples import CRDS
from tests.support.kube import Kubectl, eventually
from tests.support.ports import free_port


@pytest.fixture(scope="session")
def kubectl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    """Cluster-wide kubectl for the session's cluster, with the CRDs installed."""
    try:
        binaries = ensure_binaries()
    except BuildError as error:
        pytest.fail(f"cannot build the control-plane binaries: {error}", pytrace=False)
    given = os.environ.get("FLYWHEEL_TEST_KUBECONFIG")
    cluster: Cluster | None = None
    if given:
        kubeconfig = Path(given)
    else:
        cluster = Cluster(tmp_path_factory.mktemp("cluster"), binaries)
        try:
            cluster.up()
        except ClusterError as error:
            cluster.down()
            pytest.fail(f"cannot start the local cluster: {error}", pytrace=False)
        kubeconfig = cluster.kubeconfig
    client = Kubectl(binaries.path("kubectl"), kubeconfig)
    try:
        client("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
        client(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "-l",
            "app.kubernetes.io/part-of=flywheel",
        )
        yield client
    finally:
        if cluster is not None:
            cluster.down()


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    # Unique per run: a namespace of an earlier run may still be terminating.
    digest = hashlib.sha1(f"{request.node.nodeid}{uuid.uuid4()}".encode()).hexdigest()[:8]
    name = f"t-{request.node.name[:40].lower().strip('_').replace('_', '-')}-{digest}"
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name)
    kubectl("create", "namespace", name)
    eventually(
        lambda: (
            kubectl.run("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0
        ),
        what=f"the default ServiceAccount in {name}",
    )
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def k(kubectl: Kubectl, namespace: str) -> Kubectl:
    """kubectl defaulting to the test's namespace."""
    return kubectl.in_namespace(namespace)


@dataclass
class OperatorProcess:
    """The operator running against the test cluster, watching the test's namespace."""

    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    def output(self) -> str:
        """Everything the operator logged so far."""
        return self.log.read_text(errors="replace")


OperatorFactory = Callable[..., OperatorProcess]


@pytest.fixture
def start_operator(kubectl: Kubectl, namespace: str, tmp_path: Path) -> Iterator[OperatorFactory]:
    """Start `python -m flywheel --namespace <test namespace>` (extra env as keywords)."""
    started: list[OperatorProcess] = []

    def start(**extra_env: str) -> OperatorProcess:
        log = tmp_path / f"operator-{len(started)}.log"
        metrics_port = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(kubectl.kubeconfig),
            "FLYWHEEL_LIVENESS_PORT": str(free_port()),
            "FLYWHEEL_METRICS_PORT": str(metrics_port),
            "FLYWHEEL_BIND_ADDRESS": "127.0.0.1",
            "FLYWHEEL_POLL_SECONDS": "1",
            **extra_env,
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "flywheel", "--namespace", namespace],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        handle = OperatorProcess(process, log, metrics_port)
        started.append(handle)
        return handle

    try:
        yield start
    finally:
        for handle in started:
            process = handle.process
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            # Shown by pytest only when the test failed.
            print(f"--- operator log ({handle.log}) ---\n{handle.output()[-6000:]}")


@pytest.fixture
def operator(start_operator: OperatorFactory) -> OperatorProcess:
    """The operator watching the test's namespace."""
    return start_operator()
