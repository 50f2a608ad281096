"""Errors of dataset processing; each carries the condition reason the operator reports.

DatasetError
 +-- SourceUnavailable   (the source could not be read: network, missing file; retried)
 +-- ParseError          (the bytes are not valid CSV/Parquet; Stalled until the data changes)
 +-- ValidationFailed    (quality rules failed; the snapshot is not published)
"""

from __future__ import annotations

from flywheel.interfaces.jobs import FailureReason


class DatasetError(Exception):
    """A dataset could not be ingested."""

    reason = FailureReason.NO_RESULT


class SourceUnavailable(DatasetError):
    """The source could not be reached or read."""

    reason = FailureReason.SOURCE_UNAVAILABLE


class ParseError(DatasetError):
    """The source's content could not be parsed."""

    reason = FailureReason.PARSE_ERROR


class ValidationFailed(DatasetError):
    """One or more quality rules failed."""

    reason = FailureReason.VALIDATION_FAILED

    def __init__(self, failures: list[str]) -> None:
        super().__init__("; ".join(failures))
        self.failures = failures
