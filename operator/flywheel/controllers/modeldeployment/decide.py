"""Pure ModelDeployment decisions: which version to serve, what to render, what status says.

The controller hands in what it read (the ModelDeployment, the model's ModelVersions, the serving
children and, after a failed rollout, the pods' reason). :func:`plan` picks the ModelVersion to
render the Deployment for (None: leave it as it is) and the status; :func:`decide` turns that
into the children to apply (only those that differ from what runs) and the version links.

- `Pinned` serves `version`; `LatestValidated` the newest `Validated=True` version. A missing
  or unvalidated version is refused (`Degraded`, reason `VersionNotFound`/`VersionNotValidated`)
  while the running version keeps serving.
- A new version rolls out through the Deployment (maxUnavailable 0). `servingVersion` changes
  only once the rollout is complete.
- A rollout past `progressDeadlineSeconds` is rolled back to `lastGoodVersion`
  (`Degraded=True`, reason `RollbackPerformed`, with the pods' reason), and the failed version
  is not tried again until the spec changes (scaling is not a change: see `spec_digest`).
- A version whose task, input features or outputs differ from the serving version's is never
  rolled out over it (:mod:`.compatibility`): `LatestValidated` takes the newest compatible
  version, `Pinned` refuses; `Degraded=True`, reason `IncompatibleVersion`, with the difference.
- `Ready=True` only while every desired pod is ready at the served version; otherwise the
  reason is the pods' own (e.g. `ArtifactDigestMismatch`) when they give one, else `Scaling`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime

from flywheel.api.common import ConditionStatus
from flywheel.api.modeldeployment import FailedRollout, ModelDeploymentSpec
from flywheel.controllers.modeldeployment.compatibility import difference
from flywheel.controllers.modeldeployment.render import (
    endpoint,
    render_deployment,
    render_hpa,
    render_service,
    rendered_version,
)
from flywheel.controllers.modeldeployment.rollouts import Rollout, rollout
from flywheel.core.applied import differs, stamped
from flywheel.core.conditions import (
    READY,
    RECONCILING,
    STALLED,
    ConditionUpdate,
    Finding,
    raw_condition,
)
from flywheel.core.links import link, listed
from flywheel.core.objects import Obj, meta_of
from flywheel.core.outcome import Action, Apply, Delete, Ensure, Event, EventType, Outcome
from flywheel.core.podspec import render_service_account
from flywheel.core.resources import HPAS
from flywheel.core.serving import child_name, selector_string
from flywheel.core.statuses import VALIDATED, is_validated, version_number
from flywheel.core.target import Meta
from flywheel.settings import OperatorSettings

PROGRESSING, DEGRADED = "Progressing", "Degraded"
WAITS = ("VersionNotFound", "VersionNotValidated")
"""Refusal reasons that are routine waits when not stalled (Normal Events)."""


@dataclass(frozen=True)
class ModelDeploymentInputs:
    """Everything one ModelDeployment decision looks at."""

    meta: Meta
    spec: ModelDeploymentSpec
    raw_status: Obj
    settings: OperatorSettings
    versions: list[Obj]
    """The model's ModelVersions."""
    deployment: Obj | None = None
    service: Obj | None = None
    hpa: Obj | None = None
    failure: Finding | None = None
    """Why the pods of a rollout past its deadline do not become ready."""


@dataclass(frozen=True)
class Refusal:
    """Why the wanted version cannot be served; `stalled` when only a spec change helps."""

    reason: str
    message: str
    stalled: bool
    keep: Obj | None = None
    """The version that keeps serving (rendered again if its Deployment is gone)."""


@dataclass(frozen=True)
class Plan:
    """What to do: the version to render the Deployment for (None: keep it) and the Outcome."""

    render: Obj | None
    outcome: Outcome


DIGESTED_WHEN_SET = ("topology_spread_constraints",)
"""Spec fields added after `failedRollout.specDigest`: digested only when set, so the digest of
a spec without them (one recorded by an older operator) is unchanged, and an operator upgrade
does not retry a failed version."""


def spec_digest(spec: ModelDeploymentSpec) -> str:
    """The spec without what scaling changes (`replicas`, `autoscaling`), digested."""
    unset = {name for name in DIGESTED_WHEN_SET if getattr(spec, name) is None}
    kept = spec.model_dump(mode="json", exclude={"replicas", "autoscaling", *unset})
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def active_failure(status: Obj, generation: int, spec: ModelDeploymentSpec) -> FailedRollout | None:
    """The recorded failed rollout, while the spec (scaling aside) is the one it failed under."""
    raw = status.get("failedRollout")
    if not raw:
        return None
    failed = FailedRollout.model_validate(raw)
    if failed.spec_digest is not None:
        return failed if failed.spec_digest == spec_digest(spec) else None
    return failed if failed.generation == generation else None


def incompatible(
    spec: ModelDeploymentSpec, wanted: Obj, serving: Obj | None, *, stalled: bool
) -> Refusal | None:
    """Why `wanted` cannot replace the serving version, if it cannot."""
    if serving is None or version_number(serving) == version_number(wanted):
        return None
    found = difference(serving, wanted)
    if found is None:
        return None
    now, new = version_number(serving), version_number(wanted)
    text = (
        f"{spec.model} v{new} is not compatible with v{now}, which keeps serving: {found}. "
        "Serve it from a new ModelDeployment."
    )
    return Refusal("IncompatibleVersion", text, stalled=stalled, keep=serving)


def select_version(
    spec: ModelDeploymentSpec,
    versions: list[Obj],
    failed: FailedRollout | None,
    serving: Obj | None = None,
) -> Obj | Refusal:
    """The ModelVersion the spec asks for, or why it cannot be served; `serving` is the version
    that serves now (nothing incompatible with it is chosen)."""
    excluded = failed.version if failed else None
    if spec.policy == "Pinned":
        number = spec.version
        found = next((v for v in versions if v["spec"]["version"] == number), None)
        if found is None:
            text = f"ModelVersion {spec.model} v{number} does not exist (yet)."
            return Refusal("VersionNotFound", text, stalled=False)
        verdict = raw_condition(found.get("status"), VALIDATED)
        if verdict.get("status") != "True":
            if not verdict:
                text = f"{spec.model} v{number} is not judged yet."
                return Refusal("VersionNotValidated", text, stalled=False)
            text = f"{spec.model} v{number} is not validated: {verdict.get('message', '')}"
            return Refusal("VersionNotValidated", text, stalled=True)
        if number == excluded and failed is not None:
            return Refusal(failed.reason, failed.message, stalled=True)
        return incompatible(spec, found, serving, stalled=True) or found
    candidates = [
        v
        for v in versions
        if is_validated(v)
        and version_number(v) != excluded
        and not (v.get("metadata") or {}).get("deletionTimestamp")  # on its way out
    ]
    if not candidates:
        text = f"No validated ModelVersion of {spec.model}" + (
            f" other than v{excluded}, whose rollout failed." if excluded else " yet."
        )
        return Refusal("VersionNotFound", text, stalled=False)
    newest = max(candidates, key=version_number)
    refusal = incompatible(spec, newest, serving, stalled=False)
    if refusal is None:
        return newest
    compatible = [v for v in candidates if incompatible(spec, v, serving, stalled=False) is None]
    best = max(compatible, key=version_number) if compatible else None
    if best is not None and serving is not None and version_number(best) > version_number(serving):
        return best  # a newer compatible version first; the refusal is said once it serves
    return refusal


def plan(
    meta: Meta,
    status: Obj,
    spec: ModelDeploymentSpec,
    versions: list[Obj],
    deployment: Obj | None,
    failure: Finding | None = None,
) -> Plan:
    """The version to render and the status (see the module docstring)."""
    generation = meta.generation
    failed = active_failure(status, generation, spec)
    by_number = {int(v["spec"]["version"]): v for v in versions}
    serving, last_good = status.get("servingVersion"), status.get("lastGoodVersion")
    rendered = rendered_version(deployment)
    current = next(
        (by_number[n] for n in (serving, last_good, rendered) if n is not None and n in by_number),
        None,
    )
    fields: Obj = {
        "selector": selector_string(meta.name),
        "endpoint": endpoint(meta.name, meta.namespace, spec.model),
        "failedRollout": failed.model_dump(by_alias=True) if failed else None,
    }
    choice = select_version(spec, versions, failed, current)
    refusal = choice if isinstance(choice, Refusal) else None
    previous_degraded = raw_condition(status, DEGRADED).get("reason")
    if refusal is not None and rendered is None and refusal.keep is not None:
        choice, refusal = refusal.keep, None  # its Deployment is gone: serve it again first
    if refusal is not None and rendered is None:
        return Plan(None, _refused_only(fields, refusal, previous_degraded))
    if isinstance(choice, dict) and choice["spec"]["version"] != rendered:
        number = int(choice["spec"]["version"])
        text = f"Rolling out {spec.model} v{number}" + (
            f" (serving v{serving})." if serving else "."
        )
        conditions = [
            ConditionUpdate(PROGRESSING, "True", "RollingOut", text),
            ConditionUpdate(RECONCILING, "True", "RollingOut", text),
            ConditionUpdate(STALLED, "False", "RollingOut", text),
            _not_degraded(),
            _ready(serving, spec.model, status, text),
        ]
        fields |= {"targetVersion": number}
        return Plan(choice, _outcome(fields, conditions, Event("Normal", "RollingOut", text)))
    # Here a Deployment exists and is rendered for a version (else the branches above return).
    assert deployment is not None
    assert rendered is not None
    state = rollout(deployment)
    fields |= {
        "replicas": state.replicas,
        "readyReplicas": state.ready,
        "readyReplicasText": f"{state.ready}/{state.wanted}",
    }
    if state.state == "Failed" and rendered != serving:
        again = failed is not None and failed.version == rendered
        if again and failed is not None:
            failure = Finding(failed.reason, failed.message)  # as reported the first time
        plan_ = _failed(spec, fields, state, rendered, last_good, by_number, failure, generation)
        failed_record = plan_.outcome.status.get("failedRollout")
        if failed_record:
            digest = {**failed_record, "specDigest": spec_digest(spec)}
            status_ = {**plan_.outcome.status, "failedRollout": digest}
            plan_ = Plan(plan_.render, replace(plan_.outcome, status=status_))
        return Plan(plan_.render, plan_.outcome.without_events()) if again else plan_
    return Plan(
        by_number.get(rendered),
        _track(spec, fields, state, rendered, serving, refusal, previous_degraded, failure),
    )


def _track(
    spec: ModelDeploymentSpec,
    fields: Obj,
    state: Rollout,
    rendered: int,
    serving: int | None,
    refusal: Refusal | None,
    previous_degraded: str | None,
    failure: Finding | None,
) -> Outcome:
    model, event = spec.model, None
    if state.state == "Complete":
        fields |= {"servingVersion": rendered, "lastGoodVersion": rendered, "targetVersion": None}
        text = f"Serving {model} v{rendered} on {state.ready} of {spec.replicas} pods."
        if state.available == 0:
            ready = ConditionUpdate(READY, "False", "NoReadyPods", text)
        else:
            ready = ConditionUpdate(READY, "True", "Serving", text)
        progressing = ConditionUpdate(PROGRESSING, "False", "RolloutComplete", text)
        reconciling = ConditionUpdate(RECONCILING, "False", "RolloutComplete", text)
        if serving != rendered:
            event = Event("Normal", "RolloutComplete", text)
    else:
        moving = rendered != serving
        verb = f"rolling out v{rendered}" if moving else "scaling"
        text = f"{model}: {verb}, {state.message}."
        if failure is not None:
            text = f"{model} v{rendered}: pods do not become ready: {failure.message}"
        reason = "RollingOut" if moving else "Scaling"
        progressing = ConditionUpdate(PROGRESSING, "True", reason, text)
        reconciling = ConditionUpdate(RECONCILING, "True", reason, text)
        fields |= {"targetVersion": rendered if moving else None}
        if moving:
            ready = _ready(serving, model, {"readyReplicas": state.available}, text)
        else:  # the served version is short of pods: not ready, with the pods' own reason
            why = failure.reason if failure is not None else "Scaling"
            ready = ConditionUpdate(READY, "False", why, text)
    conditions = [ready, progressing, reconciling]
    if refusal is not None:
        conditions += [
            ConditionUpdate(DEGRADED, "True", refusal.reason, refusal.message),
            ConditionUpdate(
                STALLED, "True" if refusal.stalled else "False", refusal.reason, refusal.message
            ),
        ]
        if previous_degraded != refusal.reason:
            event = Event(_severity(refusal), refusal.reason, refusal.message)
    else:
        conditions += [_not_degraded(), ConditionUpdate(STALLED, "False", ready.reason, text)]
    return _outcome(fields, conditions, event)


def _failed(
    spec: ModelDeploymentSpec,
    fields: Obj,
    state: Rollout,
    rendered: int,
    last_good: int | None,
    by_number: dict[int, Obj],
    failure: Finding | None,
    generation: int,
) -> Plan:
    why = failure or Finding("ProgressDeadlineExceeded", state.message)
    record = FailedRollout(
        version=rendered, generation=generation, reason=why.reason, message=why.message[:4096]
    )
    fields |= {"failedRollout": record.model_dump(by_alias=True)}
    good = by_number.get(last_good) if last_good is not None else None
    deadline = spec.rollout.progress_deadline_seconds
    if good is None:
        text = (
            f"{spec.model} v{rendered} did not become ready within {deadline}s and there is no "
            f"earlier version to roll back to: {why.message}"
        )
        conditions = [
            ConditionUpdate(READY, "False", "RolloutFailed", text),
            ConditionUpdate(PROGRESSING, "False", "RolloutFailed", text),
            ConditionUpdate(RECONCILING, "False", "RolloutFailed", text),
            ConditionUpdate(STALLED, "True", "RolloutFailed", text),
            ConditionUpdate(DEGRADED, "True", why.reason, text),
        ]
        return Plan(None, _outcome(fields, conditions, Event("Warning", "RolloutFailed", text)))
    text = (
        f"{spec.model} v{rendered} did not become ready within {deadline}s ({why.reason}: "
        f"{why.message}); rolled back to v{last_good}, which keeps serving."
    )
    record = record.model_copy(update={"reason": "RollbackPerformed", "message": text[:4096]})
    fields |= {"failedRollout": record.model_dump(by_alias=True), "targetVersion": last_good}
    conditions = [
        ConditionUpdate(READY, "True" if state.available else "False", "Serving", text),
        ConditionUpdate(PROGRESSING, "True", "RollingBack", text),
        ConditionUpdate(RECONCILING, "True", "RollingBack", text),
        ConditionUpdate(STALLED, "False", "RollingBack", text),
        ConditionUpdate(DEGRADED, "True", "RollbackPerformed", text),
    ]
    return Plan(good, _outcome(fields, conditions, Event("Warning", "RollbackPerformed", text)))


def _refused_only(fields: Obj, refusal: Refusal, previous_degraded: str | None) -> Outcome:
    """Nothing is deployed and the wanted version cannot be: say why, deploy nothing."""
    fields |= {"replicas": 0, "readyReplicas": 0, "readyReplicasText": "0/0"}
    stalled: ConditionStatus = "True" if refusal.stalled else "False"
    conditions = [
        ConditionUpdate(READY, "False", refusal.reason, refusal.message),
        ConditionUpdate(PROGRESSING, "False", refusal.reason, refusal.message),
        ConditionUpdate(
            RECONCILING, "False" if refusal.stalled else "True", refusal.reason, refusal.message
        ),
        ConditionUpdate(STALLED, stalled, refusal.reason, refusal.message),
        ConditionUpdate(DEGRADED, "True", refusal.reason, refusal.message),
    ]
    if previous_degraded == refusal.reason:
        return _outcome(fields, conditions)
    return _outcome(fields, conditions, Event(_severity(refusal), refusal.reason, refusal.message))


def _severity(refusal: Refusal) -> EventType:
    """Normal for a routine wait (the version is not there or not judged yet), else Warning."""
    return "Normal" if refusal.reason in WAITS and not refusal.stalled else "Warning"


def _outcome(fields: Obj, conditions: list[ConditionUpdate], event: Event | None = None) -> Outcome:
    return Outcome(status=fields, conditions=tuple(conditions), events=(event,) if event else ())


def _not_degraded() -> ConditionUpdate:
    return ConditionUpdate(
        DEGRADED, "False", "AsExpected", "Serving the version the spec asks for."
    )


def _ready(serving: int | None, model: str, status: Obj, text: str) -> ConditionUpdate:
    if serving is not None and int(status.get("readyReplicas") or 0) > 0:
        return ConditionUpdate(READY, "True", "Serving", f"Serving {model} v{serving}; {text}")
    return ConditionUpdate(READY, "False", "RollingOut", text)


def links(name: str, serving: int | None, versions: list[Obj]) -> tuple[list[str], list[str]]:
    """ModelVersions whose `status.deployments` must list this ModelDeployment, and those that
    list it but no longer should: (link, unlink), by name."""
    wanted, unwanted = [], []
    for version in versions:
        shown = name in listed(version)
        serves = version_number(version) == serving
        if serves and not shown:
            wanted.append(str(meta_of(version)["name"]))
        elif shown and not serves:
            unwanted.append(str(meta_of(version)["name"]))
    return wanted, unwanted


def decide(inputs: ModelDeploymentInputs, now: datetime) -> Outcome:
    """The plan's status, the children that differ from what runs, and the version links."""
    meta_, spec, settings = inputs.meta, inputs.spec, inputs.settings
    decided = plan(
        meta_, inputs.raw_status, spec, inputs.versions, inputs.deployment, inputs.failure
    )
    actions: list[Action] = []
    if decided.render is not None:
        actions.append(
            Ensure(render_service_account(meta_.namespace, settings.serving_service_account))
        )
        wanted = stamped(render_deployment(meta_, spec, decided.render, settings))
        if differs(wanted, inputs.deployment):
            actions.append(Apply(wanted))
    if decided.render is not None or inputs.deployment is not None:
        service = stamped(render_service(meta_, spec))
        if differs(service, inputs.service):
            actions.append(Apply(service))
        hpa = render_hpa(meta_, spec)
        if hpa is not None and differs(stamped(hpa), inputs.hpa):
            actions.append(Apply(stamped(hpa)))
        elif hpa is None and inputs.hpa is not None:
            actions.append(Delete(HPAS.ref(meta_.namespace, child_name(meta_.name))))
    serving = decided.outcome.status.get("servingVersion", inputs.raw_status.get("servingVersion"))
    linked, unlinked = links(meta_.name, serving, inputs.versions)
    actions += [link(meta_.namespace, v, meta_.name, serving=True) for v in linked]
    actions += [link(meta_.namespace, v, meta_.name, serving=False) for v in unlinked]
    return replace(decided.outcome, actions=tuple(actions))
