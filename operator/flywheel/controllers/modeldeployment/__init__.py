"""The ModelDeployment controller: the serving Deployment, Service and HPA, version selection,
rollouts that change `servingVersion` only when complete, automatic rollback, version links.

:mod:`.gather` reads, :mod:`.decide` decides (pure) with :mod:`.rollouts`, :mod:`.render` builds
the children (server-side applied by the shared :mod:`flywheel.runtime.act`, only when they
differ from what runs). Woken by the events of its children (one edited or deleted by hand is
put back at once; a rollout's progress and its deadline come from the Deployment controller)
and of its model's ModelVersions (a newly validated one rolls out under `LatestValidated`).
"""

from __future__ import annotations

from collections.abc import Iterable

from flywheel.api.kinds import MODEL_DEPLOYMENT
from flywheel.controllers.modeldeployment.decide import ModelDeploymentInputs, decide
from flywheel.controllers.modeldeployment.gather import gather
from flywheel.core.objects import Obj, meta_of
from flywheel.core.resources import DEPLOYMENTS, HPAS, MODEL_DEPLOYMENTS, MODEL_VERSIONS, SERVICES
from flywheel.core.statuses import model_of
from flywheel.runtime.controller import Controller, Watch, claim_events
from flywheel.runtime.store import Store


def deployments_of_model(version: Obj, store: Store) -> Iterable[str]:
    """The ModelDeployments of the version's namespace that serve its model."""
    model = model_of(version)
    for deployment in store.list(MODEL_DEPLOYMENTS, meta_of(version)["namespace"]):
        if (deployment.get("spec") or {}).get("model") == model:
            yield str(meta_of(deployment)["name"])


CONTROLLER = Controller[ModelDeploymentInputs](
    kind=MODEL_DEPLOYMENT,
    gather=gather,
    decide=decide,
    owns=(DEPLOYMENTS, SERVICES, HPAS),
    watches=(Watch(MODEL_VERSIONS, deployments_of_model), claim_events(MODEL_DEPLOYMENTS)),
    needs_artifacts=lambda _: True,
)
"""ModelDeployments, woken by their children and their model's versions."""
