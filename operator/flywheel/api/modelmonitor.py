"""The ModelMonitor kind: drift and performance of a served model, and automatic retraining.

A monitor reads the serving pods' metrics (directly or through Prometheus), compares the window's
per-feature histograms with the training baseline, tracks prediction drift and labelled
performance, and - in `Auto` mode - creates a TrainingRun when a threshold holds for consecutive
evaluations, within cooldown, budget and new-data guardrails.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from flywheel.api.common import (
    ApiModel,
    ColumnName,
    CronSchedule,
    Duration,
    LocalObjectReference,
    ObjectName,
    ShortText,
    StatusBase,
    Uri,
    cel,
    validations,
)
from flywheel.api.trainingrun import TrainingRunSpec

DriftMethod = Literal["psi", "jensenshannon", "wasserstein", "linf", "chisquare"]


class PrometheusSource(ApiModel):
    """A Prometheus server that scrapes the serving pods."""

    url: Annotated[Uri, Field(pattern=r"^https?://.+")]
    """The server's base URL, e.g. `http://prometheus.monitoring:9090`."""

    matchers: dict[
        Annotated[str, Field(max_length=63, pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")],
        Annotated[str, Field(max_length=253)],
    ] = Field(default_factory=dict, max_length=8)
    """Extra label matchers added to every query, e.g. `{namespace: ml}` when several
    namespaces serve a model of the same name. Series are always filtered by `model` and
    `version` (labels the serving pods export)."""


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


class DataDrift(ApiModel):
    """Drift of the input features against the training baseline."""

    enabled: bool = True
    """Whether data drift is evaluated."""

    method: DriftMethod = "psi"
    """The distance between the window's and the baseline's binned distributions: `psi`
    (population stability index), `jensenshannon` (distance), `wasserstein` (normalised, on bins),
    `linf` (largest frequency difference) or `chisquare` (test statistic p-value complement)."""

    threshold: float = Field(default=0.2, gt=0, le=100)
    """A feature drifts when its score exceeds this. 0.2 suits PSI; about 0.1 suits
    Jensen-Shannon and Wasserstein."""

    min_drifted_features: int = Field(default=1, ge=1, le=512)
    """How many features must drift for the data to count as drifted."""

    features: list[ColumnName] | None = Field(default=None, max_length=512)
    """Only these features are scored. Default: all."""


class PredictionDrift(ApiModel):
    """Drift of the predicted classes (or binned values) against the training labels."""

    enabled: bool = True
    """Whether prediction drift is evaluated."""

    method: DriftMethod = "psi"
    """The distance used, as for data drift."""

    threshold: float = Field(default=0.2, gt=0, le=100)
    """Predictions drift when the score exceeds this."""


class Performance(ApiModel):
    """Quality from label feedback sent to the serving pods."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("has(self.min) || has(self.max)", "performance needs min or max"),
        )
    )

    metric: Literal["accuracy", "mae"]
    """`accuracy` for classifiers, `mae` (mean absolute error) for regressors."""

    min: float | None = None
    """Decay is flagged when the metric falls below this (for accuracy)."""

    max: float | None = None
    """Decay is flagged when the metric rises above this (for mae)."""

    min_labels: int = Field(default=100, ge=1)
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


class ModelMonitorSpec(ApiModel):
    """What to watch, how to judge it and when to retrain."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "duration(self.window) >= duration(self.interval)",
                "window must not be shorter than interval",
            ),
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

    deployment_ref: LocalObjectReference
    """The ModelDeployment to monitor, in the same namespace."""

    interval: Duration = "1m"
    """How often to evaluate."""

    window: Duration = "10m"
    """The span of traffic each evaluation looks at."""

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

    cooldown: Duration = "1h"
    """The least time between two retraining runs."""

    schedule: CronSchedule | None = None
    """Retrain on this cron schedule (UTC) regardless of drift, still under the guardrails."""

    mode: Literal["Auto", "Suggest"] = "Suggest"
    """`Auto` creates TrainingRuns; `Suggest` only records the decision and an Event."""

    retrain: RetrainPolicy | None = None
    """What to train and the guardrails."""


class FeatureScore(ApiModel):
    """The drift score of one feature."""

    name: ColumnName
    """The feature."""

    score: float
    """The score under the configured method."""

    drifted: bool
    """Whether the score exceeds the threshold."""


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
