"""The Argo CD health script and the kstatus reading of our statuses, on sample statuses; the
GitOps examples point at paths that exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.gitops import HEALTH_LUA, argocd_health, kstatus


def _obj(generation: int = 2, observed: int | None = 2, **conditions: str) -> dict[str, Any]:
    status: dict[str, Any] = {
        "conditions": [
            {"type": t, "status": s.split(":")[0], "reason": "R", "message": f"{t} says {s}"}
            for t, s in conditions.items()
        ]
    }
    if observed is not None:
        status["observedGeneration"] = observed
    return {"metadata": {"name": "x", "generation": generation}, "status": status}


CASES = [
    # (object, Argo CD health, kstatus)
    ({"metadata": {"name": "x", "generation": 1}}, "Progressing", "Current"),
    (_obj(observed=1, Ready="True"), "Progressing", "InProgress"),
    (_obj(Ready="Unknown", Reconciling="True", Stalled="False"), "Progressing", "InProgress"),
    (_obj(Ready="True", Reconciling="False", Stalled="False"), "Healthy", "Current"),
    (_obj(Ready="False", Reconciling="False", Stalled="True"), "Degraded", "Failed"),
    (_obj(Ready="False", Reconciling="True", Stalled="False"), "Progressing", "InProgress"),
    (_obj(Ready="False", Reconciling="False", Stalled="False"), "Degraded", "InProgress"),
    # A ModelDeployment mid-rollout: still serving the old version.
    (_obj(Ready="True", Progressing="True", Degraded="False"), "Progressing", "Current"),
    # Rolled back: the old version serves, the new one failed.
    (_obj(Ready="True", Progressing="False", Degraded="True"), "Degraded", "Current"),
    # Drift is an observation, not a failure.
    (_obj(Ready="True", Stalled="False", DriftDetected="True"), "Healthy", "Current"),
]  # fmt: skip


@pytest.mark.parametrize(("obj", "health", "status"), CASES)
def test_argocd_health_and_kstatus(obj: dict[str, Any], health: str, status: str) -> None:
    found, message = argocd_health(obj)
    assert found == health
    assert message
    assert kstatus(obj)[0] == status


def test_the_health_message_is_the_deciding_condition() -> None:
    assert argocd_health(_obj(Ready="False", Stalled="True"))[1] == "Stalled says True"
    assert argocd_health(_obj(Ready="True"))[1] == "Ready says True"


def test_the_argocd_values_carry_the_script_for_every_kind() -> None:
    values = yaml.safe_load(Path("examples/gitops/argocd/argocd-values.yaml").read_text())
    scripts = values["configs"]["cm"]
    kinds = {"Dataset", "TrainingRun", "ModelVersion", "ModelDeployment", "ModelMonitor"}
    assert set(scripts) == {f"resource.customizations.health.flywheel.dev_{k}" for k in kinds}
    assert all(s == HEALTH_LUA.read_text() for s in scripts.values())


def test_gitops_examples_point_at_real_paths() -> None:
    root = Path("examples/gitops")
    documents = [
        d for p in sorted(root.rglob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d
    ]
    sources = [d["spec"]["source"]["path"] for d in documents if d.get("kind") == "Application"]
    assert sources == ["charts/flywheel", "examples/quickstart"]
    flux = [
        d["spec"]["path"]
        for d in documents
        if d.get("apiVersion", "").startswith("kustomize.toolkit")
    ]
    flux += [
        d["spec"]["chart"]["spec"]["chart"] for d in documents if d.get("kind") == "HelmRelease"
    ]
    assert flux
    for path in sources + flux:
        assert Path(path.removeprefix("./")).is_dir(), path
