"""The operator assembled: five controllers, the watch cache, one reconciler per kind.

Built once in :mod:`flywheel.__main__` (no API connection yet) and handed to kopf as its memo;
:meth:`Operator.start` connects the client and starts the workers once kopf is up, and
:meth:`Operator.stop` stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from flywheel.controllers import dataset, modeldeployment, modelmonitor, modelversion, trainingrun
from flywheel.core.resources import Resource
from flywheel.kube.client import Kube
from flywheel.kube.errors import KubeError
from flywheel.kube.podhttp import PodHttpClient
from flywheel.opmetrics import OperatorMetrics
from flywheel.runtime.act import Actor
from flywheel.runtime.claims import ClaimGuard
from flywheel.runtime.controller import Controller, Env
from flywheel.runtime.events import EventQueue
from flywheel.runtime.reconciler import Reconciler
from flywheel.runtime.reports import Pace, StatusLane
from flywheel.runtime.store import CachedStore
from flywheel.settings import OperatorSettings
from flywheel.wiring.routing import Router


def build_controllers(metrics: OperatorMetrics) -> list[Controller[Any]]:
    """One controller per kind."""
    return [
        dataset.CONTROLLER,
        trainingrun.CONTROLLER,
        modelversion.CONTROLLER,
        modeldeployment.CONTROLLER,
        modelmonitor.build(metrics),
    ]


def watched(controllers: list[Controller[Any]]) -> list[Resource]:
    """Every resource the controllers need events of, own kinds first."""
    found: list[Resource] = [c.resource for c in controllers]
    for controller in controllers:
        for resource in (*controller.owns, *(w.resource for w in controller.watches)):
            if resource not in found:
                found.append(resource)
    return found


@dataclass
class Operator:
    """Everything the kopf handlers share."""

    settings: OperatorSettings
    metrics: OperatorMetrics
    controllers: list[Controller[Any]] = field(default_factory=list)
    store: CachedStore = field(default_factory=CachedStore)
    router: Router = field(init=False)
    kube: Kube | None = None
    events: EventQueue | None = None
    statuses: StatusLane | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.controllers:
            self.controllers = build_controllers(self.metrics)
        self.router = Router(self.store)

    @property
    def resources(self) -> list[Resource]:
        """The watched resources."""
        return watched(self.controllers)

    def start(self, kube: Kube) -> None:
        """Connect and start one reconciler per kind, and the writers of their reports
        (statuses and Events, written when the reconcilers are idle: :mod:`.reports`)."""
        self.kube = kube
        env = Env(kube=kube, store=self.store, settings=self.settings, http=PodHttpClient())
        pace = Pace(busy=self.busy)
        self.events = EventQueue(kube, pace)
        self.statuses = StatusLane(kube, self.store, pace, refused=self._status_refused)
        actor = Actor(env, self.events, self.statuses)
        held = self.metrics.reports_held
        held.labels(what="status").set_function(
            lambda: float(self.statuses.pending if self.statuses else 0)
        )
        held.labels(what="event").set_function(
            lambda: float(self.events.pending if self.events else 0)
        )
        self.router.reconcilers = [
            Reconciler(c, env, actor, self.metrics, workers=self.settings.workers)
            for c in self.controllers
        ]
        self.tasks = [asyncio.create_task(r.run()) for r in self.router.reconcilers]
        guard = ClaimGuard(
            kube,
            self.store,
            self.settings.artifacts_claim,
            protect=self.settings.protection_finalizers,
        )
        self.router.listeners = [guard.changed]  # before kopf's watches list anything
        self.tasks.append(asyncio.create_task(self.statuses.run()))
        self.tasks.append(asyncio.create_task(self.events.run()))
        self.tasks.append(asyncio.create_task(guard.run()))

    def busy(self) -> bool:
        """Some reconciler has work waiting or a reconcile just started."""
        return any(r.busy for r in self.router.reconcilers)

    def _status_refused(self, key: tuple[Resource, str, str], error: KubeError) -> None:
        resource, namespace, name = key
        for reconciler in self.router.reconcilers:
            if reconciler.controller.resource == resource:
                reconciler.refused(namespace, name, error)

    async def stop(self) -> None:
        """Stop the reconcilers, write the reports still held (briefly), close the client."""
        reconcilers, writers = (
            self.tasks[: len(self.controllers)],
            self.tasks[len(self.controllers) :],
        )
        await _cancel(reconcilers)
        if self.statuses is not None:
            await self.statuses.flush(timeout=2.0)
        if self.events is not None:
            await self.events.flush(timeout=2.0)
        await _cancel(writers)
        self.tasks = []
        if self.kube is not None:
            await self.kube.close()
            self.kube = None


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
