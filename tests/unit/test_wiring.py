"""The kopf wiring: what is watched, how, and what kopf keeps on our objects (nothing)."""

from __future__ import annotations

import logging

import kopf
from kopf._cogs.structs.references import Resource as KopfResource
from prometheus_client import CollectorRegistry

from flywheel.core import resources
from flywheel.opmetrics import OperatorMetrics
from flywheel.settings import OperatorSettings
from flywheel.wiring import build_registry, index_id
from flywheel.wiring.lifecycle import QuietRetries, configure_kopf
from flywheel.wiring.operator import Operator


def _operator() -> Operator:
    return Operator(settings=OperatorSettings(), metrics=OperatorMetrics(CollectorRegistry()))


def test_every_kind_and_its_children_are_watched_and_cached() -> None:
    operator = _operator()
    assert set(operator.resources) == {
        resources.DATASETS,
        resources.TRAINING_RUNS,
        resources.MODEL_VERSIONS,
        resources.MODEL_DEPLOYMENTS,
        resources.MODEL_MONITORS,
        resources.JOBS,
        resources.DEPLOYMENTS,
        resources.SERVICES,
        resources.HPAS,
        resources.CLAIMS,
    }
    registry = build_registry(operator)
    indexed = {h.id for h in registry._indexing.get_all_handlers()}
    watched = {h.id for h in registry._watching.get_all_handlers()}
    assert indexed == {index_id(r) for r in operator.resources}
    assert watched == {f"route_{r.plural}" for r in operator.resources}
    assert not registry._changing.get_all_handlers(), "no create/update/resume handler"
    assert not registry._spawning.get_all_handlers(), "no timer, no daemon: nothing polls"


def test_children_are_selected_by_the_api_server_and_kopf_writes_nothing_on_objects() -> None:
    settings = kopf.OperatorSettings()
    operator = _operator()
    children = [r for r in operator.resources if r.group != "flywheel.dev"]
    configure_kopf(settings, operator.settings, children)
    for resource in children:
        found = KopfResource(group=resource.group, version=resource.version, plural=resource.plural)
        assert settings.watching.label_selectors.collect(found) == [
            "app.kubernetes.io/managed-by=flywheel"
        ]
    ours = KopfResource(group="flywheel.dev", version="v1alpha1", plural="datasets")
    assert settings.watching.label_selectors.collect(ours) == []
    assert settings.posting.enabled is False, "Events are the controllers' own"


def test_an_outage_is_a_warning_per_request_not_an_error_per_retry() -> None:
    quiet = QuietRetries()

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("kopf", logging.ERROR, __file__, 1, message, None, None)

    first = record("Request attempt #1/66 failed; will retry: GET https://x/jobs -> refused")
    assert quiet.filter(first)
    assert first.levelname == "WARNING"
    assert not quiet.filter(record("Request attempt #2/66 failed; will retry: GET https://x/jobs"))
    assert quiet.filter(record("Request attempt #66/66 failed; escalating: GET https://x/jobs"))
    assert quiet.filter(record("Something else failed"))
