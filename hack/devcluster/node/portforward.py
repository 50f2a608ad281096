"""`kubectl port-forward` on the local node: the kubelet's portforward.k8s.io protocol over an
SPDY session.

For every connection to its local port, kubectl opens two streams with the same `requestid`
and `port` headers: `streamtype: error` (which it half-closes at once) and `streamtype: data`.
Once both are there the node connects to the pod's IP on that port (the pod has its own network
namespace on the node's bridge, which the host reaches directly; a kubelet connects to localhost
inside the pod's namespace, which reaches the same listeners unless one listens on loopback
only) and copies both ways. The client's half-close becomes a half-close toward the pod; when
the pod's side ends, the data and error streams are half-closed. Text on the error stream is
only for a real failure (the connection refused, a bad port): kubectl ends the whole
port-forward on any.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field

from devcluster.node.spdy import Session, Stream

log = logging.getLogger(__name__)

PROTOCOLS = ["portforward.k8s.io"]
PAIR_TIMEOUT = 30.0
CHUNK = 32 * 1024


@dataclass
class _Pair:
    """The two streams of one forwarded connection."""

    error: Stream | None = None
    data: Stream | None = None
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


async def serve(session: Session, pod_name: str, pod_ip: str | None) -> None:
    """Forward every stream pair the client opens until the connection ends."""
    pairs: dict[str, _Pair] = {}
    tasks: set[asyncio.Task[None]] = set()

    def expire(request: str) -> None:
        pair = pairs.pop(request, None)
        if pair is not None:
            log.info("port-forward %s: request %s left incomplete", pod_name, request)
            for stream in (pair.error, pair.data):
                if stream is not None:
                    stream.close()

    try:
        while (stream := await session.accept()) is not None:
            request = stream.header("requestid") or str(stream.id)
            kind = stream.header("streamtype")
            pair = pairs.setdefault(request, _Pair())
            if kind == "error":
                pair.error = stream
            elif kind == "data":
                pair.data = stream
            else:
                log.info("port-forward %s: stream of type %r ignored", pod_name, kind)
                stream.close()
                continue
            if pair.timer is None:
                loop = asyncio.get_running_loop()
                pair.timer = loop.call_later(PAIR_TIMEOUT, expire, request)
            if pair.error is not None and pair.data is not None:
                del pairs[request]
                pair.timer.cancel()
                task = asyncio.create_task(forward(pair.data, pair.error, pod_name, pod_ip))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
    finally:
        for pair in pairs.values():
            if pair.timer is not None:
                pair.timer.cancel()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def forward(data: Stream, error: Stream, pod_name: str, pod_ip: str | None) -> None:
    """Copy one connection both ways between the streams and the pod."""
    port_text = data.header("port")
    try:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"invalid port {port_text!r}")
        if not pod_ip:
            raise ConnectionError(f"pod {pod_name} has no IP address")
        reader, writer = await asyncio.open_connection(pod_ip, int(port_text))
    except (OSError, ValueError) as failure:
        errno = failure.errno if isinstance(failure, OSError) else None
        reason = os.strerror(errno) if errno else str(failure)
        message = (
            f"error forwarding port {port_text} to pod {pod_name}: "
            f"dial tcp {pod_ip}:{port_text}: connect: {reason.lower()}"
        )
        log.info("port-forward: %s", message)
        await error.write(message.encode())
        error.close()
        data.close()
        return
    try:
        upstream = asyncio.create_task(_to_pod(data, writer))
        await _from_pod(reader, data)
        upstream.cancel()
        await asyncio.gather(upstream, return_exceptions=True)
    finally:
        writer.close()
        data.close()
        error.close()


async def _to_pod(data: Stream, writer: asyncio.StreamWriter) -> None:
    while chunk := await data.read():
        writer.write(chunk)
        await writer.drain()
    if data.reset:
        writer.transport.abort()
    elif writer.can_write_eof():
        writer.write_eof()  # the client half-closed: so does the connection to the pod


async def _from_pod(reader: asyncio.StreamReader, data: Stream) -> None:
    while True:
        try:
            chunk = await reader.read(CHUNK)
        except OSError:
            return
        if not chunk:
            return
        await data.write(chunk)
