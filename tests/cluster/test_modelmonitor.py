"""The ModelMonitor controller on the real cluster: a real model served by real pods on the
local node, traffic drawn from the training data and then shifted, label feedback, a real
Prometheus server (Debian's package) scraping the pods, and an operator restart mid-cooldown.

One deployment, five monitors on it, one story, so the slow parts (ingest, training, pods) run
once:

- `drift` (Pods, Auto, no new data needed): clean traffic for a full window gives NoDrift and no
  run; a mean shift on two features gives DriftDetected=True on exactly those two and exactly one
  TrainingRun within two intervals; continued drift during the cooldown, across an operator
  restart, gives no second run.
- `waits` (requireNewData): the same drift asks the Dataset for a refresh and waits.
- `perf` (performance only, Suggest): falling accuracy from feedback triggers PerformanceDecay.
- `cmp` (Pods) and `prom` (Prometheus), with a window longer than the story: the same scores.
"""

from __future__ import annotations

import json
import random
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_iris

from flywheel.api.modelmonitor import ModelMonitorSpec
from flywheel.controllers.modelmonitor.evaluate import evaluate
from flywheel.controllers.modelmonitor.windows import WindowCounts, parse_scrape
from tests.cluster.conftest import OperatorFactory
from tests.cluster.lifecycle import (
    Traffic,
    cond,
    dataset_ready,
    get,
    get_text,
    post,
    ready_endpoints,
    train,
)
from tests.support.kube import Kubectl, eventually
from tests.support.prometheus import prometheus_server

FAST_RF = {"class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 10}}
SHIFTED = {"petal length (cm)": 1.5, "sepal width (cm)": 0.8}
"""A mean shift of about one standard deviation on two of the four features."""
INTERVAL = 5


def _rows(shift: dict[str, float], count: int) -> tuple[list[str], list[list[float]]]:
    iris = load_iris(as_frame=True)
    frame = iris.data
    names = [str(c) for c in frame.columns]
    picked = frame.sample(n=count, replace=True, random_state=random.randrange(1 << 30))
    rows = [[float(row[n]) + shift.get(n, 0.0) for n in names] for _, row in picked.iterrows()]
    return names, rows


def _body(shift: dict[str, float], count: int = 40) -> dict[str, Any]:
    names, rows = _rows(shift, count)
    columns = list(zip(*rows, strict=True))
    return {
        "inputs": [
            {"name": n, "shape": [count], "datatype": "FP64", "data": list(c)}
            for n, c in zip(names, columns, strict=True)
        ]
    }


def _monitor(name: str, **spec: Any) -> dict[str, Any]:
    retrain = {
        "template": {
            "model": "iris",
            "datasetRef": {"name": "iris"},
            "estimator": FAST_RF,
            "split": {"testFraction": 0.25, "seed": 7},
            "metrics": ["accuracy"],
        },
        "requireNewData": False,
    }
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "ModelMonitor",
        "metadata": {"name": name},
        "spec": {
            "deploymentRef": {"name": "iris"},
            "interval": f"{INTERVAL}s",
            "window": "15s",
            "minSamples": 500,
            "consecutiveEvaluations": 2,
            "cooldown": "1h",
            "mode": "Auto",
            "retrain": retrain,
            **spec,
        },
    }


def _evaluated_after(k: Kubectl, name: str, after: float, timeout: float = 60) -> dict[str, Any]:
    def fresh() -> dict[str, Any] | None:
        monitor = get(k, "modelmonitor", name)
        evaluation = monitor.get("status", {}).get("lastEvaluation") or {}
        when = evaluation.get("time")
        if when and datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp() > after:
            return monitor
        return None

    return eventually(fresh, timeout=timeout, what=f"an evaluation of {name} after {after:.0f}")


def _runs(k: Kubectl, monitor: str) -> list[dict[str, Any]]:
    found = k.json("get", "trainingruns", "-l", f"flywheel.dev/modelmonitor={monitor}")["items"]
    return list(found)


def _event_reasons(k: Kubectl, name: str) -> set[str]:
    events = k.json("get", "events", "--field-selector", f"involvedObject.name={name}")["items"]
    return {e["reason"] for e in events if e["involvedObject"]["kind"] == "ModelMonitor"}


def _scores(monitor: dict[str, Any]) -> dict[str, float]:
    features = monitor["status"]["lastEvaluation"].get("features") or []
    return {f["name"]: f["score"] for f in features}


def _feedback(endpoint: str, wrong: bool, count: int) -> None:
    status, answer = post(f"http://{endpoint}/v2/models/iris/infer", _body({}, count))
    assert status == 200, answer
    predicted = next(o for o in answer["outputs"] if o["name"] == "label")["data"]
    labels = [str((int(p) + 1) % 3) if wrong else p for p in predicted]
    status, answer = post(
        f"http://{endpoint}/v2/models/iris/feedback", {"predictions": predicted, "labels": labels}
    )
    assert status == 200, answer


def test_drift_retrains_once_within_guardrails_and_sources_agree(
    k: Kubectl, start_operator: OperatorFactory, tmp_path: Path
) -> None:
    operator = start_operator()
    dataset_ready(k)
    train(k, "iris-rf-1", estimator=FAST_RF)
    k.apply(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "iris"},
            "spec": {
                "model": "iris",
                "policy": "Pinned",
                "version": 1,
                "replicas": 1,
                "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
            },
        }
    )
    k("wait", "--for=condition=Ready", "--timeout=180s", "modeldeployment/iris")
    (endpoint,) = ready_endpoints(k, "iris-serving")
    assert k.namespace is not None
    namespace = k.namespace
    with prometheus_server(
        tmp_path / "prometheus", [endpoint], {"namespace": namespace}
    ) as prometheus:
        long = {"window": "10m", "mode": "Suggest"}
        k.apply(_monitor("drift"))
        k.apply(
            _monitor("waits", retrain={**_monitor("x")["spec"]["retrain"], "requireNewData": True})
        )
        k.apply(
            _monitor(
                "perf",
                mode="Suggest",
                consecutiveEvaluations=1,
                dataDrift={"enabled": False},
                predictionDrift={"enabled": False},
                performance={"metric": "accuracy", "min": 0.8, "minLabels": 100},
            )
        )
        k.apply(_monitor("cmp", **long))
        k.apply(
            _monitor(
                "prom",
                **long,
                metricsSource={
                    "type": "Prometheus",
                    "prometheus": {"url": prometheus, "matchers": {"namespace": namespace}},
                },
            )
        )
        for name in ("drift", "waits", "perf", "cmp", "prom"):
            _evaluated_after(k, name, 0)  # the Pods source's first scrape is its baseline
        time.sleep(2)  # Prometheus has scraped the counters before any traffic

        # Phase 1: traffic from the training distribution for more than a full window.
        clean_start = time.time()
        shift: dict[str, float] = {}
        traffic = Traffic(k, "iris-serving", "/v2/models/iris/infer", {}, lambda: _body(shift))
        with traffic:
            clean = _evaluated_after(k, "drift", clean_start + 16)
            evaluation = clean["status"]["lastEvaluation"]
            assert evaluation["verdict"] == "NoDrift", evaluation
            assert evaluation["samples"] >= 500
            assert max(_scores(clean).values()) < 0.1, evaluation
            assert cond(clean, "DriftDetected")["status"] == "False"
            assert cond(clean, "Ready")["status"] == "True"
            assert not _runs(k, "drift")

            # Label feedback: right first, then mostly wrong.
            _feedback(endpoint, wrong=False, count=150)
            fine = _evaluated_after(k, "perf", time.time() + 0.5)
            assert fine["status"]["lastEvaluation"]["performance"] == 1.0

            # Phase 2: a mean shift on two features.
            shift.update(SHIFTED)
            shifted_at = time.time()
            for _ in range(3):
                _feedback(endpoint, wrong=True, count=150)

            def detected() -> dict[str, Any] | None:
                monitor = get(k, "modelmonitor", "drift")
                return monitor if cond(monitor, "DriftDetected").get("status") == "True" else None

            drifting = eventually(detected, timeout=60, what="DriftDetected on drift")
            assert cond(drifting, "DriftDetected")["reason"] in ("DataDrift", "PredictionDrift")

            # The first drifted window may still hold rows from before the shift, so one shifted
            # feature can cross first; within a window's length both have, and never another.
            def both_shifted() -> dict[str, Any] | None:
                evaluation = get(k, "modelmonitor", "drift")["status"]["lastEvaluation"]
                drifted = set(evaluation.get("driftedFeatures") or ())
                assert drifted <= set(SHIFTED), f"an unshifted feature is flagged: {evaluation}"
                return evaluation if drifted == set(SHIFTED) else None

            evaluation = eventually(both_shifted, timeout=30, what="both shifted features")
            for feature in evaluation["features"]:
                if feature["drifted"] and feature["reason"] == "Shift":
                    assert feature["score"] > feature["criticalValue"] > 0, feature
            detected_at = datetime.fromisoformat(
                cond(drifting, "DriftDetected")["lastTransitionTime"].replace("Z", "+00:00")
            )
            (run,) = eventually(lambda: _runs(k, "drift"), timeout=30, what="the retraining run")
            created = datetime.fromisoformat(
                run["metadata"]["creationTimestamp"].replace("Z", "+00:00")
            )
            assert (created - detected_at).total_seconds() <= 2 * INTERVAL + 2, "two intervals"
            assert run["metadata"]["name"] == "drift-retrain-1"
            assert run["metadata"]["labels"]["flywheel.dev/retrain-reason"] == "DataDrift"
            assert float(run["metadata"]["labels"]["flywheel.dev/retrain-score"]) > 0.2
            assert run["metadata"]["ownerReferences"][0]["name"] == "drift"
            dataset = get(k, "dataset", "iris")
            assert run["spec"]["datasetRef"]["version"] == dataset["status"]["version"]

            # requireNewData: the same drift asks the Dataset to refresh and waits.
            def waiting() -> dict[str, Any] | None:
                monitor = get(k, "modelmonitor", "waits")
                status = cond(monitor, "WaitingForNewData").get("status")
                return monitor if status == "True" else None

            eventually(waiting, timeout=60, what="WaitingForNewData on waits")
            asked = eventually(
                lambda: (
                    get(k, "dataset", "iris")["metadata"]
                    .get("annotations", {})
                    .get("flywheel.dev/refresh-requested-at")
                ),
                what="the refresh request",
            )
            refreshed = eventually(
                lambda: (
                    get(k, "dataset", "iris")
                    if get(k, "dataset", "iris")["status"].get("lastHandledRefreshAt") == asked
                    else None
                ),
                timeout=120,
                what="the requested ingest",
            )
            assert refreshed["status"]["lastIngest"]["trigger"] == "Requested"
            assert not _runs(k, "waits")

            # Falling accuracy from feedback is a performance trigger.
            perf = eventually(
                lambda: (
                    get(k, "modelmonitor", "perf")
                    if cond(get(k, "modelmonitor", "perf"), "DriftDetected").get("reason")
                    == "PerformanceDecay"
                    else None
                ),
                timeout=60,
                what="PerformanceDecay on perf",
            )
            assert perf["status"]["lastEvaluation"]["performance"] < 0.8
            assert perf["status"]["lastRetrain"]["reason"] == "PerformanceDecay"
            assert "trainingRun" not in perf["status"]["lastRetrain"]
            # Suggested once; later evaluations are under the cooldown that started then.
            assert perf["status"]["lastDecision"]["reason"] in ("PerformanceDecay", "Cooldown")
            assert "RetrainSuggested" in _event_reasons(k, "perf")
            assert "DriftDetected" in _event_reasons(k, "drift")
            assert "RetrainTriggered" in _event_reasons(k, "drift")
            assert not _runs(k, "perf"), "Suggest creates nothing"

            assert time.time() - shifted_at < 600, "cmp and prom's window still holds it all"
        stopped_at = time.time()
        assert not traffic.errors, traffic.errors[:3]

        # The same traffic, two sources: the same scores.
        time.sleep(3)  # Prometheus scrapes every second
        pods = _evaluated_after(k, "cmp", stopped_at + 3)
        via_prometheus = _evaluated_after(k, "prom", stopped_at + 3)
        assert cond(via_prometheus, "Ready")["status"] == "True", via_prometheus["status"]
        left, right = _scores(pods), _scores(via_prometheus)
        # Ground truth: the pod's counters started at zero, so its totals are all the traffic.
        totals = WindowCounts.from_counters(
            parse_scrape(get_text(f"http://{endpoint}/metrics"), "iris", "1")
        )
        stats = json.loads(get_text(f"http://{endpoint}/v2/models/iris/versions/1/baseline"))
        spec = ModelMonitorSpec.model_validate(_monitor("cmp", **long)["spec"])
        truth = evaluate(spec, stats, ["0", "1", "2"], totals, datetime.now(UTC)).evaluation
        assert left == {f.name: f.score for f in truth.features or []}
        assert left.keys() == right.keys() == set(load_iris(as_frame=True).data.columns)
        for feature, score in left.items():
            # increase() extrapolates every slot of a scrape alike: proportions stay the same.
            assert abs(score - right[feature]) <= 0.001 + 0.01 * score, (feature, left, right)
        samples = pods["status"]["lastEvaluation"]["samples"]
        assert (
            abs(via_prometheus["status"]["lastEvaluation"]["samples"] - samples) <= 0.03 * samples
        )
        answered = sum(traffic.answers.values()) * 40 + 4 * 150  # + the feedback's predictions
        assert samples == answered, "every answered row is in the Pods window"

        # Continued drift during the cooldown, across an operator restart: no second run.
        with Traffic(k, "iris-serving", "/v2/models/iris/infer", {}, lambda: _body(shift)) as more:
            k("wait", "--for=condition=Succeeded", "--timeout=240s", "trainingrun/drift-retrain-1")
            operator.process.terminate()
            operator.process.wait(timeout=30)
            restarted_at = time.time()
            operator = start_operator()

            def cooling() -> dict[str, Any] | None:
                monitor = _evaluated_after(k, "drift", restarted_at)
                decision = monitor["status"].get("lastDecision") or {}
                return monitor if decision.get("reason") == "Cooldown" else None

            cooled = eventually(cooling, timeout=90, what="a Cooldown decision after the restart")
            assert cooled["status"]["lastRetrain"]["trainingRun"] == "drift-retrain-1"
            assert cooled["status"]["retrains"] == 1
            assert [r["metadata"]["name"] for r in _runs(k, "drift")] == ["drift-retrain-1"]

        assert not more.errors, more.errors[:3]

    # The scores are operator metrics.
    url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        families = text_string_to_metric_families(answer.read().decode())
    scores = {
        (s.labels["monitor"], s.labels["feature"]): s.value
        for family in families
        if family.name == "flywheel_drift_score"
        for s in family.samples
    }
    assert scores[("drift", "petal length (cm)")] > 0.2
    assert ("prom", "petal length (cm)") in scores
