"""ModelDeployment reads: the model's ModelVersions and the serving children from the watch
cache; after a rollout past its deadline, the new pods and their readiness answers (the model
server's own reason, e.g. `ArtifactDigestMismatch`, which no pod status carries)."""

from __future__ import annotations

from datetime import datetime

from flywheel.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from flywheel.controllers.modeldeployment.decide import ModelDeploymentInputs
from flywheel.controllers.modeldeployment.render import rendered_version
from flywheel.controllers.modeldeployment.rollouts import not_ready_pods, pod_failure, rollout
from flywheel.core.conditions import Finding
from flywheel.core.resources import DEPLOYMENTS, HPAS, MODEL_VERSIONS, PODS, SERVICES
from flywheel.core.serving import child_name, selector_labels
from flywheel.core.statuses import model_of
from flywheel.core.target import Target
from flywheel.runtime.controller import Env
from flywheel_serving.names import PORT, READY_PATH

PODS_ASKED = 3
"""Not-ready pods asked for their readiness answer when a rollout fails."""


async def gather(
    env: Env, target: Target[ModelDeploymentSpec, ModelDeploymentStatus], now: datetime
) -> ModelDeploymentInputs:
    """Everything the ModelDeployment decision looks at."""
    meta, spec = target.meta, target.spec
    namespace, child = meta.namespace, child_name(meta.name)
    deployment = env.store.get(DEPLOYMENTS, namespace, child)
    rendered = rendered_version(deployment)
    failure = None
    recorded = target.status.failed_rollout
    known = recorded is not None and (recorded.version, recorded.generation) == (
        rendered,
        meta.generation,
    )
    failed = deployment is not None and rollout(deployment).state == "Failed"
    if failed and rendered is not None and not known:
        failure = await _failure(env, namespace, meta.name, rendered)
    return ModelDeploymentInputs(
        meta=meta,
        spec=spec,
        raw_status=target.raw_status,
        settings=env.settings,
        versions=[
            v for v in env.store.list(MODEL_VERSIONS, namespace) if model_of(v) == spec.model
        ],
        deployment=deployment,
        service=env.store.get(SERVICES, namespace, child),
        hpa=env.store.get(HPAS, namespace, child),
        failure=failure,
    )


async def _failure(env: Env, namespace: str, name: str, version: int) -> Finding:
    pods = await env.kube.list(PODS, namespace, selector_labels(name))
    failing = not_ready_pods(pods, version)
    answers: dict[str, str] = {}
    for pod in failing[:PODS_ASKED]:
        ip = (pod.get("status") or {}).get("podIP")
        text = await env.http.get_text(f"http://{ip}:{PORT}{READY_PATH}") if ip else None
        if text:
            answers[pod["metadata"]["name"]] = text
    return pod_failure(failing, answers)
