"""`kubectl exec` on the local node: the kubelet's remote command protocol v4.channel.k8s.io
over an SPDY session.

The request names the command (`command`, repeated) and the streams (`input`, `output`,
`error`, `tty`: "1" when wanted; with a TTY stderr is merged into it). The client opens one
SPDY stream per channel, told apart by their `streamtype` header: `error` always, `stdin`,
`stdout`, `stderr` as asked, and `resize` with a TTY (newline-delimited JSON sizes,
`{"Width": 80, "Height": 24}`). Once they are all there (30 s at most) the command runs in the
container as the container's own process does (its namespaces, root, user, cgroups, and the
environment of its process), on pipes or on a pseudo-terminal that becomes its controlling
terminal (`setsid --ctty`). When it exits, stdout and stderr are half-closed, the status goes
on the error stream as JSON (`Success`, or `Failure` with reason `NonZeroExitCode` and the code
as an `ExitCode` cause: kubectl exits with that code) and that stream is half-closed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import struct
import termios
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devcluster.node.spdy import Session, Stream

log = logging.getLogger(__name__)

PROTOCOLS = ["v4.channel.k8s.io"]
STREAM_TIMEOUT = 30.0
OUTPUT_GRACE = 2.0
"""How long output is still copied after the command exited (a child it left behind may keep
the streams open)."""
CHUNK = 32 * 1024


@dataclass(frozen=True)
class ExecOptions:
    """What an `exec` request asks for."""

    command: list[str]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    def expected(self) -> set[str]:
        """The stream types the client opens."""
        wanted = {"error"}
        for name, on in (("stdin", self.stdin), ("stdout", self.stdout), ("stderr", self.stderr)):
            if on:
                wanted.add(name)
        if self.tty:
            wanted.add("resize")
        return wanted


def exec_options(query: Mapping[str, str], command: list[str]) -> ExecOptions:
    """The options of an exec request's query, with the kubelet's errors (ValueError)."""

    def on(name: str) -> bool:
        return query.get(name, "") in ("1", "true")

    tty = on("tty")
    options = ExecOptions(command, on("input"), on("output"), on("error") and not tty, tty)
    if not (options.stdin or options.stdout or options.stderr):
        raise ValueError("you must specify at least 1 of stdin, stdout, stderr")
    return options


def container_environ(pid: int) -> dict[str, str]:
    """The environment of the container's process (what an exec'd command starts with)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {name: value for name, _, value in pairs}


def status(code: int) -> dict[str, Any]:
    """The v4 status of a command that exited with `code`."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit status {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


async def streams_of(session: Session, options: ExecOptions) -> dict[str, Stream]:
    """The streams the client opens for `options` (TimeoutError after `STREAM_TIMEOUT`)."""
    wanted = options.expected()
    found: dict[str, Stream] = {}

    async def collect() -> None:
        while not wanted <= found.keys():
            stream = await session.accept()
            if stream is None:
                raise ConnectionError("the connection ended before the streams were created")
            kind = stream.header("streamtype")
            if kind in wanted:
                found[kind] = stream

    await asyncio.wait_for(collect(), STREAM_TIMEOUT)
    return found


async def serve(
    session: Session, options: ExecOptions, argv: list[str], env: dict[str, str]
) -> None:
    """Run the exec on a session: streams, the command, its status."""

    async def run(streams: dict[str, Stream]) -> dict[str, Any]:
        try:
            return status(await _run(argv, env, streams, session, tty=options.tty))
        except OSError as error:
            message = f"error executing command in container: {error}"
            return {"metadata": {}, "status": "Failure", "message": message, "code": 500}

    await _answer(session, options, run)


async def refuse(session: Session, options: ExecOptions, message: str) -> None:
    """Answer with a failure carrying `message` and run nothing (kubectl prints it)."""

    async def fail(streams: dict[str, Stream]) -> dict[str, Any]:
        return {"metadata": {}, "status": "Failure", "message": message, "code": 400}

    await _answer(session, options, fail)


async def _answer(
    session: Session,
    options: ExecOptions,
    run: Callable[[dict[str, Stream]], Awaitable[dict[str, Any]]],
) -> None:
    try:
        streams = await streams_of(session, options)
    except (TimeoutError, ConnectionError) as error:
        log.info("exec %s: %s", options.command, error or "timed out waiting for streams")
        return
    report = await run(streams)
    for name in ("stdout", "stderr"):
        if name in streams:
            streams[name].close()
    await streams["error"].write(json.dumps(report).encode())
    streams["error"].close()
    if "stdin" in streams:
        streams["stdin"].close()


class _Io:
    """The command's ends of its streams (pipes or a pty) and the transports of ours."""

    def __init__(self) -> None:
        self.transports: list[asyncio.BaseTransport] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.outputs: list[asyncio.Task[None]] = []

    async def output(self, fd: int, stream: Stream | None) -> None:
        """Copy what the command writes on `fd` to `stream` (only drain it without one)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=4 * CHUNK)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
        )
        self.transports.append(transport)
        self.outputs.append(asyncio.create_task(_copy_out(reader, stream)))

    async def input(self, fd: int, stream: Stream) -> None:
        """Copy what the client sends on `stream` to `fd`, closing it at the stream's end."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_write_pipe(
            asyncio.Protocol, os.fdopen(fd, "wb", buffering=0)
        )
        self.transports.append(transport)
        self.tasks.append(asyncio.create_task(_copy_in(stream, transport)))

    async def finish(self, process: asyncio.subprocess.Process, session: Session) -> int:
        """The command's exit code, once it has exited and its output is copied; it is
        killed when the session ends first."""
        exited = asyncio.ensure_future(process.wait())
        ended = asyncio.ensure_future(session.ended.wait())
        try:
            await asyncio.wait([exited, ended], return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if process.returncode is None:  # the client went away (or the agent stops)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            code = await exited
            if self.outputs:
                await asyncio.wait(self.outputs, timeout=OUTPUT_GRACE)
            for task in [*self.outputs, *self.tasks]:
                task.cancel()
            await asyncio.gather(*self.outputs, *self.tasks, return_exceptions=True)
            for transport in self.transports:
                transport.close()
        return code if code >= 0 else 128 - code  # killed by a signal: as a shell reports it


async def _run(
    argv: list[str], env: dict[str, str], streams: dict[str, Stream], session: Session, *, tty: bool
) -> int:
    io = _Io()
    theirs: list[int] = []
    try:
        if tty:
            master, slave = os.openpty()
            theirs.append(slave)
            await io.output(master, streams.get("stdout"))
            if "stdin" in streams:
                await io.input(os.dup(master), streams["stdin"])
            io.tasks.append(asyncio.create_task(_resize(streams["resize"], master)))
            # A new session whose controlling terminal is the pty (its stdin).
            argv, env = ["setsid", "--ctty", *argv], {"TERM": "xterm", **env}
            ends: list[int | None] = [slave, slave, slave]
        else:
            ends = []
            for name in ("stdin", "stdout", "stderr"):
                if name not in streams:
                    ends.append(asyncio.subprocess.DEVNULL)
                    continue
                read, write = os.pipe()
                theirs.append(read if name == "stdin" else write)
                ends.append(theirs[-1])
                if name == "stdin":
                    await io.input(write, streams[name])
                else:
                    await io.output(read, streams[name])
        process = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=ends[0], stdout=ends[1], stderr=ends[2], start_new_session=not tty
        )
    except BaseException:
        for transport in io.transports:
            transport.close()
        for task in io.tasks + io.outputs:
            task.cancel()
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    return await io.finish(process, session)


async def _copy_out(reader: asyncio.StreamReader, stream: Stream | None) -> None:
    while True:
        try:
            chunk = await reader.read(CHUNK)
        except OSError:  # EIO: the pty's last holder closed it
            return
        if not chunk:
            return
        if stream is not None:
            await stream.write(chunk)


async def _copy_in(stream: Stream, transport: asyncio.WriteTransport) -> None:
    try:
        while chunk := await stream.read():
            if transport.is_closing():
                return
            transport.write(chunk)
            while not transport.is_closing() and transport.get_write_buffer_size() > CHUNK:
                await asyncio.sleep(0.005)
    finally:
        transport.close()  # the command's stdin ends (a pty: only this copy of the master)


async def _resize(stream: Stream, master: int) -> None:
    pending = b""
    while chunk := await stream.read():
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError, TypeError, KeyError, OSError):
                size = json.loads(line)
                winsize = struct.pack("HHHH", int(size["Height"]), int(size["Width"]), 0, 0)
                fcntl.ioctl(master, termios.TIOCSWINSZ, winsize)
