"""The operator's Kubernetes client: :class:`~flywheel.kube.api.KubeApi` over lightkube.

Why lightkube: it is asyncio-native on httpx, typed (a model per Kubernetes kind, generic
resources for our CRDs) and small: importing it with the models the operator uses costs about
20 MB of RSS, where `kubernetes_asyncio` costs about 60 MB, and the official `kubernetes` client
is synchronous. Children go through their typed lightkube models (`Job`, `Deployment`,
`Service`, `HorizontalPodAutoscaler`...), so a body that does not fit the Kubernetes schema's
types fails before it is sent; our kinds are generic resources.

Every write names its field manager, so `managedFields` say which fields the operator owns:
creates (Events too) and merge patches (statuses, annotations) are `flywheel`; server-side apply
is forced, under `flywheel` unless the action names another (a ModelDeployment's entry in a
ModelVersion's `status.deployments` is applied under `flywheel-modeldeployment-<name>`, so
deployments listing themselves on one version never take each other's entries). Nothing is
left to the API server's default, which names the manager after the User-Agent.

Credentials: the pod's service account (`KUBERNETES_SERVICE_HOST`, as client-go; the token file
is re-read on 401, so rotated tokens are picked up), else KUBECONFIG. Every call is counted by
verb, resource and status code through the injected `observe` callback.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx2
import lightkube
from lightkube.core.resource import NamespacedResource
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import (
    Event as CoreEvent,
)
from lightkube.resources.core_v1 import (
    PersistentVolumeClaim,
    Pod,
    Service,
    ServiceAccount,
)
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import PatchType

from flywheel.core import resources
from flywheel.core.objects import Obj, ObjectRef, meta_of
from flywheel.core.outcome import FIELD_MANAGER, Event
from flywheel.core.resources import Resource
from flywheel.core.times import rfc3339
from flywheel.kube.api import Subresource
from flywheel.kube.errors import KubeError, NotFound, classify

Observe = Callable[[str, str, str], None]
"""Called after every request with (verb, resource plural, code): `2xx` for a success, the HTTP
status of a refusal, `0` without an answer."""
SUCCESS = "2xx"
T = TypeVar("T")

TYPED: dict[Resource, type[NamespacedResource]] = {
    resources.JOBS: Job,
    resources.DEPLOYMENTS: Deployment,
    resources.SERVICES: Service,
    resources.HPAS: HorizontalPodAutoscaler,
    resources.PODS: Pod,
    resources.CLAIMS: PersistentVolumeClaim,
    resources.SERVICE_ACCOUNTS: ServiceAccount,
    resources.ENDPOINT_SLICES: EndpointSlice,
    resources.EVENTS: CoreEvent,
}


def _generic(resource: Resource) -> type[NamespacedResource]:
    created: type[NamespacedResource] = create_namespaced_resource(
        resource.group, resource.version, resource.kind, resource.plural
    )
    return created


CLASSES: dict[Resource, type[NamespacedResource]] = {
    **TYPED,
    **{
        r: _generic(r)
        for r in (
            resources.DATASETS,
            resources.TRAINING_RUNS,
            resources.MODEL_VERSIONS,
            resources.MODEL_DEPLOYMENTS,
            resources.MODEL_MONITORS,
        )
    },
}


def _resource_of(body: Obj) -> Resource:
    found = resources.BY_KIND.get((str(body.get("apiVersion")), str(body.get("kind"))))
    if found is None:
        raise ValueError(f"the operator does not write {body.get('apiVersion')}/{body.get('kind')}")
    return found


def _as_dict(obj: Any) -> Obj:
    found: Obj = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return found


class Kube:
    """An open connection to the API server (the operator's only one besides kopf's watches)."""

    def __init__(self, client: lightkube.AsyncClient, observe: Observe | None = None) -> None:
        self._client = client
        self._observe = observe or (lambda verb, plural, code: None)
        self._instance = f"{socket.gethostname()}/{os.getpid()}"

    @classmethod
    def login(cls, observe: Observe | None = None, *, timeout: float = 30) -> Kube:
        """Connect with the pod's service account, else the current kubeconfig context."""
        client = lightkube.AsyncClient(timeout=httpx2.Timeout(timeout), field_manager=FIELD_MANAGER)
        return cls(client, observe)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.close()

    async def _call(self, verb: str, resource: Resource, what: str, call: Awaitable[T]) -> T:
        try:
            result = await call
        except lightkube.ApiError as error:
            code = int(error.status.code or error.response.status_code)
            self._observe(verb, resource.plural, str(code))
            raise classify(
                code, str(error.status.message or error), verb=verb, what=what
            ) from error
        except httpx2.HTTPStatusError as error:  # an answer that is not a Kubernetes Status
            code = error.response.status_code
            self._observe(verb, resource.plural, str(code))
            raise classify(code, error.response.text[:300], verb=verb, what=what) from error
        except (httpx2.TransportError, OSError) as error:
            self._observe(verb, resource.plural, "0")
            sentence = f"{type(error).__name__}: {error}".rstrip(": ")
            raise classify(0, sentence, verb=verb, what=what) from error
        self._observe(verb, resource.plural, SUCCESS)
        return result

    async def get(self, resource: Resource, namespace: str, name: str) -> Obj | None:
        """The object, or None when it does not exist."""
        what = f"{resource.kind} {namespace}/{name}"
        try:
            found = await self._call(
                "get",
                resource,
                what,
                self._client.get(CLASSES[resource], name, namespace=namespace),
            )
        except NotFound:
            return None
        return _as_dict(found)

    async def list(
        self, resource: Resource, namespace: str, labels: Mapping[str, str] | None = None
    ) -> list[Obj]:
        """The objects of a namespace, selected by labels."""

        async def collect() -> list[Obj]:
            found = self._client.list(
                CLASSES[resource], namespace=namespace, labels=dict(labels or {})
            )
            return [_as_dict(item) async for item in found]

        return await self._call("list", resource, f"{resource.plural} in {namespace}", collect())

    async def create(self, body: Obj) -> Obj:
        """Create; Conflict when the name is taken."""
        resource = _resource_of(body)
        what = f"{resource.kind} {meta_of(body).get('namespace')}/{meta_of(body).get('name')}"
        model: Any = CLASSES[resource]
        obj = model.from_dict(body)
        call = self._client.create(obj, field_manager=FIELD_MANAGER)
        return _as_dict(await self._call("create", resource, what, call))

    async def apply(self, body: Obj, *, manager: str, subresource: Subresource = None) -> Obj:
        """Server-side apply, forced, under `manager`."""
        resource = _resource_of(body)
        name, namespace = meta_of(body)["name"], meta_of(body)["namespace"]
        cls = CLASSES[resource]
        target: Any = getattr(cls, "Status") if subresource == "status" else cls  # noqa: B009
        call = self._client.patch(
            target,
            name,
            target.from_dict(body),  # typed: a body that breaks Kubernetes' types fails here
            namespace=namespace,
            patch_type=PatchType.APPLY,
            field_manager=manager,
            force=True,
        )
        return _as_dict(
            await self._call("apply", resource, f"{resource.kind} {namespace}/{name}", call)
        )

    async def merge_patch(
        self, ref: ObjectRef, patch: Obj, *, subresource: Subresource = None
    ) -> Obj:
        """A JSON merge patch of an existing object."""
        resource = resources.BY_KIND[(ref.api_version, ref.kind)]
        cls = CLASSES[resource]
        target = getattr(cls, "Status") if subresource == "status" else cls  # noqa: B009
        call = self._client.patch(
            target,
            ref.name,
            patch,
            namespace=ref.namespace,
            patch_type=PatchType.MERGE,
            field_manager=FIELD_MANAGER,
        )
        return _as_dict(await self._call("patch", resource, str(ref), call))

    async def delete(self, ref: ObjectRef) -> bool:
        """Delete; False when it was already gone."""
        resource = resources.BY_KIND[(ref.api_version, ref.kind)]
        call = self._client.delete(CLASSES[resource], ref.name, namespace=ref.namespace)
        try:
            await self._call("delete", resource, str(ref), call)
        except NotFound:
            return False
        return True

    async def post_event(self, regarding: Obj, event: Event) -> None:
        """A core/v1 Event about an object, from the component `flywheel` (created under the
        field manager `flywheel`, as every write)."""
        found = meta_of(regarding)
        now = rfc3339(datetime.now(UTC))
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{found['name']}.", "namespace": found["namespace"]},
            "involvedObject": {
                "apiVersion": regarding.get("apiVersion"),
                "kind": regarding.get("kind"),
                "name": found["name"],
                "namespace": found["namespace"],
                "uid": found.get("uid"),
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "source": {"component": "flywheel"},
            "reportingComponent": "flywheel",
            "reportingInstance": self._instance[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self.create(body)


__all__ = ["Kube", "KubeError", "Observe"]
