"""The watch cache that `gather` reads from, and what the operator's own writes add to it.

The objects come from kopf's in-memory indices (one per watched resource, fed by the watch
streams, see :mod:`flywheel.wiring`): kopf invokes no reconcile-triggering handler before every
index has its initial list, so a reconcile never decides on a half-filled cache. Objects are
stored trimmed (:func:`trim`: no managedFields, no Job pod template).

A watch event arrives some time after the write that caused it. So that a reconcile reads its
own writes, every object the operator writes is remembered with the resourceVersion the API
server returned, and preferred over the indexed copy until the watch delivers that very
resourceVersion (or the object is deleted, or `RECALL` seconds pass: a relist may skip it).
resourceVersions are only compared for equality, never ordered, as the API conventions require.

A status the operator decided but has not written yet (:mod:`.reports` writes statuses behind
the children) is read back too: :meth:`CachedStore.get` returns the object with its pending
status until the write lands.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from flywheel.core import resources
from flywheel.core.objects import Obj, meta_of
from flywheel.core.resources import Resource

RECALL = 30.0
"""Seconds a written object is preferred over the watch cache without its event arriving."""

Index = Mapping[Hashable, Iterable[Obj]]
"""A kopf index: key -> the values stored under it (one object per (namespace, name) key; every
object of a namespace under the (namespace,) key)."""


class Store(Protocol):
    """Read access to the watch cache."""

    def get(self, resource: Resource, namespace: str, name: str) -> Obj | None:
        """The object, or None."""

    def list(self, resource: Resource, namespace: str) -> list[Obj]:
        """Every object of the resource in the namespace."""

    def wrote(self, resource: Resource, obj: Obj) -> None:
        """The API server's answer to one of the operator's writes (read your own writes)."""

    def deleted(self, resource: Resource, namespace: str, name: str) -> None:
        """The operator deleted an object."""


def trim(resource: Resource, body: Mapping[str, object]) -> Obj:
    """The cached form of an object: without managedFields, and a Job without its pod template
    (the largest part, which no decision reads)."""
    obj = dict(body)
    found = dict(meta_of(obj))
    found.pop("managedFields", None)
    obj["metadata"] = found
    spec = obj.get("spec")
    if resource == resources.JOBS and isinstance(spec, dict):
        obj["spec"] = {k: v for k, v in spec.items() if k != "template"}
    return obj


@dataclass(frozen=True, eq=False)
class Held:
    """Status fields decided for one object (by its uid) and not written yet."""

    uid: str | None
    fields: Mapping[str, Any]
    """Top-level status fields as decided; None: removed. Other fields (another controller's
    links) are the API server's."""
    since: float
    """When the oldest of these decisions was taken (monotonic seconds)."""

    def over(self, status: Mapping[str, Any]) -> Obj:
        """`status` with these fields decided."""
        merged = {**status, **self.fields}
        return {key: value for key, value in merged.items() if value is not None}


@dataclass
class _Written:
    version: str | None
    """The resourceVersion the API server answered; None for a deletion."""
    obj: Obj | None
    until: float


@dataclass
class CachedStore:
    """The watch cache (kopf's indices), with the operator's own recent writes on top."""

    indexes: dict[Resource, Index] = field(default_factory=dict)
    _written: dict[tuple[Resource, str, str], _Written] = field(default_factory=dict)
    _pending: dict[tuple[Resource, str, str], Held] = field(default_factory=dict)

    def attach(self, resource: Resource, index: Index) -> None:
        """Read `resource` from this index."""
        self.indexes[resource] = index

    def _indexed(self, resource: Resource, namespace: str, name: str) -> Obj | None:
        index = self.indexes.get(resource)
        if index is None:
            raise LookupError(f"{resource.plural} are not watched")
        return next(iter(index.get((namespace, name), ())), None)

    def get(self, resource: Resource, namespace: str, name: str) -> Obj | None:
        """The freshest copy, with the status the operator decided and has yet to write."""
        found = self.server(resource, namespace, name)
        held = self._pending.get((resource, namespace, name))
        if found is None or held is None or held.uid != meta_of(found).get("uid"):
            return found  # (a held status of an object deleted and created again is not its)
        return {**found, "status": held.over(found.get("status") or {})}

    def server(self, resource: Resource, namespace: str, name: str) -> Obj | None:
        """The API server's copy: the operator's own write until the watch catches up with it."""
        indexed = self._indexed(resource, namespace, name)
        key = (resource, namespace, name)
        written = self._written.get(key)
        if written is None:
            return indexed
        if time.monotonic() > written.until or (
            indexed is not None and meta_of(indexed).get("resourceVersion") == written.version
        ):
            del self._written[key]
            return indexed
        return written.obj

    def list(self, resource: Resource, namespace: str) -> list[Obj]:
        """Every object of the namespace, each in its freshest copy."""
        index = self.indexes.get(resource)
        if index is None:
            raise LookupError(f"{resource.plural} are not watched")
        names = {str(meta_of(o).get("name")) for o in index.get((namespace,), ())}
        names |= {n for (r, ns, n) in self._written if r == resource and ns == namespace}
        found = (self.get(resource, namespace, name) for name in sorted(names))
        return [obj for obj in found if obj is not None]

    def wrote(self, resource: Resource, obj: Obj) -> None:
        """The API server's answer to one of the operator's writes."""
        found = meta_of(obj)
        key = (resource, str(found.get("namespace")), str(found.get("name")))
        version = found.get("resourceVersion")
        indexed = self._indexed(*key) if resource in self.indexes else None
        if indexed is not None and meta_of(indexed).get("resourceVersion") == version:
            self._written.pop(key, None)  # a no-op write: the cache has it already
            return
        self._written[key] = _Written(version, trim(resource, obj), time.monotonic() + RECALL)

    def deleted(self, resource: Resource, namespace: str, name: str) -> None:
        """The operator deleted an object: it reads as gone until the watch says so too."""
        self._written[(resource, namespace, name)] = _Written(None, None, time.monotonic() + RECALL)
        self._pending.pop((resource, namespace, name), None)

    def pending(self, resource: Resource, namespace: str, name: str) -> Held | None:
        """The status decided for the object and not written yet, if any."""
        return self._pending.get((resource, namespace, name))

    def hold(self, resource: Resource, namespace: str, name: str, held: Held) -> None:
        """Status fields decided and not written yet: read back from now on."""
        self._pending[(resource, namespace, name)] = held

    def release(self, resource: Resource, namespace: str, name: str, held: Held) -> None:
        """That status is written (or given up): stop reading it back, unless a newer one was
        decided meanwhile."""
        key = (resource, namespace, name)
        if self._pending.get(key) is held:
            del self._pending[key]

    def observed(self, resource: Resource, body: Mapping[str, object], *, gone: bool) -> None:
        """A watch event: the operator's write it delivers (or a deletion) ends the overlay."""
        found = meta_of(dict(body))
        key = (resource, str(found.get("namespace")), str(found.get("name")))
        if gone:
            self._pending.pop(key, None)
        written = self._written.get(key)
        if written is None:
            return
        if gone or written.version == found.get("resourceVersion"):
            del self._written[key]
