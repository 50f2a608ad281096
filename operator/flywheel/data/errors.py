"""Errors of dataset processing; each carries the condition reason the operator reports.

DatasetError
 +-- SourceUnavailable   (the source could not be read: network, missing file; retried)
 +-- ParseError          (the bytes are not valid CSV/Parquet; Stalled until the data changes)
 +-- ValidationFailed    (quality rules failed; the snapshot is not published)
"""

from __future__ import annotations


class DatasetError(Exception):
    """A dataset could not be ingested."""

    reason = "IngestFailed"


class SourceUnavailable(DatasetError):
    """The source could not be reached or read."""

    reason = "SourceUnavailable"


class ParseError(DatasetError):
    """The source's content could not be parsed."""

    reason = "ParseError"


class ValidationFailed(DatasetError):
    """One or more quality rules failed."""

    reason = "ValidationFailed"

    def __init__(self, failures: list[str]) -> None:
        super().__init__("; ".join(failures))
        self.failures = failures
