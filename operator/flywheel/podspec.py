"""Pod building blocks shared by every Job and Deployment the operator renders."""

from __future__ import annotations

from typing import Any

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
