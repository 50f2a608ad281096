"""Admission and the operator agree: every rule the CRDs carry as CEL is also a Python check in the
models, and both give the same verdict on the same values (the CEL evaluated as the offline
stand-in of the API server does, tests/support/crdcheck.py). What only the operator can know (a
schedule that never fires, a spec too large for a Job's command line) is refused when it parses
the spec. The name rules are checked against what the render code derives from a name.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from flywheel.api.checks import (
    CRON_PATTERN,
    CRON_SCHEDULE,
    DNS_1035_LABEL,
    DNS_LABEL,
    Check,
    Rules,
    cron_fires,
    duration_seconds,
    parse_quantity,
    re2,
)
from flywheel.api.common import (
    MAX_SPEC_JSON_BYTES,
    ArtifactUri,
    LabelKey,
    Quantity,
    ResourceList,
    ResourceRequirements,
)
from flywheel.api.dataset import DatasetSpec, DatasetValidation, SourceUri
from flywheel.api.kinds import KINDS, KINDS_BY_NAME
from flywheel.api.modeldeployment import (
    ModelDeploymentSpec,
    TopologySpread,
    TopologySpreadConstraints,
)
from flywheel.api.modelmonitor import (
    Cooldown,
    DataDrift,
    Interval,
    Matchers,
    ModelMonitorSpec,
    Performance,
    PredictionDrift,
    PrometheusUrl,
    Window,
)
from flywheel.api.trainingrun import TrainingRunSpec
from flywheel.controllers.dataset.render import IngestPlan, render_ingest_job
from flywheel.controllers.modeldeployment.render import render_hpa, render_service
from flywheel.controllers.modelmonitor.render import RetrainRequest, render_retrain_run
from flywheel.controllers.trainingrun.render import PinnedDataset, render_training_job
from flywheel.core.admission import invalid_spec_finding
from flywheel.core.target import Meta, parse_meta
from flywheel.settings import OperatorSettings
from tests.support.crdcheck import evaluate_rule

# --- one verdict for CEL and Python ---------------------------------------------------------


def _rules_of(annotated: Any) -> Rules:
    (rules,) = [m for m in annotated.__metadata__ if isinstance(m, Rules)]
    return rules


def _agree(checks: tuple[Check, ...], cel_value: Any, python_value: Any) -> bool:
    """Every check with a CEL rule gives the same verdict both ways; True when all pass."""
    verdicts = []
    for check in checks:
        python = check.test(python_value)
        if check.rule is not None:
            cel = evaluate_rule(check.rule, cel_value)
            assert cel == python, f"{check.message}: CEL {cel!r}, Python {python!r}"
        verdicts.append(python)
    return all(verdicts)


CRON = [
    ("0 3 * * *", True),
    ("*/15 * * * *", True),
    ("0 0 1 jan,JUL *", True),
    ("30 2 * * MON-FRI", True),
    ("0 0 * * 0,7", True),
    ("5-10/2 1,13 1-15 */3 sun", True),
    ("0  3  *  *  *", True),
    ("@daily", True),
    ("@hourly", True),
    ("59 23 31 12 *", True),
    ("61 * * * *", False),
    ("0 25 * * *", False),
    ("0 0 0 * *", False),
    ("0 0 32 * *", False),
    ("0 0 1 13 *", False),
    ("0 0 * * 8", False),
    ("*/0 * * * *", False),
    ("*/60 * * * *", False),
    ("0 0 * foo *", False),
    ("0 0 L * *", False),
    ("H * * * *", False),
    ("0 0 * * * *", False),
    ("0 0 * *", False),
    ("every day", False),
    ("@midnight", False),
    ("0\t3 * * *", True),
    ("61\t*\t*\t*\t*", False),
]


@pytest.mark.parametrize(("schedule", "valid"), CRON)
def test_cron_schedules_get_one_verdict(schedule: str, valid: bool) -> None:
    """The shape is the schema's pattern (the same for both); each field's range a rule."""
    checks = tuple(c for c in CRON_SCHEDULE.checks if c.rule is not None)
    shaped = re2(CRON_PATTERN).search(schedule) is not None
    assert (_agree(checks, schedule, schedule) and shaped) is valid


@pytest.mark.parametrize("schedule", ["0 3 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"])
def test_a_schedule_that_never_fires_is_refused_by_the_operator_only(schedule: str) -> None:
    checks = tuple(c for c in CRON_SCHEDULE.checks if c.rule is not None)
    assert _agree(checks, schedule, schedule), "the API server lets it through"
    assert not cron_fires(schedule)
    with pytest.raises(ValidationError, match="never fires"):
        DatasetSpec.model_validate(_dataset(refresh={"schedule": schedule}))


def test_every_schedule_the_api_server_accepts_is_followed_by_croniter() -> None:
    for schedule, valid in CRON:
        if valid:
            assert cron_fires(schedule), schedule


QUANTITIES = [
    ("500m", Decimal("0.5")),
    ("2", Decimal(2)),
    (2, Decimal(2)),
    ("1Gi", Decimal(2**30)),
    ("1.5Gi", Decimal(3 * 2**29)),
    ("128Mi", Decimal(128 * 2**20)),
    ("1k", Decimal(1000)),
    ("1e3", Decimal(1000)),
    ("1E3", Decimal(1000)),
    ("1E", Decimal(10**18)),
    (".5", Decimal("0.5")),
    ("1.", Decimal(1)),
    ("+1", Decimal(1)),
    ("-1", Decimal(-1)),
    ("0", Decimal(0)),
    ("lots", None),
    ("a lot", None),
    ("1 Gi", None),
    ("1gi", None),
    ("1GiB", None),
    ("1KB", None),
    ("", None),
    ("Gi", None),
    ("1e99999999999", None),
]


@pytest.mark.parametrize(("text", "value"), QUANTITIES)
def test_quantities_are_read_like_apimachinery(text: str | int, value: Decimal | None) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(("text", "value"), QUANTITIES)
def test_quantities_get_one_verdict(text: str | int, value: Decimal | None) -> None:
    valid = value is not None and value >= 0
    assert _agree(_rules_of(Quantity).checks, text, text) is valid


RESOURCE_LISTS = [
    ({"cpu": "500m", "memory": "1Gi"}, True),
    ({"ephemeral-storage": "2Gi", "hugepages-2Mi": "64Mi"}, True),
    ({"nvidia.com/gpu": 1}, True),
    ({"example.com/foo": "2"}, True),
    ({"gpu": 1}, False),
    ({"kubernetes.io/foo": 1}, False),
    ({"requests.example.com/foo": 1}, False),
    ({"hugepages-big": "1Gi"}, False),
    ({"nvidia.com/gpu": "500m"}, False),
]


@pytest.mark.parametrize(("resources", "valid"), RESOURCE_LISTS)
def test_resource_names_get_one_verdict(resources: dict[str, Any], valid: bool) -> None:
    assert _agree(_rules_of(ResourceList).checks, resources, resources) is valid


REQUIREMENTS = [
    ({"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}}, True),
    ({"requests": {"memory": "1Gi"}, "limits": {"memory": "1024Mi"}}, True),
    ({"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}, False),
    ({"requests": {"cpu": "2"}, "limits": {"memory": "1Gi"}}, True),
    ({"limits": {"nvidia.com/gpu": 1}}, True),
    ({"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": "1"}}, True),
    ({"requests": {"nvidia.com/gpu": 1}}, False),
    ({"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 2}}, False),
    ({"requests": {"hugepages-2Mi": "64Mi"}, "limits": {"hugepages-2Mi": "64Mi"}}, True),
    ({"requests": {"hugepages-2Mi": "64Mi"}}, False),
]


@pytest.mark.parametrize(("found", "valid"), REQUIREMENTS)
def test_requests_and_limits_get_one_verdict(found: dict[str, Any], valid: bool) -> None:
    parsed = ResourceRequirements.model_construct(**found)
    assert _agree(ResourceRequirements.cel_checks, found, parsed) is valid
    if not valid:
        with pytest.raises(ValidationError):
            ResourceRequirements.model_validate(found)


DURATIONS = [
    (Interval, "5s", True),
    (Interval, "1m", True),
    (Interval, "1h30m", True),
    (Interval, "24h", True),
    (Interval, "4999ms", False),
    (Interval, "0s", False),
    (Interval, "24h1ms", False),
    (Window, "168h", True),
    (Window, "169h", False),
    (Cooldown, "0s", True),
    (Cooldown, "8760h", True),
    (Cooldown, "9000h", False),
    (Cooldown, "1.5h", True),
]


@pytest.mark.parametrize(("kind", "text", "valid"), DURATIONS)
def test_durations_get_one_verdict(kind: Any, text: str, valid: bool) -> None:
    assert _agree(_rules_of(kind).checks, text, text) is valid


def test_durations_are_exact() -> None:
    assert duration_seconds("1h30m") == 5400
    assert duration_seconds("1.5s") == Decimal("1.5")
    assert duration_seconds("100ms") == Decimal("0.1")
    assert duration_seconds("1 h") is None
    assert duration_seconds("1d") is None


def test_a_duration_too_large_for_go_is_refused_by_both() -> None:
    text = "99999999999999h"
    (check,) = _rules_of(Cooldown).checks
    assert not check.test(text)
    assert isinstance(evaluate_rule(check.rule or "", text), str), "an evaluation error"


SOURCES = [
    ("sklearn://iris", True),
    ("https://example.org/data.csv", True),
    ("http://data.example.org:8080/x/y.parquet?sig=a%20b#frag", True),
    ("http://10.0.0.1/data.csv", True),
    ("http://[::1]:8080/data.csv", True),
    ("pvc://flywheel-artifacts/datasets/iris.csv", True),
    ("pvc://my.claim/a/b c.csv", True),
    ("file:///data/iris.csv", True),
    ("file://data.csv", True),
    ("s3://bucket/data.csv", False),
    ("sklearn://titanic", False),
    ("https:///data.csv", False),
    ("http://:9090/x", False),
    ("https://user:pass@example.org/data.csv", False),
    ("https://example.org/my data.csv", False),
    ("https://example.org/caf\u00e9.csv", False),
    ("https://example.org:99999/data.csv", False),
    ("https://example.org/data.csv\n", False),
    ("pvc://flywheel-artifacts/../other/data.csv", False),
    ("pvc://flywheel-artifacts/./data.csv", False),
    ("pvc://flywheel-artifacts/..", False),
    ("pvc://Claim/data.csv", False),
    ("pvc://claim", False),
    ("pvc:///data.csv", False),
    ("pvc://" + "c" * 254 + "/data.csv", False),
    ("file:///data/../etc/passwd", False),
]


@pytest.mark.parametrize(("uri", "valid"), SOURCES)
def test_source_uris_get_one_verdict(uri: str, valid: bool) -> None:
    assert _agree(_rules_of(SourceUri).checks, uri, uri) is valid


ARTIFACTS = [
    ("pvc://flywheel-artifacts/models/ns/iris/run-1/model.onnx", True),
    ("file:///opt/models/model.onnx", True),
    ("file://model.onnx", False),
    ("https://models.example.org/model.onnx", False),
    ("/opt/models/model.onnx", False),
    ("pvc://flywheel-artifacts/models/../../x.onnx", False),
]


@pytest.mark.parametrize(("uri", "valid"), ARTIFACTS)
def test_artifact_uris_get_one_verdict(uri: str, valid: bool) -> None:
    assert _agree(_rules_of(ArtifactUri).checks, uri, uri) is valid


LABEL_KEYS = [
    ("kubernetes.io/hostname", True),
    ("topology.kubernetes.io/zone", True),
    ("rack", True),
    ("example.com/Rack_2.a-b", True),
    ("n" * 63, True),
    ("a" * 253 + "/" + "n" * 62, True),
    ("n" * 64, False),
    ("a" * 254 + "/rack", False),
    ("Example.com/rack", False),
    ("example.com/", False),
    ("/rack", False),
    ("example.com/a/b", False),
    ("-rack", False),
    ("rack.", False),
    ("rack zone", False),
    ("example..com/rack", False),
]


@pytest.mark.parametrize(("key", "valid"), LABEL_KEYS)
def test_label_keys_get_one_verdict(key: str, valid: bool) -> None:
    """Kubernetes' `IsQualifiedName`: the prefix at most 253 characters, the name 63."""
    assert _agree(_rules_of(LabelKey).checks, key, key) is valid


def _spread(key: str, when: str = "ScheduleAnyway") -> dict[str, Any]:
    return {"topologyKey": key, "maxSkew": 1, "whenUnsatisfiable": when}


SPREADS = [
    ([], True),
    ([_spread("kubernetes.io/hostname"), _spread("topology.kubernetes.io/zone")], True),
    ([_spread("kubernetes.io/hostname"), _spread("kubernetes.io/hostname")], False),
    ([_spread("rack"), _spread("zone"), _spread("rack", "DoNotSchedule")], False),
]


@pytest.mark.parametrize(("found", "valid"), SPREADS)
def test_topology_keys_are_unique_by_both_verdicts(found: list[Any], valid: bool) -> None:
    parsed = [TopologySpread.model_validate(item) for item in found]
    assert _agree(_rules_of(TopologySpreadConstraints).checks, found, parsed) is valid


PROMETHEUS = [
    ("http://prometheus.monitoring:9090", True),
    ("https://user:secret@prometheus.example.org/prefix", True),
    ("http://:9090", False),
    ("ftp://prometheus:9090", False),
    ("http://prometheus monitoring:9090", False),
]


@pytest.mark.parametrize(("url", "valid"), PROMETHEUS)
def test_prometheus_urls_get_one_verdict(url: str, valid: bool) -> None:
    shaped = url.startswith(("http://", "https://"))  # the schema's pattern, for both
    assert (_agree(_rules_of(PrometheusUrl).checks, url, url) and shaped) is valid


@pytest.mark.parametrize(
    ("matchers", "valid"),
    [({"namespace": "ml"}, True), ({"model": "x"}, False), ({"__name__": "x"}, False)],
)
def test_matchers_get_one_verdict(matchers: dict[str, str], valid: bool) -> None:
    assert _agree(_rules_of(Matchers).checks, matchers, matchers) is valid


MODELS: list[tuple[type[BaseModel], dict[str, Any], bool]] = [
    (Performance, {"metric": "accuracy", "min": 0.85}, True),
    (Performance, {"metric": "accuracy", "min": 1}, True),
    (Performance, {"metric": "accuracy", "max": 0.9}, False),
    (Performance, {"metric": "accuracy", "min": 85}, False),
    (Performance, {"metric": "accuracy", "min": 0}, False),
    (Performance, {"metric": "mae", "max": 3}, True),
    (Performance, {"metric": "mae", "max": 0}, True),
    (Performance, {"metric": "mae", "min": 3}, False),
    (Performance, {"metric": "mae", "max": -1}, False),
    (Performance, {"metric": "mae", "min": 0.5, "max": 3}, False),
    (DataDrift, {"method": "psi", "threshold": 2}, True),
    (DataDrift, {"method": "wasserstein", "threshold": 1.5}, True),
    (DataDrift, {"method": "linf", "threshold": 0.3}, True),
    (DataDrift, {"method": "linf", "decision": "Threshold", "threshold": 1}, False),
    (DataDrift, {"method": "linf", "threshold": 1}, True),  # Calibrated: threshold unused
    (DataDrift, {"method": "chisquare", "decision": "Threshold", "threshold": 15}, True),
    (DataDrift, {"features": ["a", "b"], "minDriftedFeatures": 2}, True),
    (DataDrift, {"features": ["a", "b"], "minDriftedFeatures": 3}, False),
    (PredictionDrift, {"method": "jensenshannon", "decision": "Threshold", "threshold": 1}, False),
    (PredictionDrift, {"method": "jensenshannon", "threshold": 0.1}, True),
    (
        DatasetValidation,
        {"rules": [{"column": f"c{i}", "allowedValues": ["x"] * 1024} for i in range(2)]},
        True,
    ),
    (
        DatasetValidation,
        {"rules": [{"column": f"c{i}", "allowedValues": ["x"] * 1000} for i in range(3)]},
        False,
    ),
    (ModelDeploymentSpec, {"model": "iris", "autoscaling": {"maxReplicas": 3}}, True),
    (
        ModelDeploymentSpec,
        {
            "model": "iris",
            "autoscaling": {"maxReplicas": 3},
            "resources": {"limits": {"cpu": "1"}},
        },
        True,
    ),
    (
        ModelDeploymentSpec,
        {
            "model": "iris",
            "autoscaling": {"maxReplicas": 3},
            "resources": {"requests": {"memory": "1Gi"}},
        },
        False,
    ),
    (TopologySpread, {**_spread("kubernetes.io/hostname", "DoNotSchedule"), "minDomains": 3}, True),
    (TopologySpread, {**_spread("kubernetes.io/hostname"), "minDomains": 3}, False),
    (TopologySpread, _spread("kubernetes.io/hostname"), True),
    (ModelMonitorSpec, {"deploymentRef": {"name": "iris"}, "window": "1m"}, True),
    (
        ModelMonitorSpec,
        {"deploymentRef": {"name": "iris"}, "interval": "10m", "window": "5m"},
        False,
    ),
]


@pytest.mark.parametrize(("model", "found", "valid"), MODELS)
def test_object_rules_get_one_verdict(
    model: type[BaseModel], found: dict[str, Any], valid: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CEL sees the object as the API server stores it (defaults applied, `type: number`
    as doubles); the Python test sees the parsed model."""
    checks = model.cel_checks  # type: ignore[attr-defined]
    if not valid:
        with pytest.raises(ValidationError):
            model.model_validate(found)
    monkeypatch.setattr(model, "cel_checks", ())  # parse it as if the rules were not there
    parsed = model.model_validate(found)
    stored = parsed.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert _agree(checks, stored, parsed) is valid


# --- the issue's cases, end to end through the models ---------------------------------------


def _dataset(**fields: Any) -> dict[str, Any]:
    return {"source": {"uri": "https://example.org/data.csv"}, **fields}


def _run(**fields: Any) -> dict[str, Any]:
    return {
        "model": "iris",
        "datasetRef": {"name": "iris"},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
        **fields,
    }


def _message(model: type[BaseModel], spec: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(spec)
    return invalid_spec_finding(caught.value).message


def test_the_issue_cases_are_refused_when_the_operator_parses_them() -> None:
    """What the API server used to accept, and the operator then looped on."""
    assert "the minute field must be 0-59" in _message(
        DatasetSpec, _dataset(refresh={"schedule": "61 * * * *"})
    )
    monitor = {"deploymentRef": {"name": "iris"}}
    template = {"template": _run()}
    assert "the hour field must be 0-23" in _message(
        ModelMonitorSpec, {**monitor, "schedule": "0 25 * * *", "retrain": template}
    )
    assert "spec.resources.requests.cpu: must be a non-negative Kubernetes quantity" in _message(
        TrainingRunSpec, _run(resources={"requests": {"cpu": "lots"}})
    )
    assert "must be a non-negative Kubernetes quantity" in _message(
        ModelDeploymentSpec, {"model": "iris", "resources": {"limits": {"memory": "a lot"}}}
    )
    assert "spec.interval: must be between 5s and 24h" in _message(
        ModelMonitorSpec, {**monitor, "interval": "0s"}
    )
    assert "mae (lower is better) takes max" in _message(
        ModelMonitorSpec, {**monitor, "performance": {"metric": "mae", "min": 0.5}}
    )
    assert "accuracy (higher is better) takes min" in _message(
        ModelMonitorSpec, {**monitor, "performance": {"metric": "accuracy", "max": 0.9}}
    )
    huge = _run(estimator={"class": "sklearn.svm.SVC", "params": {"kernel": "x" * 300_000}})
    assert "a string parameter has at most 256 characters" in _message(TrainingRunSpec, huge)


def test_spread_constraints_the_api_server_refuses_are_refused_by_the_operator_too() -> None:
    def refused(*constraints: dict[str, Any]) -> str:
        spec = {"model": "iris", "version": 1, "topologySpreadConstraints": list(constraints)}
        return _message(ModelDeploymentSpec, spec)

    host = _spread("kubernetes.io/hostname")
    assert "spec.topologySpreadConstraints: each topologyKey may appear only once" in refused(
        host, {**host, "whenUnsatisfiable": "DoNotSchedule"}
    )
    assert (
        "spec.topologySpreadConstraints.0: minDomains is only allowed with whenUnsatisfiable: "
        "DoNotSchedule" in refused({**host, "minDomains": 2})
    )
    assert "spec.topologySpreadConstraints.1.topologyKey: must be a label key" in refused(
        host, _spread("Topology.kubernetes.io/zone")
    )
    assert "maxSkew: Input should be greater than or equal to 1" in refused({**host, "maxSkew": 0})
    assert "whenUnsatisfiable: Field required" in refused({"topologyKey": "kubernetes.io/hostname"})
    assert "at most 8 items" in refused(*(_spread(f"example.com/k{i}") for i in range(9)))


def test_a_spec_too_large_for_the_job_command_line_is_refused() -> None:
    params = {f"p{i}": "x" * 250 for i in range(40)}
    scaler = {"class": "sklearn.preprocessing.StandardScaler", "params": params}
    steps = [scaler] * 7 + [{"class": "sklearn.linear_model.LogisticRegression"}]
    spec = _run(estimator={"steps": steps})
    assert "the spec is too large: at most 64 KiB as JSON" in _message(TrainingRunSpec, spec)
    # The same spec inside a monitor's template is refused too (its runs would fail alike).
    monitor = {"deploymentRef": {"name": "iris"}, "retrain": {"template": spec}}
    assert "spec.retrain.template: the spec is too large" in _message(ModelMonitorSpec, monitor)
    # One step fewer fits.
    fits = _run(estimator={"steps": [scaler] * 5 + steps[-1:]})
    parsed = TrainingRunSpec.model_validate(fits)
    size = len(parsed.model_dump_json(by_alias=True, exclude_none=True).encode())
    assert size <= MAX_SPEC_JSON_BYTES


# --- names: every child name and label value fits -----------------------------------------

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _meta(name: str) -> Meta:
    return parse_meta({"metadata": {"name": name, "namespace": "ns", "uid": "u", "generation": 1}})


def _labels(obj: dict[str, Any]) -> list[dict[str, str]]:
    spec = obj.get("spec", {})
    template = spec.get("template", {}).get("metadata", {})
    selector = spec.get("selector", {})
    return [
        obj["metadata"].get("labels", {}),
        template.get("labels", {}),
        selector.get("matchLabels", selector if obj["kind"] == "Service" else {}),
    ]


def _assert_fits(obj: dict[str, Any], *, name_limit: int = 63, pattern: str = DNS_LABEL) -> None:
    name = obj["metadata"]["name"]
    assert len(name) <= name_limit, f"{obj['kind']} {name}"
    assert re.search(pattern, name) or _SUBDOMAIN.search(name), f"{obj['kind']} {name}"
    for labels in _labels(obj):
        for key, value in labels.items():
            assert len(value) <= 63, f"{obj['kind']} label {key}={value}"
            assert _LABEL_VALUE.search(value), f"{obj['kind']} label {key}={value}"


def _longest(kind: str, *, first: str = "a", middle: str = "b") -> str:
    rule = KINDS_BY_NAME[kind].name_rule
    assert rule is not None
    return first + middle * (rule.max_length - 2) + "z"


def test_the_longest_dataset_name_fits_its_ingest_jobs() -> None:
    name = _longest("Dataset")
    spec = DatasetSpec.model_validate(_dataset())
    for tick in ("1", "2026-01-01T00:00:00Z"):
        job = render_ingest_job(
            _meta(name), spec, IngestPlan("Created", tick), None, OperatorSettings()
        )
        _assert_fits(job)  # the Job name is its pods' job-name label: 63 at most


def test_the_longest_training_run_name_fits_its_job() -> None:
    name = _longest("TrainingRun")
    spec = TrainingRunSpec.model_validate(_run())
    pinned = PinnedDataset("iris", "abc", "sha256:" + "a" * 64, "pvc://c/s", "pvc://c/t")
    _assert_fits(render_training_job(_meta(name), spec, pinned, OperatorSettings()))


def test_the_longest_model_deployment_name_fits_its_service_and_autoscaler() -> None:
    name = _longest("ModelDeployment")
    spec = ModelDeploymentSpec.model_validate({"model": "iris", "autoscaling": {"maxReplicas": 2}})
    _assert_fits(render_service(_meta(name), spec), pattern=DNS_1035_LABEL)
    hpa = render_hpa(_meta(name), spec)
    assert hpa is not None
    _assert_fits(hpa)


def test_the_longest_monitor_name_fits_its_retraining_runs() -> None:
    name = _longest("ModelMonitor")
    spec = ModelMonitorSpec.model_validate(
        {"deploymentRef": {"name": "iris"}, "retrain": {"template": _run()}}
    )
    run_name = f"{name}-retrain-999999"  # as guardrails.decide_retrain names them
    run = render_retrain_run(
        _meta(name), spec, RetrainRequest(run_name, "DataDrift", "m", 0.3), "v"
    )
    _assert_fits(run)
    training_run = KINDS_BY_NAME["TrainingRun"].name_rule
    assert training_run is not None
    assert training_run.test(run_name), "and the run is a valid TrainingRun name"


@pytest.mark.parametrize("kind", [k for k in KINDS if k.name_rule is not None], ids=str)
def test_name_rules_refuse_one_character_more_and_dots(kind: Any) -> None:
    rule = kind.name_rule
    assert rule.test(_longest(kind.kind))
    assert not rule.test(_longest(kind.kind) + "z")
    assert not rule.test("a.b")
    assert evaluate_rule(rule.cel()["rule"], {"metadata": {"name": "a.b"}}) is False
    longest = {"metadata": {"name": _longest(kind.kind)}}
    assert evaluate_rule(rule.cel()["rule"], longest) is True


def test_a_dot_at_the_cut_would_break_the_ingest_job_name() -> None:
    """Why Dataset names may not hold dots: the Job name keeps the first 45 characters."""
    dotted = "a" * 44 + ".b"
    job = render_ingest_job(
        _meta(dotted),
        DatasetSpec.model_validate(_dataset()),
        IngestPlan("Created", "1"),
        None,
        OperatorSettings(),
    )
    assert not _SUBDOMAIN.search(job["metadata"]["name"])
    rule = KINDS_BY_NAME["Dataset"].name_rule
    assert rule is not None
    assert not rule.test(dotted)
