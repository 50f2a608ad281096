"""Building blocks shared by every Job and Deployment the operator renders: pod security,
artifact mounts, the owner reference that ties a child to its object, and what each namespace
needs before its workloads can start (the artifacts claim and the workloads' ServiceAccounts)."""

from __future__ import annotations

from typing import Any

from flywheel.api.common import API_GROUP, API_VERSION, ResourceRequirements
from flywheel.settings import OperatorSettings

MANAGED_BY = {"app.kubernetes.io/managed-by": "flywheel"}
"""On everything the operator creates; the operator watches its children by this label."""

RESTRICTED_CONTAINER: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
"""The container securityContext of the `restricted` Pod Security Standard, read-only root."""

RESTRICTED_POD: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "fsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}
"""The pod securityContext: a fixed non-root user that owns the artifacts it writes."""


def render_service_account(namespace: str, name: str) -> dict[str, Any]:
    """A workload ServiceAccount: no token mounted, no role bound (pods need no API access)."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(MANAGED_BY),
        },
        "automountServiceAccountToken": False,
    }


def render_artifacts_claim(namespace: str, settings: OperatorSettings) -> dict[str, Any]:
    """The artifacts PersistentVolumeClaim the operator creates when a namespace has none."""
    spec: dict[str, Any] = {
        "accessModes": [settings.artifacts_access_mode],
        "resources": {"requests": {"storage": settings.artifacts_size}},
    }
    if settings.artifacts_storage_class:
        spec["storageClassName"] = settings.artifacts_storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": settings.artifacts_claim,
            "namespace": namespace,
            "labels": dict(MANAGED_BY),
        },
        "spec": spec,
    }


def artifact_mounts(claim: str, mount_root: str) -> list[dict[str, Any]]:
    """The artifacts claim at `<mount_root>/<claim>` and a writable /tmp (the root is read-only)."""
    return [
        {"name": "artifacts", "mountPath": f"{mount_root}/{claim}"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]


def artifact_volumes(claim: str) -> list[dict[str, Any]]:
    """The volumes behind :func:`artifact_mounts`."""
    return [
        {"name": "artifacts", "persistentVolumeClaim": {"claimName": claim}},
        {"name": "tmp", "emptyDir": {}},
    ]


def owner_reference(kind: str, name: str, uid: str) -> dict[str, Any]:
    """A controller owner reference to one of our objects: garbage collection deletes the child
    with it, and the child's watch events wake its owner's reconcile."""
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def container_resources(
    given: ResourceRequirements | None, cpu: str, memory: str
) -> dict[str, dict[str, str]]:
    """A container's resources: the spec's (quantities as strings, as the API returns them),
    else `cpu` and `memory` requested and the memory as the limit."""
    if given is None:
        return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}
    found = given.model_dump(by_alias=True, exclude_none=True, mode="json")
    return {part: {k: str(v) for k, v in values.items()} for part, values in found.items()}
