"""The ModelDeployment controller on the real cluster: models trained by real TrainingRuns,
served by real model-server pods on the local node, reached by pod IP (the local node has no
Service proxy, so the tests route to ready EndpointSlice endpoints as kube-proxy would)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from flywheel.api.modeldeployment import ModelDeploymentSpec
from flywheel.controllers.modeldeployment.render import render_deployment
from flywheel.core.applied import differs
from flywheel.core.target import parse_meta
from flywheel.settings import OperatorSettings
from tests.cluster.conftest import OperatorProcess
from tests.cluster.lifecycle import (
    Traffic,
    artifact_path,
    cond,
    dataset_ready,
    get,
    get_text,
    infer_body,
    post,
    ready_endpoints,
    train,
)
from tests.support.kube import Kubectl, eventually

FAST_RF = {"class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 10}}


def _deployment(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": "iris",
            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
            **spec,
        },
    }


def _md(k: Kubectl, name: str) -> dict[str, Any]:
    return get(k, "modeldeployment", name)


def _events(k: Kubectl, name: str) -> list[dict[str, Any]]:
    items = k.json("get", "events", "--field-selector", f"involvedObject.name={name}")["items"]
    return list(items)


def _links(k: Kubectl, version: str) -> list[str]:
    status = get(k, "modelversion", version).get("status", {})
    return sorted(d["name"] for d in status.get("deployments") or ())


def _serving(k: Kubectl, name: str, version: int, replicas: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        md = _md(k, name)
        status = md.get("status", {})
        if status.get("servingVersion") == version and status.get("readyReplicas") == replicas:
            return md if cond(md, "Ready").get("status") == "True" else None
        return None

    return eventually(done, timeout=180, what=f"{name} serving v{version} on {replicas} pods")


def _exists(k: Kubectl, kind: str, name: str) -> Callable[[], bool]:
    return lambda: k.run("get", kind, name, check=False).returncode == 0


def _gone(k: Kubectl, kind: str, name: str) -> Callable[[], bool]:
    return lambda: k.run("get", kind, name, check=False).returncode != 0


def _examples(k: Kubectl, version: dict[str, Any]) -> dict[str, Any]:
    uri = version["spec"]["artifact"]["examplesURI"]
    return dict(json.loads(artifact_path(k, uri).read_text()))


def test_serves_rolls_out_without_errors_and_rolls_back_a_tampered_version(
    k: Kubectl, operator: OperatorProcess
) -> None:
    dataset_ready(k)
    v1 = train(k, "iris-rf-1")
    k.apply(_deployment("iris", version=1, replicas=2, rollout={"progressDeadlineSeconds": 20}))
    md = _serving(k, "iris", 1, 2)
    status = md["status"]
    assert status["observedGeneration"] == md["metadata"]["generation"]
    assert (
        status["selector"]
        == "app.kubernetes.io/instance=iris,app.kubernetes.io/name=flywheel-serving"
    )
    assert status["endpoint"] == f"http://iris-serving.{k.namespace}.svc:8080/v2/models/iris"
    assert cond(md, "Progressing")["reason"] == "RolloutComplete"
    assert cond(md, "Degraded")["status"] == "False"
    assert any(e["reason"] == "RolloutComplete" for e in _events(k, "iris"))

    deployment = get(k, "deployment", "iris-serving")
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]["spec"]
    security = pod["containers"][0]["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert all(
        m.get("readOnly") for m in pod["containers"][0]["volumeMounts"] if "artifacts" in m["name"]
    )
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert get(k, "service", "iris-serving")["metadata"]["ownerReferences"][0]["name"] == "iris"
    assert _links(k, "iris-v1") == ["iris"]

    # Every ready pod answers the recorded held-out rows as the training run predicted them.
    examples = _examples(k, v1)
    body = infer_body(examples)
    endpoints = ready_endpoints(k, "iris-serving")
    assert len(endpoints) == 2
    for address in endpoints:
        code, answer = post(f"http://{address}/v2/models/iris/infer", body)
        assert code == 200, answer
        assert answer["model_version"] == "1"
        labels, probabilities = answer["outputs"][0]["data"], answer["outputs"][1]["data"]
        assert [str(label) for label in labels] == examples["labels"]
        expected = np.array(examples["probabilities"]).ravel()
        np.testing.assert_allclose(probabilities, expected, atol=1e-5)
        metrics = get_text(f"http://{address}/metrics")
        assert 'model="iris",version="1"' in metrics
        assert "flywheel_feature_values_total" in metrics

    # A new validated version rolls out under continuous traffic: not one failed request, and
    # servingVersion moves only once every pod serves the new version.
    train(k, "iris-rf-2", estimator=FAST_RF)
    with Traffic(k, "iris-serving", "/v2/models/iris/infer", body) as traffic:
        eventually(lambda: traffic.total > 20, what="traffic flowing")
        k("patch", "modeldeployment", "iris", "--type=merge", "-p", '{"spec":{"version":2}}')
        seen_in_between = False
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            md = _md(k, "iris")
            serving, target = md["status"].get("servingVersion"), md["status"].get("targetVersion")
            rolled = get(k, "deployment", "iris-serving")["status"]
            if serving == 2:
                assert rolled.get("updatedReplicas") == 2 == rolled.get("availableReplicas")
                break
            assert serving == 1
            seen_in_between = seen_in_between or target == 2
            time.sleep(0.2)
        else:
            raise AssertionError(f"v2 never rolled out: {md['status']}")
        assert seen_in_between, "targetVersion showed the rollout while v1 still served"
        time.sleep(8)  # old pods finish their shutdown delay while traffic goes on
    print(f"rollout v1 -> v2: {traffic.total} requests, {traffic.answers}, {traffic.errors}")
    assert traffic.errors == [], traffic.errors[:5]
    assert traffic.answers["1"] > 0, traffic.answers
    assert traffic.answers["2"] > 0, traffic.answers
    _serving(k, "iris", 2, 2)
    eventually(
        lambda: _links(k, "iris-v2") == ["iris"] and _links(k, "iris-v1") == [], what="links"
    )

    # A validated version whose file was changed after registration never becomes ready: the
    # rollout is rolled back by itself, v2 keeps serving, and the reason is visible.
    v3 = train(k, "iris-rf-3", estimator=FAST_RF, split={"testFraction": 0.3, "seed": 3})
    model = artifact_path(k, v3["spec"]["artifact"]["uri"])
    model.write_bytes(model.read_bytes() + b"\0")
    with Traffic(k, "iris-serving", "/v2/models/iris/infer", body) as traffic:
        k("patch", "modeldeployment", "iris", "--type=merge", "-p", '{"spec":{"version":3}}')

        def rolled_back() -> dict[str, Any] | None:
            md = _md(k, "iris")
            return md if cond(md, "Degraded").get("reason") == "RollbackPerformed" else None

        md = eventually(rolled_back, timeout=120, what="an automatic rollback")
        assert md["status"]["servingVersion"] == 2
        assert md["status"]["failedRollout"]["version"] == 3
        message = cond(md, "Degraded")["message"]
        assert "ArtifactDigestMismatch" in message, message
        assert "rolled back to v2" in message
        events = [e for e in _events(k, "iris") if e["reason"] == "RollbackPerformed"]
        assert events
        assert events[0]["type"] == "Warning"
        assert "ArtifactDigestMismatch" in events[0]["message"]
        eventually(
            lambda: (
                get(k, "deployment", "iris-serving")["metadata"]["annotations"][
                    "flywheel.dev/version"
                ]
                == "2"
            ),
            what="the Deployment rendered for v2 again",
        )
        time.sleep(3)
    print(f"failed rollout of v3: {traffic.total} requests, {traffic.answers}, {traffic.errors}")
    assert traffic.errors == [], traffic.errors[:5]
    assert set(traffic.answers) == {"2"}, traffic.answers
    md = _serving(k, "iris", 2, 2)
    assert cond(md, "Ready")["status"] == "True"
    assert cond(md, "Degraded")["reason"] == "RollbackPerformed", "v3 is not retried"
    assert md["status"]["failedRollout"]["generation"] == md["metadata"]["generation"]


def test_latest_validated_follows_validated_versions_and_refuses_others(
    k: Kubectl, operator: OperatorProcess
) -> None:
    dataset_ready(k)
    k.apply(_deployment("latest", policy="LatestValidated"))

    def waiting() -> dict[str, Any] | None:
        md = _md(k, "latest")
        return md if cond(md, "Ready").get("reason") == "VersionNotFound" else None

    md = eventually(waiting, what="no validated version yet")
    assert cond(md, "Stalled")["status"] == "False", "a version can still come"
    train(k, "iris-rf-1")
    _serving(k, "latest", 1, 1)

    # A version that fails its gates is ignored: no rollout starts.
    stump = {"class": "sklearn.tree.DecisionTreeClassifier", "params": {"max_depth": 1}}
    train(
        k,
        "iris-stump",
        validated=False,
        estimator=stump,
        validation={"thresholds": [{"metric": "accuracy", "min": 0.99}]},
    )
    time.sleep(4)  # a few timer periods
    md = _md(k, "latest")
    assert md["status"]["servingVersion"] == 1
    assert md["status"].get("targetVersion") is None
    assert (
        get(k, "deployment", "latest-serving")["metadata"]["annotations"]["flywheel.dev/version"]
        == "1"
    )

    # Pinned to that version, or to one that does not exist: refused, nothing deployed.
    k.apply(_deployment("pinned-bad", version=2))
    k.apply(_deployment("pinned-missing", version=9))
    bad = eventually(
        lambda: (
            lambda md: md if cond(md, "Ready").get("reason") == "VersionNotValidated" else None
        )(_md(k, "pinned-bad")),
        what="VersionNotValidated",
    )
    assert cond(bad, "Stalled")["status"] == "True"
    assert "accuracy >= 0.99" in cond(bad, "Ready")["message"]
    missing = eventually(
        lambda: (lambda md: md if cond(md, "Ready").get("reason") == "VersionNotFound" else None)(
            _md(k, "pinned-missing")
        ),
        what="VersionNotFound",
    )
    assert "v9 does not exist" in cond(missing, "Ready")["message"]
    assert k.run("get", "deployment", "pinned-bad-serving", check=False).returncode != 0
    assert any(e["reason"] == "VersionNotValidated" for e in _events(k, "pinned-bad"))

    # A newly validated version rolls out without any edit.
    train(k, "iris-rf-3", estimator=FAST_RF)
    md = _serving(k, "latest", 3, 1)
    assert md["metadata"]["generation"] == 1, "nobody edited the spec"


def test_scaling_restoring_children_and_deletion(k: Kubectl, operator: OperatorProcess) -> None:
    dataset_ready(k)
    train(k, "iris-rf-1", estimator=FAST_RF)
    k.apply(_deployment("iris", version=1, replicas=1))
    _serving(k, "iris", 1, 1)

    k("scale", "modeldeployment", "iris", "--replicas=2")
    _serving(k, "iris", 1, 2)
    path = f"/apis/flywheel.dev/v1alpha1/namespaces/{k.namespace}/modeldeployments/iris/scale"
    scale = json.loads(k("get", "--raw", path))
    assert scale["status"]["replicas"] == 2

    # Children deleted or edited by hand come back.
    service_uid = get(k, "service", "iris-serving")["metadata"]["uid"]
    k("delete", "service", "iris-serving")
    eventually(
        lambda: (
            k.run("get", "service", "iris-serving", check=False).returncode == 0
            and get(k, "service", "iris-serving")["metadata"]["uid"] != service_uid
        ),
        what="the Service recreated",
    )
    k("scale", "deployment", "iris-serving", "--replicas=1")
    eventually(
        lambda: get(k, "deployment", "iris-serving")["spec"]["replicas"] == 2,
        what="replicas restored",
    )
    k("label", "deployment", "iris-serving", "team=ml")
    k("annotate", "deployment", "iris-serving", "example.com/owner=ml-team")
    time.sleep(2)  # the label change is an event the operator reacts to: its apply keeps them
    labelled = get(k, "deployment", "iris-serving")["metadata"]
    assert labelled["labels"]["team"] == "ml"
    assert labelled["annotations"]["example.com/owner"] == "ml-team"
    k("delete", "deployment", "iris-serving")
    eventually(
        lambda: k.run("get", "deployment", "iris-serving", check=False).returncode == 0,
        what="the Deployment recreated",
    )
    _serving(k, "iris", 1, 2)

    # An HPA targeting the ModelDeployment drives its replicas through the scale subresource.
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "iris-user"},
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "flywheel.dev/v1alpha1",
                "kind": "ModelDeployment",
                "name": "iris",
            },
            "minReplicas": 3,
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 80},
                    },
                }
            ],
        },
    }
    k.apply(hpa)
    eventually(
        lambda: _md(k, "iris")["spec"]["replicas"] == 3,
        timeout=90,
        what="the HPA scaling the ModelDeployment",
    )
    _serving(k, "iris", 1, 3)
    k("delete", "hpa", "iris-user")

    # `autoscaling`: the operator's own HPA on the Deployment; replicas are left to it.
    k(
        "patch",
        "modeldeployment",
        "iris",
        "--type=merge",
        "-p",
        '{"spec":{"autoscaling":{"minReplicas":2,"maxReplicas":3}}}',
    )
    eventually(_exists(k, "hpa", "iris-serving"), what="the operator's HPA")
    owned = get(k, "hpa", "iris-serving")
    assert owned["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "iris-serving",
    }
    assert owned["metadata"]["ownerReferences"][0]["name"] == "iris"
    shown = k.json("get", "deployment", "iris-serving", "--show-managed-fields")
    managers = shown["metadata"]["managedFields"]
    ours = [m for m in managers if m["manager"] == "flywheel"]
    assert ours
    assert "f:replicas" not in json.dumps(ours[0]["fieldsV1"].get("f:spec", {}))

    # Deleting the ModelDeployment removes every child and its link on the version.
    assert _links(k, "iris-v1") == ["iris"]
    k("delete", "modeldeployment", "iris")
    for kind in ("deployment", "service", "hpa"):
        eventually(_gone(k, kind, "iris-serving"), what=f"the {kind} collected")
    eventually(lambda: _links(k, "iris-v1") == [], what="the link removed")


def _stored_as_rendered(k: Kubectl, spec: dict[str, Any]) -> dict[str, Any]:
    """The serving Deployment rendered for `spec`, as the API server would store it (dry run)."""
    meta = parse_meta({"metadata": {"name": "spread", "namespace": k.namespace, "uid": "u-1"}})
    version = {
        "spec": {
            "version": 1,
            "artifact": {"uri": "pvc://flywheel-artifacts/m/model.onnx", "sha256": "a" * 64},
            "baseline": {"statsURI": "pvc://flywheel-artifacts/d/stats.json"},
        }
    }
    parsed = ModelDeploymentSpec.model_validate({"model": "iris", "replicas": 2, **spec})
    rendered = render_deployment(meta, parsed, version, OperatorSettings())
    stored: dict[str, Any] = json.loads(
        k.apply(rendered, "--server-side", "--dry-run=server", "--field-manager=test", "-o=json")
    )
    assert not differs(rendered, stored), "stored as applied: the operator would not re-apply it"
    return stored


def test_the_api_server_stores_the_spread_constraints_as_rendered(k: Kubectl) -> None:
    """The Deployment's pod template takes the constraints (matchLabelKeys, minDomains) and reads
    back unchanged, so a settled ModelDeployment is not applied again and again."""
    hard = {
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule",
        "minDomains": 2,
    }
    stored = _stored_as_rendered(k, {"topologySpreadConstraints": [hard]})
    (constraint,) = stored["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert constraint["matchLabelKeys"] == ["pod-template-hash"]
    assert constraint["minDomains"] == 2
    unset_or_empty: list[dict[str, Any]] = [{}, {"topologySpreadConstraints": []}]
    for unset in unset_or_empty:
        stored = _stored_as_rendered(k, unset)
        assert "topologySpreadConstraints" not in stored["spec"]["template"]["spec"]
