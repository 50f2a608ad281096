"""The typed API of Flywheel: the five kinds of group `flywheel.dev`, version `v1alpha1`.

Pydantic models here are the single source of truth: `make manifests` renders them into the
CRDs in `crds/`, and handlers parse every spec into them once, at the edge. Nothing here imports
kopf or a Kubernetes client.
"""

from flywheel.api.common import API_GROUP, API_VERSION
from flywheel.api.kinds import KINDS, KINDS_BY_NAME, Kind

__all__ = ["API_GROUP", "API_VERSION", "KINDS", "KINDS_BY_NAME", "Kind"]
