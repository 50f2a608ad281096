"""The protection of each namespace's artifacts claim, kept in step with the watch cache.

Any event of a claim or of the kinds that keep files on it marks its namespace; a background
task then adds or removes the finalizer that :func:`flywheel.core.claims.protection` decides,
one conditional merge patch per change (a conflict marks the namespace again).
"""

from __future__ import annotations

import asyncio
import logging

from flywheel.core.claims import protection
from flywheel.core.resources import (
    CLAIMS,
    DATASETS,
    MODEL_DEPLOYMENTS,
    MODEL_VERSIONS,
    TRAINING_RUNS,
    Resource,
)
from flywheel.kube.api import KubeApi
from flywheel.kube.errors import Conflict, KubeError, NotFound
from flywheel.runtime.store import Store

logger = logging.getLogger(__name__)
USERS = (DATASETS, TRAINING_RUNS, MODEL_VERSIONS, MODEL_DEPLOYMENTS)
"""Kinds whose objects keep files on the claim."""
RETRY_SECONDS = 5.0


class ClaimGuard:
    """Adds the protection finalizer to a namespace's artifacts claim while it is in use."""

    def __init__(self, kube: KubeApi, store: Store, claim: str, *, protect: bool = True) -> None:
        self.kube, self.store, self.claim, self.protect = kube, store, claim, protect
        self.dirty: set[str] = set()
        self.wake = asyncio.Event()

    def changed(self, resource: Resource, namespace: str) -> None:
        """A watch event: look at the namespace's claim again if it may matter."""
        if resource == CLAIMS or resource in USERS:
            self.dirty.add(namespace)
            self.wake.set()

    async def run(self) -> None:
        """Guard marked namespaces until cancelled."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            marked, self.dirty = self.dirty, set()
            for namespace in sorted(marked):
                await self.guard(namespace)

    async def guard(self, namespace: str) -> None:
        """One namespace: the finalizer its claim should carry, written if it does not."""
        claim = self.store.get(CLAIMS, namespace, self.claim)
        if claim is None:
            return
        in_use = self.protect and any(self.store.list(resource, namespace) for resource in USERS)
        patch = protection(claim, in_use)
        if patch is None:
            return
        try:
            answer = await self.kube.merge_patch(patch.ref, patch.patch)
        except NotFound:
            return
        except Conflict:
            self.changed(CLAIMS, namespace)  # changed meanwhile: decide again on its event
            return
        except KubeError as error:
            logger.warning("artifacts claim %s/%s: %s", namespace, self.claim, error)
            asyncio.get_running_loop().call_later(RETRY_SECONDS, self.changed, CLAIMS, namespace)
            return
        self.store.wrote(CLAIMS, answer)
        logger.info(
            "artifacts claim %s/%s: protection %s",
            namespace,
            self.claim,
            "added" if in_use else "removed",
        )
