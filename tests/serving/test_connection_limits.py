"""Connection hygiene over raw sockets: header limits (431), receive timeouts (408), idle
connections, and liveness for everyone else while attackers flood and trickle headers."""

from __future__ import annotations

import json
import select
import signal
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit

import pytest

from tests.serving.conftest import Artifacts, Server, ServerFactory

LIVE = b"GET /v2/health/live HTTP/1.1\r\nhost: t\r\n\r\n"
ROW = [5.1, 3.5, 1.4, 0.2]


def _address(server: Server) -> tuple[str, int]:
    url = urlsplit(server.url)
    assert url.hostname is not None
    assert url.port is not None
    return url.hostname, url.port


@contextmanager
def _connect(server: Server, timeout: float = 5.0) -> Iterator[_Conn]:
    with socket.create_connection(_address(server), timeout=timeout) as sock:
        yield _Conn(sock)


class _Conn:
    """A client connection that reads HTTP/1.1 responses one at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"closed before a response: {self.buffer!r}"
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            assert self._fill(), "closed in the middle of a body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body

    def closed(self) -> bool:
        """Whether the server closed the connection (and sent nothing more)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def _infer(rows: int = 1, extra: bytes = b"") -> bytes:
    body = json.dumps(
        {"inputs": [{"name": "x", "shape": [rows, 4], "datatype": "FP32", "data": [ROW] * rows}]}
    ).encode()
    head = b"POST /v2/models/iris/infer HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
    return head + extra + b"content-length: %d\r\n\r\n" % len(body) + body


def _headers(count: int, size: int = 10) -> bytes:
    return b"".join(b"x-h%d: %s\r\n" % (i, b"v" * size) for i in range(count))


def test_too_many_headers_and_header_bytes_get_431(serve: ServerFactory, iris: Artifacts) -> None:
    server = serve(iris, "iris", max_headers=10, max_header_bytes=4096)
    # At the limits: 10 headers (host + 9), a head of exactly 4096 bytes.
    with _connect(server) as conn:
        conn.sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: t\r\n" + _headers(9) + b"\r\n")
        assert conn.response()[0] == 200
        head = b"GET /v2/health/live HTTP/1.1\r\nhost: t\r\nx-big: "
        exact = head + b"v" * (4096 - len(head) - 4) + b"\r\n\r\n"
        assert len(exact) == 4096
        conn.sock.sendall(exact)
        assert conn.response()[0] == 200
    for request, reason in [
        (b"GET /v2/health/live HTTP/1.1\r\nhost: t\r\n" + _headers(10) + b"\r\n", "10 headers"),
        (exact[:-4] + b"v\r\n\r\n", "4096 bytes"),  # one byte over
        (b"GET /v2/health/live HTTP/1.1\r\nhost: t\r\nx-big: " + b"v" * 100_000, "4096 bytes"),
        (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n", "4096 bytes"),  # the request line
    ]:
        with _connect(server) as conn:
            conn.sock.sendall(request)
            status, headers, body = conn.response()
            assert status == 431
            assert headers["content-type"] == "application/json"
            assert headers["connection"] == "close"
            assert reason in json.loads(body)["error"]
            assert conn.closed()
    # Trailers of a chunked body are header fields too.
    body = _infer().split(b"\r\n\r\n", 1)[1]
    chunked = (
        b"POST /v2/models/iris/infer HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
        + b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 9]), body[i : i + 9])
            for i in range(0, len(body), 9)
        )
        + b"0\r\n"
    )
    with _connect(server) as conn:
        conn.sock.sendall(chunked + b"x-checksum: 1\r\n\r\n" + LIVE)
        assert [conn.response()[0] for _ in range(2)] == [200, 200]
        conn.sock.sendall(chunked + b"x-endless: " + b"v" * 100_000)
        status, headers, body = conn.response()
        assert (status, headers["connection"]) == (431, "close")
        assert "trailers exceed 4096 bytes" in json.loads(body)["error"]
        assert conn.closed()
    # A body far larger than the header limit, in the same packets as its head, is not a head.
    with _connect(server) as conn:
        request = _infer(rows=2000)
        assert len(request) > 40_000
        conn.sock.sendall(request)
        status, _, body = conn.response()
        assert status == 200, body
        assert json.loads(body)["outputs"][0]["shape"] == [2000]


def test_slow_headers_and_slow_body_get_408(serve: ServerFactory, iris: Artifacts) -> None:
    server = serve(iris, "iris", header_timeout_seconds=1, body_timeout_seconds=1)
    # Slowloris: one byte every 0.2 s never finishes its head within a second.
    with _connect(server) as conn:
        request = LIVE[:-2] + b"x-slow: " + b"v" * 100 + b"\r\n\r\n"
        started = time.monotonic()
        for byte in request:
            if select.select([conn.sock], [], [], 0.2)[0]:
                break
            conn.sock.sendall(bytes([byte]))
        status, headers, body = conn.response()
        elapsed = time.monotonic() - started
        assert (status, headers["connection"]) == (408, "close")
        assert "request line and headers took longer than 1 s" in json.loads(body)["error"]
        assert 0.9 < elapsed < 2.5
        assert conn.closed()
    # A body that never completes: its headers arrived, 10 of its bytes did.
    with _connect(server) as conn:
        request = _infer()
        conn.sock.sendall(request[: request.index(b"\r\n\r\n") + 14])
        started = time.monotonic()
        status, headers, body = conn.response()
        assert (status, headers["connection"]) == (408, "close")
        assert "request body took longer than 1 s" in json.loads(body)["error"]
        assert 0.9 < time.monotonic() - started < 2.5
        assert conn.closed()
    # A deadline counts from the request's first byte, not from the connection: an idle moment
    # after a response is not held against the next request.
    with _connect(server) as conn:
        conn.sock.sendall(LIVE)
        assert conn.response()[0] == 200
        time.sleep(0.8)
        conn.sock.sendall(request[:50])
        time.sleep(0.6)
        conn.sock.sendall(request[50:])
        assert conn.response()[0] == 200
    with server.client() as http:
        assert http.get("/v2/health/live").status_code == 200


def test_idle_connections_close_after_keep_alive(serve: ServerFactory, iris: Artifacts) -> None:
    server = serve(iris, "iris", keep_alive_seconds=1)
    with _connect(server) as kept, _connect(server) as fresh:
        kept.sock.sendall(LIVE)
        started = time.monotonic()
        assert kept.response()[0] == 200
        assert kept.closed()  # silently: nothing to answer
        assert 0.8 < time.monotonic() - started < 2.5
        assert fresh.closed()  # a connection that never sent a byte
        assert time.monotonic() - started < 2.5


def test_keep_alive_pipelining_and_100_continue(serve: ServerFactory, iris: Artifacts) -> None:
    server = serve(iris, "iris", header_timeout_seconds=1, body_timeout_seconds=1)
    ready = b"GET /v2/health/ready HTTP/1.1\r\nhost: t\r\n\r\n"
    with _connect(server) as conn:
        for _ in range(3):  # keep-alive
            conn.sock.sendall(LIVE)
            assert conn.response()[:1] == (200,)
        # Pipelined in one write, then in every split (a request's bytes across reads).
        batch = LIVE + _infer() + ready + _infer(rows=3) + LIVE
        for parts in ([batch], [batch[i : i + 7] for i in range(0, len(batch), 7)]):
            for part in parts:
                conn.sock.sendall(part)
            statuses = [conn.response() for _ in range(5)]
            assert [s for s, _, _ in statuses] == [200] * 5
            assert json.loads(statuses[3][2])["outputs"][0]["shape"] == [3]
        # Pipelined requests whose bodies are far larger than a head.
        many = [_infer(rows=3000) for _ in range(3)]
        conn.sock.sendall(b"".join(many) + LIVE)
        assert [conn.response()[0] for _ in range(4)] == [200] * 4
        # Expect: 100-continue: the body follows the interim response.
        request = _infer(extra=b"expect: 100-continue\r\n")
        head, body = request.split(b"\r\n\r\n", 1)
        conn.sock.sendall(head + b"\r\n\r\n")
        assert conn.response()[0] == 100
        conn.sock.sendall(body)
        assert conn.response()[0] == 200
        conn.sock.sendall(LIVE)
        assert conn.response()[0] == 200


def test_a_pipelined_oversized_request_is_answered_in_order(
    serve: ServerFactory, iris: Artifacts
) -> None:
    server = serve(iris, "iris", max_headers=10)
    with _connect(server) as conn:
        conn.sock.sendall(LIVE + _infer(rows=2000) + LIVE[:-2] + _headers(20) + b"\r\n")
        assert [conn.response()[0] for _ in range(3)] == [200, 200, 431]
        assert conn.closed()


def test_drain_closes_connections_mid_request(serve: ServerFactory, iris: Artifacts) -> None:
    server = serve(iris, "iris")
    with _connect(server) as slow, _connect(server) as idle, _connect(server) as kept:
        slow.sock.sendall(LIVE[:20])
        kept.sock.sendall(LIVE)
        assert kept.response()[0] == 200
        time.sleep(0.2)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=10)
        assert time.monotonic() - started < 5
        assert [slow.closed(), idle.closed(), kept.closed()] == [True] * 3


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _flood(address: tuple[str, int], stop: threading.Event, counts: dict[str, int]) -> None:
    """Stream an endless header as fast as possible; reconnect whenever the server hangs up."""
    chunk = b"v" * 65536
    while not stop.is_set():
        try:
            with socket.create_connection(address, timeout=2) as sock:
                counts["connections"] += 1
                sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: t\r\nx-flood: ")
                while not stop.is_set():
                    sock.sendall(chunk)
                    counts["bytes"] += len(chunk)
        except OSError:
            continue


def _trickle(address: tuple[str, int], stop: threading.Event, counts: dict[str, int]) -> None:
    """Many slowloris connections: one header byte every 0.2 s each."""
    socks: list[socket.socket] = []
    try:
        while not stop.is_set():
            while len(socks) < 100 and not stop.is_set():
                try:
                    sock = socket.create_connection(address, timeout=2)
                except OSError:
                    continue
                socks.append(sock)
                counts["slow"] += 1
                with suppress(OSError):
                    sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: t\r\nx-slow: ")
            for sock in list(socks):
                try:
                    sock.sendall(b"v")
                except OSError:
                    socks.remove(sock)
                    sock.close()
            stop.wait(0.2)
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.slow
def test_liveness_under_header_attacks(serve: ServerFactory, iris: Artifacts) -> None:
    """The issue's acceptance test: floods and slowloris clients running, liveness on fresh and
    kept connections stays fast for everyone else and the server's memory stays bounded."""
    server = serve(iris, "iris")
    address = _address(server)
    baseline = _rss_mb(server.process.pid)
    stop = threading.Event()
    counts: dict[str, int] = {"connections": 0, "bytes": 0, "slow": 0}
    attackers = [
        threading.Thread(target=_flood, args=(address, stop, counts), daemon=True) for _ in range(4)
    ] + [threading.Thread(target=_trickle, args=(address, stop, counts), daemon=True)]
    for thread in attackers:
        thread.start()
    latencies: list[float] = []
    rss: list[float] = []
    try:
        time.sleep(1.0)  # the attack is under way
        with _connect(server) as kept:
            for probe in range(300):
                started = time.perf_counter()
                if probe % 2:
                    kept.sock.sendall(LIVE)
                    assert kept.response()[0] == 200
                else:
                    with _connect(server) as fresh:
                        fresh.sock.sendall(LIVE)
                        assert fresh.response()[0] == 200
                latencies.append(time.perf_counter() - started)
                if probe % 10 == 0:
                    rss.append(_rss_mb(server.process.pid))
                time.sleep(0.01)
    finally:
        stop.set()
        for thread in attackers:
            thread.join(timeout=5)
    p50 = statistics.median(latencies) * 1000
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000
    print(
        f"liveness under attack: {len(latencies)} probes, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"max {max(latencies) * 1000:.1f} ms; RSS {baseline:.0f} MB before, {max(rss):.0f} MB max; "
        f"{counts['connections']} flood connections, {counts['bytes'] / 2**20:.0f} MiB sent, "
        f"{counts['slow']} slow connections"
    )
    assert counts["connections"] > 20  # the server hung up on the floods, over and over
    assert counts["slow"] >= 100
    assert p99 < 100, f"liveness p99 {p99:.1f} ms under attack"
    assert max(rss) < 200, f"the server grew to {max(rss):.0f} MB"
    assert server.process.poll() is None
