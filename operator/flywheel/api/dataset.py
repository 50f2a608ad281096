"""The Dataset kind: a data source turned into validated, content-addressed snapshots.

A Dataset names where the data comes from, what its columns mean and which quality rules it must
pass. Each accepted snapshot is published in `status` under its sha256 digest (the version),
together with per-feature statistics that later become the drift baseline of every model trained
on it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from flywheel.api.checks import DNS_LABEL, Check, NameRule, Rules, matches, uri_checks
from flywheel.api.common import (
    SPEC_FITS_A_JOB,
    ApiModel,
    ColumnName,
    CronSchedule,
    Quantity,
    ShortText,
    StatusBase,
    Uri,
    cel,
    validations,
)

SOURCE_SCHEMES = ("sklearn", "http", "https", "pvc", "file")
BUNDLED_DATASETS = ("iris", "wine", "breast_cancer", "diabetes", "digits")

NAME_RULE = NameRule(
    63,
    DNS_LABEL,
    "it is the value of the label flywheel.dev/dataset on its ingest Jobs and their pods, and "
    "the Jobs are named after its first 45 characters (`<name>-ingest-<hash>`)",
)
"""Dataset names: a label value (63 characters at most); the ingest Job name
`<name[:45]>-ingest-<8 hex>` (61) must not cut the name after a dot, hence no dots."""

DataFormat = Literal["csv", "parquet"]
FeatureType = Literal["numeric", "categorical"]


_SOURCE_SCHEME = "^(sklearn|https?|pvc|file)://.+"
_BUNDLED = f"^sklearn://({'|'.join(BUNDLED_DATASETS)})$"

SourceUri = Annotated[
    Uri,
    Rules(
        Check(
            f"self.matches('{_SOURCE_SCHEME}')",
            "source.uri must start with sklearn://, http://, https://, pvc:// or file://",
            matches(_SOURCE_SCHEME),
        ),
        Check(
            f"!self.startsWith('sklearn://') || self.matches('{_BUNDLED}')",
            "sklearn:// names a bundled dataset: iris, wine, breast_cancer, diabetes or digits",
            lambda uri: not uri.startswith("sklearn://") or matches(_BUNDLED)(uri),
        ),
        uri_checks(SOURCE_SCHEMES),
    ),
]
"""What the ingest Job reads (`flywheel.data.sources.read_source`)."""


class DataSource(ApiModel):
    """Where the data is read from."""

    uri: SourceUri
    """The data location: `sklearn://<name>` (a dataset bundled with scikit-learn: iris, wine,
    breast_cancer, diabetes, digits), `http(s)://…` (a CSV or Parquet file), `pvc://<claim>/<path>`
    (a file on a PersistentVolumeClaim in this namespace) or `file://<path>` (a file inside the
    ingest pod)."""

    format: DataFormat | None = None
    """The file format. Inferred from the extension (`.csv`, `.parquet`) when omitted."""

    max_bytes: Quantity | None = None
    """The largest source accepted, as a quantity (`2Gi`); a larger one fails with
    `SourceTooLarge` before it is read. Defaults to the operator's setting
    (`FLYWHEEL_DATASET_MAX_BYTES`, 10Gi). An HTTP source is spooled to the artifacts claim
    while it is ingested, so the claim needs this much free space."""

    connect_timeout_seconds: int = Field(default=30, ge=1, le=600)
    """How long to wait for an HTTP server to accept the connection and answer the request."""

    read_timeout_seconds: int = Field(default=60, ge=1, le=3600)
    """The longest an HTTP transfer may go without receiving another 64 KiB (or the rest of
    the body). A slower or stalled transfer fails with `SourceTimeout` and is retried with
    back-off, like any unavailable source."""


class FeatureSpec(ApiModel):
    """A column used as a model input, with its type."""

    name: ColumnName
    """The column name."""

    type: FeatureType = "numeric"
    """`numeric` (binned on quantiles for drift) or `categorical` (one-hot encoded, top-K
    categories for drift)."""


class DatasetSchema(ApiModel):
    """Which column is the label and how the other columns are used."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.label) || !has(self.exclude) || !(self.label in self.exclude)",
                "the label column cannot also be excluded",
            ),
            cel(
                "!has(self.label) || !has(self.features) || "
                "!self.features.exists(f, f.name == self.label)",
                "the label column cannot also be a feature",
            ),
        )
    )

    label: ColumnName | None = None
    """The target column. Defaults to a column named `target` or `label`, else the last one."""

    features: list[FeatureSpec] | None = Field(
        default=None,
        max_length=512,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """The input columns and their types. When omitted, every column but the label and the
    excluded ones is a feature, and types are inferred (numbers are numeric, the rest
    categorical)."""

    exclude: list[ColumnName] | None = Field(default=None, max_length=512)
    """Columns to drop before training, such as identifiers."""

    task: Literal["classification", "regression"] | None = None
    """What the label will be used for, when known. `classification`: the label is a class,
    with at least two classes of at least `validation.minClassCount` rows each. `regression`:
    the label must be numeric and finite. When omitted, the label type is inferred (integers or
    text with at most 50 distinct values are classes) and a label with fewer than two distinct
    values is refused."""


class ColumnRule(ApiModel):
    """A quality rule on one column. Every check that is set must pass."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.min) || has(self.max) || has(self.allowedValues) || has(self.unique)"
                " || has(self.maxNullFraction)",
                "a rule must set at least one of min, max, allowedValues, unique, maxNullFraction",
            ),
            cel(
                "!has(self.min) || !has(self.max) || self.min <= self.max",
                "min must not be greater than max",
            ),
        )
    )

    column: ColumnName
    """The column the rule checks."""

    min: float | None = None
    """The smallest allowed value (numeric columns)."""

    max: float | None = None
    """The largest allowed value (numeric columns)."""

    allowed_values: list[ShortText] | None = Field(default=None, max_length=1024)
    """The only values allowed (categorical columns); nulls are governed by maxNullFraction."""

    unique: bool | None = None
    """When true, no value may appear twice."""

    max_null_fraction: float | None = Field(default=None, ge=0, le=1)
    """The largest share of nulls allowed in this column, from 0 to 1."""


MAX_ALLOWED_VALUES = 2048
"""All rules' `allowedValues` together: the spec stays far below the object size limit."""


def _allowed_values_bounded(found: DatasetValidation) -> bool:
    return sum(len(r.allowed_values or ()) for r in found.rules or ()) <= MAX_ALLOWED_VALUES


class DatasetValidation(ApiModel):
    """Quality gates a snapshot must pass before it is published as a version."""

    cel_checks = (
        Check(
            "!has(self.rules) || self.rules.map(r, has(r.allowedValues) ? size(r.allowedValues) "
            f": 0).sum() <= {MAX_ALLOWED_VALUES}",
            f"the rules may list at most {MAX_ALLOWED_VALUES} allowedValues in all",
            _allowed_values_bounded,
        ),
    )

    min_rows: int | None = Field(default=None, ge=0)
    """The fewest rows a snapshot may have."""

    max_null_fraction: float | None = Field(default=None, ge=0, le=1)
    """The largest share of nulls allowed in any single column, from 0 to 1."""

    rules: list[ColumnRule] | None = Field(default=None, max_length=256)
    """Per-column rules."""

    max_categories: int = Field(default=1000, ge=2, le=100_000)
    """The most distinct values a categorical feature (or a class label) may hold; more fails
    validation (an identifier or free text used as a category). Exclude such a column, declare
    it numeric, or raise the bound."""

    min_class_count: int = Field(default=2, ge=1, le=1_000_000)
    """The fewest rows each class needs when `schema.task` is `classification`."""

    allow_schema_change: bool = False
    """Whether a snapshot whose columns or column types differ from the previous version may be
    published. By default such a change fails validation."""


class RefreshPolicy(ApiModel):
    """When to read the source again. A new version is published only if the content changed."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.schedule) != has(self.intervalSeconds)",
                "refresh needs exactly one of schedule and intervalSeconds",
            )
        )
    )

    schedule: CronSchedule | None = None
    """A cron schedule (UTC), e.g. `0 3 * * *`."""

    interval_seconds: int | None = Field(default=None, ge=30, le=31_536_000)
    """Seconds between two reads, at least 30."""


class StatisticsOptions(ApiModel):
    """How per-feature statistics (the drift baseline) are computed."""

    bins: int = Field(default=10, ge=2, le=100)
    """Histogram bins per numeric feature, with quantile-based edges (plus underflow and overflow
    bins)."""

    top_k: int = Field(default=20, ge=1, le=200)
    """Categories kept per categorical feature; the rest count as `__other__`."""


class DatasetSpec(ApiModel):
    """The desired state of a Dataset."""

    cel_checks = (SPEC_FITS_A_JOB,)

    source: DataSource
    """Where the data comes from."""

    data_schema: DatasetSchema = Field(default_factory=DatasetSchema, alias="schema")
    """How the columns are used: label, features and their types, excluded columns."""

    validation: DatasetValidation = Field(default_factory=DatasetValidation)
    """Quality gates every snapshot must pass."""

    refresh: RefreshPolicy | None = None
    """When to read the source again. Without it the source is read on creation and whenever the
    spec changes."""

    statistics: StatisticsOptions = Field(default_factory=StatisticsOptions)
    """How per-feature statistics are computed."""


Digest = Annotated[str, Field(max_length=71, pattern=r"^sha256:[a-f0-9]{64}$")]


class DatasetVersionRecord(ApiModel):
    """A published version of the dataset."""

    version: Annotated[str, Field(max_length=64)]
    """The short digest that names the version."""

    digest: Digest
    """The sha256 of the canonical snapshot."""

    rows: int = Field(ge=0)
    """Row count."""

    columns: int = Field(ge=0)
    """Column count."""

    snapshot_uri: Uri = Field(alias="snapshotURI")
    """Where the snapshot is stored."""

    stats_uri: Uri = Field(alias="statsURI")
    """Where the statistics are stored."""

    created_at: datetime
    """When the version was published."""


IngestTrigger = Literal["Created", "SpecChanged", "Refresh", "Retry", "Requested"]
IngestResult = Literal[
    "Published",
    "Unchanged",
    "SourceUnavailable",
    "SourceInvalid",
    "SourceNotFound",
    "SourceForbidden",
    "SourceUntrusted",
    "SourceTimeout",
    "SourceTooLarge",
    "ParseError",
    "ValidationFailed",
    "Failed",
]


class IngestAttempt(ApiModel):
    """The latest ingest Job and how it ended."""

    job_name: Annotated[str, Field(max_length=63)]
    """The ingest Job."""

    trigger: IngestTrigger
    """Why it ran: `Created`, `SpecChanged`, `Refresh`, `Retry` (after SourceUnavailable) or
    `Requested` (the annotation `flywheel.dev/refresh-requested-at` changed, e.g. by a
    ModelMonitor waiting for new data)."""

    generation: int = Field(ge=0)
    """The Dataset generation it ingested."""

    start_time: datetime
    """When the Job was created."""

    completion_time: datetime | None = None
    """When it finished; empty while it runs."""

    result: IngestResult | None = None
    """`Published` (a new version), `Unchanged` (same content), or the failure reason."""

    message: Annotated[str, Field(max_length=4096)] | None = None
    """The failure's details: the error, or every failed rule with its observed value."""

    retries: int = Field(default=0, ge=0)
    """Consecutive transient source failures (SourceUnavailable, SourceTimeout); the retry
    back-off grows with it."""

    source_bytes: int | None = Field(default=None, ge=0)
    """Bytes read from the source."""

    peak_memory_bytes: int | None = Field(default=None, ge=0)
    """The ingest container's peak resident memory, to compare with its limit."""


class DatasetStatus(StatusBase):
    """The observed state of a Dataset. Conditions: Ready, Reconciling, Stalled, Validated."""

    version: Annotated[str, Field(max_length=64)] | None = None
    """The current version: a short form of the digest."""

    digest: Digest | None = None
    """The sha256 of the current snapshot, `sha256:<hex>`."""

    rows: int | None = Field(default=None, ge=0)
    """Rows in the current snapshot."""

    columns: int | None = Field(default=None, ge=0)
    """Columns in the current snapshot."""

    snapshot_uri: Uri | None = Field(default=None, alias="snapshotURI")
    """Where the current snapshot is stored."""

    stats_uri: Uri | None = Field(default=None, alias="statsURI")
    """Where the statistics of the current snapshot are stored (format flywheel.dev/stats/v1)."""

    last_checked: datetime | None = None
    """When the source was last read, whether or not its content changed."""

    job_name: Annotated[str, Field(max_length=63)] | None = None
    """The ingest Job of the current or latest attempt."""

    history: list[DatasetVersionRecord] | None = Field(default=None, max_length=20)
    """The most recent versions, newest first."""

    last_ingest: IngestAttempt | None = None
    """The latest ingest attempt."""

    last_handled_refresh_at: Annotated[str, Field(max_length=64)] | None = None
    """The value of the annotation `flywheel.dev/refresh-requested-at` that the latest
    requested ingest answered (as Flux's `lastHandledReconcileAt`)."""
