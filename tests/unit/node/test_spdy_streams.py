"""Exec and port-forward over SPDY against an aiohttp server, with a small SPDY client that
behaves as moby/spdystream does: commands run on the host here (the cluster tests run them in
pods through the API server with kubectl)."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from devcluster.node import portforward, remotecommand, spdy, upgrade
from devcluster.node.spdy import FrameReader, HeaderCodec, Session


class Client:
    """The client side of an SPDY connection, recording what the server sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.codec = HeaderCodec()
        self.next_id = 1
        self.data: dict[int, bytearray] = {}
        self.fin: set[int] = set()
        self.replied: set[int] = set()
        self.kinds: list[int] = []
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        frames = FrameReader()
        while chunk := await self.reader.read(65536):
            for frame in frames.feed(chunk):
                self.kinds.append(frame.kind)
                if frame.kind == 0:
                    self.data.setdefault(frame.stream, bytearray()).extend(frame.payload)
                    if frame.fin:
                        self.fin.add(frame.stream)
                elif frame.kind == spdy.SYN_REPLY:
                    self.codec.decode(frame.payload[4:])
                    self.replied.add(struct.unpack_from(">I", frame.payload)[0])
                self.changed.set()
        self.kinds.append(-1)  # the connection closed
        self.changed.set()

    def open(self, **headers: str) -> int:
        stream = self.next_id
        self.next_id += 2
        self.writer.write(spdy.syn_stream(self.codec, stream, headers))
        return stream

    def send(self, stream: int, chunk: bytes, *, fin: bool = False) -> None:
        self.writer.write(spdy.data(stream, chunk, fin=fin))

    async def until(self, done: Callable[[], bool], timeout: float = 10) -> None:
        async def wait() -> None:
            while not done():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)

    async def close(self) -> None:
        self.writer.close()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


Handler = Callable[[Session, web.Request], Awaitable[None]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler, list[str]], Awaitable[int]]]:
    runners: list[web.AppRunner] = []

    async def start(handle: Handler, protocols: list[str]) -> int:
        async def route(request: web.Request) -> web.StreamResponse:
            try:
                protocol = upgrade.negotiate(request, protocols)
            except upgrade.UpgradeError as error:
                return error.response()
            return await upgrade.serve(request, protocol, lambda s: handle(s, request))

        app = web.Application()
        app.router.add_post("/{rest:.*}", route)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return int(runner.addresses[0][1])

    yield start
    for runner in runners:
        await runner.cleanup()


async def _connect(port: int, path: str, protocol: str) -> tuple[bytes, Client]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: node\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        f"X-Stream-Protocol-Version: v5.channel.k8s.io\r\n"
        f"X-Stream-Protocol-Version: {protocol}\r\nContent-Length: 0\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    return head, Client(reader, writer)


def _exec(argv: list[str], query: dict[str, str]) -> Handler:
    async def handle(session: Session, request: web.Request) -> None:
        options = remotecommand.exec_options(query, argv)
        await remotecommand.serve(session, options, argv, {"PATH": "/usr/bin:/bin"})

    return handle


async def test_exec_runs_the_command_and_reports_its_exit_code(serve: Any) -> None:
    script = "read line; echo out $line; echo err >&2; exit 3"
    query = {"input": "1", "output": "1", "error": "1"}
    port = await serve(_exec(["sh", "-c", script], query), remotecommand.PROTOCOLS)
    head, client = await _connect(port, "/exec/ns/pod/c", "v4.channel.k8s.io")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"Upgrade: SPDY/3.1" in head
    assert b"X-Stream-Protocol-Version: v4.channel.k8s.io" in head
    error = client.open(streamtype="error")
    stdin = client.open(streamtype="stdin")
    stdout = client.open(streamtype="stdout")
    stderr = client.open(streamtype="stderr")
    await client.until(lambda: {error, stdin, stdout, stderr} <= client.replied)
    client.send(stdin, b"hello\n", fin=True)
    await client.until(lambda: error in client.fin)
    assert {stdout, stderr} <= client.fin
    assert bytes(client.data[stdout]) == b"out hello\n"
    assert bytes(client.data[stderr]) == b"err\n"
    assert json.loads(client.data[error]) == {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: exit status 3",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }
    await client.until(lambda: spdy.GOAWAY in client.kinds)
    await client.close()


async def test_exec_on_a_tty_gives_a_controlling_terminal_of_the_size_asked(serve: Any) -> None:
    script = "import os; print(os.isatty(0), os.get_terminal_size(0), os.ttyname(0) != '')"
    query = {"input": "1", "output": "1", "tty": "1"}
    port = await serve(_exec(["python3", "-c", script], query), remotecommand.PROTOCOLS)
    _, client = await _connect(port, "/exec/ns/pod/c", "v4.channel.k8s.io")
    error = client.open(streamtype="error")
    client.open(streamtype="stdin")
    stdout = client.open(streamtype="stdout")
    resize = client.open(streamtype="resize")
    client.send(resize, b'{"Width":91,"Height":17}\n')
    await client.until(lambda: error in client.fin)
    assert json.loads(client.data[error]) == {"metadata": {}, "status": "Success"}
    text = bytes(client.data[stdout]).decode()
    assert "True os.terminal_size(columns=91, lines=17) True" in text
    await client.close()


async def test_exec_without_the_streams_it_needs_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1 of stdin, stdout, stderr"):
        remotecommand.exec_options({"tty": "1", "error": "1"}, ["true"])
    tty = remotecommand.exec_options({"tty": "1", "output": "1", "error": "1"}, ["true"])
    assert tty.expected() == {"error", "stdout", "resize"}, "with a TTY stderr is merged"


async def test_an_unknown_protocol_is_refused_with_the_servers_list(serve: Any) -> None:
    port = await serve(_exec(["true"], {"output": "1"}), remotecommand.PROTOCOLS)
    head, client = await _connect(port, "/exec/ns/pod/c", "v1.channel.k8s.io")
    assert head.startswith(b"HTTP/1.1 403 ")
    assert b"X-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io" in head
    await client.close()


async def test_port_forward_pairs_streams_by_request_and_copies_both_ways(serve: Any) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = await reader.read()  # until the client half-closes
        writer.write(b"echo:" + received)
        writer.close()

    upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
    target = upstream.sockets[0].getsockname()[1]

    async def handle(session: Session, request: web.Request) -> None:
        await portforward.serve(session, "pod", "127.0.0.1")

    port = await serve(handle, portforward.PROTOCOLS)
    head, client = await _connect(port, "/portForward/ns/pod", "portforward.k8s.io")
    assert b"X-Stream-Protocol-Version: portforward.k8s.io" in head
    streams = []
    for request in ("0", "1"):
        error = client.open(streamtype="error", port=str(target), requestid=request)
        client.send(error, b"", fin=True)
        data = client.open(streamtype="data", port=str(target), requestid=request)
        streams.append((error, data))
    for n, (_, data) in enumerate(streams):
        client.send(data, f"hello {n}".encode(), fin=True)
    await client.until(lambda: all({e, d} <= client.fin for e, d in streams))
    assert [bytes(client.data[d]) for _, d in streams] == [b"echo:hello 0", b"echo:hello 1"]
    assert all(not client.data.get(e) for e, _ in streams), "no error text on success"

    refused = str(upstream.sockets[0].getsockname()[1])
    upstream.close()
    await upstream.wait_closed()
    error = client.open(streamtype="error", port=refused, requestid="2")
    data = client.open(streamtype="data", port=refused, requestid="2")
    await client.until(lambda: {error, data} <= client.fin)
    assert b"error forwarding port" in client.data[error]
    assert b"refused" in client.data[error].lower()
    await client.close()
