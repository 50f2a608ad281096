"""Building blocks shared by every Job and Deployment the operator renders: pod security,
artifact mounts, and the owner reference that ties a child to its object."""

from __future__ import annotations

from typing import Any

from flywheel.api.common import API_GROUP, API_VERSION

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
            "labels": {"app.kubernetes.io/managed-by": "flywheel"},
        },
        "automountServiceAccountToken": False,
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


def owner_reference(body: dict[str, Any], kind: str) -> dict[str, Any]:
    """A controller owner reference to one of our objects (garbage collection deletes the child
    with it)."""
    meta = body["metadata"]
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
