"""What every handler receives through kopf's memo: the settings and the metrics."""

from __future__ import annotations

from dataclasses import dataclass

from flywheel.kube import Kube
from flywheel.opmetrics import OperatorMetrics
from flywheel.settings import OperatorSettings


@dataclass
class OperatorContext:
    """Built once in :mod:`flywheel.__main__`; kopf hands a shallow copy to each handler.

    `kube` is connected by the start-up handler (an HTTP session needs the running loop).
    """

    settings: OperatorSettings
    metrics: OperatorMetrics
    _kube: Kube | None = None

    @property
    def kube(self) -> Kube:
        """The API client."""
        if self._kube is None:
            raise RuntimeError("the Kubernetes client is not connected yet")
        return self._kube

    def connect(self, kube: Kube) -> None:
        """Attach the API client (start-up)."""
        self._kube = kube
