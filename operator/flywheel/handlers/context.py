"""What every handler receives through kopf's memo: settings, metrics, the client, locks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from flywheel.kube import Kube
from flywheel.opmetrics import OperatorMetrics
from flywheel.settings import OperatorSettings
from flywheel.windows import PodWindow


@dataclass
class OperatorContext:
    """Built once in :mod:`flywheel.__main__`; kopf hands a shallow copy to each handler.

    `kube` is connected by the start-up handler (an HTTP session needs the running loop).
    """

    settings: OperatorSettings
    metrics: OperatorMetrics
    _kube: Kube | None = None
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    windows: dict[str, PodWindow] = field(default_factory=dict)
    """The `Pods` metrics source's snapshots, per monitor UID and serving version."""
    ensured: dict[str, float] = field(default_factory=dict)
    """When a namespace's artifacts claim or workload ServiceAccount was last ensured."""
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Baseline documents read from serving pods, per ModelVersion UID (immutable)."""

    @property
    def kube(self) -> Kube:
        """The API client."""
        if self._kube is None:
            raise RuntimeError("the Kubernetes client is not connected yet")
        return self._kube

    def connect(self, kube: Kube) -> None:
        """Attach the API client (start-up)."""
        self._kube = kube

    def lock(self, key: str) -> asyncio.Lock:
        """One lock per key, shared by every handler (kopf copies the memo shallowly).

        The operator runs as one replica (kopf has no leader election), so a process-wide lock
        is enough to serialise, e.g., version allocation per model.
        """
        return self._locks.setdefault(key, asyncio.Lock())
