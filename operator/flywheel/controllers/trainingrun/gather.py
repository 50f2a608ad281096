"""TrainingRun reads: the Job and, before it exists, the Dataset to pin and the champion from
the watch cache; once it finished, its pod's result; once it completed, the model's versions
read fresh from the API (a version number is never allocated on a cache that may lag)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from flywheel.api.trainingrun import TrainingRunSpec, TrainingRunStatus
from flywheel.controllers.trainingrun.decide import TrainingRunInputs
from flywheel.controllers.trainingrun.render import job_name
from flywheel.core.jobs import job_finished, read_result
from flywheel.core.resources import DATASETS, JOBS, MODEL_DEPLOYMENTS, MODEL_VERSIONS, PODS
from flywheel.core.statuses import model_of, run_finished
from flywheel.core.target import Target
from flywheel.interfaces.jobs import TrainReport
from flywheel.runtime.controller import Env


async def gather(
    env: Env, target: Target[TrainingRunSpec, TrainingRunStatus], now: datetime
) -> TrainingRunInputs:
    """Everything the TrainingRun decision looks at."""
    meta, spec = target.meta, target.spec
    inputs = TrainingRunInputs(
        meta=meta,
        spec=spec,
        status=target.status,
        raw_status=target.raw_status,
        settings=env.settings,
    )
    if run_finished(target.raw_status):
        return inputs
    namespace = meta.namespace
    job = env.store.get(JOBS, namespace, job_name(meta.name))
    if job is None and target.status.job_name is None:
        gates = spec.validation
        reference = gates.compare_to.deployment_ref if gates and gates.compare_to else None
        deployment = (
            env.store.get(MODEL_DEPLOYMENTS, namespace, reference.name) if reference else None
        )
        return replace(
            inputs,
            dataset=env.store.get(DATASETS, namespace, spec.dataset_ref.name),
            deployment=deployment,
            versions=[
                v for v in env.store.list(MODEL_VERSIONS, namespace) if model_of(v) == spec.model
            ],
        )
    state = job_finished(job)
    if job is None or state is None:
        return replace(inputs, job=job)
    pods = await env.kube.list(PODS, namespace, {"job-name": job_name(meta.name)})
    versions = []
    if state == "Complete":
        # Every version of the namespace, labelled or not: a number is taken by its name
        # (`<model>-v<N>`), whatever labels the object carries.
        found = await env.kube.list(MODEL_VERSIONS, namespace)
        versions = [v for v in found if model_of(v) == spec.model]
    return replace(inputs, job=job, versions=versions, result=read_result(job, pods, TrainReport))
