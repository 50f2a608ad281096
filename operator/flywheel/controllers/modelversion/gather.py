"""ModelVersion reads, all from the watch cache: the TrainingRun its lineage names and the
namespace's ModelDeployments (whose links it keeps honest)."""

from __future__ import annotations

from datetime import datetime

from flywheel.api.modelversion import ModelVersionSpec, ModelVersionStatus
from flywheel.controllers.modelversion.decide import ModelVersionInputs
from flywheel.core.objects import meta_of
from flywheel.core.resources import MODEL_DEPLOYMENTS, TRAINING_RUNS
from flywheel.core.target import Target
from flywheel.runtime.controller import Env


async def gather(
    env: Env, target: Target[ModelVersionSpec, ModelVersionStatus], now: datetime
) -> ModelVersionInputs:
    """Everything the ModelVersion decision looks at."""
    namespace = target.meta.namespace
    run = env.store.get(TRAINING_RUNS, namespace, target.spec.lineage.training_run)
    deployments = frozenset(
        str(meta_of(d)["name"]) for d in env.store.list(MODEL_DEPLOYMENTS, namespace)
    )
    found = meta_of(target.body)
    return ModelVersionInputs(
        target.meta,
        target.spec,
        target.raw_status,
        run,
        deployments,
        target.status.approval,
        tuple(found.get("finalizers") or ()),
        str(found.get("resourceVersion") or ""),
        env.settings.protection_finalizers,
    )
