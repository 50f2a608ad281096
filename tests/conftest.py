"""Fixtures shared by the suites that need a real control plane (tests/cluster, tests/e2e).

The session builds (or reuses) the operator and serving images (`make images-local`: the local
node runs Flywheel's pods from them), then starts a local cluster once (hack/devcluster: etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and the local node from pinned upstream
builds) in a temporary directory, or reuses one given by FLYWHEEL_TEST_KUBECONFIG. It installs
crds/ and gives every test its own namespace (removed afterwards). If the binaries cannot be
built or the cluster cannot start, the tests FAIL with the log tail. Fixtures are lazy: the unit
and serving suites start nothing.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster.binaries import BuildError, ensure_binaries
from devcluster.controlplane import Cluster, ClusterError
from images.build import ensure_images
from images.buildah import BuildFailed
from images.store import Image
from images.tools import ToolsMissing
from tests.support.examples import CRDS
from tests.support.kube import Kubectl, fresh_namespace


@pytest.fixture(scope="session")
def built() -> dict[str, Image]:
    """The operator and serving images of this very tree, built or reused (`make images-local`);
    the test FAILS with the build's own output when they cannot be built."""
    try:
        return ensure_images()
    except (ToolsMissing, BuildFailed) as error:
        pytest.fail(f"cannot build the images: {error}", pytrace=False)


@pytest.fixture(scope="session")
def kubectl(tmp_path_factory: pytest.TempPathFactory, built: dict[str, Image]) -> Iterator[Kubectl]:
    """Cluster-wide kubectl for the session's cluster, with the CRDs installed (the operator's
    and the model server's pods run from the `built` images)."""
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
    with fresh_namespace(kubectl, name):
        yield name


@pytest.fixture
def k(kubectl: Kubectl, namespace: str) -> Kubectl:
    """kubectl defaulting to the test's namespace."""
    return kubectl.in_namespace(namespace)
