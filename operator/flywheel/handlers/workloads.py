"""What every workload of a namespace needs before its pods can start: the artifacts claim and
the ServiceAccounts of Job and serving pods (the ServiceAccount admission plugin refuses pods
whose account does not exist). Both are created once and left alone afterwards.

Each is ensured at most once per `RECHECK` per namespace: a burst of new Datasets and
TrainingRuns in one namespace would otherwise cost two create-or-get round trips each (measured
in bench/operator); after `RECHECK` the next workload checks again, so a claim or account
deleted by hand comes back.
"""

from __future__ import annotations

import time

from flywheel.datasets import render_artifacts_claim
from flywheel.handlers.context import OperatorContext
from flywheel.kube import Kube, namespaced
from flywheel.podspec import render_service_account

RECHECK = 60.0
"""Seconds an ensured claim or ServiceAccount is trusted to still exist."""


def _fresh(ctx: OperatorContext, key: str) -> bool:
    return time.monotonic() - ctx.ensured.get(key, -RECHECK) < RECHECK


async def ensure_job_prerequisites(kube: Kube, namespace: str, ctx: OperatorContext) -> None:
    """The artifacts claim and the Jobs' ServiceAccount."""
    settings = ctx.settings
    key = f"claim/{namespace}/{settings.artifacts_claim}"
    if not _fresh(ctx, key):
        await kube.create_or_get(
            namespaced("v1", namespace, "persistentvolumeclaims"),
            render_artifacts_claim(namespace, settings),
        )
        ctx.ensured[key] = time.monotonic()
    await ensure_service_account(kube, namespace, settings.job_service_account, ctx)


async def ensure_service_account(
    kube: Kube, namespace: str, name: str, ctx: OperatorContext
) -> None:
    """A workload ServiceAccount with no token mounted, created when absent."""
    key = f"serviceaccount/{namespace}/{name}"
    if _fresh(ctx, key):
        return
    await kube.create_or_get(
        namespaced("v1", namespace, "serviceaccounts"), render_service_account(namespace, name)
    )
    ctx.ensured[key] = time.monotonic()
