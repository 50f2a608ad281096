"""ModelMonitor reads, only when an evaluation is due: the deployment, its serving version,
the monitor's runs and the retraining Dataset from the watch cache; the baseline and the
window's counts from the serving pods (or Prometheus)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from flywheel.api.modelmonitor import ModelMonitorSpec, ModelMonitorStatus
from flywheel.controllers.modelmonitor.decide import ModelMonitorInputs, next_evaluation
from flywheel.controllers.modelmonitor.render import MONITOR_LABEL
from flywheel.controllers.modelmonitor.sources import (
    MonitorMemory,
    SourceFailure,
    baseline,
    ready_pods,
    window_counts,
)
from flywheel.core.objects import labels_of
from flywheel.core.resources import DATASETS, MODEL_DEPLOYMENTS, MODEL_VERSIONS, TRAINING_RUNS
from flywheel.core.serving import child_name, selector_labels
from flywheel.core.statuses import model_of, serving_version, version_number
from flywheel.core.target import Target
from flywheel.runtime.controller import Env


async def gather(
    env: Env,
    memory: MonitorMemory,
    target: Target[ModelMonitorSpec, ModelMonitorStatus],
    now: datetime,
) -> ModelMonitorInputs:
    """Everything the ModelMonitor decision looks at."""
    meta, spec, store = target.meta, target.spec, env.store
    inputs = ModelMonitorInputs(meta, spec, target.status, target.raw_status)
    due = next_evaluation(spec, target.status, meta.generation)
    if due is not None and now < due:
        return replace(inputs, due=False)
    namespace = meta.namespace
    deployment = store.get(MODEL_DEPLOYMENTS, namespace, spec.deployment_ref.name)
    if deployment is None:
        return inputs
    serving, model = serving_version(deployment), str(deployment["spec"]["model"])
    versions = store.list(MODEL_VERSIONS, namespace)
    version = next(
        (v for v in versions if model_of(v) == model and version_number(v) == serving), None
    )
    inputs = replace(inputs, deployment=deployment, serving=serving, version=version)
    if serving is None or version is None:
        return inputs
    name = str(deployment["metadata"]["name"])
    try:
        pods = await ready_pods(env, namespace, child_name(name), selector_labels(name))
        stats = await baseline(env, memory, model, version, pods)
        key = (namespace, meta.name)
        counts = await window_counts(env, memory, key, spec, model, version, pods, now)
    except SourceFailure as failure:
        return replace(inputs, source_failure=str(failure))
    runs = [
        r
        for r in store.list(TRAINING_RUNS, namespace)
        if labels_of(r).get(MONITOR_LABEL) == meta.name
    ]
    dataset = (
        store.get(DATASETS, namespace, spec.retrain.template.dataset_ref.name)
        if spec.retrain is not None
        else None
    )
    return replace(inputs, stats=stats, counts=counts, runs=runs, dataset=dataset)
