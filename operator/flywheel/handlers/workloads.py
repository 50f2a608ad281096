"""What every workload of a namespace needs before its pods can start: the artifacts claim and
the ServiceAccounts of Job and serving pods (the ServiceAccount admission plugin refuses pods
whose account does not exist). Both are created once and left alone afterwards."""

from __future__ import annotations

from flywheel.datasets import render_artifacts_claim
from flywheel.kube import Kube, namespaced
from flywheel.podspec import render_service_account
from flywheel.settings import OperatorSettings


async def ensure_job_prerequisites(kube: Kube, namespace: str, settings: OperatorSettings) -> None:
    """The artifacts claim and the Jobs' ServiceAccount."""
    await kube.create_or_get(
        namespaced("v1", namespace, "persistentvolumeclaims"),
        render_artifacts_claim(namespace, settings),
    )
    await ensure_service_account(kube, namespace, settings.job_service_account)


async def ensure_service_account(kube: Kube, namespace: str, name: str) -> None:
    """A workload ServiceAccount with no token mounted, created when absent."""
    await kube.create_or_get(
        namespaced("v1", namespace, "serviceaccounts"), render_service_account(namespace, name)
    )
