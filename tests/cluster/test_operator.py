"""The operator against a real API server: first visit, invalid specs, kubectl wait."""

from __future__ import annotations

import urllib.request
from typing import Any

from tests.cluster.conftest import OperatorProcess
from tests.support.examples import invalid_examples, valid_examples
from tests.support.kube import Kubectl, condition, eventually


def _first(kind: str) -> dict[str, Any]:
    for example in valid_examples():
        for obj in example.objects:
            if obj["kind"] == kind:
                return dict(obj)
    raise LookupError(kind)


def test_first_visit_writes_observed_generation_and_conditions(
    k: Kubectl, operator: OperatorProcess
) -> None:
    kinds = ("Dataset", "TrainingRun", "ModelDeployment", "ModelMonitor", "ModelVersion")
    for kind in kinds:
        k.apply(_first(kind))
    for kind in kinds:
        name = _first(kind)["metadata"]["name"]

        def visited(kind: str = kind, name: str = name) -> dict[str, Any] | None:
            obj = k.json("get", kind.lower(), name)
            return obj if obj.get("status", {}).get("observedGeneration") else None

        obj = eventually(visited, what=f"{kind}/{name} to be visited")
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
        ready = (condition(obj, "Ready") or {}).get("status")
        reconciling = (condition(obj, "Reconciling") or {}).get("status")
        # Controllers may already have acted; those without one yet leave Unknown/True.
        allowed = {("Unknown", "True")} | {
            "Dataset": {("True", "False")},  # ingested
            "TrainingRun": {("False", "True")},  # waiting for its Dataset to be ready
            "ModelVersion": {("True", "False")},  # registered (NoVerdict: made by hand)
            "ModelDeployment": {("False", "True")},  # waiting for a validated version
            "ModelMonitor": {("False", "True")},  # waiting for its deployment to serve
        }.get(kind, set())
        assert (ready, reconciling) in allowed, obj["status"]
        stalled = condition(obj, "Stalled")
        assert stalled is not None
        assert stalled["status"] == "False"
        assert obj["metadata"]["annotations"], "kubectl's, left alone: we write only status"
        assert "kopf" not in obj["status"], "nothing untyped in status"


def test_invalid_spec_stalls_with_one_event(k: Kubectl, operator: OperatorProcess) -> None:
    (example,) = [
        e for e in invalid_examples() if e.path.name == "trainingrun-estimator-not-allowed.yaml"
    ]
    (obj,) = example.objects
    k.apply(obj)
    name = obj["metadata"]["name"]
    k("wait", "--for=condition=Stalled", "--timeout=60s", f"trainingrun/{name}")
    stored = k.json("get", "trainingrun", name)
    stalled, ready = condition(stored, "Stalled"), condition(stored, "Ready")
    assert stalled is not None
    assert ready is not None
    assert stalled["reason"] == ready["reason"] == "InvalidSpec"
    assert ready["status"] == "False"
    assert example.expect
    assert example.expect in stalled["message"]
    assert stored["status"]["observedGeneration"] == stored["metadata"]["generation"]

    def warning() -> list[dict[str, Any]]:
        events = k.json("get", "events", "--field-selector", f"involvedObject.name={name}")["items"]
        return [e for e in events if e["reason"] == "InvalidSpec" and e["type"] == "Warning"]

    (event,) = eventually(warning, what="the InvalidSpec event")
    assert "KMeans" in event["message"]
    # Not retried: no second event, no more reconciles of this object while the spec is unchanged.
    metrics = _scrape(operator)
    assert 'flywheel_reconcile_total{kind="TrainingRun",result="invalid_spec"} 1.0' in metrics
    # At rest, nothing decided is left unwritten (statuses and Events go behind the children).
    assert 'flywheel_reports_held{what="status"} 0.0' in metrics
    assert 'flywheel_reports_held{what="event"} 0.0' in metrics


def test_a_fixed_spec_clears_stalled(k: Kubectl, operator: OperatorProcess) -> None:
    monitor = _first("ModelMonitor")
    monitor["spec"]["retrain"]["template"]["estimator"] = {"class": "sklearn.cluster.KMeans"}
    k.apply(monitor)
    k("wait", "--for=condition=Stalled", "--timeout=60s", "modelmonitor/iris")
    k.apply(_first("ModelMonitor"))
    k("wait", "--for=condition=Stalled=False", "--timeout=60s", "modelmonitor/iris")
    stored = k.json("get", "modelmonitor", "iris")
    assert stored["metadata"]["generation"] == 2
    assert stored["status"]["observedGeneration"] == 2
    ready = condition(stored, "Ready") or {}
    assert ready.get("reason") != "InvalidSpec", "the old verdict is withdrawn"
    assert ready.get("status") != "True", "no deployment to watch in this namespace"


def test_kubectl_wait_on_ready_unknown_times_out_cleanly(
    k: Kubectl, operator: OperatorProcess
) -> None:
    k.apply(_first("Dataset"))
    k("wait", "--for=jsonpath={.status.observedGeneration}=1", "--timeout=60s", "dataset/iris")
    result = k.run("wait", "--for=condition=Ready", "--timeout=2s", "dataset/iris", check=False)
    assert result.returncode != 0  # no Dataset controller yet: Ready stays Unknown


def _scrape(operator: OperatorProcess) -> str:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5
    ) as r:
        return str(r.read().decode())
