"""Pure ModelDeployment decisions: version selection, rollouts, rollback, children, links."""

from __future__ import annotations

from typing import Any

import pytest

from flywheel.api.modeldeployment import ModelDeploymentSpec
from flywheel.controllers.modeldeployment.decide import (
    Refusal,
    active_failure,
    links,
    plan,
    select_version,
    spec_digest,
)
from flywheel.controllers.modeldeployment.render import (
    render_deployment,
    render_hpa,
    render_service,
)
from flywheel.controllers.modeldeployment.rollouts import pod_failure, rollout
from flywheel.core.applied import differs
from flywheel.core.conditions import Finding
from flywheel.core.outcome import Event, Outcome
from flywheel.core.target import Meta, parse_meta
from flywheel.settings import OperatorSettings

SHA = "a" * 64


def _version(number: int, validated: str | None = "True", message: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {}
    if validated is not None:
        status["conditions"] = [
            {"type": "Validated", "status": validated, "reason": "X", "message": message}
        ]
    return {
        "metadata": {"name": f"iris-v{number}"},
        "spec": {
            "model": "iris",
            "version": number,
            "artifact": {"uri": f"pvc://art/models/ns/iris/r{number}/model.onnx", "sha256": SHA},
            "baseline": {"statsURI": "pvc://data/datasets/ns/iris/abc/stats.json"},
        },
        "status": status,
    }


def _spec(**fields: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({"model": "iris", **fields})


def _meta(generation: int = 1) -> Meta:
    return parse_meta(
        {"metadata": {"name": "web", "namespace": "ns", "uid": "u-1", "generation": generation}}
    )


def _deployment(version: int, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"generation": 2, "annotations": {"flywheel.dev/version": str(version)}},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 2, **status},
    }


def _conditions(outcome: Outcome) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in outcome.conditions}


def _event(outcome: Outcome) -> Event | None:
    """The outcome's Event (a ModelDeployment decision posts at most one)."""
    assert len(outcome.events) <= 1
    return outcome.events[0] if outcome.events else None


def _event_reason(outcome: Outcome) -> str:
    found = _event(outcome)
    return found.reason if found else ""


def test_pinned_selection_refuses_missing_unjudged_and_unvalidated_versions() -> None:
    versions = [_version(1), _version(2, "False", "accuracy 0.5 < 0.9"), _version(3, None)]
    assert select_version(_spec(version=1), versions, None) == versions[0]
    missing = select_version(_spec(version=9), versions, None)
    assert missing == Refusal(
        "VersionNotFound", "ModelVersion iris v9 does not exist (yet).", False
    )
    failed = select_version(_spec(version=2), versions, None)
    assert isinstance(failed, Refusal)
    assert (failed.reason, failed.stalled) == ("VersionNotValidated", True)
    assert "accuracy 0.5 < 0.9" in failed.message
    unjudged = select_version(_spec(version=3), versions, None)
    assert isinstance(unjudged, Refusal)
    assert (unjudged.reason, unjudged.stalled) == ("VersionNotValidated", False)


def test_latest_validated_takes_the_newest_validated_version_but_not_a_failed_rollout() -> None:
    spec = _spec(policy="LatestValidated")
    versions = [_version(1), _version(2), _version(3, "False")]
    assert select_version(spec, versions, None) == versions[1]
    status = {"failedRollout": {"version": 2, "generation": 1, "reason": "R", "message": "m"}}
    assert plan(_meta(generation=1), status, spec, versions, None).render == versions[0]
    retried = plan(_meta(generation=2), status, spec, versions, None)
    assert retried.render == versions[1], "the failure was under an earlier spec"
    assert retried.outcome.status["failedRollout"] is None
    failure = active_failure(status, 1, spec)
    assert select_version(spec, versions, failure) == versions[0]
    assert active_failure(status, 2, spec) is None, "a spec change allows a retry"
    none = select_version(spec, [_version(1, "False")], None)
    assert isinstance(none, Refusal)
    assert none.reason == "VersionNotFound"


def test_a_new_version_rolls_out_and_serving_changes_only_when_complete() -> None:
    spec = _spec(version=2, replicas=2)
    versions = [_version(1), _version(2)]
    status = {"servingVersion": 1, "lastGoodVersion": 1}
    started = plan(_meta(), status, spec, versions, _deployment(1, replicas=2, updatedReplicas=2))
    assert started.render == versions[1]
    assert started.outcome.status["targetVersion"] == 2
    assert "servingVersion" not in started.outcome.status
    assert _conditions(started.outcome)["Progressing"] == ("True", "RollingOut")
    assert _conditions(started.outcome)["Ready"][0] == "False", "no ready replicas reported yet"
    assert _event_reason(started.outcome) == "RollingOut"

    halfway = _deployment(2, replicas=3, updatedReplicas=1, readyReplicas=2, availableReplicas=2)
    moving = plan(_meta(), status, spec, versions, halfway)
    assert moving.outcome.status["targetVersion"] == 2
    assert "servingVersion" not in moving.outcome.status
    assert _conditions(moving.outcome)["Ready"] == ("True", "Serving")
    assert _conditions(moving.outcome)["Progressing"] == ("True", "RollingOut")

    complete = _deployment(2, replicas=2, updatedReplicas=2, readyReplicas=2, availableReplicas=2)
    done = plan(_meta(), status, spec, versions, complete)
    assert done.outcome.status["servingVersion"] == 2
    assert done.outcome.status["lastGoodVersion"] == 2
    assert done.outcome.status["targetVersion"] is None
    assert _conditions(done.outcome)["Progressing"] == ("False", "RolloutComplete")
    assert _event_reason(done.outcome) == "RolloutComplete"
    again = plan(_meta(), {**status, "servingVersion": 2}, spec, versions, complete)
    assert _event_reason(again.outcome) == "", "no Event when nothing changed"


def test_a_rollout_past_its_deadline_is_rolled_back_to_the_last_good_version() -> None:
    spec = _spec(version=2, replicas=2, rollout={"progressDeadlineSeconds": 30})
    versions = [_version(1), _version(2)]
    status = {"servingVersion": 1, "lastGoodVersion": 1}
    stuck = _deployment(
        2,
        replicas=3,
        updatedReplicas=1,
        availableReplicas=2,
        conditions=[
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        ],
    )
    why = Finding("ArtifactDigestMismatch", "pod web-x: sha256 differs")
    rolled = plan(_meta(generation=4), status, spec, versions, stuck, why)
    assert rolled.render == versions[0]
    failed = rolled.outcome.status["failedRollout"]
    assert (failed["version"], failed["generation"], failed["reason"]) == (
        2,
        4,
        "RollbackPerformed",
    )
    assert _conditions(rolled.outcome)["Degraded"] == ("True", "RollbackPerformed")
    event = _event(rolled.outcome)
    assert event is not None
    assert event.type == "Warning"
    assert "ArtifactDigestMismatch" in event.message
    assert "rolled back to v1" in event.message

    # Next visit: the Deployment is rendered for v1 again and v2 is not retried.
    degraded = {"type": "Degraded", "status": "True", "reason": "RollbackPerformed", "message": ""}
    after = {**status, "failedRollout": failed, "conditions": [degraded]}
    back = _deployment(1, replicas=2, updatedReplicas=2, readyReplicas=2, availableReplicas=2)
    settled = plan(_meta(generation=4), after, spec, versions, back)
    assert settled.render == versions[0]
    assert settled.outcome.status["servingVersion"] == 1
    assert _conditions(settled.outcome)["Degraded"] == ("True", "RollbackPerformed")
    assert _conditions(settled.outcome)["Ready"] == ("True", "Serving")
    assert _event_reason(settled.outcome) == "", "the rollback Event was posted once"


def test_a_first_rollout_that_fails_has_nothing_to_roll_back_to() -> None:
    stuck = _deployment(
        1,
        conditions=[
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        ],
    )
    failed = plan(
        _meta(), {}, _spec(version=1), [_version(1)], stuck, Finding("CrashLoopBackOff", "boom")
    )
    assert failed.render is None
    assert _conditions(failed.outcome)["Ready"] == ("False", "RolloutFailed")
    assert _conditions(failed.outcome)["Stalled"] == ("True", "RolloutFailed")
    assert failed.outcome.status["failedRollout"]["reason"] == "CrashLoopBackOff"


def test_a_refused_version_deploys_nothing_or_keeps_the_running_one() -> None:
    nothing = plan(_meta(), {}, _spec(version=5), [_version(1)], None)
    assert nothing.render is None
    assert _conditions(nothing.outcome)["Ready"] == ("False", "VersionNotFound")
    assert _event_reason(nothing.outcome) == "VersionNotFound"
    status = {"servingVersion": 1, "lastGoodVersion": 1}
    complete = _deployment(1, replicas=2, updatedReplicas=2, readyReplicas=2, availableReplicas=2)
    kept = plan(_meta(), status, _spec(version=5, replicas=2), [_version(1)], complete)
    assert kept.render is not None
    assert kept.render["spec"]["version"] == 1
    assert kept.outcome.status["servingVersion"] == 1
    assert _conditions(kept.outcome)["Ready"] == ("True", "Serving")
    assert _conditions(kept.outcome)["Degraded"] == ("True", "VersionNotFound")


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ({"observedGeneration": 1}, "Progressing"),
        ({"observedGeneration": 2, "updatedReplicas": 1, "replicas": 2}, "Progressing"),
        ({"observedGeneration": 2, "updatedReplicas": 2, "replicas": 3}, "Progressing"),
        (
            {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 1},
            "Progressing",
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2},
            "Complete",
        ),
    ],
)
def test_rollout_state_reads_like_kubectl_rollout_status(
    status: dict[str, Any], state: str
) -> None:
    deployment = {"metadata": {"generation": 2}, "spec": {"replicas": 2}, "status": status}
    assert rollout(deployment).state == state


def test_pod_failure_prefers_container_states_then_the_servers_readiness_answer() -> None:
    crashing = {
        "metadata": {"name": "p1"},
        "status": {
            "containerStatuses": [
                {
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 2, "message": "bad flag"}},
                }
            ]
        },
    }
    assert pod_failure([crashing], {}) == Finding(
        "CrashLoopBackOff", "pod p1: bad flag (last exit code 2)"
    )
    running = {
        "metadata": {"name": "p2"},
        "status": {"containerStatuses": [{"state": {"running": {}}}]},
    }
    answer = (
        '{"error": "model iris is not ready (ArtifactDigestMismatch): sha256 is 1, expected 2"}'
    )
    found = pod_failure([running], {"p2": answer})
    assert found.reason == "ArtifactDigestMismatch"
    assert "expected 2" in found.message
    assert pod_failure([running], {}).reason == "NotReady"


def test_a_serving_pod_restarting_after_an_oom_kill_says_so() -> None:
    oom = {
        "metadata": {"name": "p3"},
        "status": {
            "containerStatuses": [
                {
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                }
            ]
        },
    }
    assert pod_failure([oom], {}) == Finding(
        "CrashLoopBackOff", "pod p3: (last exit code 137, OOMKilled)"
    )
    ended = {
        "metadata": {"name": "p4"},
        "status": {
            "containerStatuses": [
                {"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
            ]
        },
    }
    assert pod_failure([ended], {}) == Finding("OOMKilled", "pod p4: OOMKilled")


def test_children_are_owned_restricted_and_leave_replicas_to_an_hpa() -> None:
    settings = OperatorSettings()
    md = parse_meta({"metadata": {"name": "web", "namespace": "ns", "uid": "u-1"}})
    spec = _spec(version=1, replicas=3, serving={"maxBatchSize": 8})
    deployment = render_deployment(md, spec, _version(1), settings)
    assert deployment["metadata"]["name"] == "web-serving"
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert deployment["spec"]["replicas"] == 3
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"]["flywheel.dev/version"] == "1"
    container = template["spec"]["containers"][0]
    assert f"--sha256={SHA}" in container["args"]
    assert "--max-batch-size=8" in container["args"]
    assert {"--port=8080", "--grpc-port=8081"} <= set(container["args"])
    assert container["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 8081, "protocol": "TCP"},
    ]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {
        "/var/lib/flywheel/artifacts/art",
        "/var/lib/flywheel/artifacts/data",
        "/tmp",
    }
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert template["spec"]["automountServiceAccountToken"] is False
    assert render_hpa(md, spec) is None
    scaled = _spec(version=1, autoscaling={"minReplicas": 2, "maxReplicas": 5})
    assert "replicas" not in render_deployment(md, scaled, _version(1), settings)["spec"]
    hpa = render_hpa(md, scaled)
    assert hpa is not None
    assert hpa["spec"]["scaleTargetRef"]["name"] == "web-serving"
    service = render_service(md, spec)["spec"]
    assert service["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"},
        {
            "name": "grpc",
            "port": 8081,
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "grpc",
        },
    ]


def _spread_of(spec: ModelDeploymentSpec) -> Any:
    pod = render_deployment(_meta(), spec, _version(1), OperatorSettings())["spec"]["template"]
    return pod["spec"].get("topologySpreadConstraints")


def test_serving_pods_spread_as_the_spec_says_and_otherwise_as_the_scheduler_defaults() -> None:
    own_revision = {
        "labelSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "flywheel-serving",
                "app.kubernetes.io/instance": "web",
            }
        },
        "matchLabelKeys": ["pod-template-hash"],
    }
    deployment = render_deployment(_meta(), _spec(version=1), _version(1), OperatorSettings())
    assert own_revision["labelSelector"] == deployment["spec"]["selector"], "its own pods only"
    assert _spread_of(_spec(version=1)) is None, "omitted: the scheduler's defaults apply"
    hard = {"topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}
    zones = {
        "topologyKey": "topology.kubernetes.io/zone",
        "maxSkew": 2,
        "whenUnsatisfiable": "DoNotSchedule",
        "minDomains": 3,
    }
    assert _spread_of(_spec(version=1, topologySpreadConstraints=[hard, zones])) == [
        {**hard, "maxSkew": 1, **own_revision},
        {**zones, **own_revision},
    ]
    assert _spread_of(_spec(version=1, topologySpreadConstraints=[])) is None, (
        "[]: none of the operator's, and no empty list (stored as no field, it would always differ)"
    )


def test_changing_the_spread_rolls_the_pods_and_counts_as_a_spec_change() -> None:
    unset = _spec(policy="LatestValidated", replicas=2)
    hard = _spec(
        policy="LatestValidated",
        replicas=2,
        topologySpreadConstraints=[
            {"topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}
        ],
    )
    settings = OperatorSettings()
    running = render_deployment(_meta(), unset, _version(1), settings)
    assert differs(render_deployment(_meta(), hard, _version(1), settings), running)
    assert not differs(render_deployment(_meta(), unset, _version(1), settings), running)
    # A failed rollout is tried again after a change of the spread, not after scaling.
    assert spec_digest(hard) != spec_digest(unset)
    # Digests recorded before the field existed still match a spec that leaves it out, so an
    # operator upgrade does not retry a failed version (values computed by the older operator).
    assert spec_digest(unset) == "9103271d1fbd9797"
    pinned = _spec(version=3, resources={"limits": {"memory": "1Gi"}})
    assert spec_digest(pinned) == "4a214acd85707d5f"


def test_links_follow_the_serving_version() -> None:
    listed = _version(1)
    listed["status"]["deployments"] = [{"name": "web"}, {"name": "other"}]
    assert links("web", 2, [listed, _version(2)]) == (["iris-v2"], ["iris-v1"])
    assert links("web", 1, [listed, _version(2)]) == ([], [])
    assert links("web", None, [listed]) == ([], ["iris-v1"])


def _signed(number: int, task: str = "classification", features: str = "a,b") -> dict[str, Any]:
    """A validated version with a signature."""
    version = _version(number)
    outputs = ["label", "probabilities"] if task == "classification" else ["variable"]
    version["spec"]["signature"] = {
        "task": task,
        "features": [{"name": f, "type": "numeric"} for f in features.split(",")],
        "outputs": [{"name": o, "datatype": "FP32", "shape": [-1]} for o in outputs],
    }
    return version


def test_an_incompatible_version_never_replaces_the_serving_one() -> None:
    spec = _spec(policy="LatestValidated", replicas=2)
    serving = {"servingVersion": 1, "lastGoodVersion": 1}
    ready = _deployment(1, replicas=2, updatedReplicas=2, readyReplicas=2, availableReplicas=2)
    regressor = [_signed(1), _signed(2, task="regression")]
    kept = plan(_meta(), serving, spec, regressor, ready)
    assert kept.render == regressor[0], "v1 keeps serving"
    assert _conditions(kept.outcome)["Degraded"] == ("True", "IncompatibleVersion")
    assert _conditions(kept.outcome)["Ready"] == ("True", "Serving")
    found = next(c for c in kept.outcome.conditions if c.type == "Degraded")
    assert "task regression instead of classification" in found.message
    assert "outputs [variable:FP32]" in found.message
    assert _event_reason(kept.outcome) == "IncompatibleVersion"

    reordered = [_signed(1), _signed(2, features="b,a"), _signed(3, features="a,c")]
    swapped = select_version(spec, reordered, None, reordered[0])
    assert isinstance(swapped, Refusal)
    assert swapped.reason == "IncompatibleVersion"
    assert "without b:numeric" in swapped.message, "v3 (a,c) is the newest and lacks b"
    assert "with new c:numeric" in swapped.message

    later = [_signed(1), _signed(2), _signed(3, task="regression")]
    assert select_version(spec, later, None, later[0]) == later[1], "the newest compatible one"
    assert select_version(spec, later, None, None) == later[2], "nothing serves: anything goes"

    pinned = _spec(policy="Pinned", version=2)
    refused = select_version(pinned, regressor, None, regressor[0])
    assert isinstance(refused, Refusal)
    assert refused.stalled
    gone = plan(_meta(), serving, spec, regressor, None)
    assert gone.render == regressor[0], "its Deployment deleted: v1 is rendered again, not v2"


def test_a_served_version_short_of_pods_is_not_ready_and_says_why() -> None:
    spec = _spec(policy="Pinned", version=1, replicas=3)
    status = {"servingVersion": 1, "lastGoodVersion": 1}
    short = _deployment(1, replicas=3, updatedReplicas=3, readyReplicas=1, availableReplicas=1)
    short["spec"]["replicas"] = 3
    versions = [_signed(1)]
    why = Finding("ArtifactDigestMismatch", "pod web-1: the artifact's sha256 is not the recorded")
    decided = plan(_meta(), status, spec, versions, short, why)
    assert _conditions(decided.outcome)["Ready"] == ("False", "ArtifactDigestMismatch")
    message = next(c.message for c in decided.outcome.conditions if c.type == "Ready")
    assert "sha256" in message
    plain = plan(_meta(), status, spec, versions, short)
    assert _conditions(plain.outcome)["Ready"] == ("False", "Scaling")


def test_scaling_does_not_retry_a_rolled_back_version() -> None:
    spec = _spec(policy="LatestValidated", replicas=2)
    versions = [_signed(1), _signed(2)]
    failed = {
        "version": 2,
        "generation": 1,
        "specDigest": spec_digest(spec),
        "reason": "RollbackPerformed",
        "message": "m",
    }
    status = {"servingVersion": 1, "lastGoodVersion": 1, "failedRollout": failed}
    scaled = _spec(policy="LatestValidated", replicas=5)
    assert active_failure(status, 2, scaled) is not None, "replicas are not a spec change here"
    assert plan(_meta(generation=2), status, scaled, versions, None).render == versions[0]
    bigger = _spec(policy="LatestValidated", replicas=2, resources={"limits": {"memory": "1Gi"}})
    assert active_failure(status, 3, bigger) is None, "new resources may fix it: try again"


def test_a_version_being_deleted_is_not_rolled_out_and_an_unschedulable_pod_says_so() -> None:
    spec = _spec(policy="LatestValidated")
    leaving = _signed(2)
    leaving["metadata"]["deletionTimestamp"] = "2026-12-02T12:00:00Z"
    versions = [_signed(1), leaving]
    assert select_version(spec, versions, None, versions[1]) == versions[0], "moves off it"
    pending = {
        "metadata": {"name": "p1", "labels": {"flywheel.dev/version": "1"}},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/2 nodes are available: 2 Insufficient memory.",
                }
            ],
        },
    }
    found = pod_failure([pending], {})
    assert found.reason == "Unschedulable"
    assert "Insufficient memory" in found.message
