"""The small Kubernetes interface every controller read and write goes through.

Reads that the watch cache cannot answer (a Job's pods, a model's versions read fresh before a
version number is allocated, EndpointSlices) and every write: create, server-side apply, merge
patch, delete, and Events. :class:`flywheel.kube.client.Kube` implements it over lightkube;
`tests/support/fakekube.py` implements it in memory for unit tests. Calls raise the classes of
:mod:`flywheel.kube.errors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol

from flywheel.core.objects import Obj, ObjectRef
from flywheel.core.outcome import Event
from flywheel.core.resources import Resource

Subresource = Literal["status"] | None


class KubeApi(Protocol):
    """Reads and writes of namespaced objects, as plain JSON dicts."""

    async def get(self, resource: Resource, namespace: str, name: str) -> Obj | None:
        """The object, or None when it does not exist."""

    async def list(
        self, resource: Resource, namespace: str, labels: Mapping[str, str] | None = None
    ) -> list[Obj]:
        """The objects of a namespace, selected by labels (every one must match)."""

    async def create(self, body: Obj) -> Obj:
        """Create; :class:`~flywheel.kube.errors.Conflict` when the name is taken."""

    async def apply(self, body: Obj, *, manager: str, subresource: Subresource = None) -> Obj:
        """Server-side apply (forced) under a field manager; creates the object when absent."""

    async def merge_patch(
        self, ref: ObjectRef, patch: Obj, *, subresource: Subresource = None
    ) -> Obj:
        """A JSON merge patch; :class:`~flywheel.kube.errors.NotFound` when absent."""

    async def delete(self, ref: ObjectRef) -> bool:
        """Delete; False when it was already gone."""

    async def post_event(self, regarding: Obj, event: Event) -> None:
        """An Event about an object (`kubectl describe` shows it)."""
