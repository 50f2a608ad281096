"""An in-memory FAKE of the operator's Kubernetes I/O, for unit tests of gather → decide → act.

It implements :class:`flywheel.kube.api.KubeApi` (the client) and
:class:`flywheel.runtime.store.Store` (the watch cache) over one dict of objects, so a test can
seed objects, run a controller's real reconcile (:class:`flywheel.runtime.reconciler.Reconciler`)
and read back every write and Event. It is a fake, not an API server; its limits:

- no schema or CEL validation, no defaulting, no admission (RBAC, pod security), no garbage
  collection, no controllers (a Job never runs: tests set its status);
- the cache is always current: reads see every write at once (the real one lags the watch);
- `resourceVersion` is a global counter; `generation` starts at 1 and grows when a merge patch
  or an apply changes `spec`;
- server-side apply is a deep merge of the apply configuration over the object, without field
  ownership (a field dropped from a later apply stays), except ModelVersion status links, which
  are kept per field manager as the real API does;
- label selectors are equality only;
- faults it cannot produce (a refused connection, a 403) are injected with :meth:`fail_next`.

Each request yields to the event loop once, so concurrent reconciles interleave as they would.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from flywheel.core import resources
from flywheel.core.admission import merge_patch
from flywheel.core.objects import Obj, ObjectRef, meta_of
from flywheel.core.outcome import Event
from flywheel.core.resources import Resource
from flywheel.kube.api import Subresource
from flywheel.kube.errors import Conflict, KubeError, NotFound
from flywheel.opmetrics import OperatorMetrics
from flywheel.runtime.act import Actor
from flywheel.runtime.controller import Controller, Env
from flywheel.runtime.reconciler import Reconciler
from flywheel.settings import OperatorSettings

Key = tuple[str, str, str]


@dataclass
class FakeCluster:
    """Objects by (plural, namespace, name), and everything written to them."""

    objects: dict[Key, Obj] = field(default_factory=dict)
    events: list[tuple[str, Event]] = field(default_factory=list)
    """(`Kind namespace/name`, Event) in the order posted."""
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    """(verb, plural, name) of every request."""
    links: dict[Key, dict[str, list[Obj]]] = field(default_factory=dict)
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _faults: dict[str, list[KubeError]] = field(default_factory=dict)

    # Seeding and inspection ---------------------------------------------------------------

    def add(self, body: Obj) -> Obj:
        """Store an object as the API server would create it (uid, generation, times)."""
        obj = copy.deepcopy(body)
        found = obj.setdefault("metadata", {})
        found.setdefault("uid", f"uid-{found['name']}")
        found.setdefault("generation", 1)
        found.setdefault("creationTimestamp", "2026-12-01T12:00:00Z")
        found["resourceVersion"] = str(next(self._versions))
        job = (found.get("labels") or {}).get("job-name")
        owner = self.objects.get(("jobs", found.get("namespace"), job)) if job else None
        if obj.get("kind") == "Pod" and owner is not None and "ownerReferences" not in found:
            # What the Job controller does: its pods name the Job as their controller.
            found["ownerReferences"] = [
                {"kind": "Job", "name": job, "uid": owner["metadata"]["uid"], "controller": True}
            ]
        self.objects[self._key(obj)] = obj
        return copy.deepcopy(obj)

    def obj(self, resource: Resource, namespace: str, name: str) -> Obj:
        """An object that must exist."""
        return copy.deepcopy(self.objects[(resource.plural, namespace, name)])

    def named(self, resource: Resource, namespace: str) -> list[str]:
        """The names of a resource's objects in a namespace."""
        return sorted(n for (p, ns, n) in self.objects if p == resource.plural and ns == namespace)

    def set_status(self, resource: Resource, namespace: str, name: str, status: Obj) -> None:
        """Replace an object's status (what another controller would write)."""
        key = (resource.plural, namespace, name)
        self.objects[key]["status"] = copy.deepcopy(status)
        self._touch(self.objects[key])

    def writes(self) -> list[tuple[str, str, str]]:
        """The requests that were not reads."""
        return [r for r in self.requests if r[0] not in ("get", "list")]

    def fail_next(self, verb: str, error: KubeError) -> None:
        """Make the next request of this verb fail."""
        self._faults.setdefault(verb, []).append(error)

    # KubeApi ----------------------------------------------------------------------------

    async def get(self, resource: Resource, namespace: str, name: str) -> Obj | None:
        """The object, or None."""
        await self._request("get", resource.plural, name)
        found = self.objects.get((resource.plural, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def list(
        self, resource: Resource, namespace: str, labels: Mapping[str, str] | None = None
    ) -> list[Obj]:
        """Objects of a namespace whose labels include `labels`."""
        await self._request("list", resource.plural, "")
        return [o for o in self.current(resource, namespace) if _matches(o, labels or {})]

    async def create(self, body: Obj) -> Obj:
        """Create; Conflict when the name is taken."""
        found = meta_of(body)
        name = found.get("name") or f"{found['generateName']}{next(self._versions)}"
        await self._request("create", _resource(body).plural, name)
        obj = copy.deepcopy(body)
        obj["metadata"]["name"] = name
        key = self._key(obj)
        if key in self.objects:
            raise Conflict(409, f"{obj['kind']} {name} already exists")
        if obj["kind"] == "Event":
            regarding = obj["involvedObject"]
            where = f"{regarding['kind']} {regarding['namespace']}/{regarding['name']}"
            self.events.append((where, Event(obj["type"], obj["reason"], obj["message"])))
        return self.add(obj)

    async def apply(self, body: Obj, *, manager: str, subresource: Subresource = None) -> Obj:
        """Server-side apply, approximated (see the module docstring)."""
        resource = _resource(body)
        await self._request("apply", resource.plural, meta_of(body)["name"])
        key = self._key(body)
        if subresource == "status":
            if key not in self.objects:
                raise NotFound(404, f"{body['kind']} {key[2]} not found")
            return self._apply_status(key, body, manager)
        if key not in self.objects:
            return self.add(body)
        current = self.objects[key]
        merged = _deep_merge(current, {k: v for k, v in body.items() if k != "status"})
        self._replace(key, merged)
        return copy.deepcopy(self.objects[key])

    async def merge_patch(
        self, ref: ObjectRef, patch: Obj, *, subresource: Subresource = None
    ) -> Obj:
        """A JSON merge patch; a `metadata.resourceVersion` in it is a precondition."""
        resource = resources.BY_KIND[(ref.api_version, ref.kind)]
        await self._request("patch", resource.plural, ref.name)
        key = (resource.plural, ref.namespace, ref.name)
        current = self.objects.get(key)
        if current is None:
            raise NotFound(404, f"{ref} not found")
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != meta_of(current)["resourceVersion"]:
            raise Conflict(409, f"{ref} was modified")
        if subresource == "status":
            patch = {"status": patch.get("status")}
        else:
            patch = {k: v for k, v in patch.items() if k != "status"}
        self._replace(key, merge_patch(current, patch))
        return copy.deepcopy(self.objects[key])

    async def delete(self, ref: ObjectRef) -> bool:
        """Delete; False when already gone."""
        resource = resources.BY_KIND[(ref.api_version, ref.kind)]
        await self._request("delete", resource.plural, ref.name)
        return self.objects.pop((resource.plural, ref.namespace, ref.name), None) is not None

    async def post_event(self, regarding: Obj, event: Event) -> None:
        """Record an Event."""
        found = meta_of(regarding)
        await self._request("create", "events", found["name"])
        self.events.append((f"{regarding['kind']} {found['namespace']}/{found['name']}", event))

    # ------------------------------------------------------------------------------------

    def current(self, resource: Resource, namespace: str) -> builtins.list[Obj]:
        """Copies of a resource's objects in a namespace, by name."""
        return [
            copy.deepcopy(o)
            for (plural, ns, _), o in sorted(self.objects.items())
            if plural == resource.plural and ns == namespace
        ]

    async def _request(self, verb: str, plural: str, name: str) -> None:
        self.requests.append((verb, plural, name))
        await asyncio.sleep(0)
        faults = self._faults.get(verb)
        if faults:
            raise faults.pop(0)

    def _key(self, body: Obj) -> Key:
        found = meta_of(body)
        return (_resource(body).plural, str(found["namespace"]), str(found["name"]))

    def _touch(self, obj: Obj) -> None:
        obj["metadata"]["resourceVersion"] = str(next(self._versions))

    def _replace(self, key: Key, new: Obj) -> None:
        old = self.objects[key]
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        self.objects[key] = new
        self._touch(new)

    def _apply_status(self, key: Key, body: Obj, manager: str) -> Obj:
        entries = (body.get("status") or {}).get("deployments") or []
        owned = self.links.setdefault(key, {})
        owned[manager] = list(entries)
        obj = self.objects[key]
        linked = [e for entries in owned.values() for e in entries]
        obj.setdefault("status", {})["deployments"] = linked
        if not linked:
            obj["status"].pop("deployments")
        self._touch(obj)
        return copy.deepcopy(obj)


class FakeStore:
    """The fake cluster seen as the watch cache: always current (the real one lags)."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    def get(self, resource: Resource, namespace: str, name: str) -> Obj | None:
        """The current object."""
        found = self.cluster.objects.get((resource.plural, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def list(self, resource: Resource, namespace: str) -> list[Obj]:
        """The current objects of a namespace."""
        return self.cluster.current(resource, namespace)

    def wrote(self, resource: Resource, obj: Obj) -> None:
        """Nothing to do."""

    def deleted(self, resource: Resource, namespace: str, name: str) -> None:
        """Nothing to do."""


def _resource(body: Obj) -> Resource:
    return resources.BY_KIND[(str(body["apiVersion"]), str(body["kind"]))]


def _matches(obj: Obj, labels: Mapping[str, str]) -> bool:
    have = meta_of(obj).get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())


def _deep_merge(base: Any, update: Any) -> Any:
    if isinstance(base, dict) and isinstance(update, dict):
        merged = dict(base)
        for key, value in update.items():
            merged[key] = _deep_merge(base.get(key), value)
        return merged
    return copy.deepcopy(update)


@dataclass
class FakeHttp:
    """Serving pods and Prometheus as canned answers, by URL (a FAKE of
    :class:`flywheel.kube.podhttp.PodHttpClient`: an unknown URL fails as a refused connection
    would)."""

    answers: dict[str, str] = field(default_factory=dict)
    vectors: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    async def get_text(self, url: str) -> str | None:
        """The canned body, or None."""
        self.asked.append(url)
        return self.answers.get(url)

    async def get_ok(self, url: str, params: dict[str, str] | None = None) -> str:
        """The canned body, else HttpFailure."""
        from flywheel.kube.podhttp import HttpFailure

        self.asked.append(url)
        if url not in self.answers:
            raise HttpFailure(f"GET {url} failed: ConnectionRefusedError")
        return self.answers[url]

    async def prometheus_vector(
        self, base_url: str, query: str
    ) -> list[tuple[dict[str, str], float]]:
        """The canned vector of a query (empty when none)."""
        self.asked.append(query)
        return self.vectors.get(query, [])


@dataclass
class Clock:
    """A settable clock for reconcilers."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        """Move on by `timedelta(**delta)`; the new time."""
        self.now += timedelta(**delta)
        return self.now


T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass
class Harness:
    """A controller's real reconcile over the fake: one namespace, a settable clock."""

    controller: Controller[Any]
    cluster: FakeCluster = field(default_factory=FakeCluster)
    http: FakeHttp = field(default_factory=FakeHttp)
    settings: OperatorSettings = field(default_factory=OperatorSettings)
    clock: Clock = field(default_factory=lambda: Clock(T0))
    metrics: OperatorMetrics = field(default_factory=lambda: OperatorMetrics(CollectorRegistry()))
    namespace: str = "ns"

    def __post_init__(self) -> None:
        env = Env(
            kube=self.cluster, store=FakeStore(self.cluster), settings=self.settings, http=self.http
        )
        self.reconciler = Reconciler(
            self.controller, env, Actor(env), self.metrics, clock=self.clock
        )

    async def reconcile(self, name: str) -> tuple[timedelta | None, str]:
        """One reconcile of an object: (requeue after, result)."""
        return await self.reconciler.reconcile(self.namespace, name)

    async def handle(self, name: str) -> str:
        """One reconcile as a worker runs it (errors classified, back-off scheduled)."""
        return await self.reconciler.handle((self.namespace, name))

    def status(self, resource: Resource, name: str) -> Obj:
        """An object's status."""
        return dict(self.cluster.obj(resource, self.namespace, name).get("status") or {})

    def condition(self, resource: Resource, name: str, type_: str) -> tuple[str, str]:
        """(status, reason) of one condition ("", "" when absent)."""
        for found in self.status(resource, name).get("conditions") or ():
            if found["type"] == type_:
                return found["status"], found["reason"]
        return "", ""

    def message(self, resource: Resource, name: str, type_: str) -> str:
        """The message of one condition ("" when absent)."""
        for found in self.status(resource, name).get("conditions") or ():
            if found["type"] == type_:
                return str(found.get("message", ""))
        return ""

    def events(self, name: str) -> list[str]:
        """Reasons of the Events posted about one object, in order."""
        return [e.reason for where, e in self.cluster.events if where.endswith(f"/{name}")]


class FakeIndex(dict[Any, builtins.list[Obj]]):
    """A kopf index as :class:`flywheel.runtime.store.CachedStore` reads it (a FAKE of what
    `flywheel.wiring` registers): (namespace, name) -> [object], (namespace,) -> its objects."""

    def put(self, obj: Obj) -> None:
        """Index an object as a watch event would."""
        found = obj["metadata"]
        self[(found["namespace"], found["name"])] = [obj]
        rest = [
            o for o in self.get((found["namespace"],), []) if o["metadata"]["name"] != found["name"]
        ]
        self[(found["namespace"],)] = [*rest, obj]


class LiveIndex(Mapping[Any, builtins.list[Obj]]):
    """A kopf index that is always current with a :class:`FakeCluster` (a FAKE: the real one
    lags the watch), for composing :class:`flywheel.runtime.store.CachedStore` with the fake."""

    def __init__(self, cluster: FakeCluster, resource: Resource) -> None:
        self.cluster = cluster
        self.resource = resource

    def __getitem__(self, key: Any) -> builtins.list[Obj]:
        found = [
            copy.deepcopy(obj)
            for (plural, namespace, name), obj in sorted(self.cluster.objects.items())
            if plural == self.resource.plural and (namespace, name)[: len(key)] == tuple(key)
        ]
        if not found:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[Any]:
        return iter({(ns, n) for (p, ns, n) in self.cluster.objects if p == self.resource.plural})

    def __len__(self) -> int:
        return sum(1 for _ in self)
