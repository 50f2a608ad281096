"""What our kinds' statuses say, read the same way by every controller that depends on them.

Controllers cooperate only through status: the TrainingRun controller reads whether a Dataset is
Ready, the ModelDeployment controller whether a ModelVersion is Validated, the ModelMonitor
whether a TrainingRun has finished. These readers are that shared vocabulary.
"""

from __future__ import annotations

from flywheel.api.common import API_GROUP
from flywheel.core.conditions import READY, raw_condition
from flywheel.core.objects import Obj, status_of

VALIDATED = "Validated"
SUCCEEDED = "Succeeded"
RUN_UID = f"{API_GROUP}/run-uid"
"""ModelVersion label: the UID of the TrainingRun that registered it (and vouches for it)."""
REFRESH_REQUESTED = f"{API_GROUP}/refresh-requested-at"
"""Dataset annotation asking for an ingest now (as Flux's `requestedAt`); any new value (a
timestamp by convention) asks again, and `status.lastHandledRefreshAt` says which was handled."""


def is_ready(obj: Obj | None) -> bool:
    """`Ready=True`."""
    return raw_condition(status_of(obj), READY).get("status") == "True"


def is_validated(version: Obj | None) -> bool:
    """A ModelVersion whose gates passed (`Validated=True`)."""
    return raw_condition(status_of(version), VALIDATED).get("status") == "True"


def run_finished(status: Obj) -> bool:
    """A TrainingRun status that reached its end (`Succeeded` True or False)."""
    return raw_condition(status, SUCCEEDED).get("status") in ("True", "False")


def serving_version(deployment: Obj | None) -> int | None:
    """The ModelVersion number a ModelDeployment serves."""
    value = status_of(deployment).get("servingVersion")
    return int(value) if isinstance(value, int) else None


def model_of(version: Obj) -> str:
    """The model a ModelVersion belongs to; none ("") unless it is named `<model>-v<version>`
    (the CRD requires it; an object stored before that rule cannot claim a version's number
    beside the real one)."""
    spec = version.get("spec") or {}
    model = str(spec.get("model", ""))
    name = (version.get("metadata") or {}).get("name")
    return model if name == f"{model}-v{spec.get('version')}" else ""


def version_number(version: Obj) -> int:
    """A ModelVersion's number."""
    return int((version.get("spec") or {}).get("version") or 0)
