"""`kubectl logs` on the local node: the API server reaches the node's kubelet API over TLS (each
side verified by the cluster CA) and the node answers as the kubelet does."""

from __future__ import annotations

import re
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.kube import Kubectl, eventually

PYTHON = "python:3.11"  # recorded, not pulled: the node runs the project's environment
STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (.*)$")

TALK = """
import sys, time
for i in range(3):
    print("out", i, flush=True)
    time.sleep(0.05)
print("err", 3, file=sys.stderr, flush=True)
"""

RUNS = """
import os, time
count = "/state/runs"
runs = int(open(count).read()) + 1 if os.path.exists(count) else 1
open(count, "w").write(str(runs))
print("run", runs, flush=True)
if runs == 1:
    raise SystemExit(1)
for i in range(4):
    time.sleep(0.5)
    print("tick", i, flush=True)
"""


def _pod(name: str, code: str, restart: str = "Never", **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {"name": "main", "image": PYTHON, "command": ["python", "-c", code], **extra}
        ],
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _phase(k: Kubectl, name: str, phase: str) -> None:
    eventually(
        lambda: k.json("get", "pod", name)["status"].get("phase") == phase,
        timeout=90,
        what=f"pod {name} {phase}",
    )


def test_kubectl_logs_with_tail_timestamps_and_limit(k: Kubectl) -> None:
    k.apply(_pod("talker", TALK))
    _phase(k, "talker", "Succeeded")
    assert k("logs", "talker").splitlines() == ["out 0", "out 1", "out 2", "err 3"]
    assert k("logs", "talker", "--tail=2").splitlines() == ["out 2", "err 3"]
    stamped = [STAMPED.match(line) for line in k("logs", "talker", "--timestamps").splitlines()]
    assert [m.group(1) if m else None for m in stamped] == ["out 0", "out 1", "out 2", "err 3"]
    assert k("logs", "talker", "--limit-bytes=7") == "out 0\no"

    missing = k.run("logs", "talker", "--previous", check=False)
    assert missing.returncode != 0
    assert 'previous terminated container "main" in pod "talker" not found' in missing.stderr
    other = k.run("logs", "talker", "-c", "nope", check=False)
    assert other.returncode != 0
    assert "nope" in other.stderr


def test_logs_follow_a_running_container_to_its_end_and_previous_shows_the_run_before(
    k: Kubectl,
) -> None:
    volume = {"name": "state", "emptyDir": {}}
    pod = _pod("runs", RUNS, "OnFailure", volumeMounts=[{"name": "state", "mountPath": "/state"}])
    pod["spec"]["volumes"] = [volume]
    k.apply(pod)

    def second_run() -> bool:
        status = k.json("get", "pod", "runs")["status"]
        container = (status.get("containerStatuses") or [{}])[0]
        return container.get("restartCount") == 1 and "running" in container.get("state", {})

    eventually(second_run, timeout=120, what="the second run of the container")
    followed = k.run("logs", "-f", "runs", check=False)  # returns when the instance ends
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.splitlines() == ["run 2", "tick 0", "tick 1", "tick 2", "tick 3"], (
        "followed to the end of the running instance, and it ended with it"
    )
    assert k("logs", "runs", "--previous").splitlines() == ["run 1"]
    _phase(k, "runs", "Succeeded")
    assert k("logs", "runs").splitlines()[0] == "run 2"


def _kubelet_get(url: str, pki: Path, client: str | None) -> tuple[int, str]:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if client is not None:
        context.load_cert_chain(pki / f"{client}.crt", pki / f"{client}.key")
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_kubelet_api_serves_the_api_servers_client_and_admins_only(k: Kubectl) -> None:
    k.apply(_pod("quiet", TALK))
    _phase(k, "quiet", "Succeeded")
    (node,) = k.json("get", "nodes")["items"]
    address = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
    url = f"https://{address}:10250/containerLogs/{k.namespace}/quiet/main?tailLines=1"
    pki = k.kubeconfig.parent / "pki"
    assert _kubelet_get(url, pki, "apiserver-kubelet-client") == (200, "err 3\n")
    assert _kubelet_get(url, pki, "admin") == (200, "err 3\n"), "system:masters"
    status, text = _kubelet_get(url, pki, "scheduler")  # a client of the cluster CA, not allowed
    assert status == 403
    assert "Forbidden (user=system:kube-scheduler, verb=get" in text
    assert "resource=nodes, subresource=proxy" in text
    with pytest.raises((urllib.error.URLError, ConnectionError)):  # no client certificate
        _kubelet_get(url, pki, None)
