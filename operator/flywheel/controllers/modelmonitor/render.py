"""Pure builder of what the ModelMonitor creates: the retraining TrainingRun, with the labels
that say which monitor asked for it, why, and the score behind it."""

from __future__ import annotations

from dataclasses import dataclass

from flywheel.api.common import API_GROUP, API_VERSION
from flywheel.api.modelmonitor import ModelMonitorSpec
from flywheel.core.objects import Obj
from flywheel.core.podspec import MANAGED_BY, owner_reference
from flywheel.core.target import Meta

MONITOR_LABEL = f"{API_GROUP}/modelmonitor"
REASON_LABEL = f"{API_GROUP}/retrain-reason"
SCORE_LABEL = f"{API_GROUP}/retrain-score"
MESSAGE_ANNOTATION = f"{API_GROUP}/retrain-message"


@dataclass(frozen=True)
class RetrainRequest:
    """Which run to create and why: its name, the trigger's reason, sentence and score."""

    run_name: str
    reason: str
    message: str
    score: float | None


def render_retrain_run(
    meta: Meta, spec: ModelMonitorSpec, decision: RetrainRequest, dataset_version: str | None
) -> Obj:
    """The retraining TrainingRun: the template, pinned to the Dataset's latest version (or,
    when the Dataset has none yet, to the version current when the run starts)."""
    assert spec.retrain is not None
    body = spec.retrain.template.model_dump(by_alias=True, exclude_none=True, mode="json")
    body["datasetRef"].pop("version", None)
    if dataset_version:
        body["datasetRef"]["version"] = dataset_version
    labels = {**MANAGED_BY, MONITOR_LABEL: meta.name, REASON_LABEL: decision.reason}
    if decision.score is not None and decision.score >= 0:
        labels[SCORE_LABEL] = f"{decision.score:.4f}".rstrip("0").rstrip(".")[:63]
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "TrainingRun",
        "metadata": {
            "name": decision.run_name,
            "namespace": meta.namespace,
            "labels": labels,
            "annotations": {MESSAGE_ANNOTATION: decision.message[:1000]},
            "ownerReferences": [owner_reference("ModelMonitor", meta.name, meta.uid)],
        },
        "spec": body,
    }
