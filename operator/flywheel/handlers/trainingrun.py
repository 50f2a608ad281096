"""The TrainingRun controller: wait for the Dataset, run the training Job, register the version.

Thin kopf glue around :mod:`flywheel.trainingruns` and :mod:`flywheel.runoutcomes` (pure) and
:mod:`flywheel.kube` (I/O). The same `step` runs on create/resume and on a timer that follows
the Job and re-checks a Dataset that is not ready; it stops once the run has finished.

Exactly one ModelVersion per run, whenever the operator is stopped: registration finds the
version labelled with the run's UID before allocating a number, under a per-model lock, and the
version's deterministic name `<model>-v<N>` makes the API server refuse a duplicate number.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import kopf
from pydantic import BaseModel

from flywheel.api import API_GROUP, API_VERSION
from flywheel.api.trainingrun import TrainingRunSpec
from flywheel.conditions import Verdict, raw_condition
from flywheel.handlers.context import OperatorContext
from flywheel.handlers.outcome import apply
from flywheel.handlers.registry import model_versions
from flywheel.handlers.workloads import ensure_job_prerequisites
from flywheel.jobresult import Outcome, job_finished, read_result
from flywheel.kube import Conflict, Kube, namespaced
from flywheel.runoutcomes import (
    failed,
    finished,
    is_waiting,
    judge,
    progressed,
    started,
    succeeded,
    waiting,
)
from flywheel.trainingruns import (
    NO_CHAMPION,
    PinnedDataset,
    champion_argument,
    job_name,
    model_version_name,
    next_version,
    pin_dataset,
    pinned_from_job,
    render_model_version,
    render_training_job,
    select_champion,
)

GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"
MAX_ALLOCATION_ATTEMPTS = 20
FAILPOINT_EXIT = 17


async def step(
    kube: Kube, body: kopf.Body, spec: TrainingRunSpec, status: dict[str, Any], ctx: OperatorContext
) -> Outcome | None:
    """Advance the run by one step; None when there is nothing to write."""
    if finished(status):
        return None
    meta = body["metadata"]
    namespace, now = meta["namespace"], datetime.now(UTC)
    job = await kube.get_or_none(namespaced("batch/v1", namespace, "jobs", job_name(meta["name"])))
    if status.get("jobName") is None:
        if job is None:
            created = await _start(kube, body, spec, ctx)
            if isinstance(created, Verdict):
                current = str(raw_condition(status, "Succeeded").get("message", ""))
                if is_waiting(status) and current.startswith(created.message):
                    return None  # already said, word for word: nothing to write
                return waiting(created, is_waiting(status))
            job = created
        pinned = pinned_from_job(job)
        if pinned is None:
            raise kopf.PermanentError(f"Job {job['metadata']['name']} is not a training Job")
        return started(job, pinned.version, pinned.digest, now)
    if job is None:
        return failed({"status": {"conditions": [_gone(status["jobName"])]}}, None, now)
    state = job_finished(job)
    if state is None:
        return progressed(job, int(status.get("attempts") or 0), spec.backoff_limit)
    selector = quote(f"job-name={job_name(meta['name'])}")
    pods = await kube.get(namespaced("v1", namespace, "pods") + f"?labelSelector={selector}")
    result = read_result(job, pods.get("items", []))
    if state == "Failed":
        return failed(job, result, now)
    pinned = pinned_from_job(job)
    if not result.get("ok") or pinned is None:
        why = f"the training Job completed but its result cannot be read: {result.get('message')}"
        return failed(job, {"reason": "TrainingFailed", "message": why}, now)
    verdict = judge(spec, result, job["metadata"].get("annotations", {}).get(NO_CHAMPION))
    # The verdict goes first, so the ModelVersion controller finds it on its first visit.
    await kube.patch_status(
        namespaced(GROUP_VERSION, namespace, "trainingruns", meta["name"]),
        {"validation": verdict.model_dump(by_alias=True, mode="json", exclude_none=True)},
    )
    version = await register(kube, body, spec, result, pinned, ctx)
    return succeeded(job, result, verdict, version, now)


async def _start(
    kube: Kube, body: kopf.Body, spec: TrainingRunSpec, ctx: OperatorContext
) -> dict[str, Any] | Verdict:
    """Pin the dataset, pick the champion, create the Job; or why the run must wait."""
    namespace = body["metadata"]["namespace"]
    dataset = await kube.get_or_none(
        namespaced(GROUP_VERSION, namespace, "datasets", spec.dataset_ref.name)
    )
    pinned = pin_dataset(spec, dataset)
    if isinstance(pinned, Verdict):
        return pinned
    champion, no_champion = await _champion(kube, namespace, spec)
    settings = ctx.settings
    await ensure_job_prerequisites(kube, namespace, ctx)
    rendered = render_training_job(
        dict(body),
        spec,
        pinned,
        settings,
        champion_argument(champion) if champion else None,
        no_champion,
    )
    job, _ = await kube.create_or_get(namespaced("batch/v1", namespace, "jobs"), rendered)
    return job


async def _champion(
    kube: Kube, namespace: str, spec: TrainingRunSpec
) -> tuple[dict[str, Any] | None, str | None]:
    gates = spec.validation
    if gates is None or gates.compare_to is None:
        return None, None
    deployment = None
    if gates.compare_to.deployment_ref is not None:
        deployment = await kube.get_or_none(
            namespaced(
                GROUP_VERSION, namespace, "modeldeployments", gates.compare_to.deployment_ref.name
            )
        )
    return select_champion(spec, deployment, await model_versions(kube, namespace, spec.model))


async def register(
    kube: Kube,
    body: kopf.Body,
    spec: TrainingRunSpec,
    result: dict[str, Any],
    pinned: PinnedDataset,
    ctx: OperatorContext,
) -> str:
    """The run's ModelVersion: the existing one (by run UID), else a new number."""
    meta = body["metadata"]
    namespace = meta["namespace"]
    collection = namespaced(GROUP_VERSION, namespace, "modelversions")
    async with ctx.lock(f"model-versions/{namespace}/{spec.model}"):
        mine = await kube.get(
            collection + "?labelSelector=" + quote(f"{API_GROUP}/run-uid={meta['uid']}")
        )
        if mine.get("items"):
            return str(mine["items"][0]["metadata"]["name"])
        existing = [
            int(v["spec"]["version"]) for v in await model_versions(kube, namespace, spec.model)
        ]
        version = next_version(existing)
        for _ in range(MAX_ALLOCATION_ATTEMPTS):
            rendered = render_model_version(dict(body), spec, result, version, pinned)
            try:
                await kube.create(collection, rendered)
                if ctx.settings.failpoint == "exit-after-model-version-created":
                    os._exit(FAILPOINT_EXIT)  # a crash before the run's status is written
                return model_version_name(spec.model, version)
            except Conflict:
                # The name is taken (a version created outside this operator): next number.
                taken = await kube.get_or_none(f"{collection}/{rendered['metadata']['name']}")
                labels = (taken or {}).get("metadata", {}).get("labels", {})
                if labels.get(f"{API_GROUP}/run-uid") == meta["uid"]:
                    return model_version_name(spec.model, version)
                version += 1
    raise kopf.TemporaryError(f"no free version number for model {spec.model}", delay=5)


def _gone(job: str) -> dict[str, str]:
    return {
        "type": "Failed",
        "status": "True",
        "reason": "JobDeleted",
        "message": f"The training Job {job} was deleted before it finished.",
    }


async def work(
    body: kopf.Body,
    spec: BaseModel,
    status: dict[str, Any],
    patch: kopf.Patch,
    memo: OperatorContext,
) -> None:
    """The TrainingRun controller's part of a reconcile (the spec is already admitted)."""
    assert isinstance(spec, TrainingRunSpec)
    async with memo.lock(f"trainingrun/{body['metadata']['uid']}"):
        outcome = await step(memo.kube, body, spec, status, memo)
    if outcome is not None:
        apply(outcome, status, patch, body, body["metadata"].get("generation"))
