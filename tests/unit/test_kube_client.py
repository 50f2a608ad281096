"""The Kubernetes client's contract: what the API server's answers mean, every child the
operator renders fits Kubernetes' own types (lightkube's models) before anything is sent, and
every write names the operator's field manager."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import lightkube
import pytest
from lightkube.config.kubeconfig import KubeConfig

from flywheel.api.dataset import DatasetSpec
from flywheel.api.modeldeployment import ModelDeploymentSpec
from flywheel.api.trainingrun import TrainingRunSpec
from flywheel.controllers.dataset.render import IngestPlan, render_ingest_job
from flywheel.controllers.modeldeployment.render import (
    render_deployment,
    render_hpa,
    render_service,
)
from flywheel.controllers.trainingrun.render import PinnedDataset, render_training_job
from flywheel.core import resources
from flywheel.core.applied import stamped
from flywheel.core.links import link_manager
from flywheel.core.outcome import FIELD_MANAGER, Event
from flywheel.core.podspec import render_artifacts_claim, render_service_account
from flywheel.core.target import parse_meta
from flywheel.kube.client import CLASSES, Kube
from flywheel.kube.errors import Conflict, Forbidden, KubeError, NotFound, Unavailable, classify
from flywheel.settings import OperatorSettings

META = parse_meta({"metadata": {"name": "web", "namespace": "ns", "uid": "u-1", "generation": 1}})
SETTINGS = OperatorSettings()


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (404, NotFound),
        (409, Conflict),
        (403, Forbidden),
        (0, Unavailable),
        (429, Unavailable),
        (500, Unavailable),
        (503, Unavailable),
        (422, KubeError),
        (400, KubeError),
    ],
)
def test_answers_are_classified_by_what_the_operator_does_about_them(
    status: int, kind: type[KubeError]
) -> None:
    error = classify(status, "the sentence", verb="create", what="Job ns/j")
    assert type(error) is kind
    assert "create Job ns/j" in str(error)
    assert error.sentence == "the sentence"


def _children() -> list[dict[str, Any]]:
    version = {
        "spec": {
            "version": 2,
            "artifact": {"uri": "pvc://art/m/model.onnx", "sha256": "a" * 64},
            "baseline": {"statsURI": "pvc://art/d/stats.json"},
        }
    }
    spec = ModelDeploymentSpec.model_validate(
        {
            "model": "iris",
            "version": 2,
            "autoscaling": {"minReplicas": 1, "maxReplicas": 3},
            "resources": {"requests": {"cpu": 2, "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
        }
    )
    run = TrainingRunSpec.model_validate(
        {
            "model": "iris",
            "datasetRef": {"name": "d"},
            "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
            "resources": {"requests": {"cpu": 1}},
        }
    )
    pinned = PinnedDataset("d", "v", "sha256:" + "b" * 64, "pvc://art/s", "pvc://art/t")
    hpa = render_hpa(META, spec)
    assert hpa is not None
    return [
        stamped(render_deployment(META, spec, version, SETTINGS)),
        stamped(render_service(META, spec)),
        stamped(hpa),
        render_training_job(META, run, pinned, SETTINGS),
        render_ingest_job(
            META,
            DatasetSpec.model_validate({"source": {"uri": "sklearn://iris"}}),
            IngestPlan("Created", "g1"),
            None,
            SETTINGS,
        ),
        render_artifacts_claim("ns", SETTINGS),
        render_service_account("ns", "flywheel-job"),
    ]


@pytest.mark.parametrize("child", _children(), ids=lambda c: str(c["kind"]))
def test_every_rendered_child_fits_the_kubernetes_types(child: dict[str, Any]) -> None:
    resource = resources.BY_KIND[(child["apiVersion"], child["kind"])]
    typed = CLASSES[resource].from_dict(child)  # type: ignore[attr-defined]
    assert typed.to_dict() == child, "nothing lost or changed on the way to the API server"


def _recording_kube(seen: list[tuple[str, str, dict[str, str]]]) -> Kube:
    """A Kube over lightkube whose transport records the requests (and echoes the body), on a
    client made without a default field manager: the manager must come from each call."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append((request.method, request.url.path, dict(request.url.params)))
        body = json.loads(request.content) if request.content else {}
        return httpx2.Response(200, json=body or {"kind": "Status", "status": "Success"})

    config = KubeConfig.from_dict(
        {
            "clusters": [{"name": "c", "cluster": {"server": "http://api.test"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )
    return Kube(lightkube.AsyncClient(config, transport=httpx2.MockTransport(answer)))


async def test_every_write_names_the_flywheel_field_manager() -> None:
    seen: list[tuple[str, str, dict[str, str]]] = []
    kube = _recording_kube(seen)
    dataset = {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "d", "namespace": "ns", "uid": "u-1"},
        "spec": {"source": {"uri": "sklearn://iris"}},
    }
    ref = resources.DATASETS.ref("ns", "d")
    await kube.create(stamped(render_service(META, ModelDeploymentSpec(model="iris"))))
    await kube.apply(dataset, manager=FIELD_MANAGER)
    await kube.apply({**dataset, "status": {}}, manager=link_manager("web"), subresource="status")
    await kube.merge_patch(ref, {"status": {"rows": 1}}, subresource="status")
    await kube.merge_patch(ref, {"metadata": {"annotations": {"a": "b"}}})
    await kube.post_event(dataset, Event("Normal", "IngestStarted", "Job j"))
    await kube.delete(ref)
    await kube.close()
    managers = [(method, path, params.get("fieldManager")) for method, path, params in seen]
    assert managers == [
        ("POST", "/api/v1/namespaces/ns/services", "flywheel"),
        ("PATCH", "/apis/flywheel.dev/v1alpha1/namespaces/ns/datasets/d", "flywheel"),
        (
            "PATCH",
            "/apis/flywheel.dev/v1alpha1/namespaces/ns/datasets/d/status",
            "flywheel-modeldeployment-web",
        ),
        ("PATCH", "/apis/flywheel.dev/v1alpha1/namespaces/ns/datasets/d/status", "flywheel"),
        ("PATCH", "/apis/flywheel.dev/v1alpha1/namespaces/ns/datasets/d", "flywheel"),
        ("POST", "/api/v1/namespaces/ns/events", "flywheel"),
        ("DELETE", "/apis/flywheel.dev/v1alpha1/namespaces/ns/datasets/d", None),
    ]
    assert [params.get("force") for method, _, params in seen if method == "PATCH"] == [
        "true",
        "true",
        None,
        None,
    ], "server-side apply is forced; a merge patch has no force"
