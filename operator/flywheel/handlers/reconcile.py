"""One reconcile handler per kind, registered on create, update (spec) and resume.

Each handler is thin: parse the spec through :func:`flywheel.handlers.admission.admit`, then
hand the typed spec to the kind's controller. Until a kind has a controller, a valid object stays
`Reconciling=True`/`Ready=Unknown`, which is the truth: nothing has acted on it yet.
"""

from __future__ import annotations

from typing import Any

import kopf

from flywheel.api import API_GROUP, API_VERSION, KINDS, Kind
from flywheel.handlers.admission import admit
from flywheel.handlers.context import OperatorContext


def register_kind(registry: kopf.OperatorRegistry, kind: Kind) -> None:
    """Register the reconcile handler of one kind."""

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
            except kopf.TemporaryError:
                metrics.reconciles.labels(kind=kind.kind, result="retry").inc()
                raise
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


def register_kinds(registry: kopf.OperatorRegistry, *, skip: tuple[str, ...] = ()) -> None:
    """Register the generic reconcile handler of every kind without a controller of its own."""
    for kind in KINDS:
        if kind.kind not in skip:
            register_kind(registry, kind)
