"""Flywheel: a Kubernetes operator for the machine-learning lifecycle.

Packages, from the bottom up: :mod:`flywheel.api` (the typed API of the five kinds),
:mod:`flywheel.conditions` and :mod:`flywheel.status` (pure status decisions),
:mod:`flywheel.settings` and :mod:`flywheel.opmetrics`, :mod:`flywheel.handlers` (kopf), and
:mod:`flywheel.crdgen` (CRDs from the API types). `python -m flywheel` runs the operator.
"""

__version__ = "0.1.0"
