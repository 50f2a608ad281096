"""The operator rides out an API server outage: kube-apiserver killed for 20 s, then back.

On a local cluster of its own (the outage would disturb other tests). A Dataset's refresh falls
due while the API server is down, so a reconcile really fails against it; once the API server
is ready again, that reconcile and a Dataset created then must both have their Jobs within
10 s, and the operator's log must show the outage as one-line warnings, never a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from devcluster.binaries import ensure_binaries
from devcluster.controlplane import Cluster
from tests.support.clusters import own_cluster
from tests.support.kube import Kubectl, eventually
from tests.support.ports import free_port

NAMESPACE = "outage"
DOWN = 20.0
CONVERGE = 10.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster of this test's own, with the CRDs."""
    with own_cluster(tmp_path_factory.mktemp("outage-cluster"), crds=True) as (found, kubectl):
        kubectl("create", "namespace", NAMESPACE)
        yield found


def _dataset(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {"source": {"uri": "sklearn://iris"}, **spec},
    }


def _last_ingest(k: Kubectl, name: str) -> dict[str, Any]:
    result = k.run("get", "dataset", name, "-o", "json", check=False)
    if result.returncode != 0:
        return {}
    status: dict[str, Any] = json.loads(result.stdout).get("status") or {}
    return dict(status.get("lastIngest") or {})


@pytest.mark.slow
def test_the_operator_converges_after_the_api_server_comes_back(
    cluster: Cluster, tmp_path: Path
) -> None:
    k = Kubectl(ensure_binaries().path("kubectl"), cluster.kubeconfig, NAMESPACE)
    log = tmp_path / "operator.log"
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "FLYWHEEL_LIVENESS_PORT": str(free_port()),
        "FLYWHEEL_METRICS_PORT": "0",
        "FLYWHEEL_BIND_ADDRESS": "127.0.0.1",
    }
    with log.open("wb") as out:
        operator = subprocess.Popen(
            [sys.executable, "-m", "flywheel", "--namespace", NAMESPACE],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        k.apply(_dataset("before", refresh={"intervalSeconds": 30}))
        k("wait", "--for=condition=Ready", "--timeout=180s", "dataset/before")
        checked = _last_ingest(k, "before")["completionTime"]
        finished = datetime.fromisoformat(checked.replace("Z", "+00:00")).timestamp()
        # Down from 22 s to 42 s after the ingest finished: its refresh (at 30 s) falls inside.
        time.sleep(max(0.0, finished + 22 - time.time()))
        cluster.stop_component("kube-apiserver", kill=True)
        time.sleep(DOWN)
        cluster.start_component("kube-apiserver")
        ready = time.monotonic()
        eventually(
            lambda: (
                k.run("apply", "-f", "-", stdin=_json(_dataset("after")), check=False).returncode
                == 0
            ),
            timeout=CONVERGE,
            what="the Dataset created after the outage",
        )

        def converged() -> bool:
            before, after = _last_ingest(k, "before"), _last_ingest(k, "after")
            return before.get("trigger") == "Refresh" and bool(after.get("jobName"))

        eventually(converged, timeout=CONVERGE, what="both Datasets' Jobs after the outage")
        took = time.monotonic() - ready
        print(f"converged {took:.1f} s after the API server was ready again")
        assert took <= CONVERGE
        assert k.json("get", "job", _last_ingest(k, "after")["jobName"])["metadata"]["name"]
    finally:
        operator.send_signal(signal.SIGTERM)
        operator.wait(timeout=60)
        output = log.read_text(errors="replace")
        print(f"--- operator log ---\n{output[-6000:]}")
    assert "Traceback" not in output, "the outage is logged without tracebacks"
    assert f"Dataset {NAMESPACE}/before: the API server did not answer" in output, (
        "the refresh really met the outage, and the log line names the object"
    )


def _json(obj: dict[str, Any]) -> str:
    return json.dumps(obj)
