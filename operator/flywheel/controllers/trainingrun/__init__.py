"""The TrainingRun controller: wait for the Dataset, run the training Job on the pinned version,
judge the gates, register exactly one ModelVersion.

:mod:`.gather` reads, :mod:`.decide` decides (pure) with :mod:`.pinning` and :mod:`.gates`,
:mod:`.render` builds the Job and the ModelVersion; the shared :mod:`flywheel.runtime.act`
writes. Woken by the events of the Job it owns and, while it waits, by its Dataset's.
"""

from __future__ import annotations

from collections.abc import Iterable

from flywheel.api.kinds import TRAINING_RUN
from flywheel.controllers.trainingrun.decide import TrainingRunInputs, decide
from flywheel.controllers.trainingrun.gather import gather
from flywheel.core.objects import Obj, meta_of, status_of
from flywheel.core.resources import DATASETS, JOBS, TRAINING_RUNS
from flywheel.core.statuses import run_finished
from flywheel.runtime.controller import Controller, Watch, claim_events
from flywheel.runtime.store import Store


def runs_waiting_for(dataset: Obj, store: Store) -> Iterable[str]:
    """The unfinished runs of the Dataset's namespace that train on it."""
    found = meta_of(dataset)
    for run in store.list(TRAINING_RUNS, found["namespace"]):
        reference = (run.get("spec") or {}).get("datasetRef") or {}
        if reference.get("name") == found["name"] and not run_finished(status_of(run)):
            yield str(meta_of(run)["name"])


CONTROLLER = Controller[TrainingRunInputs](
    kind=TRAINING_RUN,
    gather=gather,
    decide=decide,
    owns=(JOBS,),
    watches=(Watch(DATASETS, runs_waiting_for), claim_events(TRAINING_RUNS)),
    needs_artifacts=lambda target: not run_finished(target.raw_status),
)
"""TrainingRuns, woken by their Jobs and the Datasets they wait for."""
