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
from flywheel.core.objects import Obj, meta_of
from flywheel.core.resources import DEPLOYMENTS, HPAS, MODEL_VERSIONS, PODS, SERVICES
from flywheel.core.serving import child_name, selector_labels
from flywheel.core.statuses import model_of
from flywheel.core.target import Target
from flywheel.core.times import parse_time
from flywheel.runtime.controller import Env
from flywheel_serving.names import PORT, READY_PATH

PODS_ASKED = 3
"""Not-ready pods asked for their readiness answer when a rollout fails."""
STARTUP_GRACE_SECONDS = 20.0
"""A pod of the served version younger than this is starting, not failing."""


def _running_for(pod: Obj, now: datetime) -> float:
    """Seconds since the pod was created (a Pending pod has no start time; 0 when unknown)."""
    started = parse_time(meta_of(pod).get("creationTimestamp"))
    return (now - started).total_seconds() if started else 0.0


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
    state = rollout(deployment).state if deployment is not None else None
    failed = state == "Failed" and not known
    short = state == "Progressing" and rendered == target.status.serving_version
    if (failed or short) and rendered is not None:
        failure = await _failure(env, namespace, meta.name, rendered, now if short else None)
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


async def _failure(
    env: Env, namespace: str, name: str, version: int, short_at: datetime | None = None
) -> Finding | None:
    """Why pods of the version are not ready; for a served version short of pods (`short_at`:
    now) only pods that had time to start are asked, and None when there are none."""
    pods = await env.kube.list(PODS, namespace, selector_labels(name))
    failing = not_ready_pods(pods, version)
    if short_at is not None:
        failing = [p for p in failing if _running_for(p, short_at) >= STARTUP_GRACE_SECONDS]
        if not failing:
            return None
    answers: dict[str, str] = {}
    for pod in failing[:PODS_ASKED]:
        ip = (pod.get("status") or {}).get("podIP")
        text = await env.http.get_text(f"http://{ip}:{PORT}{READY_PATH}") if ip else None
        if text:
            answers[pod["metadata"]["name"]] = text
    return pod_failure(failing, answers)
