"""Download an HTTP(S) source to a file, within a size limit and a read-progress timeout.

Two clocks, as curl's `--connect-timeout` and `--speed-limit/--speed-time`: the connect timeout
bounds connecting and waiting for the response headers (a failure is `SourceUnavailable`); the
read timeout bounds the body, which must deliver another :data:`PROGRESS_BYTES` (or its end)
within every `read_timeout` seconds. A stalled or trickling body fails with `SourceTimeout`
(transient, retried with back-off) instead of running into the Job's deadline. The size limit
is checked against `Content-Length` before the body is read and against the bytes received
while it is read (`SourceTooLarge`).
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flywheel.data.errors import (
    SourceInvalid,
    SourceTimeout,
    SourceTooLarge,
    SourceUnavailable,
    source_error,
)

PROGRESS_BYTES = 64 * 1024
"""The least a transfer must deliver within every read timeout."""
CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """How much and how slowly a source may be read."""

    max_bytes: int
    connect_timeout: float = 30.0
    read_timeout: float = 60.0


def too_large(where: str, size: int, limits: Limits) -> SourceTooLarge:
    """The failure of a source over the limit."""
    return SourceTooLarge(
        f"{where}: {size} bytes, more than the limit of {limits.max_bytes} bytes "
        "(raise source.maxBytes to accept it)"
    )


def download(
    uri: str, target: Path, limits: Limits, clock: Callable[[], float] = time.monotonic
) -> int:
    """Write the body at `uri` to `target`; the number of bytes. Raises SourceError."""
    where = f"GET {uri}"
    request = urllib.request.Request(uri, headers={"Accept-Encoding": "identity"})
    try:
        response = urllib.request.urlopen(request, timeout=limits.connect_timeout)
    except (OSError, ValueError, http.client.HTTPException) as error:
        # OSError covers urllib's URLError/HTTPError, TLS, sockets and timeouts.
        if isinstance(error, urllib.error.HTTPError):
            error.close()  # it holds the connection
        raise source_error(error, where) from error
    with response:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limits.max_bytes:
            raise too_large(where, int(declared), limits)
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip", "x-gzip"):
            raise SourceInvalid(f"{where}: the body is encoded as {encoding!r}, not plain")
        _set_read_timeout(response, limits.read_timeout)
        try:
            total = _copy(response, target, where, limits, clock, gzip=encoding != "identity")
        except OSError as error:  # the spool could not be written (a full claim, an I/O error)
            raise source_error(error, f"spooling {uri} to the artifacts claim") from error
        missing = getattr(response, "length", None)
        if missing:  # the server closed the connection before the announced end
            raise SourceUnavailable(
                f"{where}: the body ended {missing} bytes short of its Content-Length"
            )
        return total


def _set_read_timeout(response: Any, seconds: float) -> None:
    """From now on a single receive waits at most `seconds` (the connect timeout applied
    until the headers arrived)."""
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _copy(
    response: Any,
    target: Path,
    where: str,
    limits: Limits,
    clock: Callable[[], float],
    *,
    gzip: bool,
) -> int:
    """Copy the body; the bytes written (decompressed, when the server compressed it anyway:
    the limit applies to what is written)."""
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
    total = 0
    mark_bytes, mark_time = 0, clock()
    with target.open("wb") as out:
        while True:
            try:
                chunk: bytes = response.read1(CHUNK)
            except TimeoutError as error:
                raise SourceTimeout(
                    f"{where}: no data for {limits.read_timeout:g}s after {total} bytes "
                    "(source.readTimeoutSeconds)"
                ) from error
            except (OSError, ValueError, http.client.HTTPException) as error:
                raise source_error(error, where) from error
            if not chunk:
                return total
            if inflate is not None:
                try:
                    chunk = inflate.decompress(chunk, limits.max_bytes - total + 1)
                except zlib.error as error:
                    raise SourceInvalid(f"{where}: the gzip body is corrupt: {error}") from error
            total += len(chunk)
            if total > limits.max_bytes:
                raise too_large(where, total, limits)
            out.write(chunk)
            now = clock()
            if total - mark_bytes >= PROGRESS_BYTES:
                mark_bytes, mark_time = total, now
            elif now - mark_time > limits.read_timeout:
                raise SourceTimeout(
                    f"{where}: only {total - mark_bytes} bytes in {now - mark_time:.0f}s, less "
                    f"than {PROGRESS_BYTES // 1024} KiB within source.readTimeoutSeconds="
                    f"{limits.read_timeout:g} ({total} bytes in all)"
                )
