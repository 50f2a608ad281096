"""The resources the operator reads and writes, named once: apiVersion, kind and plural.

The Kubernetes client (:mod:`flywheel.kube.client`) maps each to its typed lightkube class;
decisions use them to name the objects their actions are about.
"""

from __future__ import annotations

from dataclasses import dataclass

from flywheel.api.kinds import (
    DATASET,
    MODEL_DEPLOYMENT,
    MODEL_MONITOR,
    MODEL_VERSION,
    TRAINING_RUN,
    Kind,
)
from flywheel.core.objects import ObjectRef


@dataclass(frozen=True)
class Resource:
    """One namespaced resource."""

    api_version: str
    kind: str
    plural: str

    @property
    def group(self) -> str:
        """The API group (empty for the core group)."""
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        """The API version within the group."""
        return self.api_version.rpartition("/")[2]

    def ref(self, namespace: str, name: str) -> ObjectRef:
        """A reference to one object of this resource."""
        return ObjectRef(self.api_version, self.kind, namespace, name)


def of_kind(kind: Kind) -> Resource:
    """The resource of one of our kinds."""
    return Resource(kind.api_version, kind.kind, kind.plural)


DATASETS = of_kind(DATASET)
TRAINING_RUNS = of_kind(TRAINING_RUN)
MODEL_VERSIONS = of_kind(MODEL_VERSION)
MODEL_DEPLOYMENTS = of_kind(MODEL_DEPLOYMENT)
MODEL_MONITORS = of_kind(MODEL_MONITOR)

JOBS = Resource("batch/v1", "Job", "jobs")
DEPLOYMENTS = Resource("apps/v1", "Deployment", "deployments")
SERVICES = Resource("v1", "Service", "services")
HPAS = Resource("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")
PODS = Resource("v1", "Pod", "pods")
CLAIMS = Resource("v1", "PersistentVolumeClaim", "persistentvolumeclaims")
SERVICE_ACCOUNTS = Resource("v1", "ServiceAccount", "serviceaccounts")
ENDPOINT_SLICES = Resource("discovery.k8s.io/v1", "EndpointSlice", "endpointslices")
EVENTS = Resource("v1", "Event", "events")

ALL = (
    DATASETS,
    TRAINING_RUNS,
    MODEL_VERSIONS,
    MODEL_DEPLOYMENTS,
    MODEL_MONITORS,
    JOBS,
    DEPLOYMENTS,
    SERVICES,
    HPAS,
    PODS,
    CLAIMS,
    SERVICE_ACCOUNTS,
    ENDPOINT_SLICES,
    EVENTS,
)
BY_KIND = {(r.api_version, r.kind): r for r in ALL}
"""Resources by (apiVersion, kind), as objects and references name them."""
