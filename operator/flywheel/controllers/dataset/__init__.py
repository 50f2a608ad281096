"""The Dataset controller: ingest Jobs on creation, spec change, refresh request, schedule and
retry; the result of each becomes a content-addressed version with statistics, or a precise
failure that keeps the last good version.

:mod:`.gather` reads, :mod:`.decide` decides (pure), :mod:`.render` builds the Job; the shared
:mod:`flywheel.runtime.act` writes. Woken by the Dataset's own spec and annotation changes and by
events of the Jobs it owns; the refresh schedule and the retry back-off are real clocks.
"""

from __future__ import annotations

from flywheel.api.kinds import DATASET
from flywheel.controllers.dataset.decide import DatasetInputs, decide
from flywheel.controllers.dataset.gather import gather
from flywheel.core.resources import DATASETS, JOBS
from flywheel.runtime.controller import Controller, claim_events

CONTROLLER = Controller[DatasetInputs](
    kind=DATASET,
    gather=gather,
    decide=decide,
    owns=(JOBS,),
    watches=(claim_events(DATASETS),),
    needs_artifacts=lambda _: True,
)
"""Datasets, woken by their ingest Jobs and by their artifacts claim being deleted."""
