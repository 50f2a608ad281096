"""Errors of dataset processing; each carries the condition reason the operator reports.

DatasetError
 +-- SourceError            (the source could not be read)
 |    +-- SourceUnavailable (transient: refused, reset, DNS, timeout, HTTP 5xx/408/429; retried)
 |    +-- SourceInvalid     (permanent: the URI cannot be used as written)
 |    +-- SourceNotFound    (permanent: nothing there)
 |    +-- SourceForbidden   (permanent: permission denied)
 |    +-- SourceUntrusted   (permanent: the TLS certificate failed verification)
 |    +-- SourceTimeout     (transient: the transfer stalled or crawled; retried)
 |    +-- SourceTooLarge    (permanent: more bytes than `source.maxBytes`)
 +-- ParseError             (the bytes are not valid CSV/Parquet; Stalled until the data changes)
 +-- ValidationFailed       (quality rules failed; the snapshot is not published)

Which reasons are transient and which permanent is part of the Job protocol
(`SOURCE_TRANSIENT` and `SOURCE_PERMANENT` in :mod:`flywheel.interfaces.jobs`); :func:`classify`
is the one place that maps what a read raised to a reason.
"""

from __future__ import annotations

import errno
import http.client
import socket
import ssl
import urllib.error

from flywheel.interfaces.jobs import SOURCE_TRANSIENT, FailureReason


class DatasetError(Exception):
    """A dataset could not be ingested."""

    reason = FailureReason.NO_RESULT

    @property
    def retryable(self) -> bool:
        """Whether trying again later may help (the Job exits RETRYABLE)."""
        return self.reason in SOURCE_TRANSIENT


class SourceError(DatasetError):
    """The source could not be read."""

    reason = FailureReason.SOURCE_UNAVAILABLE


class SourceUnavailable(SourceError):
    """The source did not answer, or answered that it cannot now: retried with back-off."""

    reason = FailureReason.SOURCE_UNAVAILABLE


class SourceInvalid(SourceError):
    """The URI cannot be used as written."""

    reason = FailureReason.SOURCE_INVALID


class SourceNotFound(SourceError):
    """Nothing exists at the URI."""

    reason = FailureReason.SOURCE_NOT_FOUND


class SourceForbidden(SourceError):
    """The ingest pod is not allowed to read the source."""

    reason = FailureReason.SOURCE_FORBIDDEN


class SourceUntrusted(SourceError):
    """The server's TLS certificate failed verification."""

    reason = FailureReason.SOURCE_UNTRUSTED


class SourceTimeout(SourceError):
    """The transfer stalled or crawled past the read timeout: retried with back-off."""

    reason = FailureReason.SOURCE_TIMEOUT


class SourceTooLarge(SourceError):
    """The source holds more bytes than the Dataset accepts."""

    reason = FailureReason.SOURCE_TOO_LARGE


class ParseError(DatasetError):
    """The source's content could not be parsed."""

    reason = FailureReason.PARSE_ERROR


class ValidationFailed(DatasetError):
    """One or more quality rules failed."""

    reason = FailureReason.VALIDATION_FAILED

    def __init__(self, failures: list[str]) -> None:
        super().__init__("; ".join(failures))
        self.failures = failures


NOT_FOUND_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR})
FORBIDDEN_ERRNOS = frozenset({errno.EACCES, errno.EPERM})
INVALID_ERRNOS = frozenset({errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG})
"""A directory, a symbolic link loop or a path too long: the URI names nothing readable."""


def http_status_error(code: int) -> type[SourceError]:
    """What an HTTP error status means for a source: 408, 429 and 5xx may pass, other 4xx will
    not (401/403/407/451 refused, 404/410 absent, the rest a request that cannot succeed)."""
    if code in (408, 429) or code >= 500:
        return SourceUnavailable
    if code in (401, 403, 407, 451):
        return SourceForbidden
    if code in (404, 410):
        return SourceNotFound
    if 400 <= code < 500:
        return SourceInvalid
    return SourceUnavailable  # a redirect loop or an unexpected status: try again later


def classify(error: BaseException) -> type[SourceError]:
    """The kind of source failure an exception from reading a file or a URL is.

    Unknown errors count as transient: retrying a permanent failure costs a few Jobs, stalling on
    a transient one needs a person.
    """
    if isinstance(error, urllib.error.HTTPError):
        return http_status_error(error.code)
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        # urllib's own refusals of a URL ("no host given", "unknown url type") are strings.
        return classify(reason) if isinstance(reason, BaseException) else SourceInvalid
    if isinstance(error, ssl.SSLCertVerificationError):
        return SourceUntrusted
    if isinstance(error, http.client.InvalidURL):
        return SourceInvalid
    if isinstance(error, socket.gaierror | socket.herror):
        # Even "name not known": a Service created after its Dataset (GitOps applies in any
        # order) resolves later.
        return SourceUnavailable
    if isinstance(error, ssl.SSLError):
        return SourceUnavailable  # a failed handshake (its errno is OpenSSL's, not the OS's)
    if isinstance(error, TimeoutError | ConnectionError | http.client.HTTPException):
        return SourceUnavailable
    if isinstance(error, OSError):
        if error.errno in NOT_FOUND_ERRNOS:
            return SourceNotFound
        if error.errno in FORBIDDEN_ERRNOS:
            return SourceForbidden
        if error.errno in INVALID_ERRNOS:
            return SourceInvalid
        return SourceUnavailable  # EIO, ESTALE, ENETUNREACH…: storage or network trouble
    if isinstance(error, ValueError):
        return SourceInvalid  # urllib's "unknown url type", a port out of range
    return SourceUnavailable


def source_error(error: BaseException, where: str) -> SourceError:
    """The source failure for an exception, its message `<where>: <what happened>`."""
    return classify(error)(f"{where}: {describe(error)}")


def describe(error: BaseException) -> str:
    """What happened, in the fewest words (`HTTP 404 File not found`, `Permission denied`)."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        return describe(reason) if isinstance(reason, BaseException) else str(reason)
    if isinstance(error, OSError) and error.strerror:
        return str(error.strerror)
    return str(error) or type(error).__name__
