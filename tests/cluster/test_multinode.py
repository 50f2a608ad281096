"""Two nodes (`make cluster-up NODES=2`): labels for topology, routing between the nodes' pod
networks and nowhere else, volumes that follow the node they live on, and a ModelDeployment
whose replicas spread over the nodes and serve pods on the other node.

The cluster is this module's own (two node agents, each with its pod network and zone); the
operator runs from this checkout against it with a ReadWriteMany artifacts claim, as a
multi-node cluster needs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcluster.controlplane import Cluster
from flywheel_serving.names import PORT
from tests.cluster.conftest import launch_operator, stop_operator
from tests.cluster.lifecycle import artifact_path, cond, dataset_ready, get, infer_body, train
from tests.support.clusters import own_cluster
from tests.support.kube import Kubectl, eventually, finished_pod, fresh_namespace

PYTHON = "python:3.11"  # recorded, not pulled: the node runs the project's environment
HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"

CALL = """
import json, os, ssl, urllib.request
url, context, headers = os.path.expandvars(os.environ["URL"]), None, {}
if url.startswith("https:"):  # the API server, as a pod's client library reaches it
    account = "/var/run/secrets/kubernetes.io/serviceaccount/"
    context = ssl.create_default_context(cafile=account + "ca.crt")
    headers["Authorization"] = "Bearer " + open(account + "token").read()
headers["Content-Type"] = "application/json"
request = urllib.request.Request(url, data=os.environ["BODY"].encode() or None, headers=headers)
try:
    with urllib.request.urlopen(request, timeout=10, context=context) as answer:
        report = {"status": answer.status, "body": answer.read().decode()[:3000]}
except OSError as error:
    report = {"error": str(getattr(error, "reason", error))}
open("/dev/termination-log", "w").write(json.dumps(report))
"""


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Kubectl]]:
    """A cluster of this module's own with two nodes and the CRDs."""
    with own_cluster(tmp_path_factory.mktemp("two-nodes"), crds=True, nodes=2) as pair:
        yield pair


@pytest.fixture
def k2(two_nodes: tuple[Cluster, Kubectl]) -> Iterator[Kubectl]:
    """kubectl in a fresh namespace of the two-node cluster."""
    _, kubectl = two_nodes
    name = f"t-{uuid.uuid4().hex[:8]}"
    with fresh_namespace(kubectl, name) as k:
        yield k


def _nodes(k: Kubectl) -> list[dict[str, Any]]:
    return sorted(k.json("get", "nodes")["items"], key=lambda n: n["metadata"]["name"])


def _pod(name: str, node: str | None, **container: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": PYTHON, **container}],
    }
    if node is not None:
        spec["nodeSelector"] = {HOSTNAME: node}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _server(name: str, node: str) -> dict[str, Any]:
    pod = _pod(name, node, command=["python", "-m", "http.server", "8000", "-d", "/etc"])
    pod["spec"]["restartPolicy"] = "Always"
    pod["spec"]["containers"][0]["readinessProbe"] = {
        "tcpSocket": {"port": 8000},
        "periodSeconds": 1,
    }
    return pod


def _ready_ip(k: Kubectl, pod: str) -> str:
    def ready() -> str | None:
        status = k.json("get", "pod", pod).get("status", {})
        ok = any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
        )
        return str(status["podIP"]) if ok else None

    return eventually(ready, timeout=90, what=f"pod {pod} ready")


def _finished(k: Kubectl, name: str) -> tuple[dict[str, Any], str]:
    """A pod that succeeded, and its termination message (`kubectl logs` does not reach the
    local node)."""

    pod = finished_pod(k, name)
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0, terminated
    return pod, str(terminated.get("message", ""))


def _call_from(k: Kubectl, name: str, node: str, url: str, body: Any = None) -> dict[str, Any]:
    """Run a pod on `node` that requests `url` (POSTs `body` as JSON); what it got."""
    env = [
        {"name": "URL", "value": url},
        {"name": "BODY", "value": json.dumps(body) if body is not None else ""},
    ]
    k.apply(_pod(name, node, command=["python", "-c", CALL], env=env))
    pod, message = _finished(k, name)
    assert pod["spec"]["nodeName"] == node
    return dict(json.loads(message))


def _claim(name: str, mode: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": [mode], "resources": {"requests": {"storage": "1Gi"}}},
    }


def _with_claim(pod: dict[str, Any], claim: str) -> dict[str, Any]:
    pod["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    return pod


WRITE = "import socket; open('/data/note', 'w').write(socket.gethostname())"
READ = "open('/dev/termination-log', 'w').write(open('/data/note').read())"


def _volume(k: Kubectl, claim: str) -> dict[str, Any]:
    return get(k, "pv", get(k, "pvc", claim)["spec"]["volumeName"])


def test_two_nodes_in_two_zones_reach_each_others_pods_and_nothing_beyond(
    k2: Kubectl, k: Kubectl
) -> None:
    first, second = _nodes(k2)
    names = [first["metadata"]["name"], second["metadata"]["name"]]
    for node in (first, second):
        labels = node["metadata"]["labels"]
        assert labels[HOSTNAME] == node["metadata"]["name"]
        assert cond(node, "Ready")["status"] == "True"
    assert [n["metadata"]["labels"][ZONE] for n in (first, second)] == ["local-a", "local-b"]
    assert first["spec"]["podCIDR"] != second["spec"]["podCIDR"]

    # A pod on each node answers a client on the other node, by pod IP.
    k2.apply(_server("web-a", names[0]))
    k2.apply(_server("web-b", names[1]))
    a, b = _ready_ip(k2, "web-a"), _ready_ip(k2, "web-b")
    assert get(k2, "pod", "web-a")["spec"]["nodeName"] == names[0]
    for client, node, target in (("from-a", names[0], b), ("from-b", names[1], a)):
        got = _call_from(k2, client, node, f"http://{target}:8000/hostname")
        assert got.get("status") == 200, got

    # The second node's pods reach the API server on their node's address, over TLS verified
    # against the cluster CA (the serving certificate names every node's address).
    url = "https://${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT}/version"
    api = _call_from(k2, "api-from-b", names[1], url)
    assert api.get("status") == 200, api
    assert json.loads(api["body"])["gitVersion"].startswith("v1.")

    # Another local cluster's pods (the session's) are not reachable: no route leads there.
    k.apply(_pod("elsewhere", None, command=_server("x", "x")["spec"]["containers"][0]["command"]))
    other = _ready_ip(k, "elsewhere")
    got = _call_from(k2, "to-other-cluster", names[0], f"http://{other}:8000/hostname")
    assert "no route to host" in got.get("error", "").lower(), got


def test_a_read_write_once_volume_keeps_its_pods_on_its_node_a_read_write_many_one_does_not(
    k2: Kubectl,
) -> None:
    names = [n["metadata"]["name"] for n in _nodes(k2)]
    k2.apply(_claim("rwo", "ReadWriteOnce"))
    k2.apply(_claim("rwx", "ReadWriteMany"))

    # The first consumer of the ReadWriteOnce claim runs on the second node: the volume is
    # made there and is bound to it, so a pod that would rather run on the first node follows it.
    k2.apply(_with_claim(_pod("rwo-writer", names[1], command=["python", "-c", WRITE]), "rwo"))
    _finished(k2, "rwo-writer")
    terms = _volume(k2, "rwo")["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms == [
        {"matchExpressions": [{"key": HOSTNAME, "operator": "In", "values": [names[1]]}]}
    ]
    follower = _with_claim(_pod("rwo-reader", None, command=["python", "-c", READ]), "rwo")
    follower["spec"]["affinity"] = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "preference": {
                        "matchExpressions": [
                            {"key": HOSTNAME, "operator": "In", "values": [names[0]]}
                        ]
                    },
                }
            ]
        }
    }
    k2.apply(follower)
    pod, note = _finished(k2, "rwo-reader")
    assert pod["spec"]["nodeName"] == names[1], "a pod of a ReadWriteOnce claim follows it"
    assert note == "rwo-writer"

    # A ReadWriteMany volume is mounted on any node: written on one, read on the other.
    k2.apply(_with_claim(_pod("rwx-writer", names[0], command=["python", "-c", WRITE]), "rwx"))
    _finished(k2, "rwx-writer")
    assert "nodeAffinity" not in _volume(k2, "rwx")["spec"]
    k2.apply(_with_claim(_pod("rwx-reader", names[1], command=["python", "-c", READ]), "rwx"))
    pod, note = _finished(k2, "rwx-reader")
    assert (pod["spec"]["nodeName"], note) == (names[1], "rwx-writer")


def test_a_two_replica_model_deployment_spreads_over_the_nodes_and_serves_across_them(
    k2: Kubectl, tmp_path: Path
) -> None:
    names = [n["metadata"]["name"] for n in _nodes(k2)]
    assert k2.namespace is not None
    operator = launch_operator(
        k2.kubeconfig,
        k2.namespace,
        tmp_path / "operator.log",
        FLYWHEEL_ARTIFACTS_ACCESS_MODE="ReadWriteMany",
    )
    try:
        dataset_ready(k2)
        version = train(k2, "iris-rf-1")
        k2.apply(
            {
                "apiVersion": "flywheel.dev/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": "iris"},
                "spec": {
                    "model": "iris",
                    "version": 1,
                    "replicas": 2,
                    "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
                    "topologySpreadConstraints": [
                        {"topologyKey": HOSTNAME, "whenUnsatisfiable": "DoNotSchedule"}
                    ],
                },
            }
        )

        def serving() -> dict[str, Any] | None:
            md = get(k2, "modeldeployment", "iris")
            ready = md.get("status", {}).get("readyReplicas") == 2
            return md if ready and cond(md, "Ready").get("status") == "True" else None

        eventually(serving, timeout=240, what="iris serving on 2 pods")
        claim = version["spec"]["artifact"]["uri"].removeprefix("pvc://").split("/", 1)[0]
        assert get(k2, "pvc", claim)["spec"]["accessModes"] == ["ReadWriteMany"]
        assert "nodeAffinity" not in _volume(k2, claim)["spec"]

        template = get(k2, "deployment", "iris-serving")["spec"]["template"]["spec"]
        (spread,) = template["topologySpreadConstraints"]
        assert (spread["topologyKey"], spread["whenUnsatisfiable"]) == (HOSTNAME, "DoNotSchedule")
        pods = k2.json("get", "pods", "-l", "app.kubernetes.io/instance=iris")["items"]
        placed = {p["spec"]["nodeName"]: p["status"]["podIP"] for p in pods}
        assert sorted(placed) == names, "one serving pod per node"

        # Each serving pod answers a client on the other node as the training run predicted.
        examples = json.loads(
            artifact_path(k2, version["spec"]["artifact"]["examplesURI"]).read_text()
        )
        rows = 5
        body = infer_body({**examples, "rows": examples["rows"][:rows]})
        for n, (client_node, server_node) in enumerate(
            ((names[0], names[1]), (names[1], names[0]))
        ):
            url = f"http://{placed[server_node]}:{PORT}/v2/models/iris/infer"
            got = _call_from(k2, f"client-{n}", client_node, url, body)
            assert got.get("status") == 200, got
            answer = json.loads(got["body"])
            assert answer["model_version"] == "1"
            labels = [str(label) for label in answer["outputs"][0]["data"]]
            assert labels == [str(label) for label in examples["labels"][:rows]]
    finally:
        stop_operator(operator)
