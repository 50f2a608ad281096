"""The ModelMonitor controller's gather → decide → act over the in-memory fake: evaluations on
their interval, the waiting states, a window of drifted traffic scraped from a serving pod (or
read from Prometheus) leading to one retraining run, the guardrails, the Dataset refresh request,
adoption of a run whose record was lost, and the exported metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from flywheel.controllers import modelmonitor
from flywheel.controllers.modelmonitor.sources import MonitorMemory
from flywheel.controllers.modelmonitor.windows import (
    CONFUSION,
    FEATURES,
    LABELS,
    PREDICTIONS,
    ROWS,
    Counters,
    promql,
)
from flywheel.core.objects import Obj
from flywheel.core.resources import DATASETS, MODEL_DEPLOYMENTS, MODEL_MONITORS, TRAINING_RUNS
from flywheel.core.serving import VERSION_LABEL, selector_labels
from flywheel.core.statuses import REFRESH_REQUESTED
from flywheel.kube.errors import Unavailable
from flywheel.opmetrics import OperatorMetrics
from flywheel_serving.names import (
    METRICS_PATH,
    PORT,
    SLOT_LABELS,
    UNSEEN,
    baseline_path,
    numeric_slots,
)
from tests.support.fakekube import FakeStore, Harness

NS = "ns"
API = "flywheel.dev/v1alpha1"
TRAINED_ON = "6c1d0e4f2a7b"
"""The Dataset version the serving model was trained on."""
NEWER = "9f3a5b7c1d2e"
CLASSES = ["setosa", "versicolor", "virginica"]
PROMETHEUS = "http://prometheus.monitoring:9090"
TEMPLATE = {
    "model": "iris",
    "datasetRef": {"name": "iris"},
    "estimator": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 200}},
}


def _numeric(name: str, edges: list[float], counts: list[int], mean: float, std: float) -> Obj:
    return {
        "name": name,
        "type": "numeric",
        "count": 150,
        "nulls": 0,
        "min": edges[0],
        "max": edges[-1],
        "mean": mean,
        "std": std,
        "histogram": {"edges": edges, "counts": counts},
    }


STATS: Obj = {
    "format": "flywheel.dev/stats/v1",
    "dataset": {"namespace": NS, "name": "iris", "version": TRAINED_ON, "digest": "sha256:0"},
    "rows": 150,
    "columns": 5,
    # Quantile edges: each bin holds about a fifth of the training rows; no under/overflow.
    "features": [
        _numeric(
            "sepal_length", [4.3, 5.0, 5.6, 6.1, 6.5, 7.9], [0, 32, 29, 30, 28, 31, 0], 5.84, 0.83
        ),
        _numeric(
            "sepal_width", [2.0, 2.8, 3.0, 3.2, 3.4, 4.4], [0, 33, 27, 31, 29, 30, 0], 3.06, 0.44
        ),
        _numeric(
            "petal_length", [1.0, 1.5, 3.9, 4.6, 5.3, 6.9], [0, 37, 23, 31, 29, 30, 0], 3.76, 1.77
        ),
        _numeric(
            "petal_width", [0.1, 0.2, 1.1, 1.5, 1.9, 2.5], [0, 34, 22, 35, 28, 31, 0], 1.2, 0.76
        ),
    ],
    "label": {
        "name": "species",
        "type": "categorical",
        "count": 150,
        "nulls": 0,
        "unique": 3,
        "categories": [{"value": c, "count": 50, "frequency": 0.333} for c in CLASSES],
        "__other__": 0,
    },
}
SHIFTED = {
    "sepal_length": [0, 12, 18, 45, 75, 120, 30],
    "petal_length": [0, 15, 15, 30, 90, 120, 30],
}
"""Per 300 rows: two features moved to their upper bins and past the training range."""


def _window(
    rows: int = 300, *, shifted: bool = False, labels: int = 0, correct: int = 0
) -> Counters:
    """The counters' increase over one window of traffic (predictions as in training)."""
    grown: Counters = {(ROWS, ()): float(rows)}
    for feature in STATS["features"]:
        name, histogram = feature["name"], feature["histogram"]
        if shifted and name in SHIFTED:
            counts = [c * rows / 300 for c in SHIFTED[name]]
        else:
            counts = [c * rows / 150 for c in histogram["counts"]]
        for slot, value in zip(numeric_slots(len(histogram["edges"])), [*counts, 0], strict=True):
            grown[(FEATURES, (name, slot))] = float(value)
    for label in CLASSES:
        grown[(PREDICTIONS, (label,))] = rows / 3
    grown[(PREDICTIONS, (UNSEEN,))] = 0.0
    if labels:  # feedback: `correct` of them on the diagonal, the rest one class off
        grown[(LABELS, ())] = float(labels)
        for index, label in enumerate(CLASSES):
            grown[(CONFUSION, (label, label))] = correct / 3
            grown[(CONFUSION, (label, CLASSES[(index + 1) % 3]))] = (labels - correct) / 3
    return grown


@dataclass
class ServingPod:
    """One ready serving pod of version 1: its address and its cumulative counters."""

    name: str
    ip: str
    counters: Counters = field(default_factory=dict)

    def serve(self, grown: Counters) -> None:
        """Answer a window's worth of traffic."""
        for key, value in grown.items():
            self.counters[key] = self.counters.get(key, 0.0) + value

    def exposition(self) -> str:
        """The monitoring part of its `/metrics`, as the server writes it."""
        lines = []
        for metric in sorted({m for m, _ in self.counters}):
            lines.append(f"# TYPE {metric.removesuffix('_total')} counter")
            for (name, slots), value in sorted(self.counters.items()):
                if name == metric:
                    labels = {
                        "model": "iris",
                        "version": "1",
                        **dict(zip(SLOT_LABELS[name], slots, strict=True)),
                    }
                    text = ",".join(f'{k}="{v}"' for k, v in labels.items())
                    lines.append(f"{name}{{{text}}} {value}")
        lines += [
            "# TYPE flywheel_requests counter",
            'flywheel_requests_total{model="iris",version="1",endpoint="infer",code="200"} 12',
        ]
        return "\n".join(lines) + "\n"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.ip}:{PORT}{METRICS_PATH}"

    @property
    def baseline_url(self) -> str:
        return f"http://{self.ip}:{PORT}{baseline_path('iris', 1)}"


def _monitor(**spec: Any) -> Obj:
    return {
        "apiVersion": API,
        "kind": "ModelMonitor",
        "metadata": {"name": "mon", "namespace": NS, "uid": "uid-mon"},
        "spec": {
            "deploymentRef": {"name": "iris"},
            "interval": "1m",
            "window": "2m",
            "minSamples": 100,
            "consecutiveEvaluations": 2,
            "cooldown": "1h",
            "mode": "Auto",
            "retrain": {"template": TEMPLATE},
            **spec,
        },
    }


def _deployment(serving: int | None = 1) -> Obj:
    status = {"servingVersion": serving} if serving is not None else {}
    return {
        "apiVersion": API,
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": NS},
        "spec": {"model": "iris", "policy": "LatestValidated"},
        "status": status,
    }


def _version() -> Obj:
    return {
        "apiVersion": API,
        "kind": "ModelVersion",
        "metadata": {"name": "iris-v1", "namespace": NS},
        "spec": {
            "model": "iris",
            "version": 1,
            "artifact": {"uri": "pvc://flywheel-artifacts/models/iris/1/model.onnx"},
            "signature": {
                "task": "classification",
                "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
                "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1]}],
                "features": [{"name": f["name"], "type": "numeric"} for f in STATS["features"]],
                "classLabels": CLASSES,
            },
            "lineage": {
                "trainingRun": "iris-train",
                "dataset": "iris",
                "datasetVersion": TRAINED_ON,
                "datasetDigest": "sha256:0",
                "estimator": "sklearn.linear_model.LogisticRegression",
            },
            "baseline": {"statsURI": "pvc://flywheel-artifacts/datasets/ns/iris/0/stats.json"},
        },
    }


def _dataset(version: str = NEWER) -> Obj:
    return {
        "apiVersion": API,
        "kind": "Dataset",
        "metadata": {"name": "iris", "namespace": NS},
        "spec": {"source": {"uri": "sklearn://iris"}},
        "status": {"version": version},
    }


def _add_pod(h: Harness, pod: ServingPod, started: str = "2026-12-01T11:00:00Z") -> None:
    """The pod, ready behind the serving Service, answering its baseline and metrics."""
    h.cluster.add(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod.name,
                "namespace": NS,
                "labels": {**selector_labels("iris"), VERSION_LABEL: "1"},
            },
            "status": {"phase": "Running", "podIP": pod.ip, "startTime": started},
        }
    )
    h.cluster.add(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"iris-serving-{pod.name[-5:]}",
                "namespace": NS,
                "labels": {"kubernetes.io/service-name": "iris-serving"},
            },
            "addressType": "IPv4",
            "endpoints": [
                {
                    "addresses": [pod.ip],
                    "conditions": {"ready": True},
                    "targetRef": {"kind": "Pod", "name": pod.name, "uid": f"uid-{pod.name}"},
                }
            ],
            "ports": [{"name": "http", "port": PORT, "protocol": "TCP"}],
        }
    )
    h.http.answers[pod.baseline_url] = json.dumps(STATS)
    _publish(h, pod)


def _publish(h: Harness, pod: ServingPod) -> None:
    h.http.answers[pod.metrics_url] = pod.exposition()


MEMORY: dict[int, MonitorMemory] = {}
"""Each harness's monitor memory (windows), by the harness's id."""


def _harness() -> Harness:
    metrics, memory = OperatorMetrics(CollectorRegistry()), MonitorMemory()
    h = Harness(modelmonitor.build(metrics, memory), metrics=metrics)
    MEMORY[id(h)] = memory
    return h


def _setup(monitor: Obj | None = None, *, dataset: str = NEWER) -> tuple[Harness, ServingPod]:
    """A monitor watching a deployment that serves version 1 from one pod that has served
    calm traffic for a while."""
    h = _harness()
    h.cluster.add(monitor or _monitor())
    h.cluster.add(_deployment())
    h.cluster.add(_version())
    h.cluster.add(_dataset(dataset))
    pod = ServingPod("iris-serving-7d9f8-x2k4q", "10.244.0.17")
    pod.serve(_window(3000))
    _add_pod(h, pod)
    return h, pod


async def _evaluate(h: Harness, pod: ServingPod | None, grown: Counters | None) -> Obj:
    """One interval later, the pod served `grown`: the next evaluation; the status."""
    if pod is not None and grown is not None:
        pod.serve(grown)
        _publish(h, pod)
    requeue, result = await h.reconcile("mon")
    assert result == "success"
    assert requeue == timedelta(minutes=1), "the next evaluation in one interval"
    return h.status(MODEL_MONITORS, "mon")


async def _drift_until_retrain(h: Harness, pod: ServingPod) -> Obj:
    """The first scrape, then two evaluations of drift: the status after the second."""
    await _evaluate(h, pod, None)
    h.clock.advance(minutes=1)
    await _evaluate(h, pod, _window(shifted=True))
    h.clock.advance(minutes=1)
    return await _evaluate(h, pod, _window(shifted=True))


def _decision(status: Obj) -> tuple[str, str]:
    return status["lastDecision"]["action"], status["lastDecision"]["reason"]


def _refresh_patches(h: Harness) -> list[tuple[str, str, str]]:
    return [w for w in h.cluster.writes() if w == ("patch", "datasets", "iris")]


async def test_an_evaluation_runs_on_the_first_visit_a_new_generation_and_each_interval() -> None:
    h, pod = _setup()
    status = await _evaluate(h, pod, None)
    assert status["lastEvaluation"]["time"] == "2026-12-01T12:00:00Z"
    assert status["lastEvaluation"]["verdict"] == "InsufficientData", "a first scrape: a baseline"
    assert h.condition(MODEL_MONITORS, "mon", "DriftDetected") == ("Unknown", "InsufficientData")
    assert h.condition(MODEL_MONITORS, "mon", "Ready") == ("True", "Evaluated")

    h.clock.advance(seconds=30)
    pod.serve(_window())
    _publish(h, pod)
    requests, asked = len(h.cluster.requests), len(h.http.asked)
    requeue, _ = await h.reconcile("mon")
    assert requeue == timedelta(seconds=30, milliseconds=100), "woken early: wait for the rest"
    assert h.cluster.requests[requests:] == [], "no write, no read"
    assert h.http.asked[asked:] == [], "no pod asked"
    assert h.status(MODEL_MONITORS, "mon")["lastEvaluation"]["time"] == "2026-12-01T12:00:00Z"

    h.clock.advance(seconds=30)
    status = await _evaluate(h, None, None)
    assert status["lastEvaluation"]["time"] == "2026-12-01T12:01:00Z"
    assert (status["lastEvaluation"]["verdict"], status["lastEvaluation"]["samples"]) == (
        "NoDrift",
        300,
    )
    assert h.condition(MODEL_MONITORS, "mon", "DriftDetected") == ("False", "NoDrift")
    assert h.http.asked.count(pod.baseline_url) == 1, "a version's baseline is read once"

    h.clock.advance(seconds=10)
    body = h.cluster.objects[("modelmonitors", NS, "mon")]
    body["spec"]["minSamples"] = 1000
    body["metadata"]["generation"] = 2
    status = await _evaluate(h, None, None)
    assert status["lastEvaluation"]["time"] == "2026-12-01T12:01:10Z", "a new spec: at once"
    assert status["observedGeneration"] == 2
    assert status["lastEvaluation"]["verdict"] == "InsufficientData", "300 < minSamples 1000"


async def test_waiting_states_say_why_with_an_event_only_when_the_reason_changes() -> None:
    h = _harness()
    h.cluster.add(_monitor())
    requeue, _ = await h.reconcile("mon")
    assert requeue == timedelta(minutes=1)
    assert h.condition(MODEL_MONITORS, "mon", "Ready") == ("False", "DeploymentNotFound")
    assert h.condition(MODEL_MONITORS, "mon", "Reconciling") == ("True", "DeploymentNotFound")
    await h.reconcile("mon")
    assert h.events("mon") == ["DeploymentNotFound"], "the same reason: no second Event"

    h.cluster.add(_deployment(serving=None))
    await h.reconcile("mon")
    assert h.condition(MODEL_MONITORS, "mon", "Ready") == ("False", "NotServing")
    h.cluster.set_status(MODEL_DEPLOYMENTS, NS, "iris", {"servingVersion": 1})
    await h.reconcile("mon")
    assert h.condition(MODEL_MONITORS, "mon", "Ready") == ("False", "NotServing"), "no version"
    assert h.events("mon") == ["DeploymentNotFound", "NotServing"]

    h.cluster.add(_version())
    await h.reconcile("mon")
    assert h.condition(MODEL_MONITORS, "mon", "Ready") == ("False", "MetricsUnavailable")
    assert h.condition(MODEL_MONITORS, "mon", "Stalled") == ("False", "MetricsUnavailable")
    where, event = h.cluster.events[-1]
    assert (where, event.type) == ("ModelMonitor ns/mon", "Warning")
    assert "no ready pod serves version 1" in event.message

    pod = ServingPod("iris-serving-7d9f8-x2k4q", "10.244.0.17")
    _add_pod(h, pod)
    del h.http.answers[pod.metrics_url]
    await h.reconcile("mon")
    message = h.status(MODEL_MONITORS, "mon")["conditions"]
    assert any("no serving pod could be scraped" in c["message"] for c in message)
    assert h.events("mon") == ["DeploymentNotFound", "NotServing", "MetricsUnavailable"]
    assert "lastEvaluation" not in h.status(MODEL_MONITORS, "mon")

    _publish(h, pod)
    await _evaluate(h, pod, None)
    assert h.condition(MODEL_MONITORS, "mon", "Ready") == ("True", "Evaluated")


async def test_a_pod_started_since_the_last_scrape_counts_from_zero_an_older_one_does_not() -> None:
    h, pod = _setup()
    await _evaluate(h, pod, None)
    h.clock.advance(minutes=1)
    pod.serve(_window(150))
    _publish(h, pod)
    scaled = ServingPod("iris-serving-7d9f8-m8z3w", "10.244.1.4")
    scaled.serve(_window(150))
    _add_pod(h, scaled, started="2026-12-01T12:00:30Z")  # a scale-up after the first scrape
    moved = ServingPod("iris-serving-7d9f8-q5t7n", "10.244.2.9")
    moved.serve(_window(6000))
    _add_pod(h, moved)  # ran before, unseen so far (not ready then): its baseline only
    status = await _evaluate(h, None, None)
    assert status["lastEvaluation"]["samples"] == 150 + 150
    assert {pod.metrics_url, scaled.metrics_url, moved.metrics_url} <= set(h.http.asked)


async def test_drift_on_two_features_held_for_two_evaluations_creates_one_run() -> None:
    h, pod = _setup()
    await _evaluate(h, pod, None)
    assert h.events("mon") == []
    h.clock.advance(minutes=1)
    status = await _evaluate(h, pod, _window(shifted=True))
    evaluation = status["lastEvaluation"]
    assert (evaluation["verdict"], evaluation["samples"]) == ("Drift", 300)
    assert evaluation["driftedFeatures"] == ["sepal_length", "petal_length"]
    scores = {f["name"]: f["score"] for f in evaluation["features"]}
    assert scores["sepal_length"] > 0.2
    assert scores["petal_length"] > 0.2
    assert scores["sepal_width"] == scores["petal_width"] == 0.0
    assert evaluation["predictionDriftScore"] == 0.0
    assert _decision(status) == ("None", "Observing")
    assert status["consecutiveDriftEvaluations"] == 1
    assert h.condition(MODEL_MONITORS, "mon", "DriftDetected") == ("True", "DataDrift")
    assert h.cluster.named(TRAINING_RUNS, NS) == []
    assert h.events("mon") == ["DriftDetected"]

    h.clock.advance(minutes=1)
    status = await _evaluate(h, pod, _window(shifted=True))
    assert _decision(status) == ("Create", "DataDrift")
    assert h.cluster.named(TRAINING_RUNS, NS) == ["mon-retrain-1"]
    assert status["retrains"] == 1
    assert status["consecutiveDriftEvaluations"] == 0, "the count starts again"
    assert status["lastRetrain"]["trainingRun"] == "mon-retrain-1"
    assert status["lastRetrain"]["time"] == "2026-12-01T12:02:00Z"
    assert h.events("mon") == ["DriftDetected", "RetrainTriggered"]

    run = h.cluster.obj(TRAINING_RUNS, NS, "mon-retrain-1")
    labels = run["metadata"]["labels"]
    assert labels["flywheel.dev/modelmonitor"] == "mon"
    assert labels["flywheel.dev/retrain-reason"] == "DataDrift"
    top = max(scores.values())
    assert float(labels["flywheel.dev/retrain-score"]) == round(top, 4)
    assert run["metadata"]["annotations"]["flywheel.dev/retrain-message"].startswith(
        "2 of 4 features drifted (psi calibrated at alpha 0.02): "
    )
    owner = run["metadata"]["ownerReferences"]
    assert owner == [
        {
            "apiVersion": API,
            "kind": "ModelMonitor",
            "name": "mon",
            "uid": "uid-mon",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert run["spec"]["datasetRef"] == {"name": "iris", "version": NEWER}, "the newest data"
    assert run["spec"]["model"] == "iris"


async def test_a_run_in_flight_blocks_and_a_finished_one_starts_the_cooldown() -> None:
    h, pod = _setup()
    await _drift_until_retrain(h, pod)
    h.clock.advance(minutes=1)
    status = await _evaluate(h, pod, _window(shifted=True))
    assert _decision(status) == ("None", "Observing"), "drift must hold again"
    h.clock.advance(minutes=1)
    status = await _evaluate(h, pod, _window(shifted=True))
    assert _decision(status) == ("Blocked", "RunInFlight")
    assert "mon-retrain-1 is still running" in status["lastDecision"]["message"]
    h.clock.advance(minutes=1)
    status = await _evaluate(h, pod, _window(shifted=True))
    assert _decision(status) == ("Blocked", "RunInFlight")
    assert h.events("mon").count("RunInFlight") == 1, "an Event when the reason changes only"
    assert h.cluster.named(TRAINING_RUNS, NS) == ["mon-retrain-1"]

    h.cluster.set_status(
        TRAINING_RUNS,
        NS,
        "mon-retrain-1",
        {"conditions": [{"type": "Succeeded", "status": "True", "reason": "Registered"}]},
    )
    h.clock.advance(minutes=1)
    status = await _evaluate(h, pod, _window(shifted=True))
    assert _decision(status) == ("Blocked", "Cooldown")
    assert "in cooldown until 2026-12-01T13:02:00Z" in status["lastDecision"]["message"]
    assert h.cluster.named(TRAINING_RUNS, NS) == ["mon-retrain-1"]

    h.clock.advance(minutes=56)  # 13:02: an hour after the first run
    status = await _evaluate(h, pod, _window(shifted=True))
    assert _decision(status) == ("Create", "DataDrift")
    assert h.cluster.named(TRAINING_RUNS, NS) == ["mon-retrain-1", "mon-retrain-2"]
    assert status["retrains"] == 2
    assert [r["trainingRun"] for r in status["recentRetrains"]] == [
        "mon-retrain-1",
        "mon-retrain-2",
    ]


async def test_without_newer_data_the_dataset_is_asked_once_until_it_answers() -> None:
    h, pod = _setup(dataset=TRAINED_ON)
    status = await _drift_until_retrain(h, pod)
    assert _decision(status) == ("WaitForNewData", "WaitingForNewData")
    assert h.condition(MODEL_MONITORS, "mon", "WaitingForNewData") == ("True", "WaitingForNewData")
    assert h.cluster.named(TRAINING_RUNS, NS) == []
    dataset = h.cluster.obj(DATASETS, NS, "iris")
    asked = dataset["metadata"]["annotations"][REFRESH_REQUESTED]
    assert asked == "2026-12-01T12:02:00Z"
    assert len(_refresh_patches(h)) == 1

    h.clock.advance(minutes=1)
    status = await _evaluate(h, pod, _window(shifted=True))
    assert _decision(status) == ("WaitForNewData", "WaitingForNewData")
    assert len(_refresh_patches(h)) == 1, "not answered yet: not asked again"
    assert h.events("mon").count("WaitingForNewData") == 1

    # The Dataset ingests again and finds the same data.
    h.cluster.set_status(
        DATASETS, NS, "iris", {"version": TRAINED_ON, "lastHandledRefreshAt": asked}
    )
    h.clock.advance(minutes=1)
    await _evaluate(h, pod, _window(shifted=True))
    assert len(_refresh_patches(h)) == 1, "answered, but asked within the cooldown"

    h.clock.advance(hours=1)
    await _evaluate(h, pod, _window(shifted=True))
    assert len(_refresh_patches(h)) == 2, "asked again a cooldown later"
    again = h.cluster.obj(DATASETS, NS, "iris")["metadata"]["annotations"][REFRESH_REQUESTED]
    assert again == "2026-12-01T13:04:00Z"
    assert h.cluster.named(TRAINING_RUNS, NS) == []

    h.clock.advance(hours=1)
    await _evaluate(h, pod, _window(shifted=True))
    assert len(_refresh_patches(h)) == 2, "unanswered: not asked again, however long it takes"

    # This time the source has new rows: a newer version, and the run is pinned to it.
    h.cluster.set_status(DATASETS, NS, "iris", {"version": NEWER, "lastHandledRefreshAt": again})
    h.clock.advance(minutes=1)
    status = await _evaluate(h, pod, _window(shifted=True))
    assert _decision(status) == ("Create", "DataDrift")
    assert h.condition(MODEL_MONITORS, "mon", "WaitingForNewData") == ("False", "NotWaiting")
    run = h.cluster.obj(TRAINING_RUNS, NS, "mon-retrain-1")
    assert run["spec"]["datasetRef"] == {"name": "iris", "version": NEWER}
    assert len(_refresh_patches(h)) == 2


async def test_a_run_created_but_not_recorded_is_adopted_not_duplicated() -> None:
    h, pod = _setup()
    await _evaluate(h, pod, None)
    h.clock.advance(minutes=1)
    await _evaluate(h, pod, _window(shifted=True))
    h.clock.advance(minutes=1)
    pod.serve(_window(shifted=True))
    _publish(h, pod)
    # The run is created, then the status write is lost (the API server went away).
    h.cluster.fail_next("patch", Unavailable(0, "ConnectError: connection refused"))
    assert await h.handle("mon") == "retry"
    assert h.cluster.named(TRAINING_RUNS, NS) == ["mon-retrain-1"]
    lost = h.status(MODEL_MONITORS, "mon")
    assert (lost["retrains"], lost["lastDecision"]["reason"]) == (0, "Observing"), "as before"
    assert "lastRetrain" not in lost
    assert lost["consecutiveDriftEvaluations"] == 1

    assert await h.handle("mon") == "success"
    assert h.cluster.named(TRAINING_RUNS, NS) == ["mon-retrain-1"], "no second run"
    assert [w for w in h.cluster.writes() if w[1] == "trainingruns"] == [
        ("create", "trainingruns", "mon-retrain-1")
    ]
    status = h.status(MODEL_MONITORS, "mon")
    assert status["retrains"] == 1
    assert status["lastRetrain"]["trainingRun"] == "mon-retrain-1"
    assert _decision(status) == ("Blocked", "RunInFlight"), "the adopted run is in flight"
    assert [r["trainingRun"] for r in status["recentRetrains"]] == ["mon-retrain-1"]

    h.cluster.set_status(
        TRAINING_RUNS,
        NS,
        "mon-retrain-1",
        {"conditions": [{"type": "Succeeded", "status": "True"}]},
    )
    h.clock.advance(minutes=1)
    status = await _evaluate(h, pod, _window(shifted=True))
    assert _decision(status) == ("Blocked", "Cooldown"), "and it started the cooldown"


async def test_prometheus_gives_the_same_scores_as_the_pods_for_the_same_counts() -> None:
    grown = _window(shifted=True)
    pods, pod = _setup()
    await _evaluate(pods, pod, None)
    pods.clock.advance(minutes=1)
    scraped = await _evaluate(pods, pod, grown)

    source = {
        "type": "Prometheus",
        "prometheus": {"url": PROMETHEUS, "matchers": {"namespace": NS}},
    }
    prom, _ = _setup(_monitor(metricsSource=source))
    for metric, slots in SLOT_LABELS.items():
        query = promql(metric, "iris", "1", 120, 'namespace="ns"')
        prom.http.vectors[query] = [
            (dict(zip(slots, values, strict=True)), amount)
            for (name, values), amount in grown.items()
            if name == metric
        ]
    queried = await _evaluate(prom, None, None)
    assert queried["lastEvaluation"]["verdict"] == "Drift", "the first visit has a whole window"
    for key in ("features", "driftedFeatures", "predictionDriftScore", "samples", "verdict"):
        assert queried["lastEvaluation"][key] == scraped["lastEvaluation"][key], key
    assert not any(url.endswith(METRICS_PATH) for url in prom.http.asked), "no pod scraped"
    assert 'sum by (feature, bin) (increase(flywheel_feature_values_total{model="iris"' in " ".join(
        prom.http.asked
    )


async def test_scores_are_exported_and_forgotten_with_the_monitor() -> None:
    performance = {"metric": "accuracy", "min": 0.8, "minLabels": 50}
    h, pod = _setup(_monitor(performance=performance))
    await _evaluate(h, pod, None)
    h.clock.advance(minutes=1)
    status = await _evaluate(h, pod, _window(shifted=True, labels=90, correct=81))
    evaluation = status["lastEvaluation"]
    assert evaluation["performance"] == 0.9

    registry = h.metrics.registry
    monitor = {"namespace": NS, "monitor": "mon"}

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {**monitor, **labels})

    for feature in evaluation["features"]:
        exported = sample("flywheel_drift_score", feature=feature["name"], method="psi")
        assert exported == feature["score"]
        critical = sample("flywheel_drift_critical_value", feature=feature["name"], method="psi")
        assert critical == feature["criticalValue"] > 0
    assert sample("flywheel_prediction_drift_score", method="psi") == 0.0
    predicted = evaluation["predictionDrift"]
    critical = sample("flywheel_prediction_drift_critical_value", method="psi")
    assert critical == predicted["criticalValue"] > 0
    assert sample("flywheel_monitor_performance", metric="accuracy") == 0.9
    assert sample("flywheel_monitor_window_samples") == 300
    assert sample("flywheel_monitor_drift_detected") == 1
    assert sample("flywheel_retrain_decisions_total", action="None", reason="Observing") == 1

    h.clock.advance(seconds=20)
    await h.reconcile("mon")  # not due: nothing observed
    assert sample("flywheel_retrain_decisions_total", action="None", reason="Observing") == 1

    memory = MEMORY[id(h)]
    assert memory.windows
    del h.cluster.objects[("modelmonitors", NS, "mon")]
    assert await h.reconcile("mon") == (None, "gone")
    assert memory.windows == {}
    for feature in evaluation["features"]:
        assert sample("flywheel_drift_score", feature=feature["name"], method="psi") is None
        assert (
            sample("flywheel_drift_critical_value", feature=feature["name"], method="psi") is None
        )
    assert sample("flywheel_prediction_drift_score", method="psi") is None
    assert sample("flywheel_prediction_drift_critical_value", method="psi") is None
    assert sample("flywheel_monitor_performance", metric="accuracy") is None
    assert sample("flywheel_monitor_window_samples") is None
    assert sample("flywheel_monitor_drift_detected") is None


async def test_a_deployment_wakes_the_monitors_that_watch_it() -> None:
    h = _harness()
    h.cluster.add(_monitor())
    other = _monitor(deploymentRef={"name": "other"})
    other["metadata"]["name"] = "elsewhere"
    h.cluster.add(other)
    (watch,) = h.controller.watches
    assert watch.resource == MODEL_DEPLOYMENTS
    assert list(watch.map(_deployment(), FakeStore(h.cluster))) == ["mon"]
