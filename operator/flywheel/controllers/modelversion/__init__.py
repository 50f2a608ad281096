"""The ModelVersion controller: copy the registering TrainingRun's verdict into `Validated`,
and drop the links of ModelDeployments that are gone.

Woken by its own creation, by changes of the TrainingRun its lineage names (the verdict arrives
in the run's status) and of the namespace's ModelDeployments (one deleted leaves a stale link).
"""

from __future__ import annotations

from collections.abc import Iterable

from flywheel.api.kinds import MODEL_VERSION
from flywheel.controllers.modelversion.decide import ModelVersionInputs, decide
from flywheel.controllers.modelversion.gather import gather
from flywheel.core.links import listed
from flywheel.core.objects import Obj, meta_of, status_of
from flywheel.core.resources import MODEL_DEPLOYMENTS, MODEL_VERSIONS, TRAINING_RUNS
from flywheel.runtime.controller import Controller, Watch
from flywheel.runtime.store import Store


def versions_of_run(run: Obj, store: Store) -> Iterable[str]:
    """The versions a run registered (named in its status or naming it in their lineage)."""
    found = meta_of(run)
    registered = (status_of(run).get("modelVersionRef") or {}).get("name")
    if registered:
        yield str(registered)
    for version in store.list(MODEL_VERSIONS, found["namespace"]):
        lineage = (version.get("spec") or {}).get("lineage") or {}
        if lineage.get("trainingRun") == found["name"] and meta_of(version)["name"] != registered:
            yield str(meta_of(version)["name"])


def versions_linked_to(deployment: Obj, store: Store) -> Iterable[str]:
    """The versions whose status lists the deployment."""
    found = meta_of(deployment)
    for version in store.list(MODEL_VERSIONS, found["namespace"]):
        if found["name"] in listed(version):
            yield str(meta_of(version)["name"])


CONTROLLER = Controller[ModelVersionInputs](
    kind=MODEL_VERSION,
    gather=gather,
    decide=decide,
    watches=(
        Watch(TRAINING_RUNS, versions_of_run),
        Watch(MODEL_DEPLOYMENTS, versions_linked_to),
    ),
    finalizes=True,
    status_wakes=("approval", "conditions"),  # an approver's write (or a forged verdict)
)
"""ModelVersions, woken by their TrainingRun and by ModelDeployments linked to them."""
