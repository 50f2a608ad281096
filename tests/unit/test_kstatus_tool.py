"""The kstatus CLI (hack/kstatus) gives the real cli-utils library's answers.

No cluster: hand-written objects go through the built binary, and the assertions are what
sigs.k8s.io/cli-utils/pkg/kstatus/status (the pinned version) says about them, messages included.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from devcluster.binaries import default_binaries, pinned_versions
from tests.support.kstatus import (
    KStatus,
    KStatusError,
    kstatus,
    kstatus_binary,
    kstatus_of,
    run_kstatus,
)

GROUP = "flywheel.dev/v1alpha1"


def custom(
    *,
    generation: int = 2,
    observed: int | None = 2,
    conditions: list[dict[str, str]] | None = None,
    name: str = "churn",
    **metadata: Any,
) -> dict[str, Any]:
    """A Flywheel-like custom resource with the given generation bookkeeping and conditions."""
    status: dict[str, Any] = {}
    if observed is not None:
        status["observedGeneration"] = observed
    if conditions is not None:
        status["conditions"] = conditions
    return {
        "apiVersion": GROUP,
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "ml", "generation": generation, **metadata},
        "spec": {"model": "churn"},
        "status": status,
    }


def condition(kind: str, status: str, reason: str = "Because", message: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def deployment(*, replicas: int, updated: int, ready: int, available: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "churn-serving", "namespace": "ml", "generation": 1},
        "spec": {"replicas": replicas, "progressDeadlineSeconds": 600},
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "conditions": [
                condition(
                    "Available", "True" if available >= replicas else "False", "MinimumReplicas"
                ),
                condition("Progressing", "True", "NewReplicaSetAvailable"),
            ],
        },
    }


def test_binary_reports_the_pinned_library() -> None:
    assert "kstatus" not in default_binaries().missing()
    out = subprocess.run(
        [kstatus_binary(), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert f"sigs.k8s.io/cli-utils {pinned_versions()['KSTATUS_VERSION']} " in out
    assert "k8s.io/apimachinery v0." in out


def test_unobserved_generation_is_in_progress() -> None:
    result = kstatus_of(custom(generation=3, observed=2, conditions=[condition("Ready", "True")]))
    assert result == KStatus(
        kind="ModelDeployment",
        namespace="ml",
        name="churn",
        status="InProgress",
        message="ModelDeployment generation is 3, but latest observed generation is 2",
    )


def test_ready_with_current_generation_is_current() -> None:
    result = kstatus_of(custom(generation=3, observed=3, conditions=[condition("Ready", "True")]))
    assert (result.status, result.message) == ("Current", "Resource is Ready")


def test_ready_false_is_in_progress_with_its_message() -> None:
    ready = condition("Ready", "False", "RolloutPending", "waiting for the serving Deployment")
    result = kstatus_of(custom(conditions=[ready]))
    assert (result.status, result.message) == ("InProgress", "waiting for the serving Deployment")


def test_stalled_is_failed() -> None:
    stalled = condition("Stalled", "True", "ModelMissing", "model version v3 does not exist")
    result = kstatus_of(custom(conditions=[condition("Ready", "False"), stalled]))
    assert (result.status, result.message) == ("Failed", "model version v3 does not exist")


def test_reconciling_is_in_progress_even_when_ready() -> None:
    reconciling = condition("Reconciling", "True", "Progressing", "rolling out v3")
    result = kstatus_of(custom(conditions=[condition("Ready", "True"), reconciling]))
    assert (result.status, result.message) == ("InProgress", "rolling out v3")


def test_no_conditions_and_generation_observed_is_current() -> None:
    result = kstatus_of(custom(conditions=None))
    assert (result.status, result.message) == ("Current", "Resource is current")


def test_deletion_timestamp_is_terminating() -> None:
    obj = custom(conditions=[condition("Ready", "True")], deletionTimestamp="2026-01-01T00:00:00Z")
    result = kstatus_of(obj)
    assert (result.status, result.message) == ("Terminating", "Resource scheduled for deletion")


def test_deployment_with_fewer_ready_replicas_is_in_progress() -> None:
    result = kstatus_of(deployment(replicas=3, updated=3, ready=1, available=1))
    assert (result.kind, result.status, result.message) == (
        "Deployment",
        "InProgress",
        "Available: 1/3",
    )


def test_deployment_fully_rolled_out_is_current() -> None:
    result = kstatus_of(deployment(replicas=3, updated=3, ready=3, available=3))
    assert (result.status, result.message) == ("Current", "Deployment is available. Replicas: 3")


def test_many_objects_answer_in_order() -> None:
    objects = [
        custom(name="a", generation=2, observed=1),
        custom(name="b", conditions=[condition("Ready", "True")]),
        custom(name="c", conditions=[condition("Stalled", "True", message="no")]),
    ]
    assert [(r.name, r.status) for r in kstatus(objects)] == [
        ("a", "InProgress"),
        ("b", "Current"),
        ("c", "Failed"),
    ]
    assert kstatus([]) == []


def test_a_kubectl_list_document_is_read_whole() -> None:
    document = {"apiVersion": "v1", "kind": "List", "items": [custom(name="a"), custom(name="b")]}
    result = run_kstatus(json.dumps(document))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["name"] for line in lines] == ["a", "b"]
    assert set(lines[0]) == {"kind", "namespace", "name", "status", "message"}


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ("", "empty input"),
        ("not json", "not valid JSON"),
        ("[1, 2]", "got an array"),
        ('{"kind": "List", "items": [1]}', "List.items[0] must be an object"),
        ('{"kind": "List", "items": {}}', "List.items must be an array"),
        ("{} {}", "not valid JSON"),
    ],
)
def test_bad_input_exits_non_zero_with_a_message(document: str, complaint: str) -> None:
    result = run_kstatus(document)
    assert result.returncode != 0
    assert result.stdout == ""
    assert complaint in result.stderr


def test_a_field_of_the_wrong_type_is_refused_by_the_library() -> None:
    obj = custom()
    obj["metadata"]["generation"] = "2"
    with pytest.raises(KStatusError, match=r"ModelDeployment ml/churn.*metadata\.generation"):
        kstatus_of(obj)
