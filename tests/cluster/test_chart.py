"""The Helm chart: lint, templates, server-side dry-run under the `restricted` Pod Security
profile, and the whole life of a release on a cluster of its own (the session's cluster has
the CRDs installed by kubectl, which Helm would refuse to adopt): install with the operator
running as a pod under the chart's ServiceAccount, RBAC enforced, upgrade with a changed CRD,
uninstall that keeps the CRDs and leaves nothing else behind."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.binaries import ensure_binaries
from tests.cluster.lifecycle import QUICKSTART, cond, get
from tests.support.clusters import own_cluster
from tests.support.gitops import argocd_health, kstatus
from tests.support.kube import Kubectl, eventually

CHART = Path("charts/flywheel")
RELEASE = "fw"
ALL_ON = [
    "--set", "watchNamespaces={ml,ml-staging}",
    "--set", "networkPolicy.enabled=true",
    "--set", "metrics.serviceMonitor.enabled=true",
    "--set", "dashboard.enabled=true",
]  # fmt: skip


def helm(*args: str, kubeconfig: Path | None = None) -> str:
    """Run the pinned helm; its stdout."""
    argv = [ensure_binaries().path("helm"), *args]
    if kubeconfig is not None:
        argv.append(f"--kubeconfig={kubeconfig}")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def rendered(*values: str, namespace: str = "flywheel-system") -> list[dict[str, Any]]:
    """The chart's manifests."""
    text = helm("template", RELEASE, str(CHART), "--namespace", namespace, *values)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_lint_is_clean_and_templates_render_with_every_option() -> None:
    helm("lint", "--strict", str(CHART))
    helm("lint", "--strict", str(CHART), *ALL_ON)
    default = {d["kind"] for d in rendered()}
    assert default == {
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ConfigMap",
    }
    everything = rendered(*ALL_ON)
    kinds = sorted(d["kind"] for d in everything)
    assert kinds.count("Role") == kinds.count("RoleBinding") == 2
    assert "ClusterRoleBinding" not in kinds, (
        "namespaced mode grants the operator nothing cluster-wide"
    )
    user_roles = [d for d in everything if d["kind"] == "ClusterRole"]
    assert [d["metadata"]["name"] for d in user_roles] == [
        "fw-flywheel-view",
        "fw-flywheel-edit",
        "fw-flywheel-model-importer",
        "fw-flywheel-model-approver",
    ], "only the users' roles"
    aggregated = [
        d["metadata"]["name"]
        for d in user_roles
        if any(k.startswith("rbac.authorization.k8s.io/aggregate") for k in d["metadata"]["labels"])
    ]
    assert aggregated == ["fw-flywheel-view", "fw-flywheel-edit"], "registry roles are bound"
    assert {"NetworkPolicy", "ServiceMonitor"} <= set(kinds)
    crds = [d for d in everything if d["kind"] == "CustomResourceDefinition"]
    assert len(crds) == 5
    assert all(c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for c in crds)
    for crd in crds:  # the chart's copy is the generated one
        name = crd["metadata"]["name"]
        source = yaml.safe_load(Path(f"crds/{name}.yaml").read_text())
        assert crd["spec"] == source["spec"]
    assert not [
        d for d in rendered("--set", "crds.install=false") if d["kind"].startswith("Custom")
    ]
    refused = subprocess.run(
        [ensure_binaries().path("helm"), "template", str(CHART), "--set", "operator.logLevel=LOUD"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0
    assert "logLevel" in refused.stderr, "values.schema.json names the bad value"


def test_rbac_is_least_privilege() -> None:
    (role,) = [
        d
        for d in rendered()
        if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "fw-flywheel"
    ]
    for rule in role["rules"]:
        assert "*" not in rule["verbs"]
        assert "*" not in rule["resources"]
        assert "*" not in rule["apiGroups"]
    grants = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert ("", "secrets", "get") not in grants
    assert ("", "pods", "list") in grants
    assert ("", "pods", "create") not in grants, "pods are made by Jobs and ReplicaSets"
    assert ("batch", "jobs", "create") in grants
    assert ("batch", "jobs", "delete") not in grants
    assert ("flywheel.dev", "datasets", "create") not in grants, "users own the Datasets"
    assert {g for g in grants if g[2] == "delete"} == {
        ("autoscaling", "horizontalpodautoscalers", "delete")
    }
    assert all(g[1].endswith("/finalizers") for g in grants if g[2] == "update")


@pytest.fixture
def restricted(kubectl: Kubectl, namespace: str) -> Kubectl:
    """The test namespace, enforcing the restricted Pod Security profile."""
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    return kubectl.in_namespace(namespace)


SERVICE_MONITOR_CRD = {
    # A stand-in for the Prometheus Operator's CRD, so that the ServiceMonitor is dry-run too.
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "names": {"kind": "ServiceMonitor", "plural": "servicemonitors"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def test_rendered_manifests_pass_a_server_side_dry_run_under_restricted(
    kubectl: Kubectl, restricted: Kubectl
) -> None:
    kubectl.apply(SERVICE_MONITOR_CRD)
    kubectl("wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com")
    namespace = restricted.namespace
    assert namespace is not None
    namespaced = [*ALL_ON[2:], "--set", f"watchNamespaces={{{namespace}}}"]
    for values in ([], namespaced):
        documents = rendered(*values, namespace=namespace)
        result = restricted.run(
            "apply", "--server-side", "--dry-run=server", "--force-conflicts",
            "--field-manager=helm-dry-run", "-f", "-",
            stdin="\n---\n".join(json.dumps(d) for d in documents),
        )  # fmt: skip
        assert "Warning" not in result.stderr, result.stderr  # PodSecurity warns on templates
        # Pod Security is enforced on pods, not on Deployments: dry-run the operator's pod too.
        (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
        template = deployment["spec"]["template"]
        pod: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "operator-dry-run", "labels": template["metadata"]["labels"]},
            "spec": {**template["spec"], "serviceAccountName": "default"},
        }
        restricted("apply", "--server-side", "--dry-run=server", "-f", "-", stdin=json.dumps(pod))
    # And a violation does fail: the check is real.
    bad = {**pod, "spec": {**pod["spec"], "securityContext": {}}}
    bad["spec"]["containers"] = [
        {**c, "securityContext": {"privileged": True}} for c in pod["spec"]["containers"]
    ]
    error = restricted.rejected(bad, "apply", "--server-side", "--dry-run=server", "-f", "-")
    assert "violates PodSecurity" in error


# --- a release's whole life, on a cluster of its own -----------------------------------------


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    """A second local cluster (control plane + node) with no CRDs: Helm installs them."""
    with own_cluster(tmp_path_factory.mktemp("chart-cluster"), crds=False) as (_, kubectl):
        yield kubectl


def _operator_log(k: Kubectl) -> str:
    root = k.kubeconfig.parent / "node" / "pods"
    logs = sorted(root.glob("*/logs/operator-*.log"))
    return "\n".join(p.read_text(errors="replace")[-4000:] for p in logs[-2:])


def _install(k: Kubectl, chart: Path, *values: str) -> None:
    helm(
        "upgrade", "--install", RELEASE, str(chart), "--namespace", "flywheel-system",
        "--wait", "--timeout", "180s", *values,
        kubeconfig=k.kubeconfig,
    )  # fmt: skip


def test_install_runs_the_operator_in_cluster_and_rbac_is_enforced(bare: Kubectl) -> None:
    bare("create", "namespace", "flywheel-system")
    bare("label", "namespace", "flywheel-system", "pod-security.kubernetes.io/enforce=restricted")
    bare("create", "namespace", "demo")
    try:
        _install(bare, CHART)
    except AssertionError as error:
        raise AssertionError(f"{error}\n--- operator log ---\n{_operator_log(bare)}") from None
    system = bare.in_namespace("flywheel-system")
    (pod,) = system.json("get", "pods", "-l", "app.kubernetes.io/component=operator")["items"]
    assert pod["spec"]["serviceAccountName"] == "fw-flywheel"
    (node,) = bare.json("get", "nodes")["items"]
    assert pod["spec"]["nodeName"] == node["metadata"]["name"], "a pod on the local node"
    assert pod["status"]["phase"] == "Running"

    demo = bare.in_namespace("demo")
    for step in ("01-dataset.yaml", "02-trainingrun.yaml", "03-modeldeployment.yaml"):
        demo.apply((QUICKSTART / step).read_text())
    try:
        demo("wait", "--for=condition=Ready", "--timeout=240s", "dataset/iris")
        demo("wait", "--for=condition=Succeeded", "--timeout=300s", "trainingrun/iris-rf-1")
        demo("wait", "--for=condition=Ready", "--timeout=240s", "modeldeployment/iris")
    except AssertionError as error:
        raise AssertionError(f"{error}\n--- operator log ---\n{_operator_log(bare)}") from None
    md = get(demo, "modeldeployment", "iris")
    assert md["status"]["observedGeneration"] == md["metadata"]["generation"]
    # How Argo CD (our health script) and Flux (kstatus) read the real objects.
    for kind in ("dataset", "trainingrun", "modelversion", "modeldeployment"):
        for obj in demo.json("get", kind)["items"]:
            assert argocd_health(obj)[0] == "Healthy", (kind, obj["status"])
            assert kstatus(obj)[0] == "Current", (kind, obj["status"])
    serving = demo.json("get", "pods", "-l", "app.kubernetes.io/instance=iris")["items"]
    assert {p["spec"]["serviceAccountName"] for p in serving} == {"flywheel-serving"}
    account = get(demo, "serviceaccount", "flywheel-serving")
    assert account["automountServiceAccountToken"] is False
    _registry_roles_are_separate(demo)

    # Take away one rule (creating Jobs): the operator is refused, and says so.
    role = bare.json("get", "clusterrole", "fw-flywheel")
    index = next(i for i, r in enumerate(role["rules"]) if r["apiGroups"] == ["batch"])
    bare("patch", "clusterrole", "fw-flywheel", "--type=json",
         "-p", json.dumps([{"op": "remove", "path": f"/rules/{index}"}]))  # fmt: skip
    second = yaml.safe_load((QUICKSTART / "01-dataset.yaml").read_text())
    second["metadata"]["name"] = "iris-2"
    demo.apply(second)

    def refused() -> list[dict[str, Any]]:
        events = demo.json("get", "events", "--field-selector", "involvedObject.name=iris-2")
        return [e for e in events["items"] if "forbidden" in e.get("message", "").lower()]

    (event, *_) = eventually(refused, timeout=60, what="a 403 for creating the ingest Job")
    assert "jobs.batch" in event["message"]
    assert event["type"] == "Warning"
    ready = cond(get(demo, "dataset", "iris-2"), "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "Forbidden"
    assert 'cannot create resource "jobs"' in ready["message"]
    # The chart puts the rule back: the Dataset goes through.
    _install(bare, CHART)
    demo("wait", "--for=condition=Ready", "--timeout=240s", "dataset/iris-2")


def _registry_roles_are_separate(demo: Kubectl) -> None:
    """The aggregated `edit` role cannot create, update or approve ModelVersions; the importer
    and approver roles can do exactly their part (asked of the real authorizer)."""
    demo("create", "rolebinding", "editor", "--clusterrole=edit", "--user=ed")
    demo("create", "rolebinding", "importer", "--clusterrole=fw-flywheel-model-importer",
         "--user=imp")  # fmt: skip
    demo("create", "rolebinding", "approver", "--clusterrole=fw-flywheel-model-approver",
         "--user=ann")  # fmt: skip

    def can(user: str, verb: str, resource: str, subresource: str = "") -> bool:
        extra = [f"--subresource={subresource}"] if subresource else []
        answer = demo.run("auth", "can-i", verb, resource, "--as", user, *extra, check=False)
        return answer.stdout.strip() == "yes"

    assert can("ed", "create", "trainingruns.flywheel.dev")
    assert can("ed", "delete", "modelversions.flywheel.dev")
    for verb in ("create", "update", "patch"):
        assert not can("ed", verb, "modelversions.flywheel.dev"), verb
        assert not can("ed", verb, "modelversions.flywheel.dev", "status"), verb
    assert can("imp", "create", "modelversions.flywheel.dev")
    assert not can("imp", "patch", "modelversions.flywheel.dev", "status")
    assert can("ann", "patch", "modelversions.flywheel.dev", "status")
    assert not can("ann", "create", "modelversions.flywheel.dev")


def test_upgrade_applies_a_changed_crd_and_uninstall_leaves_only_the_crds(
    bare: Kubectl, tmp_path: Path
) -> None:
    changed = tmp_path / "flywheel"
    shutil.copytree(CHART, changed)
    path = changed / "files" / "crds" / "datasets.flywheel.dev.yaml"
    crd = yaml.safe_load(path.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["owner"] = {"type": "string", "maxLength": 63, "description": "New."}
    path.write_text(yaml.safe_dump(crd, sort_keys=False))
    _install(bare, changed)
    live = bare.json("get", "crd", "datasets.flywheel.dev")
    properties = live["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    assert properties["spec"]["properties"]["owner"]["description"] == "New."

    helm("uninstall", RELEASE, "--namespace", "flywheel-system", "--wait",
         kubeconfig=bare.kubeconfig)  # fmt: skip
    selector = f"app.kubernetes.io/instance={RELEASE}"
    left = bare.json(
        "get", "deployments,services,serviceaccounts,configmaps,roles,rolebindings,"
        "clusterroles,clusterrolebindings,networkpolicies", "-A", "-l", selector,
    )["items"]  # fmt: skip
    assert left == [], [f"{o['kind']}/{o['metadata']['name']}" for o in left]
    crds = bare.json("get", "crds", "-l", "app.kubernetes.io/part-of=flywheel")["items"]
    assert len(crds) == 5, "crds.keep"
    assert bare.json("get", "datasets", "-n", "demo")["items"], "and the user's objects with them"
