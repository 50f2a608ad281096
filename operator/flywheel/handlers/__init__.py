"""kopf handlers: the only place that knows kopf's calling conventions.

:func:`build_registry` returns a fresh `kopf.OperatorRegistry` with every handler, so nothing is
registered at import time and tests can build as many operators as they like.
"""

from __future__ import annotations

import kopf

from flywheel.handlers import dataset, modelversion, trainingrun
from flywheel.handlers.lifecycle import register_lifecycle
from flywheel.handlers.reconcile import register_kinds
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
        },
    )
    dataset.register_dataset_timer(registry, poll_seconds=settings.poll_seconds)
    trainingrun.register_trainingrun_timer(registry, poll_seconds=settings.poll_seconds)
    return registry
