"""The contract every kind's controller follows, and what its `gather` may use.

A controller is `gather` (every read its decision needs: the watch cache first, the API or a
pod only where the cache cannot answer) → `decide(inputs, now) -> Outcome` (pure, over one
typed inputs object) → `act` (shared by all kinds, :mod:`flywheel.runtime.act`: children,
status, Events). It also says which watch events concern which of its objects, as
controller-runtime's `Owns()` and `Watches()` do: children map to their controlling owner,
other kinds through a function over the cache.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from flywheel.api.kinds import Kind
from flywheel.core.objects import Obj
from flywheel.core.outcome import Outcome
from flywheel.core.resources import CLAIMS, Resource, of_kind
from flywheel.core.target import Target
from flywheel.kube.api import KubeApi
from flywheel.runtime.store import Store
from flywheel.settings import OperatorSettings

InputsT = TypeVar("InputsT")


class PodHttp(Protocol):
    """Plain HTTP to serving pods and Prometheus (:mod:`flywheel.kube.podhttp`)."""

    async def get_text(self, url: str) -> str | None:
        """The body of a GET (any status), None without an answer."""

    async def get_ok(self, url: str, params: dict[str, str] | None = None) -> str:
        """The body of a GET answered 200; `HttpFailure` otherwise."""

    async def prometheus_vector(
        self, base_url: str, query: str
    ) -> list[tuple[dict[str, str], float]]:
        """An instant query's vector."""


@dataclass(frozen=True)
class Env:
    """What a controller's `gather` and the shared `act` work with."""

    kube: KubeApi
    store: Store
    settings: OperatorSettings
    http: PodHttp


Mapper = Callable[[Obj, Store], Iterable[str]]
"""Names of the controller's objects (in the event's namespace) that an event concerns."""
Gather = Callable[[Env, Target[Any, Any], datetime], Awaitable[InputsT]]
"""Every read the decision needs."""
Decide = Callable[[InputsT, datetime], Outcome]
"""The pure decision."""


@dataclass(frozen=True)
class Watch:
    """A resource whose watch events wake some of this controller's objects."""

    resource: Resource
    map: Mapper


def _nothing(*_: object) -> None:
    """No hook."""


def _never(_: Target[Any, Any]) -> bool:
    return False


def claim_events(kind_resource: Resource) -> Watch:
    """Wake every object of the namespace when its artifacts claim starts or ends being
    deleted (routine claim events, such as its protection being added, wake nothing)."""

    def objects(claim: Obj, store: Store) -> Iterable[str]:
        found = claim.get("metadata") or {}
        if not found.get("deletionTimestamp"):
            return ()
        namespace = str(found.get("namespace"))
        return [str(o["metadata"]["name"]) for o in store.list(kind_resource, namespace)]

    return Watch(CLAIMS, objects)


@dataclass(frozen=True)
class Controller(Generic[InputsT]):
    """One kind's controller, declared: its kind, its gather and decide, what wakes it.

    The reconcile loop (:mod:`.reconciler`) and the writes (:mod:`.act`) are the same for every
    kind; a controller is only this declaration.
    """

    kind: Kind
    gather: Gather[InputsT]
    decide: Decide[InputsT]
    owns: tuple[Resource, ...] = ()
    """Children: an event of one wakes the object named by its controlling owner reference."""
    watches: tuple[Watch, ...] = ()
    observe: Callable[[Target[Any, Any], Outcome], None] = _nothing
    """After `act`: export what the outcome says to the operator's metrics."""
    forget: Callable[[str, str], None] = _nothing
    """The object (namespace, name) is gone: drop what is kept about it in memory."""
    needs_artifacts: Callable[[Target[Any, Any]], bool] = _never
    """Whether the object needs the namespace's artifacts claim now; it then waits with reason
    `ArtifactsUnavailable` while the claim is being deleted (:mod:`flywheel.core.claims`)."""
    status_wakes: tuple[str, ...] = ()
    """Top-level status fields that people (not only the operator) write: a change of one wakes
    the object (by default a status-only change does not: the operator wrote it)."""
    finalizes: bool = False
    """Objects being deleted are reconciled too (the kind holds a finalizer it must release);
    otherwise a deleting object is left alone."""

    @property
    def resource(self) -> Resource:
        """The controller's own resource."""
        return of_kind(self.kind)
