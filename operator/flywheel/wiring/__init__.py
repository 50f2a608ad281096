"""kopf wiring: the only package that knows kopf's calling conventions.

kopf lists and watches every resource the controllers need (our five kinds; Jobs, Deployments,
Services and HPAs labelled `app.kubernetes.io/managed-by=flywheel`, selected by the API server),
keeps each in an in-memory index (the watch cache the controllers read), and hands every event
to the :class:`~flywheel.wiring.routing.Router`, which queues the reconciles it concerns. kopf
calls no event handler before every index holds its initial list, so no reconcile decides on a
half-filled cache. kopf keeps no state on our objects: no annotations, no finalizers, nothing in
`status`.

:func:`build_registry` returns a fresh registry, so nothing is registered at import time and
tests can build as many operators as they like.
"""

from __future__ import annotations

from typing import Any

import kopf

from flywheel.core.objects import meta_of
from flywheel.core.resources import Resource
from flywheel.runtime.store import trim
from flywheel.wiring.lifecycle import register_lifecycle
from flywheel.wiring.operator import Operator


def index_id(resource: Resource) -> str:
    """The id of a resource's cache index (and the kwarg kopf passes it under)."""
    return f"cache_{resource.plural}"


def build_registry(operator: Operator) -> kopf.OperatorRegistry:
    """Every handler of the operator."""
    registry = kopf.OperatorRegistry()
    register_lifecycle(registry, operator, {index_id(r): r for r in operator.resources})
    for resource in operator.resources:
        _register_resource(registry, operator, resource)
    return registry


def _register_resource(
    registry: kopf.OperatorRegistry, operator: Operator, resource: Resource
) -> None:
    where = (resource.group, resource.version, resource.plural)

    async def cache(body: kopf.Body, **_: Any) -> dict[Any, Any]:
        # async: kopf runs a sync handler in a thread pool, one hop per watch event
        obj = trim(resource, body)
        found = meta_of(obj)
        namespace, name = found.get("namespace"), found.get("name")
        return {(namespace, name): obj, (namespace,): obj}

    async def route(event: kopf.RawEvent, **_: Any) -> None:
        operator.router.route(resource, event.get("type"), event["object"])

    kopf.index(*where, id=index_id(resource), registry=registry)(cache)
    kopf.on.event(*where, id=f"route_{resource.plural}", registry=registry)(route)
