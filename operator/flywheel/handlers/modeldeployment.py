"""The ModelDeployment controller: serving children, version rollouts, rollback, links.

Thin kopf glue around :mod:`flywheel.modeldeployments` (decisions), :mod:`flywheel.servingchildren`
(builders) and :mod:`flywheel.kube` (I/O). `work` runs on create, spec change, resume and a
timer (rollouts and newly validated versions are followed between events); `restore` runs on
every event of a child, so a child deleted or edited by hand is put back at once. Children are
written by server-side apply; the ModelVersions' `status.deployments` too, one field manager per
ModelDeployment, so several deployments can list themselves on one version without races.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import kopf
from pydantic import BaseModel, ValidationError

from flywheel.api import API_GROUP, API_VERSION
from flywheel.api.modeldeployment import ModelDeploymentSpec
from flywheel.conditions import Verdict
from flywheel.handlers.context import OperatorContext
from flywheel.handlers.outcome import apply
from flywheel.handlers.registry import model_versions
from flywheel.handlers.workloads import ensure_service_account
from flywheel.kube import Kube, namespaced
from flywheel.modeldeployments import Plan, links, plan
from flywheel.podhttp import get_text
from flywheel.rollouts import not_ready_pods, pod_failure, rollout
from flywheel.servingchildren import (
    MANAGED,
    PORT,
    child_name,
    render_deployment,
    render_hpa,
    render_service,
    rendered_version,
    selector_string,
)

GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"
OWNER_LABEL = f"{API_GROUP}/modeldeployment"
CHILDREN = {
    "Deployment": ("apps/v1", "deployments"),
    "Service": ("v1", "services"),
    "HorizontalPodAutoscaler": ("autoscaling/v2", "horizontalpodautoscalers"),
}
PODS_ASKED = 3
"""Not-ready pods asked for their readiness answer when a rollout fails."""


def link_manager(name: str) -> str:
    """The field manager that lists one ModelDeployment in ModelVersions' status."""
    return f"flywheel-modeldeployment-{name}"[:128]


def _path(namespace: str, kind: str, name: str) -> str:
    api, plural = CHILDREN[kind]
    return namespaced(api, namespace, plural, name)


async def _failure(kube: Kube, namespace: str, name: str, version: int) -> Verdict:
    selector = quote(selector_string(name))
    pods = await kube.get(namespaced("v1", namespace, "pods") + f"?labelSelector={selector}")
    failing = not_ready_pods(pods.get("items", []), version)
    answers: dict[str, str] = {}
    for pod in failing[:PODS_ASKED]:
        ip = pod.get("status", {}).get("podIP")
        text = await get_text(f"http://{ip}:{PORT}/v2/health/ready") if ip else None
        if text:
            answers[pod["metadata"]["name"]] = text
    return pod_failure(failing, answers)


async def step(
    kube: Kube, md: dict[str, Any], spec: ModelDeploymentSpec, ctx: OperatorContext
) -> Plan:
    """Read, decide, apply the children and the version links; the plan (its Outcome unwritten)."""
    meta = md["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    versions = await model_versions(kube, namespace, spec.model)
    deployment = await kube.get_or_none(_path(namespace, "Deployment", child_name(name)))
    failure = None
    rendered = rendered_version(deployment)
    if deployment is not None and rendered is not None and rollout(deployment).state == "Failed":
        failure = await _failure(kube, namespace, name, rendered)
    decided = plan(md, spec, versions, deployment, failure)
    if decided.render is not None:
        await ensure_service_account(kube, namespace, ctx.settings.serving_service_account, ctx)
        body = render_deployment(md, spec, decided.render, ctx.settings)
        await kube.apply(_path(namespace, "Deployment", child_name(name)), body)
    if decided.render is not None or deployment is not None:
        await _ensure_service_and_hpa(kube, md, spec)
    serving = decided.outcome.status.get(
        "servingVersion", (md.get("status") or {}).get("servingVersion")
    )
    await _link(kube, namespace, name, serving, versions)
    return decided


async def _ensure_service_and_hpa(
    kube: Kube, md: dict[str, Any], spec: ModelDeploymentSpec
) -> None:
    namespace, name = md["metadata"]["namespace"], md["metadata"]["name"]
    await kube.apply(_path(namespace, "Service", child_name(name)), render_service(md, spec))
    hpa = render_hpa(md, spec)
    path = _path(namespace, "HorizontalPodAutoscaler", child_name(name))
    if hpa is not None:
        await kube.apply(path, hpa)
    else:
        await kube.delete(path)


async def _link(
    kube: Kube, namespace: str, name: str, serving: int | None, versions: list[dict[str, Any]]
) -> None:
    link, unlink = links(name, serving, versions)
    for version, listed in [(v, True) for v in link] + [(v, False) for v in unlink]:
        body = {
            "apiVersion": GROUP_VERSION,
            "kind": "ModelVersion",
            "metadata": {"name": version, "namespace": namespace},
            "status": {"deployments": [{"name": name}]} if listed else {},
        }
        path = namespaced(GROUP_VERSION, namespace, "modelversions", version) + "/status"
        await kube.apply(path, body, manager=link_manager(name))


async def work(
    body: kopf.Body,
    spec: BaseModel,
    status: dict[str, Any],
    patch: kopf.Patch,
    memo: OperatorContext,
) -> None:
    """The ModelDeployment controller's part of a reconcile (the spec is already admitted)."""
    assert isinstance(spec, ModelDeploymentSpec)
    meta = body["metadata"]
    kube = memo.kube
    async with memo.lock(f"modeldeployment/{meta['uid']}"):
        # Fresh status: the timer's body may predate the last write.
        fresh = await kube.get_or_none(
            namespaced(GROUP_VERSION, meta["namespace"], "modeldeployments", meta["name"])
        )
        if fresh is None or fresh["metadata"].get("uid") != meta["uid"]:
            return
        current = {**(fresh.get("status") or {}), **patch.status}
        decided = await step(kube, {**fresh, "status": current}, spec, memo)
    apply(decided.outcome, current, patch, body, meta.get("generation"))


async def restore(event: kopf.RawEvent, body: kopf.Body, memo: OperatorContext, **_: Any) -> None:
    """A child changed or vanished: apply it again as rendered (a no-op when it is intact)."""
    meta = body["metadata"]
    owner, namespace, kind = (
        meta.get("labels", {}).get(OWNER_LABEL),
        meta["namespace"],
        body["kind"],
    )
    if not owner or kind not in CHILDREN:
        return
    kube = memo.kube
    md = await kube.get_or_none(namespaced(GROUP_VERSION, namespace, "modeldeployments", owner))
    if md is None or md["metadata"].get("deletionTimestamp"):
        return
    if not any(r.get("uid") == md["metadata"]["uid"] for r in meta.get("ownerReferences") or ()):
        return  # a child of an earlier object of the same name, about to be collected
    try:
        spec = ModelDeploymentSpec.model_validate(md.get("spec") or {})
    except ValidationError:
        return
    async with memo.lock(f"modeldeployment/{md['metadata']['uid']}"):
        if kind == "Deployment":
            await _restore_deployment(kube, md, spec, memo)
        else:
            await _ensure_service_and_hpa(kube, md, spec)


async def _restore_deployment(
    kube: Kube, md: dict[str, Any], spec: ModelDeploymentSpec, ctx: OperatorContext
) -> None:
    namespace, name = md["metadata"]["namespace"], md["metadata"]["name"]
    path = _path(namespace, "Deployment", child_name(name))
    live = await kube.get_or_none(path)  # fresh: the event may predate the controller's last write
    status = md.get("status") or {}
    number = (
        rendered_version(live)
        if live is not None
        else (status.get("targetVersion") or status.get("servingVersion"))
    )
    if number is None:
        return
    version = next(
        (
            v
            for v in await model_versions(kube, namespace, spec.model)
            if v["spec"]["version"] == number
        ),
        None,
    )
    if version is not None:
        await kube.apply(path, render_deployment(md, spec, version, ctx.settings))


async def unlink_deleted(event: kopf.RawEvent, memo: OperatorContext, **_: Any) -> None:
    """A ModelDeployment is gone: take it off the ModelVersions that list it."""
    if event.get("type") != "DELETED":
        return
    obj = event["object"]
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    model = (obj.get("spec") or {}).get("model")
    if model:
        await _link(
            memo.kube, namespace, name, None, await model_versions(memo.kube, namespace, model)
        )


def register(registry: kopf.OperatorRegistry) -> None:
    """The child watches and the deletion clean-up (the reconcile is registered per kind)."""
    for kind, (api, plural) in CHILDREN.items():
        group, _, version = api.rpartition("/")
        kopf.on.event(
            group,
            version,
            plural,
            labels=dict(MANAGED),
            id=f"restore-{kind.lower()}",
            registry=registry,
        )(restore)
    kopf.on.event(
        API_GROUP,
        API_VERSION,
        "modeldeployments",
        id="unlink-deleted",
        registry=registry,
    )(unlink_deleted)
