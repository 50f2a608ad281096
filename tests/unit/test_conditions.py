"""Condition bookkeeping follows the Kubernetes API conventions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flywheel.core.conditions import (
    ConditionUpdate,
    dump_conditions,
    find_condition,
    is_true,
    parse_conditions,
    set_condition,
)

T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_a_new_condition_gets_the_current_time() -> None:
    conditions = set_condition(
        [], ConditionUpdate("Ready", "False", "Waiting", "w"), generation=1, now=T0
    )
    (ready,) = conditions
    assert ready.last_transition_time == T0
    assert ready.observed_generation == 1


def test_reason_and_message_changes_keep_the_transition_time() -> None:
    conditions = set_condition(
        [], ConditionUpdate("Ready", "False", "A", "a"), generation=1, now=T0
    )
    conditions = set_condition(
        conditions, ConditionUpdate("Ready", "False", "B", "b"), generation=2, now=T1
    )
    (ready,) = conditions
    assert (ready.reason, ready.message, ready.observed_generation) == ("B", "b", 2)
    assert ready.last_transition_time == T0


def test_a_status_flip_moves_the_transition_time() -> None:
    conditions = set_condition(
        [], ConditionUpdate("Ready", "False", "A", "a"), generation=1, now=T0
    )
    conditions = set_condition(
        conditions, ConditionUpdate("Ready", "True", "Ok", "ok"), generation=1, now=T1
    )
    assert find_condition(conditions, "Ready").last_transition_time == T1  # type: ignore[union-attr]
    assert is_true(conditions, "Ready")


def test_other_conditions_keep_their_place_and_value() -> None:
    conditions = set_condition(
        [], ConditionUpdate("Ready", "Unknown", "A", "a"), generation=1, now=T0
    )
    conditions = set_condition(
        conditions, ConditionUpdate("Stalled", "False", "B", "b"), generation=1, now=T0
    )
    conditions = set_condition(
        conditions, ConditionUpdate("Ready", "True", "C", "c"), generation=1, now=T1
    )
    assert [c.type for c in conditions] == ["Ready", "Stalled"]
    assert not is_true(conditions, "Stalled")
    assert not is_true(conditions, "Missing")


def test_dump_and_parse_round_trip_in_kubernetes_shape() -> None:
    conditions = set_condition(
        [], ConditionUpdate("Ready", "True", "Ok", "fine"), generation=3, now=T0
    )
    (dumped,) = dump_conditions(conditions)
    assert dumped == {
        "type": "Ready",
        "status": "True",
        "observedGeneration": 3,
        "lastTransitionTime": "2026-11-30T12:00:00Z",
        "reason": "Ok",
        "message": "fine",
    }
    assert parse_conditions([dumped]) == conditions


def test_malformed_conditions_from_hand_edits_are_dropped() -> None:
    good = dump_conditions(
        set_condition([], ConditionUpdate("Ready", "True", "Ok", "x"), generation=1, now=T0)
    )
    assert len(parse_conditions([*good, {"type": "Broken"}, {"status": "maybe"}])) == 1
    assert parse_conditions(None) == []
