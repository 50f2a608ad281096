"""Children are applied again only when a field the operator owns has another value."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flywheel.core.applied import differs, quantity, stamped


def test_only_the_applied_fields_are_compared() -> None:
    desired = {"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 2, "paused": False}}
    live: dict[str, Any] = {
        "metadata": {"labels": {"a": "1", "team": "ml"}, "uid": "u"},
        "spec": {"replicas": 2, "paused": False, "revisionHistoryLimit": 10},
        "status": {"replicas": 2},
    }
    assert not differs(desired, live), "labels and fields of others are theirs"
    assert differs(desired, {**live, "spec": {**live["spec"], "replicas": 1}}), "kubectl scale"
    assert differs(desired, None), "deleted by hand"
    assert differs({"spec": {"paused": False}}, {"spec": {"paused": 0}})


def test_lists_are_compared_element_by_element() -> None:
    desired = {"containers": [{"name": "s", "args": ["--a", "--b"]}]}
    live = {"containers": [{"name": "s", "args": ["--a", "--b"], "imagePullPolicy": "Always"}]}
    assert not differs(desired, live)
    assert differs(desired, {"containers": [{"name": "s", "args": ["--a"]}]})
    assert differs(desired, {"containers": []})


def test_resource_quantities_compare_by_value_as_the_api_server_normalises_them() -> None:
    assert quantity("500m") == Decimal("0.5")
    assert quantity("1Gi") == 2**30
    assert quantity("latest") is None
    desired = {"resources": {"requests": {"cpu": 0.5, "memory": "1024Mi"}, "limits": {"cpu": 2}}}
    live = {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2"}}}
    assert not differs(desired, live)
    assert differs(desired, {"resources": {"requests": {"cpu": "250m", "memory": "1Gi"}}})
    assert differs({"annotations": {"v": "1.0"}}, {"annotations": {"v": "1"}}), "only quantities"


def test_a_field_left_out_of_a_new_configuration_is_applied_away() -> None:
    with_replicas = stamped({"metadata": {"name": "d"}, "spec": {"replicas": 2, "paused": False}})
    live = {**with_replicas, "status": {}}
    assert not differs(with_replicas, live)
    without = stamped({"metadata": {"name": "d"}, "spec": {"paused": False}})
    assert differs(without, live), "an HPA takes replicas over: apply, to release them"
