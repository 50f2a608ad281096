"""A local cluster of a test module's own, for tests that would disturb the session's cluster
(installing the chart cluster-wide, stopping the API server)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from devcluster.binaries import ensure_binaries
from devcluster.controlplane import Cluster, ClusterError
from tests.support.examples import CRDS
from tests.support.kube import Kubectl


@contextmanager
def own_cluster(
    directory: Path, *, crds: bool, nodes: int = 1
) -> Iterator[tuple[Cluster, Kubectl]]:
    """Control plane and `nodes` nodes in `directory` (the CRDs installed with `crds`), then
    gone; the test fails with the component's log when it cannot start."""
    binaries = ensure_binaries()
    cluster = Cluster(directory, binaries, nodes=nodes)
    try:
        cluster.up()
    except ClusterError as error:
        cluster.down()
        pytest.fail(f"cannot start a cluster in {directory}: {error}", pytrace=False)
    kubectl = Kubectl(binaries.path("kubectl"), cluster.kubeconfig)
    try:
        if crds:
            kubectl("apply", "--server-side", "-f", str(CRDS))
            kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        yield cluster, kubectl
    finally:
        cluster.down()
