"""The protocol between the operator and the Jobs it runs: arguments, results, reasons, exit codes.

Each is defined once and used by both sides. The operator renders a Job's command from
:class:`IngestArgs`/:class:`TrainArgs` and the Job parses the same model back from its argv; the
Job writes one :class:`IngestReport`, :class:`TrainReport` or :class:`JobFailure` to its
container's termination message (compressed when it would not fit in 4 KiB) and the operator
decodes it from the pod. Failure reasons become condition reasons as they are.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import zlib
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from flywheel.api.dataset import DatasetSpec
from flywheel.api.modelversion import FeatureSignature
from flywheel.api.trainingrun import TrainingRunSpec
from flywheel_serving import names

MOUNT_ROOT = Path(names.ARTIFACTS_ROOT)
"""Where Job and serving pods mount artifact claims: `<MOUNT_ROOT>/<claim>`."""
TERMINATION_LOG = Path("/dev/termination-log")
TERMINATION_LIMIT = 4096
"""Kubernetes keeps at most this many bytes of a termination message."""
COMPRESS_ABOVE = 3000
"""Results longer than this are sent as `{"z": base64(zlib(json))}`."""


class ExitCode(IntEnum):
    """How a Job's container exits; the training Job's podFailurePolicy keys on these."""

    SUCCESS = 0
    RETRYABLE = 1
    """A crash or an unreachable source: trying again may help."""
    NOT_RETRYABLE = 3
    """The spec, the code or the data is wrong: a retry cannot help (FailJob)."""


class FailureReason(StrEnum):
    """Why a Job failed, as its report says; each is a condition reason."""

    SOURCE_UNAVAILABLE = "SourceUnavailable"
    """Transient: the source did not answer (refused, reset, DNS, timeout, HTTP 5xx/408/429)."""
    SOURCE_INVALID = "SourceInvalid"
    """Permanent: the URI cannot be used as written (no host, a bad port, an unsupported scheme,
    a `pvc://` path escaping its claim, a directory, another HTTP 4xx)."""
    SOURCE_NOT_FOUND = "SourceNotFound"
    """Permanent: nothing at the URI (no such file or claim, HTTP 404/410)."""
    SOURCE_FORBIDDEN = "SourceForbidden"
    """Permanent: the ingest pod may not read it (permission denied, HTTP 401/403/407/451)."""
    SOURCE_UNTRUSTED = "SourceUntrusted"
    """Permanent: the server's TLS certificate failed verification."""
    SOURCE_TIMEOUT = "SourceTimeout"
    """Transient: the transfer stalled or crawled (less than 64 KiB within the read timeout)."""
    SOURCE_TOO_LARGE = "SourceTooLarge"
    """Permanent: the source is larger than `source.maxBytes` (checked before and while it is
    read)."""
    PARSE_ERROR = "ParseError"
    VALIDATION_FAILED = "ValidationFailed"
    INVALID_ESTIMATOR = "InvalidEstimator"
    INVALID_SPEC = "InvalidSpec"
    ONNX_PARITY_FAILED = "OnnxParityFailed"
    DATASET_DIGEST_MISMATCH = "DatasetDigestMismatch"
    TRAINING_FAILED = "TrainingFailed"
    NO_RESULT = "Failed"
    """The container ended without a result document (a crash, a kill, a deadline)."""


SOURCE_TRANSIENT = frozenset({FailureReason.SOURCE_UNAVAILABLE, FailureReason.SOURCE_TIMEOUT})
"""Source failures that may pass by themselves: retried with back-off (exit code RETRYABLE)."""
SOURCE_PERMANENT = frozenset(
    {
        FailureReason.SOURCE_INVALID,
        FailureReason.SOURCE_NOT_FOUND,
        FailureReason.SOURCE_FORBIDDEN,
        FailureReason.SOURCE_UNTRUSTED,
        FailureReason.SOURCE_TOO_LARGE,
    }
)
"""Source failures a retry cannot fix: the Dataset stalls until its spec changes (NOT_RETRYABLE)."""

TRAINING_REPORTED = frozenset(
    {
        FailureReason.INVALID_ESTIMATOR,
        FailureReason.INVALID_SPEC,
        FailureReason.ONNX_PARITY_FAILED,
        FailureReason.DATASET_DIGEST_MISMATCH,
        FailureReason.TRAINING_FAILED,
    }
)
"""Reasons the training container reports itself (with exit code NOT_RETRYABLE)."""


class Message(BaseModel):
    """Base of every protocol document: camelCase on the wire, unknown fields ignored (a Job of
    another operator version may send more)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class JobFailure(Message):
    """A Job that could not do its work."""

    ok: Literal[False] = False
    reason: FailureReason
    message: str = ""


class IngestReport(Message):
    """A snapshot published (or found already published) by the ingest Job."""

    ok: Literal[True] = True
    version: str
    digest: str
    rows: int
    columns: int
    snapshot_uri: str = Field(alias="snapshotURI")
    stats_uri: str = Field(alias="statsURI")
    changed: bool = True
    published: bool = True
    seconds: float = 0.0
    source_bytes: int | None = None
    peak_memory_bytes: int | None = None


class ModelSignature(Message):
    """What the trained model takes and gives."""

    task: Literal["classification", "regression"]
    features: list[FeatureSignature]
    class_labels: list[str] | None = None


class ChampionReport(Message):
    """The champion's metrics on the new run's held-out rows, or its recorded ones and why."""

    version: int
    metrics: dict[str, float]
    rescored: bool
    note: str | None = None


class PredictionCounts(Message):
    """The final ONNX model's predictions on the held-out rows, counted in the serving pods'
    prediction slots: per class label in the model's class order (a classifier), or per
    position of the label's baseline histogram, `flywheel_serving.names.numeric_slots` (a
    regressor). Every slot is present, zeros included; the counts sum to `rows`."""

    rows: int = Field(ge=0)
    counts: dict[str, int]


class TrainReport(Message):
    """A model trained, exported, checked and stored by the training Job."""

    ok: Literal[True] = True
    sha256: str
    model_uri: str = Field(alias="modelURI")
    examples_uri: str | None = Field(default=None, alias="examplesURI")
    metrics: dict[str, float]
    champion: ChampionReport | None = None
    signature: ModelSignature
    max_deviation: float = 0.0
    libraries: dict[str, str] = Field(default_factory=dict)
    held_out: int = 0
    fit_seconds: float = 0.0
    seconds: float = 0.0
    prediction_baseline: PredictionCounts | None = None
    """The prediction-drift baseline; None for a regressor without a label histogram to bin on
    (none in the stats, or no stats given or readable), or when it would not fit the message."""


class Champion(Message):
    """The champion the training Job re-scores on its held-out rows (`--champion`)."""

    version: int
    uri: str
    sha256: str
    features: list[FeatureSignature]
    class_labels: list[str] | None = None
    metrics: dict[str, float] = Field(default_factory=dict)


class JobArgs(Message):
    """Arguments of a Job's entrypoint, rendered into and parsed from `--kebab-case` flags
    (documents such as the spec as JSON)."""

    ENTRYPOINT: ClassVar[str]
    JSON_FIELDS: ClassVar[frozenset[str]] = frozenset()
    LOCAL_FIELDS: ClassVar[frozenset[str]] = frozenset({"artifacts_root", "termination_log"})
    """Fields for running an entrypoint outside a pod (tests, benchmarks); never rendered."""
    artifacts_root: Path = MOUNT_ROOT
    termination_log: Path = TERMINATION_LOG

    def command(self) -> list[str]:
        """The container command: `python -m <entrypoint>` and one flag per set field."""
        argv = ["python", "-m", self.ENTRYPOINT]
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None or name in self.LOCAL_FIELDS:
                continue
            if isinstance(value, BaseModel):
                text = value.model_dump_json(by_alias=True, exclude_none=True)
            else:
                text = str(value)
            argv += [f"--{name.replace('_', '-')}", text]
        return argv

    @classmethod
    def parse(cls: type[ArgsT], argv: list[str]) -> ArgsT:
        """The arguments from `--flag value` pairs (what :meth:`command` renders)."""
        if len(argv) % 2:
            raise ValueError(f"expected --flag value pairs, got {len(argv)} words")
        fields: dict[str, Any] = {}
        for flag, value in zip(argv[::2], argv[1::2], strict=True):
            name = flag.removeprefix("--").replace("-", "_")
            if not flag.startswith("--") or name not in cls.model_fields:
                raise ValueError(f"unknown flag {flag!r}")
            fields[name] = json.loads(value) if name in cls.JSON_FIELDS else value
        return cls.model_validate(fields)


ArgsT = TypeVar("ArgsT", bound=JobArgs)


class IngestArgs(JobArgs):
    """`python -m flywheel.jobs.ingest`: read, validate, snapshot and profile one source."""

    ENTRYPOINT: ClassVar[str] = "flywheel.jobs.ingest"
    JSON_FIELDS: ClassVar[frozenset[str]] = frozenset({"spec"})
    spec: DatasetSpec
    namespace: str
    name: str
    claim: str
    max_bytes: int = Field(default=10 * 2**30, ge=0)
    """The largest source accepted (`source.maxBytes`, else the operator's default)."""
    previous_digest: str | None = None


class TrainArgs(JobArgs):
    """`python -m flywheel.jobs.train`: train, evaluate, export and check one run."""

    ENTRYPOINT: ClassVar[str] = "flywheel.jobs.train"
    JSON_FIELDS: ClassVar[frozenset[str]] = frozenset({"spec", "champion"})
    spec: TrainingRunSpec
    namespace: str
    run: str
    snapshot: str
    digest: str
    claim: str
    champion: Champion | None = None
    stats: str | None = None
    """The pinned Dataset version's statistics (`flywheel.dev/stats/v1`, the ModelVersion's
    `baseline.statsURI`): a regressor's prediction baseline is binned on its label histogram."""


IngestResult = IngestReport | JobFailure
TrainResult = TrainReport | JobFailure
ReportT = TypeVar("ReportT", IngestReport, TrainReport)


def encode_result(result: IngestReport | TrainReport | JobFailure) -> str:
    """The termination message: JSON, compressed when long, a failure's message shortened
    until it fits, a training report's prediction baseline left out when it would not fit (the
    ModelVersion then records none: a model with very many or very long class labels)."""
    text = result.model_dump_json(by_alias=True, exclude_none=True)
    if len(text) <= COMPRESS_ABOVE:
        return text
    packed = json.dumps({"z": base64.b64encode(zlib.compress(text.encode(), 9)).decode()})
    if len(packed) <= TERMINATION_LIMIT:
        return packed
    if isinstance(result, JobFailure) and len(result.message) > 200:
        shorter = result.message[: len(result.message) // 2] + " ..."
        return encode_result(result.model_copy(update={"message": shorter}))
    if isinstance(result, TrainReport) and result.prediction_baseline is not None:
        return encode_result(result.model_copy(update={"prediction_baseline": None}))
    too_large = f"the result document is {len(text)} bytes even compressed"
    return encode_result(JobFailure(reason=FailureReason.NO_RESULT, message=too_large))


def write_result(result: IngestReport | TrainReport | JobFailure, log: Path) -> None:
    """Report: to the termination log (where the operator reads it) and to stdout."""
    text = encode_result(result)
    print(text, flush=True)
    with contextlib.suppress(OSError):  # outside a pod there is no termination log
        log.write_text(text)


def decode_result(text: str, report: type[ReportT]) -> ReportT | JobFailure | None:
    """A termination message as a result, or None when it is not one (a log tail)."""
    try:
        document = json.loads(text)
        if isinstance(document, dict) and set(document) == {"z"}:
            document = json.loads(zlib.decompress(base64.b64decode(document["z"])))
    except (json.JSONDecodeError, binascii.Error, zlib.error, TypeError, ValueError):
        return None
    if not isinstance(document, dict) or "ok" not in document:
        return None
    try:
        if document["ok"] is True:
            return report.model_validate(document)
        return JobFailure.model_validate(document)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        message = f"the Job's result does not follow the protocol: {where}: {problem['msg']}"
        return JobFailure(reason=FailureReason.NO_RESULT, message=message)
