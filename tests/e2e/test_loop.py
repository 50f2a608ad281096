"""The whole loop, end to end, as `make demo` plays it: the operator installed by the Helm chart
and running as a pod, a Dataset from a local HTTP source, the first model trained, validated
and served, steady traffic, then the world shifts (traffic and the source's new data), drift,
a refresh of the data, one retraining run on the new version, validated against the champion,
rolled out by itself with no failed request; the operator pod is deleted mid-story.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from demo.data import SHIFTED
from demo.kube import Kube
from demo.story import OPERATOR, Story, condition
from devcluster.binaries import ensure_binaries
from tests.support.kube import Kubectl, eventually

CHART = Path("charts/flywheel")


def _evaluated_after(story: Story, after: float, verdict: str, timeout: float) -> dict[str, Any]:
    def fresh() -> dict[str, Any] | None:
        mm = story.monitor() or {}
        evaluation = (mm.get("status") or {}).get("lastEvaluation") or {}
        when = evaluation.get("time")
        if not when or datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp() <= after:
            return None
        return mm if evaluation.get("verdict") == verdict else None

    return story.wait(f"a {verdict} evaluation", fresh, timeout, ("modelmonitor/churn",))


def test_data_train_deploy_drift_retrain_redeploy(kubectl: Kubectl, namespace: str) -> None:
    binaries = ensure_binaries()
    kube = Kube(binaries.path("kubectl"), binaries.path("helm"), kubectl.kubeconfig, namespace)
    kube.helm(
        "upgrade", "--install", "fw", str(CHART), "--namespace", namespace,
        "--set", "crds.install=false",  # the session's cluster has them (kubectl-applied)
        "--set", f"watchNamespaces={{{namespace}}}",
        "--set", "rbac.aggregateToDefaultRoles=false",
        "--wait", "--timeout", "180s",
    )  # fmt: skip
    (node,) = kube.json("get", "nodes", namespaced=False)["items"]
    host = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    story = Story(kube, host, say=lambda _: None)
    try:
        _play(story, kube)
    finally:
        story.stop()


def _play(story: Story, kube: Kube) -> None:
    story.apply(story.start_source())
    first_data = story.dataset_version()
    v1 = story.trained("churn-1")
    assert condition(v1, "Validated")["status"] == "True", v1["status"]
    assert v1["spec"]["lineage"]["datasetDigest"] == first_data["status"]["digest"]
    story.serving(1)

    # Steady traffic from the training distribution: no drift, no retraining.
    traffic = story.start_traffic()
    calm_from = time.time()
    calm = _evaluated_after(story, calm_from + 20, "NoDrift", 90)
    assert calm["status"]["lastEvaluation"]["samples"] >= 300
    assert not story.retraining_runs()

    # The world shifts: inputs move, and the source has new data.
    story.shift()
    drifting = story.drift_detected()
    assert drifting["status"]["lastEvaluation"]["verdict"] == "Drift", drifting["status"]

    # The first drifted window may still hold rows from before the shift, and prediction drift
    # can fire before the weaker feature crosses; within a window's length both shifted features
    # are flagged, and never one that did not move.
    def both_shifted() -> set[str] | None:
        evaluation = (story.monitor() or {}).get("status", {}).get("lastEvaluation") or {}
        drifted = set(evaluation.get("driftedFeatures") or ())
        assert drifted <= set(SHIFTED), f"an unshifted feature is flagged: {drifted}"
        return drifted if set(SHIFTED) <= drifted else None

    story.wait("both shifted features drifted", both_shifted, 60, ("modelmonitor/churn",))
    # requireNewData: the monitor asks the Dataset to refresh, which finds the new data.
    second_data = story.dataset_version(after=first_data["status"]["version"])
    assert second_data["status"]["lastIngest"]["trigger"] == "Requested"
    run = story.retrain_started()
    assert run["spec"]["datasetRef"]["version"] == second_data["status"]["version"]

    # The operator pod is deleted mid-story; the Deployment brings a new one, which resumes.
    (before,) = kube.json("get", "pods", "-l", OPERATOR)["items"]
    kube.run("delete", "pod", before["metadata"]["name"], "--wait=false")

    v2 = story.trained(run["metadata"]["name"])
    assert condition(v2, "Validated")["status"] == "True", v2["status"]
    assert v2["spec"]["version"] == 2
    assert v2["spec"]["lineage"]["datasetDigest"] == second_data["status"]["digest"]
    story.serving(2)
    (after,) = eventually(
        lambda: [
            p
            for p in kube.json("get", "pods", "-l", OPERATOR)["items"]
            if p["metadata"]["name"] != before["metadata"]["name"]
        ],
        what="the new operator pod",
    )
    assert after["status"]["phase"] == "Running"

    # The old version's pods are gone; the new version serves every request.
    def only_v2() -> bool:
        pods = kube.json("get", "pods", "-l", "app.kubernetes.io/instance=churn")["items"]
        return bool(pods) and all(
            p["metadata"]["labels"].get("flywheel.dev/version") == "2"
            and not p["metadata"].get("deletionTimestamp")
            for p in pods
        )

    eventually(only_v2, timeout=90, what="only v2 pods")
    served_v2 = traffic.versions["2"]
    eventually(lambda: traffic.versions["2"] > served_v2 + 20, what="traffic answered by v2")

    # On the new baseline the shifted traffic is normal again; one run for one episode.
    settled_from = time.time()
    _evaluated_after(story, settled_from + 20, "NoDrift", 120)
    traffic.stop()
    assert traffic.failures == [], traffic.failures[:5]
    assert [r["metadata"]["name"] for r in story.retraining_runs()] == ["churn-retrain-1"]
    versions = kube.json("get", "modelversions", "-l", "flywheel.dev/model=churn")["items"]
    assert sorted(v["spec"]["version"] for v in versions) == [1, 2], "no duplicate after restart"

    # Every object ends Ready with its latest generation observed.
    for kind in ("dataset", "trainingrun", "modelversion", "modeldeployment", "modelmonitor"):
        for obj in kube.json("get", kind)["items"]:
            name = f"{kind}/{obj['metadata']['name']}"
            assert condition(obj, "Ready").get("status") == "True", (name, obj["status"])
            assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"], name
