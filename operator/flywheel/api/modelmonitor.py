"""The ModelMonitor kind: drift and performance of a served model, and automatic retraining.

A monitor reads the serving pods' metrics (directly or through Prometheus), compares the window's
per-feature histograms with the training baseline, tracks prediction drift and labelled
performance, and - in `Auto` mode - creates a TrainingRun when a threshold holds for consecutive
evaluations, within cooldown, budget and new-data guardrails.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from annotated_types import MaxLen
from pydantic import ConfigDict, Field

from flywheel.api.checks import (
    DNS_LABEL,
    Check,
    NameRule,
    Rules,
    duration_between,
    duration_seconds,
    uri_checks,
)
from flywheel.api.common import (
    ApiModel,
    ColumnName,
    CronSchedule,
    DeploymentReference,
    Duration,
    ObjectName,
    ShortText,
    StatusBase,
    Uri,
    cel,
    validations,
)
from flywheel.api.trainingrun import NAME_RULE as TRAINING_RUN_NAME_RULE
from flywheel.api.trainingrun import TrainingRunSpec

DriftMethod = Literal["psi", "jensenshannon", "wasserstein", "linf", "chisquare"]

RETRAIN_SUFFIX = "-retrain-"
RETRAIN_NUMBER_DIGITS = 6
"""Room for retraining run numbers up to 999,999 (at 100 runs a day, the most `maxRunsPerDay`
allows, 27 years)."""
NAME_RULE = NameRule(
    TRAINING_RUN_NAME_RULE.max_length - len(RETRAIN_SUFFIX) - RETRAIN_NUMBER_DIGITS,
    DNS_LABEL,
    "its retraining runs are named `<name>-retrain-<N>` (N up to 6 digits), and a TrainingRun "
    "name has at most 63 characters",
)
"""ModelMonitor names: the retraining TrainingRuns `<name>-retrain-<N>` must satisfy the
TrainingRun name rule; the name is also the value of the label `flywheel.dev/modelmonitor`."""


PrometheusUrl = Annotated[
    Uri, Field(pattern=r"^https?://.+"), uri_checks(("http", "https"), user_info=True)
]

Matchers = Annotated[
    dict[
        Annotated[str, Field(max_length=63, pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")],
        Annotated[str, Field(max_length=253)],
    ],
    MaxLen(8),
    Rules(
        Check(
            "self.all(k, k != 'model' && k != 'version' && !k.startsWith('__'))",
            "matchers cannot name model or version (every query already selects the served "
            "model and version) or a reserved __ label",
            lambda found: all(
                k not in ("model", "version") and not k.startswith("__") for k in found
            ),
        )
    ),
]


class PrometheusSource(ApiModel):
    """A Prometheus server that scrapes the serving pods."""

    url: PrometheusUrl
    """The server's base URL, e.g. `http://prometheus.monitoring:9090`."""

    matchers: Matchers = Field(default_factory=dict)
    """Extra label matchers added to every query, e.g. `{namespace: ml}` when several
    namespaces serve a model of the same name. Series are always filtered by `model` and
    `version` (labels the serving pods export), so matchers cannot name those."""


class MetricsSource(ApiModel):
    """Where serving metrics are read from."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.type != 'Prometheus' || has(self.prometheus)",
                "metricsSource.prometheus is required when type is Prometheus",
            ),
            cel(
                "self.type != 'Pods' || !has(self.prometheus)",
                "metricsSource.prometheus must not be set when type is Pods",
            ),
        )
    )

    type: Literal["Pods", "Prometheus"] = "Pods"
    """`Pods`: the operator scrapes every ready serving pod itself. `Prometheus`: PromQL over the
    HTTP API of the server in `prometheus`."""

    prometheus: PrometheusSource | None = None
    """The Prometheus server, for `type: Prometheus`."""


BOUNDED_METHODS = ("jensenshannon", "linf")
"""Methods whose scores never exceed 1."""

THRESHOLD_REACHABLE = Check(
    f"self.decision != 'Threshold' || !(self.method in {list(BOUNDED_METHODS)}) "
    "|| self.threshold < 1.0",
    "threshold must be below 1 for jensenshannon and linf, whose scores never exceed 1",
    lambda found: (
        found.decision != "Threshold" or found.method not in BOUNDED_METHODS or found.threshold < 1
    ),
)

DriftDecision = Literal["Calibrated", "Threshold"]
Alpha = Annotated[float, Field(gt=0, le=0.5)]
Share = Annotated[float, Field(ge=0, le=1)]


class DriftTest(ApiModel):
    """How a distribution is judged against its baseline (shared by data and prediction
    drift). docs/monitoring.md explains the statistics and their calibration."""

    cel_checks: ClassVar[tuple[Check, ...]] = (THRESHOLD_REACHABLE,)

    enabled: bool = True
    """Whether this drift is evaluated."""

    method: DriftMethod = "psi"
    """The statistic between the window's and the baseline's binned distributions: `psi`
    (population stability index), `jensenshannon` (distance, base 2), `wasserstein`
    (normalised, on bins; categoricals use Jensen-Shannon), `linf` (largest share difference)
    or `chisquare` (the two-sample statistic over non-empty slots)."""

    decision: DriftDecision = "Calibrated"
    """`Calibrated` (default): drift when the statistic exceeds its critical value at the
    window's and the baseline's sizes (chi-square approximation, or a bootstrap where it is
    poor) at significance `alpha`, and the change is at least `minEffect`. `Threshold`: drift
    when the statistic exceeds the fixed `threshold`, whatever the sizes."""

    alpha: Alpha = 0.02
    """`Calibrated`: the chance of a false alarm per evaluation, split (Bonferroni) over the
    features and checks judged. Above 0, at most 0.5."""

    min_effect: Share = 0.01
    """`Calibrated`: the materiality floor: the least total variation distance (the share of
    values that changed slot) that counts as drift, however significant, so a tiny change in a
    huge window does not page anyone."""

    threshold: float = Field(default=0.2, gt=0, le=10_000)
    """`Threshold` only: the fixed score above which a distribution drifts. 0.2 suits PSI;
    about 0.1 Jensen-Shannon and Wasserstein; below 1 for jensenshannon and linf."""

    max_new_value_share: Share = 0.001
    """Drift when the share of missing values, or of values the baseline never had (new
    categories, numeric values below or above its range), rises by more than this (and more
    than chance explains), under either decision."""


class DataDrift(DriftTest):
    """Drift of the input features against the training baseline."""

    cel_checks = (
        THRESHOLD_REACHABLE,
        Check(
            "!has(self.features) || self.minDriftedFeatures <= size(self.features)",
            "minDriftedFeatures cannot be more than the features listed",
            lambda found: (
                found.features is None or found.min_drifted_features <= len(found.features)
            ),
        ),
    )

    min_drifted_features: int = Field(default=1, ge=1, le=512)
    """How many features must drift for the data to count as drifted (at most as many as
    `features` lists). 1 suits `Calibrated`, whose `alpha` is already corrected for the number
    of features."""

    features: list[ColumnName] | None = Field(default=None, max_length=512)
    """Only these features are scored. Default: all."""


class PredictionDrift(DriftTest):
    """Drift of the predicted classes (or binned values) against the model's own predictions
    on its held-out rows, recorded with the ModelVersion (the training label for versions
    registered without them)."""


class Performance(ApiModel):
    """Quality from label feedback sent to the serving pods."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("has(self.min) || has(self.max)", "performance needs min or max"),
        )
    )

    cel_checks = (
        Check(
            "self.metric != 'accuracy' || (has(self.min) && !has(self.max))",
            "accuracy (higher is better) takes min, not max: decay is accuracy falling below min",
            lambda found: (
                found.metric != "accuracy" or (found.min is not None and found.max is None)
            ),
        ),
        Check(
            "self.metric != 'mae' || (has(self.max) && !has(self.min))",
            "mae (lower is better) takes max, not min: decay is the error rising above max",
            lambda found: found.metric != "mae" or (found.max is not None and found.min is None),
        ),
        Check(
            "!has(self.min) || (self.min > 0.0 && self.min <= 1.0)",
            "min must be above 0 and at most 1: accuracy is a fraction",
            lambda found: found.min is None or 0 < found.min <= 1,
        ),
        Check(
            "!has(self.max) || self.max >= 0.0",
            "max must not be negative: the mean absolute error never is",
            lambda found: found.max is None or found.max >= 0,
        ),
    )

    metric: Literal["accuracy", "mae"]
    """`accuracy` for classifiers (with `min`), `mae` (mean absolute error) for regressors
    (with `max`)."""

    min: float | None = None
    """Decay is flagged when accuracy falls below this (above 0, at most 1)."""

    max: float | None = None
    """Decay is flagged when the mean absolute error rises above this (0 or more)."""

    min_labels: int = Field(default=100, ge=1, le=100_000_000)
    """No verdict on performance with fewer labels in the window."""


class RetrainPolicy(ApiModel):
    """What to train when drift or decay holds, and the guardrails around it."""

    template: TrainingRunSpec
    """The spec of the TrainingRuns to create. `datasetRef.version` is replaced by the Dataset's
    latest version."""

    max_runs_per_day: int = Field(default=3, ge=1, le=100)
    """At most this many retraining runs in any 24 hours."""

    require_new_data: bool = True
    """Only retrain when the Dataset has a version newer than the one the serving model was
    trained on; otherwise ask the Dataset to refresh and wait (`WaitingForNewData`)."""


Interval = Annotated[Duration, duration_between("5s", "24h")]
Window = Annotated[Duration, duration_between("5s", "168h")]
Cooldown = Annotated[Duration, duration_between("0s", "8760h")]


def _window_covers_interval(spec: ModelMonitorSpec) -> bool:
    window, interval = duration_seconds(spec.window), duration_seconds(spec.interval)
    return window is None or interval is None or window >= interval


class ModelMonitorSpec(ApiModel):
    """What to watch, how to judge it and when to retrain."""

    cel_checks = (
        Check(
            "duration(self.window) >= duration(self.interval)",
            "window must not be shorter than interval",
            _window_covers_interval,
        ),
    )

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.mode != 'Auto' || has(self.retrain)",
                "retrain is required when mode is Auto",
            ),
            cel(
                "!has(self.schedule) || has(self.retrain)",
                "retrain is required with a schedule",
            ),
        )
    )

    deployment_ref: DeploymentReference
    """The ModelDeployment to monitor, in the same namespace."""

    interval: Interval = "1m"
    """How often to evaluate: from 5s to 24h."""

    window: Window = "10m"
    """The span of traffic each evaluation looks at: at least `interval`, at most 168h (7
    days)."""

    min_samples: int = Field(default=500, ge=1, le=100_000_000)
    """No drift verdict with fewer predictions in the window (`InsufficientData`)."""

    metrics_source: MetricsSource = Field(default_factory=MetricsSource)
    """Where serving metrics come from."""

    data_drift: DataDrift = Field(default_factory=DataDrift)
    """Input feature drift."""

    prediction_drift: PredictionDrift = Field(default_factory=PredictionDrift)
    """Prediction drift."""

    performance: Performance | None = None
    """Labelled performance from feedback."""

    consecutive_evaluations: int = Field(default=2, ge=1, le=100)
    """How many evaluations in a row must see drift or decay before a retrain."""

    cooldown: Cooldown = "1h"
    """The least time between two retraining runs: from 0s to 8760h (a year)."""

    schedule: CronSchedule | None = None
    """Retrain on this cron schedule (UTC) regardless of drift, still under the guardrails."""

    mode: Literal["Auto", "Suggest"] = "Suggest"
    """`Auto` creates TrainingRuns; `Suggest` only records the decision and an Event."""

    retrain: RetrainPolicy | None = None
    """What to train and the guardrails."""


class FeatureScore(ApiModel):
    """The drift verdict of one feature (or of the predictions)."""

    name: ColumnName
    """The feature."""

    score: float
    """The statistic under the configured method."""

    critical_value: float | None = None
    """What the score was held to: its critical value at this window's and the baseline's
    sizes (`Calibrated`) or the fixed threshold."""

    effect: float | None = None
    """The total variation distance between the window's and the baseline's shares."""

    missing_share: float | None = None
    """The window's share of missing values."""

    new_value_share: float | None = None
    """The window's share of values the baseline never had (new categories, out of range)."""

    drifted: bool
    """Whether it drifted."""

    reason: Literal["Shift", "NewValues", "Missing"] | None = None
    """What fired: the distribution moved (`Shift`), missing values or never-seen values
    rose (`Missing`, `NewValues`)."""


class Evaluation(ApiModel):
    """The latest evaluation."""

    time: datetime
    """When it ran."""

    window: Duration
    """The span of traffic it covered."""

    samples: int = Field(ge=0)
    """Predictions in the window."""

    labels: int | None = Field(default=None, ge=0)
    """Feedback labels in the window."""

    verdict: Literal["NoDrift", "Drift", "Decay", "InsufficientData"]
    """The outcome."""

    features: list[FeatureScore] | None = Field(default=None, max_length=256)
    """Per-feature drift scores."""

    drifted_features: list[ColumnName] | None = Field(default=None, max_length=256)
    """The features over the threshold."""

    prediction_drift_score: float | None = None
    """The prediction drift score."""

    prediction_drift: FeatureScore | None = None
    """The predictions' verdict in full (score, critical value, reason)."""

    prediction_baseline: Literal["heldOutPredictions", "trainingLabel"] | None = None
    """What predictions were compared with: the model's own predictions on its held-out rows,
    or (versions registered without them) the training label."""

    performance: float | None = None
    """The labelled metric's value."""


class RetrainRecord(ApiModel):
    """A retraining decision."""

    time: datetime
    """When it was taken."""

    training_run: ObjectName | None = None
    """The TrainingRun created (none in Suggest mode)."""

    reason: Annotated[str, Field(max_length=63)]
    """What triggered it: `DataDrift`, `PredictionDrift`, `PerformanceDecay` or `Schedule`."""

    message: ShortText
    """The scores that caused it."""


class Decision(ApiModel):
    """What the latest evaluation decided about retraining, and why."""

    action: Literal["None", "Create", "Suggest", "WaitForNewData", "Blocked"]
    """`Create`: a TrainingRun was created; `Suggest`: recorded only; `WaitForNewData`: the
    Dataset was asked to refresh; `Blocked`: a guardrail held; `None`: nothing called for it."""

    reason: Annotated[str, Field(max_length=63)]
    """`NoTrigger`, `Observing`, `RunInFlight`, `Cooldown`, `DailyBudget`,
    `WaitingForNewData`, or the trigger (`DataDrift`, `PredictionDrift`, `PerformanceDecay`,
    `Schedule`)."""

    message: ShortText
    """A sentence for people."""


class ModelMonitorStatus(StatusBase):
    """The observed state.

    Conditions: Ready, Reconciling, Stalled, DriftDetected, WaitingForNewData.
    """

    serving_version: int | None = Field(default=None, ge=1)
    """The ModelVersion the latest evaluation watched (the deployment's serving version)."""

    last_decision: Decision | None = None
    """The latest retraining decision."""

    retrains: int | None = Field(default=None, ge=0)
    """Retraining decisions so far; the next TrainingRun is `<monitor>-retrain-<retrains+1>`,
    so a decision re-taken after an operator restart finds the run it created."""

    last_evaluation: Evaluation | None = None
    """The most recent evaluation."""

    consecutive_drift_evaluations: int | None = Field(default=None, ge=0)
    """Evaluations in a row that saw drift or decay."""

    last_retrain: RetrainRecord | None = None
    """The most recent retraining decision; the cooldown runs from its time."""

    recent_retrains: list[RetrainRecord] | None = Field(default=None, max_length=100)
    """Retraining decisions of the last 24 hours, for the daily budget."""
