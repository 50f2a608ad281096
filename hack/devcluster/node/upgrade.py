"""Switching a kubelet API request to SPDY/3.1 (`Upgrade: SPDY/3.1`), inside aiohttp.

aiohttp upgrades only to WebSocket by itself: for any other protocol its parser reads the
request as one without a body and would parse whatever follows as the next request. The
handler therefore installs the SPDY session as the connection's payload parser (the hook
aiohttp's own WebSocket response uses) *before* it answers 101, so every byte after the request
reaches the session; keep-alive is off, so the connection closes when the handler returns.
Frames go straight to the transport; `drain` waits while the transport's buffer is full.

The protocol version is negotiated as `httpstream.Handshake` does: the first of the client's
`X-Stream-Protocol-Version` values the server supports, else 403 with the server's list.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from aiohttp import web

from devcluster.node.spdy import Session

PROTOCOL_HEADER = "X-Stream-Protocol-Version"
ACCEPTED_HEADER = "X-Accepted-Stream-Protocol-Versions"
HIGH_WATER = 256 * 1024
LINGER = 10.0
"""How long a finished session waits for the peer to close the connection (after GOAWAY)."""


class UpgradeError(Exception):
    """The request cannot be upgraded: the status, the plain-text message and extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}

    def response(self) -> web.Response:
        """The answer the kubelet gives."""
        return web.Response(status=self.status, text=str(self), headers=self.headers)


def negotiate(request: web.Request, supported: list[str]) -> str:
    """The protocol both sides speak (UpgradeError 400 without an SPDY upgrade, 403 without a
    common protocol)."""
    if "spdy/3.1" not in request.headers.get("Upgrade", "").lower():
        raise UpgradeError(400, "unable to upgrade: missing upgrade headers in request")
    offered = [
        p.strip() for value in request.headers.getall(PROTOCOL_HEADER, []) for p in value.split(",")
    ]
    for protocol in offered:
        if protocol in supported:
            return protocol
    raise UpgradeError(
        403,
        f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
        f"server accepts {supported}",
        {ACCEPTED_HEADER: ", ".join(supported)},
    )


async def serve(
    request: web.Request,
    protocol: str,
    handle: Callable[[Session], Awaitable[None]],
    live: set[Session] | None = None,
) -> web.StreamResponse:
    """Answer 101, run `handle` on the session, then GOAWAY and close the connection (once
    the peer has closed its side, or after `LINGER`). The session is in `live` meanwhile (the
    server ends them when it stops)."""
    transport = request.transport
    assert transport is not None

    def write(frame: bytes) -> None:
        if not transport.is_closing():
            transport.write(frame)

    async def drain() -> None:
        while not transport.is_closing() and transport.get_write_buffer_size() > HIGH_WATER:
            await asyncio.sleep(0.005)

    session = Session(write, drain)
    protocol_handler = request.protocol
    # aiohttp's hook for upgraded connections (what WebSocketResponse does): from now on the
    # bytes the client sends go to the session.
    protocol_handler.set_parser(session)  # type: ignore[arg-type]
    protocol_handler.keep_alive(False)
    response = web.StreamResponse(
        status=101,
        headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1", PROTOCOL_HEADER: protocol},
    )
    await response.prepare(request)
    if live is not None:
        live.add(session)
    try:
        await handle(session)
        session.goaway()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.ended.wait(), LINGER)
    finally:
        if live is not None:
            live.discard(session)
        session.feed_eof()
        transport.close()
    return response
