"""The CRDs on a real API server: schema, CEL, subresources, printer columns, explain."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.support.examples import Example, invalid_examples, valid_examples
from tests.support.kube import Kubectl, eventually

KINDS = ("Dataset", "TrainingRun", "ModelVersion", "ModelDeployment", "ModelMonitor")


def test_every_crd_is_established(kubectl: Kubectl) -> None:
    crds = kubectl.json("get", "crd", "-l", "app.kubernetes.io/part-of=flywheel")["items"]
    assert {c["spec"]["names"]["kind"] for c in crds} == set(KINDS)
    for crd in crds:
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", crd["metadata"]["name"]
        assert conditions.get("NonStructuralSchema") != "True", crd["metadata"]["name"]


def _explain(kubectl: Kubectl, field: str) -> str:
    # The API server publishes a new CRD's OpenAPI a moment after it is Established.
    return eventually(
        lambda: kubectl.run("explain", field, check=False).stdout,
        timeout=60,
        what=f"kubectl explain {field}",
    )


def test_kubectl_explain_shows_field_descriptions(kubectl: Kubectl) -> None:
    text = _explain(kubectl, "trainingrun.spec.estimator")
    assert "What to fit." in text
    assert "The import path of a scikit-learn estimator" in text  # a sub-field's description
    text = _explain(kubectl, "modeldeployment.spec.policy")
    assert "LatestValidated" in text


@pytest.mark.parametrize("example", invalid_examples(), ids=lambda e: e.id)
def test_invalid_example_gets_its_answer_from_the_api_server(k: Kubectl, example: Example) -> None:
    (obj,) = example.objects
    assert example.expect is not None
    if example.stage == "operator":
        k.apply(obj)  # schema-valid: the operator refuses it (tested in test_operator.py)
        return
    error = k.rejected(obj)
    assert example.expect in error, error


@pytest.mark.parametrize("example", valid_examples(), ids=lambda e: e.id)
def test_valid_example_is_accepted(k: Kubectl, example: Example) -> None:
    for obj in example.objects:
        k.apply(obj)
        stored = k.json("get", obj["kind"].lower(), obj["metadata"]["name"])
        assert stored["spec"]  # defaults applied, nothing pruned away
        assert _without_defaults_differs_only_by_defaults(obj["spec"], stored["spec"])


def _without_defaults_differs_only_by_defaults(sent: Any, stored: Any) -> bool:
    """Everything sent was stored unchanged (the server may only add defaults)."""
    if isinstance(sent, dict):
        return all(
            key in stored and _without_defaults_differs_only_by_defaults(v, stored[key])
            for key, v in sent.items()
        )
    if isinstance(sent, list):
        return len(sent) == len(stored) and all(
            _without_defaults_differs_only_by_defaults(a, b)
            for a, b in zip(sent, stored, strict=True)
        )
    return bool(sent == stored or (isinstance(sent, int | float) and float(sent) == float(stored)))


def _quickstart(kind: str) -> dict[str, Any]:
    for example in valid_examples():
        for obj in example.objects:
            if obj["kind"] == kind:
                copied: dict[str, Any] = json.loads(json.dumps(obj))
                return copied
    raise LookupError(kind)


@pytest.mark.parametrize("kind", ["TrainingRun", "ModelVersion"])
def test_immutable_specs_refuse_updates(k: Kubectl, kind: str) -> None:
    obj = _quickstart(kind)
    k.apply(obj)
    if kind == "TrainingRun":
        obj["spec"]["split"]["seed"] = 8
        message = "TrainingRun spec is immutable"
    else:
        obj["spec"]["metrics"]["accuracy"] = 0.99
        message = "ModelVersion spec is immutable"
    error = k.rejected(obj)
    assert message in error, error
    # Labels and annotations may still change.
    k("label", kind.lower(), obj["metadata"]["name"], "team=ml")


def test_status_changes_only_through_the_status_subresource(k: Kubectl) -> None:
    obj = _quickstart("Dataset")
    k.apply(obj)
    name = obj["metadata"]["name"]
    patch = json.dumps({"status": {"rows": 150}})
    k("patch", "dataset", name, "--type=merge", "-p", patch)  # main resource: status ignored
    assert "rows" not in k.json("get", "dataset", name).get("status", {})
    k("patch", "dataset", name, "--subresource=status", "--type=merge", "-p", patch)
    assert k.json("get", "dataset", name)["status"]["rows"] == 150
    generation = k.json("get", "dataset", name)["metadata"]["generation"]
    assert generation == 1, "status writes must not bump the generation"


def test_kubectl_get_flywheel_lists_every_kind_with_columns(k: Kubectl) -> None:
    for kind in ("Dataset", "TrainingRun", "ModelDeployment", "ModelMonitor", "ModelVersion"):
        k.apply(_quickstart(kind))
    table = k("get", "flywheel")
    for resource in (
        "dataset.flywheel.dev/iris",
        "trainingrun.flywheel.dev/iris-rf-1",
        "modeldeployment.flywheel.dev/iris",
        "modelmonitor.flywheel.dev/iris",
        "modelversion.flywheel.dev/iris-v1",
    ):
        assert resource in table, table
    header = k("get", "trainingruns").splitlines()[0].split()
    assert header[:4] == ["NAME", "MODEL", "DATASET", "SUCCEEDED"], header
    assert header[-1] == "AGE"
    header = k("get", "modelversions").splitlines()[0].split()
    assert header[:4] == ["NAME", "MODEL", "VERSION", "VALIDATED"], header
    short = k("get", "fwds,fwtr,fwmv,fwmd,fwmm", "-o", "name").split()
    assert len(short) == 5


def test_kubectl_scale_drives_the_modeldeployment(k: Kubectl) -> None:
    k.apply(_quickstart("ModelDeployment"))
    k("scale", "modeldeployment", "iris", "--replicas=4")
    assert k.json("get", "modeldeployment", "iris")["spec"]["replicas"] == 4
    scale = json.loads(k.run("get", "--raw", _scale_path(k)).stdout)
    assert scale["kind"] == "Scale"
    assert scale["spec"]["replicas"] == 4


def _scale_path(k: Kubectl) -> str:
    return f"/apis/flywheel.dev/v1alpha1/namespaces/{k.namespace}/modeldeployments/iris/scale"


def test_defaults_come_from_the_schema(k: Kubectl) -> None:
    k.apply(
        yaml.safe_dump(
            {
                "apiVersion": "flywheel.dev/v1alpha1",
                "kind": "ModelMonitor",
                "metadata": {"name": "defaults"},
                "spec": {"deploymentRef": {"name": "iris"}},
            }
        )
    )
    spec = eventually(lambda: k.json("get", "modelmonitor", "defaults")["spec"], what="the monitor")
    assert spec["interval"] == "1m"
    assert spec["window"] == "10m"
    assert spec["mode"] == "Suggest"
    assert spec["dataDrift"] == {
        "enabled": True,
        "method": "psi",
        "decision": "Calibrated",
        "alpha": 0.02,
        "minEffect": 0.01,
        "threshold": 0.2,
        "maxNewValueShare": 0.001,
        "minDriftedFeatures": 1,
    }
    assert spec["metricsSource"] == {"type": "Pods"}
