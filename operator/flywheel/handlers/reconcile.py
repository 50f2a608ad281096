"""One reconcile handler per kind, registered on create, update (spec) and resume, and a
timer for the kinds whose controllers follow Jobs and schedules between events.

Each handler is thin: parse the spec through :func:`flywheel.handlers.admission.admit`, then
hand the typed spec to the kind's controller. Until a kind has a controller, a valid object stays
`Reconciling=True`/`Ready=Unknown`, which is the truth: nothing has acted on it yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import kopf
from pydantic import BaseModel

from flywheel.api import API_GROUP, API_VERSION, KINDS, Kind
from flywheel.conditions import READY, RECONCILING, ConditionUpdate, raw_condition
from flywheel.handlers.admission import admit
from flywheel.handlers.context import OperatorContext
from flywheel.handlers.outcome import apply
from flywheel.jobresult import Outcome
from flywheel.kube import ApiError

Work = Callable[
    [kopf.Body, BaseModel, dict[str, Any], kopf.Patch, OperatorContext], Awaitable[None]
]
"""A kind controller's work on an admitted spec: (body, spec, status, patch, context)."""


def register_kind(registry: kopf.OperatorRegistry, kind: Kind, work: Work | None = None) -> None:
    """Register the reconcile handler of one kind; `work` runs once the spec is admitted."""

    async def reconcile(
        body: kopf.Body,
        spec: kopf.Spec,
        status: kopf.Status,
        meta: kopf.Meta,
        patch: kopf.Patch,
        memo: OperatorContext,
        logger: kopf.Logger,
        **_: Any,
    ) -> None:
        metrics = memo.metrics
        with metrics.timed(kind.kind):
            try:
                parsed = admit(
                    kind,
                    body=body,
                    spec=spec,
                    status=status,
                    generation=meta.get("generation"),
                    patch=patch,
                    context=memo,
                    logger=logger,
                )
                if parsed is not None and work is not None:
                    await work(body, parsed, {**dict(status), **patch.status}, patch, memo)
            except kopf.TemporaryError:
                metrics.reconciles.labels(kind=kind.kind, result="retry").inc()
                raise
            except ApiError as error:
                if error.status != 403:
                    metrics.reconciles.labels(kind=kind.kind, result="error").inc()
                    metrics.errors.labels(kind=kind.kind, reason=type(error).__name__).inc()
                    raise
                metrics.reconciles.labels(kind=kind.kind, result="forbidden").inc()
                forbidden(error, body, {**dict(status), **patch.status}, patch)
                raise kopf.TemporaryError(error.reason_message, delay=FORBIDDEN_RETRY) from error
            except Exception as error:
                metrics.reconciles.labels(kind=kind.kind, result="error").inc()
                metrics.errors.labels(kind=kind.kind, reason=type(error).__name__).inc()
                raise
            if parsed is not None:
                metrics.reconciles.labels(kind=kind.kind, result="success").inc()

    handler_id = f"reconcile-{kind.singular}"
    resource = (API_GROUP, API_VERSION, kind.plural)
    kopf.on.resume(*resource, id=handler_id, registry=registry)(reconcile)
    kopf.on.create(*resource, id=handler_id, registry=registry)(reconcile)
    kopf.on.update(*resource, id=handler_id, field="spec", registry=registry)(reconcile)


FORBIDDEN_RETRY = 30
"""Seconds before a reconcile refused by RBAC is tried again (timers try at every tick)."""


def forbidden(error: ApiError, body: kopf.Body, status: dict[str, Any], patch: kopf.Patch) -> None:
    """The operator's own permissions are missing: say so on the object (Ready=False,
    reason Forbidden, the API server's sentence) and in a Warning Event, once per message."""
    message = f"The operator is not allowed to do its work: {error.reason_message}"
    ready = raw_condition(status, READY)
    again = ready.get("reason") == "Forbidden" and ready.get("message") == message
    outcome = Outcome(
        {},
        [
            ConditionUpdate(READY, "False", "Forbidden", message),
            ConditionUpdate(RECONCILING, "True", "Forbidden", message),
        ],
        "Warning",
        "" if again else "Forbidden",
        message,
    )
    apply(outcome, status, patch, body, body["metadata"].get("generation"))


def register_kinds(registry: kopf.OperatorRegistry, works: dict[str, Work]) -> None:
    """Register every kind's reconcile handler, with its controller's work where it has one."""
    for kind in KINDS:
        register_kind(registry, kind, works.get(kind.kind))


def register_timer(
    registry: kopf.OperatorRegistry,
    kind: Kind,
    work: Work,
    *,
    interval: float,
    when: Callable[..., bool] | None = None,
) -> None:
    """Run a kind's `work` every `interval` seconds on admitted generations (`when` filters)."""

    async def tick(
        body: kopf.Body,
        spec: kopf.Spec,
        status: kopf.Status,
        meta: kopf.Meta,
        patch: kopf.Patch,
        memo: OperatorContext,
        **_: Any,
    ) -> None:
        if status.get("observedGeneration") != meta.get("generation"):
            return  # the reconcile handler has not admitted this generation yet
        try:
            parsed = kind.spec.model_validate(dict(spec))
        except ValueError:
            return  # Stalled with InvalidSpec by the reconcile handler
        try:
            await work(body, parsed, dict(status), patch, memo)
        except ApiError as error:
            if error.status != 403:
                raise
            memo.metrics.reconciles.labels(kind=kind.kind, result="forbidden").inc()
            forbidden(error, body, {**dict(status), **patch.status}, patch)

    resource = (API_GROUP, API_VERSION, kind.plural)
    # The first tick waits one interval: the reconcile handler has just acted on a new object,
    # and a burst of creations would otherwise double its API calls at once.
    kopf.timer(
        *resource,
        id=f"follow-{kind.singular}",
        interval=interval,
        initial_delay=interval,
        when=when,
        registry=registry,
    )(tick)
