"""kopf handlers: the only place that knows kopf's calling conventions.

:func:`build_registry` returns a fresh `kopf.OperatorRegistry` with every handler, so nothing is
registered at import time and tests can build as many operators as they like.
"""

from __future__ import annotations

import kopf

from flywheel.api.kinds import DATASET, MODEL_DEPLOYMENT, MODEL_MONITOR, TRAINING_RUN
from flywheel.handlers import dataset, modeldeployment, modelmonitor, modelversion, trainingrun
from flywheel.handlers.lifecycle import register_lifecycle
from flywheel.handlers.reconcile import register_kinds, register_timer
from flywheel.runoutcomes import finished
from flywheel.settings import OperatorSettings


def build_registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    """All handlers of the operator."""
    registry = kopf.OperatorRegistry()
    register_lifecycle(registry)
    register_kinds(
        registry,
        works={
            "Dataset": dataset.work,
            "TrainingRun": trainingrun.work,
            "ModelVersion": modelversion.work,
            "ModelDeployment": modeldeployment.work,
            "ModelMonitor": modelmonitor.work,
        },
    )
    modeldeployment.register(registry)
    modelmonitor.register(registry)
    # Follow running Jobs, refresh schedules, retry back-offs and Datasets a run waits for.
    register_timer(registry, DATASET, dataset.work, interval=settings.poll_seconds)
    register_timer(
        registry,
        TRAINING_RUN,
        trainingrun.work,
        interval=settings.poll_seconds,
        when=lambda status, **_: not finished(dict(status)),  # a finished run has nothing to follow
    )
    # Follow rollouts and newly validated versions (LatestValidated).
    register_timer(registry, MODEL_DEPLOYMENT, modeldeployment.work, interval=settings.poll_seconds)
    # Evaluate each monitor every spec.interval (checked at every tick).
    register_timer(registry, MODEL_MONITOR, modelmonitor.work, interval=settings.poll_seconds)
    return registry
