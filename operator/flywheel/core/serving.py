"""The names of a ModelDeployment's serving children and pods: what the ModelDeployment
controller renders and the ModelMonitor finds (its Service's EndpointSlices, its pods, the
version each pod serves)."""

from __future__ import annotations

from flywheel.api.common import API_GROUP

VERSION_LABEL = f"{API_GROUP}/version"
"""On serving pods, and as an annotation on the Deployment: the ModelVersion number served."""


def child_name(name: str) -> str:
    """The name of the Deployment, Service and HPA of a ModelDeployment."""
    return f"{name}-serving"


def selector_labels(name: str) -> dict[str, str]:
    """The serving pods' selector (immutable for the Deployment's life)."""
    return {"app.kubernetes.io/name": "flywheel-serving", "app.kubernetes.io/instance": name}


def selector_string(name: str) -> str:
    """The selector as `kubectl` and the scale subresource print it."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(name).items()))
