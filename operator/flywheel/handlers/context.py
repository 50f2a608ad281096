"""What every handler receives through kopf's memo: the settings and the metrics."""

from __future__ import annotations

from dataclasses import dataclass

from flywheel.opmetrics import OperatorMetrics
from flywheel.settings import OperatorSettings


@dataclass(frozen=True)
class OperatorContext:
    """Built once in :mod:`flywheel.__main__`; kopf hands a shallow copy to each handler."""

    settings: OperatorSettings
    metrics: OperatorMetrics
