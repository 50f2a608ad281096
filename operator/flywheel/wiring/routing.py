"""Which reconciles a watch event asks for, as controller-runtime's `For`, `Owns` and `Watches`.

- An event of one of our objects wakes its own reconcile when something the operator acts on
  changed: a new object, a new generation (spec), labels or annotations (a refresh request), a
  deletion. A status-only change does not: the operator wrote it (and reads its own writes).
- An event of a child wakes the owner named by its controller owner reference.
- Any event of a resource another controller watches wakes the objects its mapping names (a
  Dataset wakes the runs waiting for it, a ModelVersion the deployments of its model).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flywheel.core.objects import Obj, controller_of, meta_of
from flywheel.core.resources import Resource
from flywheel.runtime.reconciler import Reconciler
from flywheel.runtime.store import CachedStore

Fingerprint = tuple[Any, ...]


def fingerprint(body: Obj, status_fields: tuple[str, ...] = ()) -> Fingerprint:
    """What a change must touch to concern the object's own reconcile (`status_fields`: the
    status fields people write, e.g. a ModelVersion's approval)."""
    found = meta_of(body)
    status = body.get("status") or {}
    return (
        repr([status.get(f) for f in status_fields]),
        found.get("generation"),
        tuple(sorted((found.get("labels") or {}).items())),
        tuple(sorted((found.get("annotations") or {}).items())),
        found.get("deletionTimestamp"),
        tuple(found.get("finalizers") or ()),
    )


@dataclass
class Router:
    """Maps watch events to the reconcilers' queues."""

    store: CachedStore
    reconcilers: list[Reconciler] = field(default_factory=list)
    listeners: list[Callable[[Resource, str], None]] = field(default_factory=list)
    """Told of every event's resource and namespace (the artifacts claims' guard)."""
    _seen: dict[tuple[str, str, str], Fingerprint] = field(default_factory=dict)

    def route(self, resource: Resource, kind: str | None, body: Mapping[str, Any]) -> int:
        """Handle one event (`kind`: ADDED, MODIFIED, DELETED, or None while listing); how many
        reconciles it asked for."""
        obj = dict(body)
        gone = kind == "DELETED"
        self.store.observed(resource, obj, gone=gone)
        namespace = str(meta_of(obj).get("namespace"))
        for listener in self.listeners:
            listener(resource, namespace)
        asked = 0
        for reconciler in self.reconcilers:
            for target in self._targets(reconciler, resource, obj, gone):
                reconciler.enqueue(namespace, target)
                asked += 1
        return asked

    def _targets(
        self, reconciler: Reconciler, resource: Resource, obj: Obj, gone: bool
    ) -> Iterable[str]:
        controller = reconciler.controller
        name = str(meta_of(obj).get("name"))
        if resource == controller.resource and self._changed(
            resource, obj, gone, controller.status_wakes
        ):
            yield name
        if resource in controller.owns:
            owner = controller_of(obj)
            if owner is not None and owner[1] == controller.kind.kind:
                yield owner[2]
        for watch in controller.watches:
            if watch.resource == resource:
                yield from watch.map(obj, self.store)

    def _changed(
        self, resource: Resource, obj: Obj, gone: bool, status_fields: tuple[str, ...] = ()
    ) -> bool:
        found = meta_of(obj)
        key = (resource.plural, str(found.get("namespace")), str(found.get("name")))
        if gone:
            self._seen.pop(key, None)
            return True
        now = fingerprint(obj, status_fields)
        if self._seen.get(key) == now:
            return False
        self._seen[key] = now
        return True
