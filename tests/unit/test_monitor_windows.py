"""Window counts from pod scrapes (snapshots, counter resets, pods coming and going), PromQL,
and the evaluation of a window against a baseline, with the status it writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from flywheel.api.modelmonitor import ModelMonitorSpec, ModelMonitorStatus
from flywheel.controllers.modelmonitor.decide import (
    drift_condition,
    report_conditions,
    report_status,
    transition_events,
)
from flywheel.controllers.modelmonitor.evaluate import (
    Assessment,
    Trigger,
    evaluate,
    slot_names,
)
from flywheel.controllers.modelmonitor.guardrails import (
    RetrainDecision,
    RetrainHistory,
    RetrainInputs,
    adopt,
    decide_retrain,
    run_number,
    schedule_base,
    schedule_due,
)
from flywheel.controllers.modelmonitor.render import RetrainRequest, render_retrain_run
from flywheel.controllers.modelmonitor.windows import (
    FEATURES,
    ROWS,
    PodScrape,
    PodWindow,
    WindowCounts,
    from_vectors,
    increase,
    parse_scrape,
    promql,
)
from flywheel.core.conditions import ConditionUpdate
from flywheel.core.objects import Obj
from flywheel.core.outcome import Event
from flywheel.core.target import parse_meta
from flywheel.core.times import parse_time

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
SCRAPE = """
# TYPE flywheel_monitored_rows_total counter
flywheel_monitored_rows_total{model="iris",version="2"} 40
flywheel_monitored_rows_total{model="iris",version="1"} 7
# TYPE flywheel_feature_values_total counter
flywheel_feature_values_total{model="iris",version="2",feature="x",bin="1"} 30
flywheel_feature_values_total{model="iris",version="2",feature="x",bin="2"} 10
flywheel_feature_values_total{model="other",version="2",feature="x",bin="2"} 99
# TYPE flywheel_requests_total counter
flywheel_requests_total{model="iris",version="2",endpoint="infer",code="200"} 12
"""


def _rows(value: float) -> PodScrape:
    return PodScrape({(ROWS, ()): value}, T0 - timedelta(days=1))


def test_a_scrape_keeps_one_model_version_and_the_monitoring_counters() -> None:
    counters = parse_scrape(SCRAPE, "iris", "2")
    assert counters == {
        (ROWS, ()): 40.0,
        (FEATURES, ("x", "1")): 30.0,
        (FEATURES, ("x", "2")): 10.0,
    }
    counts = WindowCounts.from_counters(counters)
    assert counts.rows == 40
    assert counts.features == {"x": {"1": 30.0, "2": 10.0}}


def test_a_counter_that_went_down_was_reset_and_counts_from_zero() -> None:
    assert increase({(ROWS, ()): 100.0}, {(ROWS, ()): 130.0}) == {(ROWS, ()): 30.0}
    assert increase({(ROWS, ()): 100.0}, {(ROWS, ()): 20.0}) == {(ROWS, ()): 20.0}
    assert increase({}, {(ROWS, ()): 5.0}) == {(ROWS, ()): 5.0}


def test_pod_window_sums_increases_inside_the_window_across_pods_and_restarts() -> None:
    window = PodWindow(keep=3 * MINUTE)
    window.observe(T0, {"a": _rows(1000)})  # the first sight: a baseline, not traffic
    assert window.window(T0, 3 * MINUTE).rows == 0
    assert window.covered(T0, 3 * MINUTE) == timedelta(0)
    window.observe(T0 + MINUTE, {"a": _rows(1100)})
    # Pod b started after the last scrape: all of its counts are in the window.
    b = PodScrape({(ROWS, ()): 50.0}, T0 + 90 * timedelta(seconds=1))
    window.observe(T0 + 2 * MINUTE, {"a": _rows(1150), "b": b})
    assert window.window(T0 + 2 * MINUTE, 3 * MINUTE).rows == 100 + 50 + 50
    # a restarted (its counter went down to 30); b is gone.
    window.observe(T0 + 3 * MINUTE, {"a": _rows(30)})
    assert window.window(T0 + 3 * MINUTE, 3 * MINUTE).rows == 100 + 100 + 30
    assert window.window(T0 + 3 * MINUTE, MINUTE).rows == 30
    window.observe(T0 + 4 * MINUTE, {"a": _rows(40)})
    assert window.window(T0 + 4 * MINUTE, 3 * MINUTE).rows == 100 + 30 + 10, "old scrapes left"
    assert window.covered(T0 + 4 * MINUTE, 3 * MINUTE) == 3 * MINUTE


def test_a_pod_seen_late_that_ran_before_only_sets_its_baseline() -> None:
    window = PodWindow(keep=10 * MINUTE)
    window.observe(T0, {"a": _rows(10)})
    window.observe(T0 + MINUTE, {"a": _rows(20), "old": _rows(5000)})
    assert window.window(T0 + MINUTE, 10 * MINUTE).rows == 10


def test_promql_sums_over_pods_per_slot_and_filters_the_version() -> None:
    query = promql(FEATURES, 'ir"is', "3", 600, 'namespace="ml"')
    assert query == (
        "sum by (feature, bin) (increase(flywheel_feature_values_total"
        '{model="ir\\"is",version="3",namespace="ml"}[600s]))'
    )
    assert promql(ROWS, "iris", "3", 60).startswith("sum by () (increase(")
    counters = from_vectors(
        [(FEATURES, [({"feature": "x", "bin": "1"}, 2.5)]), (ROWS, [({}, 4.0)])]
    )
    assert counters == {(FEATURES, ("x", "1")): 2.5, (ROWS, ()): 4.0}


STATS: dict[str, Any] = {
    "format": "flywheel.dev/stats/v1",
    "features": [
        {
            "name": "x",
            "type": "numeric",
            "nulls": 0,
            "std": 1.0,
            "histogram": {"edges": [0.0, 1.0, 2.0, 3.0], "counts": [0, 300, 400, 300, 0]},
        },
        {
            "name": "y",
            "type": "numeric",
            "nulls": 0,
            "std": 1.0,
            "histogram": {"edges": [0.0, 1.0, 2.0, 3.0], "counts": [0, 300, 400, 300, 0]},
        },
        {
            "name": "city",
            "type": "categorical",
            "nulls": 0,
            "categories": [{"value": "a", "count": 600}, {"value": "b", "count": 300}],
            "__other__": 100,
        },
    ],
    "label": {
        "name": "label",
        "type": "categorical",
        "categories": [{"value": "no", "count": 700}, {"value": "yes", "count": 300}],
    },
}
CLASSES = ["no", "yes"]


def _spec(**fields: Any) -> ModelMonitorSpec:
    return ModelMonitorSpec.model_validate(
        {
            "deploymentRef": {"name": "d"},
            "minSamples": 100,
            "mode": "Auto",
            "retrain": {
                "template": {
                    "model": "m",
                    "datasetRef": {"name": "data", "version": "0123456789ab"},
                    "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
                }
            },
            **fields,
        }
    )


def _counts(
    scale: float, x: Sequence[float], *, labels: float = 0, correct: float = 0
) -> WindowCounts:
    slots = slot_names(STATS["features"][0])
    base = [0, 300, 400, 300, 0, 0]
    features = {
        "x": dict(zip(slots, (v * scale for v in x), strict=True)),
        "y": dict(zip(slots, (v * scale for v in base), strict=True)),
        "city": {"a": 600 * scale, "b": 300 * scale, "__other__": 100 * scale},
    }
    return WindowCounts(
        rows=1000 * scale,
        features=features,
        predictions={"no": 700 * scale, "yes": 300 * scale},
        labels=labels,
        correct=correct,
    )


def test_the_training_distribution_does_not_drift_and_a_shift_does() -> None:
    same = evaluate(_spec(), STATS, CLASSES, _counts(0.5, [0, 300, 400, 300, 0, 0]), T0)
    assert same.evaluation.verdict == "NoDrift"
    assert same.trigger is None
    assert [f.score for f in same.evaluation.features or []] == [0.0, 0.0, 0.0]
    assert same.evaluation.prediction_drift_score == 0.0
    shifted = evaluate(_spec(), STATS, CLASSES, _counts(0.5, [0, 50, 150, 500, 300, 0]), T0)
    assert shifted.evaluation.verdict == "Drift"
    assert shifted.evaluation.drifted_features == ["x"]
    assert shifted.trigger is not None
    assert shifted.trigger.reason == "DataDrift"
    assert shifted.trigger.message.startswith(
        "1 of 3 features drifted (psi calibrated at alpha 0.02): x "
    )
    (x, *_) = shifted.evaluation.features or []
    assert x.drifted
    assert x.critical_value is not None
    assert x.score > x.critical_value > 0
    two = evaluate(
        _spec(dataDrift={"minDriftedFeatures": 2}),
        STATS,
        CLASSES,
        _counts(0.5, [0, 50, 150, 500, 300, 0]),
        T0,
    )
    assert two.evaluation.verdict == "NoDrift", "one drifted feature is below minDriftedFeatures"


def _predicting(no: float, yes: float, rows: float = 5000) -> WindowCounts:
    calm = _counts(rows / 1000, [0, 300, 400, 300, 0, 0])
    return replace(calm, predictions={"no": no * rows, "yes": yes * rows})


def test_predictions_are_compared_with_the_models_own_held_out_predictions() -> None:
    # The model predicts 24 % "yes" where 30 % of the training labels are "yes".
    recorded = {"no": 760, "yes": 240}
    own = evaluate(_spec(), STATS, CLASSES, _predicting(0.76, 0.24), T0, recorded)
    assert own.evaluation.prediction_baseline == "heldOutPredictions"
    assert own.evaluation.prediction_drift is not None
    assert not own.evaluation.prediction_drift.drifted
    assert own.evaluation.verdict == "NoDrift"
    label = evaluate(_spec(), STATS, CLASSES, _predicting(0.76, 0.24), T0)
    assert label.evaluation.prediction_baseline == "trainingLabel"
    assert label.evaluation.prediction_drift is not None
    assert label.evaluation.prediction_drift.drifted, "against the labels it looks like drift"
    # A real label-prior shift moves the predictions away from the model's own baseline.
    prior = evaluate(_spec(), STATS, CLASSES, _predicting(0.66, 0.34), T0, recorded)
    assert prior.evaluation.verdict == "Drift"
    assert prior.trigger is not None
    assert prior.trigger.reason == "PredictionDrift"


def test_no_verdict_below_min_samples() -> None:
    few = evaluate(_spec(), STATS, CLASSES, _counts(0.05, [0, 0, 0, 0, 1000, 0]), T0)
    assert few.evaluation.samples == 50
    assert few.evaluation.verdict == "InsufficientData"
    assert few.evaluation.features is None
    assert few.trigger is None


def test_accuracy_decay_needs_min_labels_and_outranks_drift() -> None:
    spec = _spec(performance={"metric": "accuracy", "min": 0.8, "minLabels": 50})
    calm = [0, 300, 400, 300, 0, 0]
    fine = evaluate(spec, STATS, CLASSES, _counts(1, calm, labels=100, correct=90), T0)
    assert fine.evaluation.performance == 0.9
    assert fine.evaluation.verdict == "NoDrift"
    too_few = evaluate(spec, STATS, CLASSES, _counts(1, calm, labels=49, correct=0), T0)
    assert too_few.evaluation.performance is None
    assert too_few.evaluation.verdict == "NoDrift"
    shifted = [0, 50, 150, 500, 300, 0]
    decay = evaluate(spec, STATS, CLASSES, _counts(1, shifted, labels=100, correct=60), T0)
    assert decay.evaluation.verdict == "Decay"
    assert decay.trigger is not None
    assert decay.trigger.reason == "PerformanceDecay"
    assert decay.trigger.message == "accuracy 0.6 over 100 labels (limit 0.8)"


def _decide(spec: ModelMonitorSpec, *, now: datetime = T0, **given: Any) -> RetrainDecision:
    """`decide_retrain` for monitor `mon`: a drift verdict seen once before, new data."""
    base = RetrainInputs(spec, "mon", "Drift", None, previous_consecutive=1, new_data=True)
    return decide_retrain(replace(base, **given), now)


def _report(
    previous: Obj, assessment: Assessment, decision: RetrainDecision, *, serving: int, retrains: int
) -> tuple[dict[str, Any], dict[str, ConditionUpdate], list[Event]]:
    """What one evaluation writes: its status fields, its conditions by type, its Events."""
    status = report_status(assessment, decision, serving=serving, retrains=retrains)
    drift = drift_condition(assessment)
    conditions = {c.type: c for c in report_conditions(assessment, decision, drift)}
    return status, conditions, list(transition_events(previous, drift, decision))


def test_the_status_records_the_verdict_and_events_mark_transitions() -> None:
    spec = _spec()
    shifted = evaluate(spec, STATS, CLASSES, _counts(1, [0, 50, 150, 500, 300, 0]), T0)
    decision = _decide(spec, trigger=shifted.trigger)
    assert decision.action == "Create"
    status, conditions, events = _report({}, shifted, decision, serving=3, retrains=1)
    assert conditions["DriftDetected"].status == "True"
    assert conditions["DriftDetected"].reason == "DataDrift"
    assert conditions["Ready"].status == "True"
    assert conditions["WaitingForNewData"].status == "False"
    assert [e.reason for e in events] == ["DriftDetected", "RetrainTriggered"]
    assert status["lastRetrain"]["trainingRun"] == "mon-retrain-1"
    assert status["lastEvaluation"]["verdict"] == "Drift"
    previous = {"conditions": [{"type": "DriftDetected", "status": "True"}]}
    calm = evaluate(spec, STATS, CLASSES, _counts(1, [0, 300, 400, 300, 0, 0]), T0)
    quiet = _decide(
        spec,
        verdict="NoDrift",
        trigger=None,
        previous_consecutive=0,
        history=RetrainHistory(1, decision.record, decision.recent),
        now=T0 + MINUTE,
    )
    status, _, events = _report(previous, calm, quiet, serving=3, retrains=1)
    assert [e.reason for e in events] == ["DriftResolved"]
    assert "lastRetrain" not in status, "a merge patch keeps the recorded one"


def _request(decision: RetrainDecision) -> RetrainRequest:
    assert decision.run_name is not None
    return RetrainRequest(decision.run_name, decision.reason, decision.message, decision.score)


def test_the_retraining_run_is_owned_labelled_and_pinned_to_the_newest_data() -> None:
    spec = _spec()
    shifted = evaluate(spec, STATS, CLASSES, _counts(1, [0, 50, 150, 500, 300, 0]), T0)
    decision = _decide(spec, trigger=shifted.trigger, history=RetrainHistory(decisions=6))
    monitor = {"metadata": {"name": "mon", "namespace": "ml", "uid": "u-1"}}
    run = render_retrain_run(parse_meta(monitor), spec, _request(decision), "fedcba987654")
    assert run["metadata"]["name"] == "mon-retrain-7"
    assert run_number("mon", run["metadata"]["name"]) == 7
    assert run_number("mon", "other-retrain-7") is None
    labels = run["metadata"]["labels"]
    assert labels["flywheel.dev/modelmonitor"] == "mon"
    assert labels["flywheel.dev/retrain-reason"] == "DataDrift"
    assert float(labels["flywheel.dev/retrain-score"]) > 0.2
    assert run["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert run["spec"]["datasetRef"] == {"name": "data", "version": "fedcba987654"}
    assert run["spec"]["model"] == "m"


def test_the_run_score_label_is_the_trigger_number_whatever_the_message_says() -> None:
    spec = _spec()
    decay = Trigger("PerformanceDecay", "accuracy 0.6 over 100 labels (limit 0.8)", 0.6)
    decision = _decide(spec, trigger=decay)
    meta = parse_meta({"metadata": {"name": "mon", "namespace": "ml", "uid": "u-1"}})
    run = render_retrain_run(meta, spec, _request(decision), None)
    assert run["metadata"]["labels"]["flywheel.dev/retrain-score"] == "0.6"
    assert run["spec"]["datasetRef"] == {"name": "data"}, "no version yet: pinned at start"
    unscored = _decide(spec, trigger=Trigger("DataDrift", "psi over 0.2 on 1 of 3: x=0.41"))
    labels = render_retrain_run(meta, spec, _request(unscored), None)["metadata"]["labels"]
    assert "flywheel.dev/retrain-score" not in labels, "no number: no label, nothing parsed"


def test_a_schedule_is_due_once_it_fired_since_the_last_scheduled_run() -> None:
    spec = _spec(schedule="0 * * * *")
    assert not schedule_due(spec, T0, T0 + timedelta(minutes=59))
    assert schedule_due(spec, T0, T0 + timedelta(minutes=60))
    assert not schedule_due(_spec(), T0, T0 + timedelta(days=9))


def test_the_schedule_counts_from_the_last_scheduled_retraining_else_the_creation() -> None:
    created = parse_time("2026-11-30T08:00:00Z")
    assert schedule_base(created, ModelMonitorStatus()) == created
    status = ModelMonitorStatus.model_validate(
        {
            "recentRetrains": [
                {"time": "2026-12-01T03:00:00Z", "reason": "Schedule", "message": "due"},
                {"time": "2026-12-01T05:00:00Z", "reason": "DataDrift", "message": "x"},
            ]
        }
    )
    assert schedule_base(created, status) == datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    assert schedule_base(None, ModelMonitorStatus()) == datetime.fromtimestamp(0, UTC)


@pytest.mark.parametrize("method", ["psi", "jensenshannon", "wasserstein", "linf", "chisquare"])
def test_every_method_scores_zero_on_the_baseline_and_more_on_a_shift(method: str) -> None:
    spec = _spec(dataDrift={"method": method})
    same = evaluate(spec, STATS, CLASSES, _counts(1, [0, 300, 400, 300, 0, 0]), T0)
    shifted = evaluate(spec, STATS, CLASSES, _counts(1, [0, 50, 150, 500, 300, 0]), T0)
    before = {f.name: f.score for f in same.evaluation.features or []}
    after = {f.name: f.score for f in shifted.evaluation.features or []}
    # chisquare scores 1 - p: near 0 (the smoothed empty bins leave a tiny statistic).
    assert np.isclose(before["x"], 0.0, atol=1e-9 if method != "chisquare" else 0.01)
    assert after["x"] > before["x"]
    assert np.isclose(after["y"], before["y"])


def test_a_run_created_but_not_recorded_is_adopted_after_a_restart() -> None:
    run = {
        "metadata": {
            "name": "mon-retrain-3",
            "creationTimestamp": "2026-12-01T11:58:00Z",
            "labels": {"flywheel.dev/retrain-reason": "DataDrift"},
            "annotations": {"flywheel.dev/retrain-message": "psi over 0.2 on x"},
        }
    }
    recorded = {
        "retrains": 2,
        "lastRetrain": {
            "time": "2026-12-01T09:00:00Z",
            "reason": "DataDrift",
            "message": "m",
            "trainingRun": "mon-retrain-2",
        },
    }
    history = adopt("mon", ModelMonitorStatus.model_validate(recorded), [run])
    assert history.adopted
    assert history.decisions == 3
    last = history.last
    assert last is not None
    assert last.training_run == "mon-retrain-3"
    assert last.time == datetime(2026, 12, 1, 11, 58, tzinfo=UTC)
    assert [r.training_run for r in history.recent] == ["mon-retrain-3"]
    # The adopted run is in flight and starts the cooldown; the next name is -4.
    decision = _decide(
        _spec(), trigger=Trigger("DataDrift", "x"), previous_consecutive=5, history=history
    )
    assert decision.reason == "Cooldown"
    later = _decide(
        _spec(),
        trigger=Trigger("DataDrift", "x"),
        previous_consecutive=5,
        history=history,
        now=T0 + timedelta(hours=1),
    )
    assert later.run_name == "mon-retrain-4"
    same = adopt("mon", ModelMonitorStatus.model_validate({**recorded, "retrains": 3}), [run])
    assert same.decisions == 3
    assert not same.adopted, "already recorded: nothing to adopt"


def test_regressors_drift_on_binned_predictions_and_decay_on_mae() -> None:
    stats = {
        "features": [STATS["features"][0]],
        "label": {
            "name": "price",
            "type": "numeric",
            "nulls": 0,
            "std": 1.0,
            "histogram": {"edges": [0.0, 10.0, 20.0], "counts": [0, 500, 500, 0]},
        },
    }
    spec = _spec(performance={"metric": "mae", "max": 2.0, "minLabels": 10})
    x = {"0": 0.0, "1": 300.0, "2": 400.0, "3": 300.0, "4": 0.0}
    steady = WindowCounts(
        rows=1000, features={"x": x}, predictions={"1": 500, "2": 500}, labels=20, absolute_error=30
    )
    calm = evaluate(spec, stats, [], steady, T0)
    assert calm.evaluation.prediction_drift_score == 0.0
    assert calm.evaluation.performance == 1.5
    assert calm.evaluation.verdict == "NoDrift"
    moved = WindowCounts(
        rows=1000,
        features={"x": x},
        predictions={"1": 100, "2": 600, "3": 300},
        labels=20,
        absolute_error=80,
    )
    drifted = evaluate(spec, stats, [], moved, T0)
    assert drifted.evaluation.prediction_drift_score is not None
    assert drifted.evaluation.prediction_drift_score > 0.2
    assert drifted.evaluation.verdict == "Decay", "MAE 4.0 over the limit 2.0 outranks drift"
    assert drifted.trigger is not None
    assert drifted.trigger.message == "mae 4.0 over 20 labels (limit 2.0)"
