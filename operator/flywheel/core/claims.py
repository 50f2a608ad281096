"""The namespace's artifacts claim: whether objects can use it, and its protection.

Every Dataset snapshot, model and baseline of a namespace lives on one PersistentVolumeClaim
(`FLYWHEEL_ARTIFACTS_CLAIM`). A claim being deleted makes every object that needs it wait with
reason `ArtifactsUnavailable` instead of starting pods that stay Pending on it. And the claims the
operator creates carry the finalizer `flywheel.dev/artifacts-protection` while any Dataset,
TrainingRun, ModelVersion or ModelDeployment of the namespace exists (as
`kubernetes.io/pvc-protection` guards a claim a pod mounts): deleting the claim waits until they
are gone, so no status points at a snapshot or model that was deleted under it.
"""

from __future__ import annotations

from flywheel.core.conditions import READY, RECONCILING, STALLED, ConditionUpdate, Finding
from flywheel.core.objects import Obj, meta_of
from flywheel.core.outcome import Event, MergePatch, Outcome
from flywheel.core.resources import CLAIMS

ARTIFACTS_UNAVAILABLE = "ArtifactsUnavailable"
PROTECTION = "flywheel.dev/artifacts-protection"
"""The finalizer on an artifacts claim in use."""


def claim_finding(claim: Obj | None, name: str) -> Finding | None:
    """Why the artifacts claim cannot be used, if it cannot (a claim not created yet is
    created by the object's own reconcile)."""
    if claim is None or not meta_of(claim).get("deletionTimestamp"):
        return None
    users = [f for f in meta_of(claim).get("finalizers") or () if f != PROTECTION]
    held = f" (still mounted: {', '.join(users)})" if users else ""
    return Finding(
        ARTIFACTS_UNAVAILABLE,
        f"The artifacts claim {name} is being deleted{held}: nothing new is ingested, trained "
        "or rolled out on it. It is deleted once no Flywheel object of the namespace needs it; "
        "then a new, empty claim is created.",
    )


def unavailable(finding: Finding, status: Obj) -> Outcome:
    """The object waits for its artifacts claim; the Event once per reason."""
    conditions = status.get("conditions") or ()
    said = any(c.get("type") == READY and c.get("reason") == finding.reason for c in conditions)
    return Outcome(
        conditions=(
            ConditionUpdate(READY, "False", finding.reason, finding.message),
            ConditionUpdate(RECONCILING, "True", finding.reason, finding.message),
            ConditionUpdate(STALLED, "False", finding.reason, finding.message),
        ),
        events=() if said else (Event("Warning", finding.reason, finding.message),),
    )


def protection(claim: Obj, in_use: bool) -> MergePatch | None:
    """Add the protection finalizer while the claim is in use (and not being deleted), remove
    it once nothing uses it; conditional on the claim's resourceVersion, so no other finalizer
    is lost to a concurrent change."""
    found = meta_of(claim)
    finalizers = list(found.get("finalizers") or ())
    held = PROTECTION in finalizers
    if in_use and not held and not found.get("deletionTimestamp"):
        kept = [*finalizers, PROTECTION]
    elif not in_use and held:
        kept = [f for f in finalizers if f != PROTECTION]
    else:
        return None
    ref = CLAIMS.ref(str(found.get("namespace")), str(found.get("name")))
    patch = {"metadata": {"finalizers": kept, "resourceVersion": found.get("resourceVersion")}}
    return MergePatch(ref, patch)
