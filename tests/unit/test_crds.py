"""The CRDs in crds/ are generated from the API models and meet the API server's rules."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

import flywheel.crdgen.__main__ as crdgen_main
from flywheel.api import KINDS, KINDS_BY_NAME
from flywheel.api.dataset import DatasetSpec
from flywheel.api.kinds import DATASET
from flywheel.crdgen.render import render_crd
from flywheel.crdgen.schema import walk
from tests.support.crdcheck import crd_schema, validate
from tests.support.examples import CRDS, committed_crds

# Built-in short names and resource names of a stock cluster (kubectl api-resources, 1.35).
BUILTIN_SHORT_NAMES = {
    "cs",
    "cm",
    "ep",
    "ev",
    "limits",
    "ns",
    "no",
    "pvc",
    "pv",
    "po",
    "rc",
    "quota",
    "sa",
    "svc",
    "crd",
    "crds",
    "ds",
    "deploy",
    "rs",
    "sts",
    "hpa",
    "cj",
    "csr",
    "ing",
    "netpol",
    "pdb",
    "pc",
    "sc",
    "ingclass",
    "vac",
    "mv",
    "md",
    "tr",
    "mm",
    "ml",
}


def test_committed_crds_match_the_models() -> None:
    chart = CRDS.parent / "charts" / "flywheel" / "files" / "crds"
    assert crdgen_main.main(["--check", str(CRDS), str(chart)]) == 0, "run `make manifests`"
    assert set(committed_crds()) == set(KINDS_BY_NAME)


def test_the_api_reference_is_current() -> None:
    from flywheel.crdgen import apidocs

    path = CRDS.parent / "docs" / "api-reference.md"
    assert apidocs.main(["--check", str(path)]) == 0, "run `make manifests`"
    text = path.read_text()
    assert "`deploymentRef` (required)" in text
    assert "## ModelMonitor" in text


def test_the_drift_check_catches_a_changed_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert crdgen_main.main([str(tmp_path)]) == 0

    class ChangedSpec(DatasetSpec):
        """The desired state of a Dataset."""

        owner: str | None = Field(default=None, max_length=63)
        """A new field nobody generated the CRD for."""

    changed = dataclasses.replace(DATASET, spec=ChangedSpec)
    monkeypatch.setattr(crdgen_main, "KINDS", tuple(changed if k is DATASET else k for k in KINDS))
    assert crdgen_main.main(["--check", str(tmp_path)]) == 1
    assert crdgen_main.main([str(tmp_path)]) == 0
    assert "owner" in (tmp_path / "datasets.flywheel.dev.yaml").read_text()


def _schemas() -> list[tuple[str, dict[str, Any]]]:
    return [(k.kind, crd_schema(render_crd(k))) for k in KINDS]


@pytest.mark.parametrize(("kind", "schema"), _schemas(), ids=[k.kind for k in KINDS])
def test_schema_is_structural_and_described(kind: str, schema: dict[str, Any]) -> None:
    assert "$ref" not in json.dumps(schema)
    assert "anyOf" not in json.dumps(schema)
    assert "patternProperties" not in json.dumps(schema)
    for path, node in walk(schema):
        untyped_ok = node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        assert node.get("type") or untyped_ok, f"{kind} {path} has no type"
        if path == ".metadata":
            assert node == {"type": "object"}, "the API server allows nothing else on metadata"
            continue
        assert node.get("description"), f"{kind} {path} has no description"
        assert node.get("additionalProperties") is not False, f"{kind} {path}"
        if path in {".metadata", ".apiVersion", ".kind"}:
            continue
        if (
            node.get("type") == "string"
            and "enum" not in node
            and node.get("format") != "date-time"
        ):
            assert "maxLength" in node, f"{kind} {path}: unbounded string"
        if node.get("type") == "array":
            assert "maxItems" in node, f"{kind} {path}: unbounded list"
        if node.get("type") == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, f"{kind} {path}: unbounded map"


def test_every_kind_has_status_conditions_and_observed_generation() -> None:
    for kind, schema in _schemas():
        status = schema["properties"]["status"]["properties"]
        assert status["observedGeneration"]["type"] == "integer", kind
        conditions = status["conditions"]
        assert conditions["x-kubernetes-list-type"] == "map", kind
        assert conditions["x-kubernetes-list-map-keys"] == ["type"], kind
        assert set(conditions["items"]["required"]) == {
            "type",
            "status",
            "lastTransitionTime",
            "reason",
            "message",
        }


@pytest.mark.parametrize("kind", ["TrainingRun", "ModelVersion"])
def test_immutable_specs(kind: str) -> None:
    spec = crd_schema(render_crd(KINDS_BY_NAME[kind]))["properties"]["spec"]
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    assert "self == oldSelf" in rules


def test_immutability_rule_rejects_an_update_and_allows_a_no_op() -> None:
    schema = crd_schema(CRDS_BY_KIND["TrainingRun"])
    old = _training_run()
    new = _training_run()
    new["spec"]["estimator"]["params"] = {"n_estimators": 10}
    validate(schema, old)
    assert validate(schema, copy.deepcopy(old), old=copy.deepcopy(old)) == []
    errors = validate(schema, new, old=old)
    assert any("TrainingRun spec is immutable" in e for e in errors), errors


def test_immutability_does_not_leak_into_the_monitor_template() -> None:
    monitor = crd_schema(CRDS_BY_KIND["ModelMonitor"])
    template = monitor["properties"]["spec"]["properties"]["retrain"]["properties"]["template"]
    assert "self == oldSelf" not in json.dumps(template)


def test_cross_field_rules_are_present() -> None:
    deployment = crd_schema(CRDS_BY_KIND["ModelDeployment"])["properties"]["spec"]
    messages = {r["message"] for r in deployment["x-kubernetes-validations"]}
    assert "version is required when policy is Pinned" in messages
    assert "version must not be set when policy is LatestValidated" in messages


def test_defaults_are_applied_like_the_api_server() -> None:
    schema = crd_schema(CRDS_BY_KIND["Dataset"])
    obj: dict[str, Any] = {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "d"},
        "spec": {"source": {"uri": "sklearn://iris"}},
    }
    assert validate(schema, obj) == []
    assert obj["spec"]["statistics"] == {"bins": 10, "topK": 20}
    assert obj["spec"]["validation"] == {
        "allowSchemaChange": False,
        "maxCategories": 1000,
        "minClassCount": 2,
    }
    assert obj["spec"]["source"] == {
        "uri": "sklearn://iris",
        "connectTimeoutSeconds": 30,
        "readTimeoutSeconds": 60,
    }, "maxBytes has no default in the CRD: the operator's setting applies"


def test_subresources_names_and_columns() -> None:
    short_names: set[str] = set()
    for kind in KINDS:
        crd = render_crd(kind)
        names = crd["spec"]["names"]
        version = crd["spec"]["versions"][0]
        assert version["subresources"]["status"] == {}
        assert names["categories"] == ["flywheel"]
        assert not set(names["shortNames"]) & BUILTIN_SHORT_NAMES
        assert not set(names["shortNames"]) & short_names
        short_names |= set(names["shortNames"])
        columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
        assert columns["Age"]["type"] == "date"
        assert "Ready" in columns or "Succeeded" in columns
    scale = render_crd(KINDS_BY_NAME["ModelDeployment"])["spec"]["versions"][0]["subresources"]
    assert scale["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    selector = crd_schema(CRDS_BY_KIND["ModelDeployment"])["properties"]["status"]["properties"]
    assert selector["selector"]["type"] == "string"


def test_cel_rules_stay_in_bounded_fields() -> None:
    """Every list or string a CEL rule can iterate is bounded (the cost estimator needs it)."""
    for kind, schema in _schemas():
        for path, node in walk(schema):
            for rule in node.get("x-kubernetes-validations", []):
                assert rule["message"], f"{kind} {path}"
                # The longest are the cron schedule's per-field patterns (about 420).
                assert len(rule["rule"]) < 512, f"{kind} {path}"


CRDS_BY_KIND = committed_crds()


def _training_run() -> dict[str, Any]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "run"},
        "spec": {
            "model": "iris",
            "datasetRef": {"name": "iris"},
            "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
        },
    }
