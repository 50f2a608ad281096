"""The ModelDeployment controller's gather → decide → act over the in-memory fake: the serving
children, rollouts that move `servingVersion` only when complete, version links, children put
back after a hand edit, autoscaling, `LatestValidated`, and the rollback of a rollout past its
deadline with the model server's own reason."""

from __future__ import annotations

from typing import Any

from flywheel.controllers.modeldeployment import CONTROLLER, deployments_of_model
from flywheel.core.links import link, link_manager
from flywheel.core.outcome import FIELD_MANAGER, Apply, Ensure, Outcome
from flywheel.core.resources import (
    DEPLOYMENTS,
    HPAS,
    MODEL_DEPLOYMENTS,
    MODEL_VERSIONS,
    SERVICE_ACCOUNTS,
    SERVICES,
)
from flywheel.core.serving import VERSION_LABEL, selector_labels, selector_string
from flywheel.core.target import Target, parse_target
from flywheel_serving.names import PORT, READY_PATH
from tests.support.fakekube import Harness

NS = "ns"
SHA = "a" * 64
CHILD = "web-serving"
MANAGER = link_manager("web")


def _model_deployment(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"model": "iris", **spec},
    }


def _model_version(number: int, validated: str | None = "True") -> dict[str, Any]:
    status: dict[str, Any] = {}
    if validated is not None:
        status["conditions"] = [
            {"type": "Validated", "status": validated, "reason": "GatesPassed", "message": "ok"}
        ]
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": f"iris-v{number}", "namespace": NS},
        "spec": {
            "model": "iris",
            "version": number,
            "artifact": {"uri": f"pvc://art/models/ns/iris/r{number}/model.onnx", "sha256": SHA},
            "baseline": {"statsURI": "pvc://data/datasets/ns/iris/abc/stats.json"},
        },
        "status": status,
    }


def _harness(*versions: dict[str, Any], **spec: Any) -> Harness:
    h = Harness(CONTROLLER)
    for version in versions:
        h.cluster.add(version)
    h.cluster.add(_model_deployment(**spec))
    return h


def _edit_spec(h: Harness, **spec: Any) -> None:
    """What `kubectl apply` of a changed ModelDeployment does: a new spec and generation."""
    body = h.cluster.objects[(MODEL_DEPLOYMENTS.plural, NS, "web")]
    body["spec"] = {"model": "iris", **spec}
    body["metadata"]["generation"] += 1


def _deployment(h: Harness) -> dict[str, Any]:
    return h.cluster.obj(DEPLOYMENTS, NS, CHILD)


def _rendered(h: Harness) -> str:
    return str(_deployment(h)["metadata"]["annotations"][VERSION_LABEL])


def _rolled_out(h: Harness, **status: Any) -> None:
    """The Deployment controller catches up with the current template (its generation) and
    reports every pod updated and available, unless `status` says otherwise."""
    body = h.cluster.objects[(DEPLOYMENTS.plural, NS, CHILD)]
    generation = int(body["metadata"]["generation"])
    wanted = int(body["spec"].get("replicas", 1))
    h.cluster.set_status(
        DEPLOYMENTS,
        NS,
        CHILD,
        {
            "observedGeneration": generation,
            "replicas": wanted,
            "updatedReplicas": wanted,
            "readyReplicas": wanted,
            "availableReplicas": wanted,
            **status,
        },
    )


def _linked(h: Harness, version: str) -> list[str]:
    deployments = h.status(MODEL_VERSIONS, version).get("deployments") or []
    return [str(d["name"]) for d in deployments]


async def _decided(h: Harness, name: str) -> Outcome:
    """What a reconcile would do now (gather and decide, without acting)."""
    env = h.reconciler.env
    target = parse_target(h.controller.kind, h.cluster.obj(MODEL_DEPLOYMENTS, NS, name))
    assert isinstance(target, Target)
    inputs = await h.controller.gather(env, target, h.clock())
    return h.controller.decide(inputs, h.clock())


async def _serving_v1(**spec: Any) -> Harness:
    """A ModelDeployment that serves v1 (rolled out, linked)."""
    h = _harness(_model_version(1), _model_version(2), **({"version": 1} | spec))
    await h.reconcile("web")
    _rolled_out(h)
    await h.reconcile("web")
    assert h.status(MODEL_DEPLOYMENTS, "web")["servingVersion"] == 1
    return h


async def test_a_first_reconcile_applies_the_children_and_links_nothing_until_serving() -> None:
    h = _harness(_model_version(1), version=1, replicas=2)
    assert await h.reconcile("web") == (None, "success")
    assert h.cluster.writes() == [
        ("create", "serviceaccounts", "flywheel-serving"),
        ("apply", "deployments", CHILD),
        ("apply", "services", CHILD),
        ("patch", "modeldeployments", "web"),
        ("create", "events", "web"),
    ], "the children first, then one status write, then the Event; no link yet"
    assert h.cluster.named(SERVICE_ACCOUNTS, NS) == ["flywheel-serving"]
    deployment = _deployment(h)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["metadata"]["labels"][VERSION_LABEL] == "1"
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "uid-web"
    service = h.cluster.obj(SERVICES, NS, CHILD)
    assert service["spec"]["selector"] == selector_labels("web")
    status = h.status(MODEL_DEPLOYMENTS, "web")
    assert status["observedGeneration"] == 1
    assert status["targetVersion"] == 1
    assert "servingVersion" not in status
    assert status["selector"] == selector_string("web")
    assert status["endpoint"] == f"http://{CHILD}.{NS}.svc:{PORT}/v2/models/iris"
    assert h.condition(MODEL_DEPLOYMENTS, "web", "Ready") == ("False", "RollingOut")
    assert h.condition(MODEL_DEPLOYMENTS, "web", "Progressing") == ("True", "RollingOut")
    assert h.condition(MODEL_DEPLOYMENTS, "web", "Degraded") == ("False", "AsExpected")
    assert h.events("web") == ["RollingOut"]
    assert _linked(h, "iris-v1") == []
    assert h.cluster.links == {}


async def test_children_are_server_side_applied_by_the_flywheel_manager() -> None:
    h = _harness(_model_version(1), version=1, autoscaling={"maxReplicas": 3})
    outcome = await _decided(h, "web")
    applied = {a.body["kind"]: a for a in outcome.actions if isinstance(a, Apply)}
    assert set(applied) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    assert {(a.manager, a.subresource) for a in applied.values()} == {(FIELD_MANAGER, None)}
    assert FIELD_MANAGER == "flywheel"
    ensured = [a.body for a in outcome.actions if isinstance(a, Ensure)]
    assert [(b["kind"], b["metadata"]["name"]) for b in ensured] == [
        ("ServiceAccount", "flywheel-serving")
    ], "the serving ServiceAccount is created when absent, never applied over"


async def test_a_complete_rollout_moves_serving_and_links_the_version() -> None:
    h = _harness(_model_version(1), version=1, replicas=2)
    await h.reconcile("web")
    _rolled_out(h, availableReplicas=1)
    before = len(h.cluster.requests)
    await h.reconcile("web")
    assert "servingVersion" not in h.status(MODEL_DEPLOYMENTS, "web"), "1 of 2 pods available"
    assert _linked(h, "iris-v1") == []
    assert h.cluster.writes()[-1] == ("patch", "modeldeployments", "web")
    assert len(h.cluster.requests) == before + 1, "no child is applied again"

    _rolled_out(h)
    before = len(h.cluster.requests)
    await h.reconcile("web")
    assert h.cluster.requests[before:] == [
        ("apply", "modelversions", "iris-v1"),
        ("patch", "modeldeployments", "web"),
        ("create", "events", "web"),
    ]
    status = h.status(MODEL_DEPLOYMENTS, "web")
    assert (status["servingVersion"], status["lastGoodVersion"]) == (1, 1)
    assert "targetVersion" not in status
    assert (status["replicas"], status["readyReplicas"]) == (2, 2)
    assert h.condition(MODEL_DEPLOYMENTS, "web", "Ready") == ("True", "Serving")
    assert h.condition(MODEL_DEPLOYMENTS, "web", "Progressing") == ("False", "RolloutComplete")
    assert h.events("web") == ["RollingOut", "RolloutComplete"]
    assert _linked(h, "iris-v1") == ["web"]
    assert h.cluster.links[(MODEL_VERSIONS.plural, NS, "iris-v1")] == {MANAGER: [{"name": "web"}]}
    assert MANAGER == "flywheel-modeldeployment-web"


async def test_a_settled_deployment_makes_no_request() -> None:
    h = await _serving_v1()
    settled = len(h.cluster.requests)
    assert await h.reconcile("web") == (None, "success")
    assert h.cluster.requests[settled:] == [], "children compared, not applied again"
    h.clock.advance(hours=1)
    await h.reconcile("web")
    assert h.cluster.requests[settled:] == []
    assert h.events("web") == ["RollingOut", "RolloutComplete"]


async def test_a_deployment_scaled_by_hand_is_scaled_back() -> None:
    h = await _serving_v1(replicas=2)
    scaled = h.cluster.objects[(DEPLOYMENTS.plural, NS, CHILD)]
    scaled["spec"]["replicas"] = 5
    scaled["metadata"]["generation"] += 1  # what `kubectl scale` does
    _rolled_out(h)
    before = len(h.cluster.requests)
    await h.reconcile("web")
    assert ("apply", "deployments", CHILD) in h.cluster.requests[before:]
    assert _deployment(h)["spec"]["replicas"] == 2
    assert _deployment(h)["metadata"]["generation"] == 3
    assert h.status(MODEL_DEPLOYMENTS, "web")["servingVersion"] == 1
    _rolled_out(h)
    await h.reconcile("web")
    assert h.condition(MODEL_DEPLOYMENTS, "web", "Ready") == ("True", "Serving")
    settled = len(h.cluster.requests)
    await h.reconcile("web")
    assert h.cluster.requests[settled:] == []


async def test_children_deleted_by_hand_are_applied_back() -> None:
    h = await _serving_v1(replicas=2)
    del h.cluster.objects[(DEPLOYMENTS.plural, NS, CHILD)]
    del h.cluster.objects[(SERVICES.plural, NS, CHILD)]
    before = len(h.cluster.requests)
    await h.reconcile("web")
    writes = h.cluster.requests[before:]
    assert ("apply", "deployments", CHILD) in writes
    assert ("apply", "services", CHILD) in writes
    assert _rendered(h) == "1"
    assert _deployment(h)["spec"]["replicas"] == 2
    status = h.status(MODEL_DEPLOYMENTS, "web")
    assert status["servingVersion"] == 1, "the version served does not change"
    assert _linked(h, "iris-v1") == ["web"], "nor its link"
    _rolled_out(h)
    await h.reconcile("web")
    assert h.condition(MODEL_DEPLOYMENTS, "web", "Ready") == ("True", "Serving")
    assert h.condition(MODEL_DEPLOYMENTS, "web", "Progressing") == ("False", "RolloutComplete")


async def test_autoscaling_applies_an_hpa_and_its_removal_deletes_it() -> None:
    h = await _serving_v1(replicas=2)
    assert h.cluster.named(HPAS, NS) == []
    _edit_spec(h, version=1, autoscaling={"minReplicas": 2, "maxReplicas": 6})
    before = len(h.cluster.requests)
    await h.reconcile("web")
    assert ("apply", "horizontalpodautoscalers", CHILD) in h.cluster.requests[before:]
    hpa = h.cluster.obj(HPAS, NS, CHILD)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": CHILD,
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == "uid-web"
    settled = len(h.cluster.requests)
    await h.reconcile("web")
    assert h.cluster.requests[settled:] == [], "an unchanged HPA is not applied again"

    _edit_spec(h, version=1, replicas=3)
    before = len(h.cluster.requests)
    await h.reconcile("web")
    writes = h.cluster.requests[before:]
    assert ("delete", "horizontalpodautoscalers", CHILD) in writes
    assert h.cluster.named(HPAS, NS) == []
    assert _deployment(h)["spec"]["replicas"] == 3, "replicas are the spec's again"
    _rolled_out(h)
    await h.reconcile("web")
    settled = len(h.cluster.requests)
    await h.reconcile("web")
    assert h.cluster.requests[settled:] == [], "the HPA is deleted once"


async def test_latest_validated_rolls_out_a_newly_validated_version_and_moves_the_link() -> None:
    h = _harness(_model_version(1), _model_version(2, validated=None), policy="LatestValidated")
    other = link(NS, "iris-v1", "other", serving=True)
    await h.cluster.apply(other.body, manager=other.manager, subresource=other.subresource)
    await h.reconcile("web")
    _rolled_out(h)
    await h.reconcile("web")
    assert _rendered(h) == "1", "v2 is not judged yet"
    assert _linked(h, "iris-v1") == ["other", "web"]

    h.cluster.set_status(
        MODEL_VERSIONS,
        NS,
        "iris-v2",
        {"conditions": [{"type": "Validated", "status": "True", "reason": "GatesPassed"}]},
    )
    validated = h.cluster.obj(MODEL_VERSIONS, NS, "iris-v2")
    assert list(deployments_of_model(validated, h.reconciler.env.store)) == ["web"], (
        "the version's status change wakes the deployments of its model"
    )
    await h.reconcile("web")
    assert _rendered(h) == "2"
    status = h.status(MODEL_DEPLOYMENTS, "web")
    assert (status["servingVersion"], status["targetVersion"]) == (1, 2)
    assert h.condition(MODEL_DEPLOYMENTS, "web", "Ready") == ("True", "Serving")
    assert h.events("web")[-1] == "RollingOut"
    assert _linked(h, "iris-v2") == [], "not before the rollout is complete"

    _rolled_out(h)
    await h.reconcile("web")
    assert h.status(MODEL_DEPLOYMENTS, "web")["servingVersion"] == 2
    assert _linked(h, "iris-v2") == ["web"]
    assert _linked(h, "iris-v1") == ["other"], "unlinked; another deployment's link stays"
    assert h.cluster.links[(MODEL_VERSIONS.plural, NS, "iris-v1")][MANAGER] == []
    settled = len(h.cluster.requests)
    await h.reconcile("web")
    assert h.cluster.requests[settled:] == []


async def test_a_rollout_past_its_deadline_is_rolled_back_with_the_servers_reason() -> None:
    h = await _serving_v1(replicas=2, rollout={"progressDeadlineSeconds": 30})
    _edit_spec(h, version=2, replicas=2, rollout={"progressDeadlineSeconds": 30})
    await h.reconcile("web")
    assert _rendered(h) == "2"
    stuck = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": f'ReplicaSet "{CHILD}-2" has timed out progressing.',
    }
    _rolled_out(
        h, replicas=3, updatedReplicas=1, readyReplicas=2, availableReplicas=2, conditions=[stuck]
    )
    for name, version, ip, ready in (
        ("web-serving-old-a", "1", "10.0.0.1", "True"),
        ("web-serving-old-b", "1", "10.0.0.2", "True"),
        ("web-serving-new", "2", "10.0.0.3", "False"),
    ):
        h.cluster.add(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": NS,
                    "labels": {**selector_labels("web"), VERSION_LABEL: version},
                },
                "status": {
                    "podIP": ip,
                    "conditions": [{"type": "Ready", "status": ready}],
                    "containerStatuses": [{"state": {"running": {}}}],
                },
            }
        )
    url = f"http://10.0.0.3:{PORT}{READY_PATH}"
    h.http.answers[url] = (
        '{"error": "model iris is not ready (ArtifactDigestMismatch): sha256 is 1, expected 2"}'
    )
    await h.reconcile("web")
    assert h.http.asked == [url], "only the new, not ready pod is asked"
    assert _rendered(h) == "1", "rolled back"
    status = h.status(MODEL_DEPLOYMENTS, "web")
    failed = status["failedRollout"]
    assert (failed["version"], failed["generation"], failed["reason"]) == (
        2,
        2,
        "RollbackPerformed",
    )
    assert "ArtifactDigestMismatch" in failed["message"]
    assert status["servingVersion"] == 1
    assert status["targetVersion"] == 1
    assert h.condition(MODEL_DEPLOYMENTS, "web", "Degraded") == ("True", "RollbackPerformed")
    assert h.condition(MODEL_DEPLOYMENTS, "web", "Ready") == ("True", "Serving")
    (where, event), *_ = [e for e in h.cluster.events if e[1].reason == "RollbackPerformed"]
    assert where == f"ModelDeployment {NS}/web"
    assert event.type == "Warning"
    assert "ArtifactDigestMismatch" in event.message
    assert "rolled back to v1" in event.message

    _rolled_out(h)
    await h.reconcile("web")
    assert _rendered(h) == "1", "v2 is not tried again under this spec"
    status = h.status(MODEL_DEPLOYMENTS, "web")
    assert status["servingVersion"] == 1
    assert "targetVersion" not in status
    assert h.condition(MODEL_DEPLOYMENTS, "web", "Degraded") == ("True", "RollbackPerformed")
    assert h.condition(MODEL_DEPLOYMENTS, "web", "Stalled") == ("True", "RollbackPerformed")
    assert h.events("web").count("RollbackPerformed") == 1
    assert _linked(h, "iris-v1") == ["web"]
    assert _linked(h, "iris-v2") == []
    settled = len(h.cluster.requests)
    await h.reconcile("web")
    assert h.cluster.requests[settled:] == []


async def test_a_failed_first_rollout_keeps_its_deployment_and_says_why() -> None:
    h = _harness(_model_version(1), version=1)
    await h.reconcile("web")
    stuck = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
    _rolled_out(h, updatedReplicas=1, readyReplicas=0, availableReplicas=0, conditions=[stuck])
    h.cluster.add(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web-serving-a",
                "namespace": NS,
                "labels": {**selector_labels("web"), VERSION_LABEL: "1"},
            },
            "status": {
                "containerStatuses": [
                    {
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"exitCode": 2, "message": "bad flag"}},
                    }
                ]
            },
        }
    )
    await h.reconcile("web")
    assert _rendered(h) == "1", "nothing to roll back to"
    assert h.status(MODEL_DEPLOYMENTS, "web")["failedRollout"]["reason"] == "CrashLoopBackOff"
    assert h.condition(MODEL_DEPLOYMENTS, "web", "Ready") == ("False", "RolloutFailed")
    assert h.condition(MODEL_DEPLOYMENTS, "web", "Stalled") == ("True", "RolloutFailed")
    assert h.condition(MODEL_DEPLOYMENTS, "web", "Degraded") == ("True", "CrashLoopBackOff")
    assert h.events("web") == ["RollingOut", "RolloutFailed"]


async def test_a_missing_version_deploys_nothing_and_says_so_once() -> None:
    h = _harness(_model_version(1), version=3)
    await h.reconcile("web")
    assert h.cluster.writes() == [
        ("patch", "modeldeployments", "web"),
        ("create", "events", "web"),
    ], "no child, no ServiceAccount"
    assert h.condition(MODEL_DEPLOYMENTS, "web", "Ready") == ("False", "VersionNotFound")
    assert h.condition(MODEL_DEPLOYMENTS, "web", "Degraded") == ("True", "VersionNotFound")
    assert h.condition(MODEL_DEPLOYMENTS, "web", "Stalled") == ("False", "VersionNotFound")
    settled = len(h.cluster.requests)
    await h.reconcile("web")
    assert h.cluster.requests[settled:] == []
    h.cluster.add(_model_version(3))
    await h.reconcile("web")
    assert _rendered(h) == "3"
    assert h.condition(MODEL_DEPLOYMENTS, "web", "Degraded") == ("False", "AsExpected")
    assert h.events("web") == ["VersionNotFound", "RollingOut"]


async def test_a_failed_first_rollout_is_reported_once() -> None:
    h = _harness(_model_version(1), version=1)
    await h.reconcile("web")
    stuck = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
    _rolled_out(h, updatedReplicas=1, readyReplicas=0, availableReplicas=0, conditions=[stuck])
    await h.reconcile("web")
    assert h.events("web") == ["RollingOut", "RolloutFailed"]
    settled = len(h.cluster.requests)
    await h.reconcile("web")
    assert h.cluster.requests[settled:] == [], "nothing changed: no Event, no pod list"
