"""Source size limits and read-progress timeouts, against real servers on loopback."""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel.api.dataset import DataSource
from flywheel.data.errors import SourceTimeout, SourceTooLarge, SourceUnavailable
from flywheel.data.sources import open_source
from flywheel.data.transfer import PROGRESS_BYTES, Limits, download

HEADER = b"x,label\n"


def _serve(respond: object) -> Iterator[str]:
    """A raw TCP server answering each connection with `respond(connection)`."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=_answer, args=(respond, connection), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    server.close()


def _answer(respond: object, connection: socket.socket) -> None:
    with connection:
        connection.recv(65536)  # the request
        with contextlib.suppress(OSError):  # the client gave up: what the test is about
            respond(connection)  # type: ignore[operator]


def _trickle(connection: socket.socket) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + HEADER)
    for _ in range(200):
        connection.sendall(b"1")
        time.sleep(0.1)


def _stall(connection: socket.socket) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + HEADER)
    time.sleep(5)


def _endless(connection: socket.socket) -> None:
    """No Content-Length: the body ends when the connection closes (it never does here)."""
    connection.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + HEADER)
    for _ in range(1000):
        connection.sendall(b"1,0\n" * 4096)


def _announced(connection: socket.socket) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n" + HEADER)


@pytest.fixture
def trickling() -> Iterator[str]:
    yield from _serve(_trickle)


@pytest.fixture
def stalled() -> Iterator[str]:
    yield from _serve(_stall)


@pytest.fixture
def endless() -> Iterator[str]:
    yield from _serve(_endless)


@pytest.fixture
def announced() -> Iterator[str]:
    yield from _serve(_announced)


def test_a_trickling_body_times_out_though_bytes_keep_coming(
    trickling: str, tmp_path: Path
) -> None:
    """One byte every 0.1 s never trips a socket timeout of 1 s; the progress rule does."""
    limits = Limits(max_bytes=2**20, connect_timeout=5, read_timeout=1)
    started = time.monotonic()
    with pytest.raises(SourceTimeout, match=r"less than 64 KiB within source.readTimeoutSeconds=1"):
        download(f"{trickling}/d.csv", tmp_path / "d.csv", limits)
    assert time.monotonic() - started < 4
    assert SourceTimeout("x").retryable


def test_a_stalled_body_times_out(stalled: str, tmp_path: Path) -> None:
    limits = Limits(max_bytes=2**20, connect_timeout=5, read_timeout=0.5)
    with pytest.raises(SourceTimeout, match=r"no data for 0.5s after 8 bytes"):
        download(f"{stalled}/d.csv", tmp_path / "d.csv", limits)


def test_a_silent_server_is_a_connect_failure_not_a_read_timeout(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        limits = Limits(max_bytes=2**20, connect_timeout=0.3, read_timeout=60)
        with pytest.raises(SourceUnavailable, match="timed out") as caught:
            download(f"http://127.0.0.1:{silent.getsockname()[1]}/", tmp_path / "d", limits)
        assert type(caught.value) is SourceUnavailable


def test_too_large_by_its_header_before_reading(announced: str, tmp_path: Path) -> None:
    with pytest.raises(SourceTooLarge, match="999999999 bytes, more than the limit of 1000"):
        download(f"{announced}/d.csv", tmp_path / "d.csv", Limits(max_bytes=1000))
    assert not (tmp_path / "d.csv").exists()


def test_too_large_while_reading_without_a_length(endless: str, tmp_path: Path) -> None:
    limit = 4 * PROGRESS_BYTES
    with pytest.raises(SourceTooLarge, match=f"more than the limit of {limit} bytes"):
        download(f"{endless}/d.csv", tmp_path / "d.csv", Limits(max_bytes=limit))
    assert (tmp_path / "d.csv").stat().st_size <= limit
    assert not SourceTooLarge("x").retryable


def test_files_over_the_limit_are_refused_unread(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_bytes(HEADER + b"1,0\n" * 100)
    source = DataSource(uri=f"file://{tmp_path}/d.csv")
    with pytest.raises(SourceTooLarge, match="408 bytes, more than the limit of 100 bytes"):
        open_source(source, pvc_root=tmp_path, spool=tmp_path, limits=Limits(max_bytes=100))
    local = open_source(source, pvc_root=tmp_path, spool=tmp_path, limits=Limits(max_bytes=408))
    assert local.size == 408


def _truncated(connection: socket.socket) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + HEADER + b"1,0\n" * 18)


def _gzipped(connection: socket.socket) -> None:
    body = gzip.compress(HEADER + b"1,0\n2,1\n" * 5000)
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n"
    connection.sendall(head.encode() + body)


@pytest.fixture
def truncated() -> Iterator[str]:
    yield from _serve(_truncated)


@pytest.fixture
def gzipped() -> Iterator[str]:
    yield from _serve(_gzipped)


def test_a_body_cut_short_is_not_taken_for_the_whole(truncated: str, tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="ended 920 bytes short of its Content-Length"):
        download(f"{truncated}/d.csv", tmp_path / "d.csv", Limits(max_bytes=2**20))


def test_a_gzipped_body_is_inflated_within_the_limit(gzipped: str, tmp_path: Path) -> None:
    plain = HEADER + b"1,0\n2,1\n" * 5000
    assert download(f"{gzipped}/d.csv", tmp_path / "d.csv", Limits(max_bytes=2**20)) == len(plain)
    assert (tmp_path / "d.csv").read_bytes() == plain
    with pytest.raises(SourceTooLarge, match="more than the limit of 1000 bytes"):
        download(f"{gzipped}/d.csv", tmp_path / "e.csv", Limits(max_bytes=1000))
