"""Which ModelDeployments serve a ModelVersion: `status.deployments`, one entry per deployment,
each written by server-side apply under a field manager of that deployment's own.

Several deployments can then list themselves on one version without races, and an entry is
removed by applying an empty status under its manager. The ModelDeployment controller links and
unlinks as its serving version changes; the ModelVersion controller removes the entries of
deployments that no longer exist (deleted while the operator was away, too).
"""

from __future__ import annotations

from flywheel.api.common import API_GROUP, API_VERSION
from flywheel.core.objects import Obj, status_of
from flywheel.core.outcome import Apply


def link_manager(deployment: str) -> str:
    """The field manager that lists one ModelDeployment in ModelVersions' status."""
    return f"flywheel-modeldeployment-{deployment}"[:128]


def listed(version: Obj) -> list[str]:
    """The deployments a ModelVersion's status lists."""
    return [str(d.get("name")) for d in status_of(version).get("deployments") or ()]


def link(namespace: str, version: str, deployment: str, *, serving: bool) -> Apply:
    """Apply (or withdraw) one deployment's entry on one version's status."""
    body = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "ModelVersion",
        "metadata": {"name": version, "namespace": namespace},
        "status": {"deployments": [{"name": deployment}]} if serving else {},
    }
    return Apply(body, manager=link_manager(deployment), subresource="status")
