"""Dataset reads: the ingest Job in progress from the watch cache, and its result from the
Job's pod once it finished (the termination message is on the pod, which is not cached)."""

from __future__ import annotations

from datetime import datetime

from flywheel.api.dataset import DatasetSpec, DatasetStatus
from flywheel.controllers.dataset.decide import DatasetInputs
from flywheel.core.jobs import job_finished, read_result
from flywheel.core.resources import JOBS, PODS
from flywheel.core.target import Target
from flywheel.interfaces.jobs import IngestReport
from flywheel.runtime.controller import Env


async def gather(
    env: Env, target: Target[DatasetSpec, DatasetStatus], now: datetime
) -> DatasetInputs:
    """Everything the Dataset decision looks at."""
    meta, status = target.meta, target.status
    last = status.last_ingest
    job = result = None
    if last is not None and last.completion_time is None:
        job = env.store.get(JOBS, meta.namespace, last.job_name)
        if job is not None and job_finished(job) is not None:
            pods = await env.kube.list(PODS, meta.namespace, {"job-name": last.job_name})
            result = read_result(job, pods, IngestReport)
    return DatasetInputs(
        meta=meta, spec=target.spec, status=status, settings=env.settings, job=job, result=result
    )
