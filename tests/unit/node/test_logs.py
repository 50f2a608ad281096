"""The CRI log format the local node writes, and the `containerLogs` options read back from it."""

from __future__ import annotations

import os
import re
import signal
from datetime import UTC, datetime
from pathlib import Path

from devcluster.node import logs
from devcluster.node.logs import LogOptions, select

STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


async def _logged(tmp_path: Path, stdout: bytes, stderr: bytes) -> bytes:
    path = tmp_path / "c-0.log"
    script = (
        "import sys; sys.stdout.buffer.write(sys.argv[1].encode()); sys.stdout.flush();"
        " sys.stderr.buffer.write(sys.argv[2].encode())"
    )
    argv = ["python3", "-c", script, stdout.decode(), stderr.decode()]
    process, pumps = await logs.spawn(argv, {"PATH": "/usr/bin:/bin"}, path)
    assert await process.wait() == 0
    await logs.drain(pumps)
    return path.read_bytes()


async def test_each_line_becomes_a_timestamped_entry_of_its_stream(tmp_path: Path) -> None:
    data = await _logged(tmp_path, b"one\ntwo\nno newline", b"oops\n")
    lines = data.split(b"\n")[:-1]
    parsed = [line.split(b" ", 3) for line in lines]
    assert all(STAMP.match(stamp) for stamp, *_ in parsed)
    assert sorted((s, t, c) for _, s, t, c in parsed) == [
        (b"stderr", b"F", b"oops"),
        (b"stdout", b"F", b"one"),
        (b"stdout", b"F", b"two"),
        (b"stdout", b"P", b"no newline"),
    ]
    out, used = select(data, LogOptions())
    assert used == len(data)
    assert out.count(b"\n") == 3
    assert b"no newline" in out
    assert b"no newline\n" not in out, "a partial entry adds no newline"


async def test_a_line_longer_than_an_entry_is_split_into_partial_entries(tmp_path: Path) -> None:
    long = b"x" * (logs.CHUNK * 2 + 10)
    data = await _logged(tmp_path, long + b"\n", b"")
    tags = [line.split(b" ", 3)[2] for line in data.split(b"\n")[:-1]]
    assert tags == [b"P", b"P", b"F"]
    assert select(data, LogOptions())[0] == long + b"\n"


def _file(*entries: tuple[str, str, str]) -> bytes:
    return b"".join(f"{t} stdout {tag} {text}\n".encode() for t, tag, text in entries)


DATA = _file(
    ("2026-12-03T10:00:00.000000001Z", "F", "first"),
    ("2026-12-03T10:00:01.500000000Z", "P", "second "),
    ("2026-12-03T10:00:02.000000000Z", "F", "half"),
    ("2026-12-03T10:00:03.000000000Z", "F", "third"),
)


def test_timestamps_tail_since_and_limit_as_the_kubelet_applies_them() -> None:
    assert select(DATA, LogOptions())[0] == b"first\nsecond half\nthird\n"
    stamped = select(DATA, LogOptions(timestamps=True))[0]
    assert stamped.startswith(b"2026-12-03T10:00:00.000000001Z first\n")
    assert b"2026-12-03T10:00:01.500000000Z second 2026-12-03T10:00:02.000000000Z half\n" in stamped
    assert select(DATA, LogOptions(tail_lines=2))[0] == b"half\nthird\n", "entries, as the kubelet"
    assert select(DATA, LogOptions(tail_lines=0))[0] == b""
    since = datetime(2026, 12, 3, 10, 0, 2, tzinfo=UTC)
    assert select(DATA, LogOptions(since=since))[0] == b"half\nthird\n"
    assert logs.limited(b"0123456789", sent=4, limit=6) == b"01"
    assert logs.limited(b"0123", sent=9, limit=6) == b""


def test_an_entry_being_written_is_left_for_the_next_read() -> None:
    torn = DATA + b"2026-12-03T10:00:04.000000000Z stdout F four"
    out, used = select(torn, LogOptions())
    assert used == len(DATA)
    assert b"four" not in out


def test_the_timestamp_has_nine_fractional_digits() -> None:
    assert logs.timestamp(1_764_756_000_000_000_001) == "2025-12-03T10:00:00.000000001Z"
    assert STAMP.match(logs.timestamp().encode())


async def test_drain_does_not_wait_for_a_child_holding_the_streams(tmp_path: Path) -> None:
    argv = ["sh", "-c", "sleep 30 & echo parent done"]
    process, pumps = await logs.spawn(argv, {"PATH": "/usr/bin:/bin"}, tmp_path / "c-0.log")
    try:
        assert await process.wait() == 0
        await logs.drain(pumps, timeout=0.5)
        assert pumps.cancelled(), "the daemonised child keeps the pipes open: not waited for"
        assert b"parent done" in (tmp_path / "c-0.log").read_bytes()
    finally:
        os.killpg(process.pid, signal.SIGKILL)
