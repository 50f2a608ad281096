"""Container logs in the CRI format the kubelet keeps, and reading them back as `kubectl logs` does.

A container's stdout and stderr are pipes; `pump` turns what arrives into lines of the CRI log
format, `<RFC3339 time with nanoseconds> <stdout|stderr> <F|P> <content>` (`P`: a partial line,
the rest follows in the next entry), appended to `<pod dir>/logs/<container>-<restart>.log`.
`select` applies the options of the kubelet's `containerLogs` endpoint (`timestamps`,
`tailLines`, `limitBytes`, `sinceSeconds`/`sinceTime`) to such a file and gives the bytes the
kubelet would send: the content, with the time and a space before each entry on `timestamps`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

CHUNK = 16384
"""The longest entry: a longer line is written as several partial entries."""


def timestamp(nanoseconds: int | None = None) -> str:
    """The kubelet's RFC3339Nano with 9 fractional digits, e.g. 2026-12-03T12:00:00.000000001Z."""
    ns = time.time_ns() if nanoseconds is None else nanoseconds
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


class CriLog:
    """One container run's log file, written entry by entry by the pumps of its streams."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._out = path.open("ab", buffering=0)

    def write(self, stream: str, content: bytes, *, partial: bool) -> None:
        """Append one entry (content without its newline)."""
        tag = b"P" if partial else b"F"
        head = f"{timestamp()} {stream} ".encode()
        self._out.write(head + tag + b" " + content + b"\n")

    def close(self) -> None:
        """No more entries."""
        self._out.close()


async def pump(reader: asyncio.StreamReader, stream: str, log: CriLog) -> None:
    """Copy one stream into the log until its end, a line per entry."""
    pending = b""
    while chunk := await reader.read(CHUNK):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            log.write(stream, line, partial=False)
        while len(pending) >= CHUNK:
            log.write(stream, pending[:CHUNK], partial=True)
            pending = pending[CHUNK:]
    if pending:
        log.write(stream, pending, partial=True)


async def spawn(
    argv: list[str], env: dict[str, str], path: Path
) -> tuple[asyncio.subprocess.Process, asyncio.Task[None]]:
    """Start a container process in its own session with its stdout and stderr logged to
    `path`; the task ends when both streams have (`drain` it after the process exits).

    The pipes are the node's own, not asyncio's: `Process.wait()` then returns when the process
    exits, even if a child it left behind still holds the streams open."""
    pipes = [os.pipe(), os.pipe()]
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            stdout=pipes[0][1],
            stderr=pipes[1][1],
            start_new_session=True,
        )
    except BaseException:
        for read, _ in pipes:
            os.close(read)
        raise
    finally:
        for _, write in pipes:
            os.close(write)
    log = CriLog(path)
    readers = [await _reader(read) for read, _ in pipes]

    async def both() -> None:
        try:
            await asyncio.gather(pump(readers[0], "stdout", log), pump(readers[1], "stderr", log))
        finally:
            log.close()

    return process, asyncio.create_task(both())


async def _reader(fd: int) -> asyncio.StreamReader:
    """An asyncio reader of a pipe's read end (closed with its transport)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=4 * CHUNK)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    return reader


async def drain(pumps: asyncio.Task[None], timeout: float = 5.0) -> None:
    """Wait for the rest of a run's output; a process it left behind that holds the streams
    open (a daemonised child) is not waited for."""
    done, _ = await asyncio.wait([pumps], timeout=timeout)
    if not done:
        pumps.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumps  # the log file is closed once this returns


@dataclass(frozen=True)
class Entry:
    """One parsed log entry."""

    time: str
    stream: str
    partial: bool
    content: bytes

    def render(self, *, timestamps: bool) -> bytes:
        """The bytes the kubelet sends for it."""
        text = self.content if self.partial else self.content + b"\n"
        return (self.time.encode() + b" " + text) if timestamps else text


def entries(data: bytes) -> Iterator[Entry]:
    """The complete entries of a CRI log (a line still being written is left out)."""
    for line in data.split(b"\n")[:-1]:
        parts = line.split(b" ", 3)
        if len(parts) == 4:
            stamp, stream, tag, content = parts
            yield Entry(stamp.decode(), stream.decode(), tag == b"P", content)


@dataclass(frozen=True)
class LogOptions:
    """The query of a `containerLogs` request that shapes the output."""

    timestamps: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since: datetime | None = None


def parse_time(stamp: str) -> datetime:
    """An RFC3339 time (nanoseconds cut to microseconds)."""
    head, _, rest = stamp.rstrip("Z").partition(".")
    micro = (rest + "000000")[:6] if rest else "000000"
    return datetime.strptime(f"{head}.{micro}", "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)


def select(data: bytes, options: LogOptions) -> tuple[bytes, int]:
    """What the kubelet sends for a log's `data` now, and how many bytes of `data` it covered
    (complete entries only; a follower reads on from there)."""
    found = list(entries(data))
    consumed = data.rfind(b"\n") + 1
    if options.since is not None:
        found = [e for e in found if parse_time(e.time) >= options.since]
    if options.tail_lines is not None:
        found = _tail(found, options.tail_lines)
    out = b"".join(e.render(timestamps=options.timestamps) for e in found)
    return out, consumed


def _tail(found: list[Entry], lines: int) -> list[Entry]:
    """The last `lines` entries (the kubelet counts the lines of its CRI file: entries)."""
    return found[-lines:] if lines > 0 else []


def limited(data: bytes, sent: int, limit: int | None) -> bytes:
    """`data` cut so that no more than `limit` bytes are sent in all (`sent` already were)."""
    return data if limit is None else data[: max(0, limit - sent)]
