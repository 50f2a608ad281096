"""The ModelVersion controller: copy the registering TrainingRun's verdict into `Validated`.

The verdict is recorded in the run's status before the version is created, except when the
operator stopped in between; then the version waits (a short retry) until the resumed run
controller writes it.
"""

from __future__ import annotations

from typing import Any

import kopf
from pydantic import BaseModel

from flywheel.api import API_GROUP, API_VERSION
from flywheel.api.modelversion import ModelVersionSpec
from flywheel.conditions import raw_condition
from flywheel.handlers.context import OperatorContext
from flywheel.handlers.outcome import apply
from flywheel.kube import namespaced
from flywheel.modelversions import judged, no_verdict, vouching_run

VERDICT_RETRY_SECONDS = 2


async def work(
    body: kopf.Body,
    spec: BaseModel,
    status: dict[str, Any],
    patch: kopf.Patch,
    memo: OperatorContext,
) -> None:
    """Judge the version once; its spec is immutable, so once is enough."""
    assert isinstance(spec, ModelVersionSpec)
    if status.get("validation") is not None or raw_condition(status, "Validated"):
        return
    meta = body["metadata"]
    run_name = spec.lineage.training_run
    found = await memo.kube.get_or_none(
        namespaced(f"{API_GROUP}/{API_VERSION}", meta["namespace"], "trainingruns", run_name)
    )
    run = vouching_run(dict(body), found)
    if run is None:
        outcome = no_verdict(run_name, spec.metrics)
    else:
        verdict = run.get("status", {}).get("validation")
        if verdict is None:
            raise kopf.TemporaryError(
                f"waiting for TrainingRun {run_name} to record its verdict",
                delay=VERDICT_RETRY_SECONDS,
            )
        outcome = judged(verdict, run_name, spec.metrics)
    apply(outcome, status, patch, body, meta.get("generation"))
