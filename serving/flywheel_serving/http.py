"""HTTP connection hygiene: limits uvicorn's httptools protocol does not enforce itself.

uvicorn bounds neither the size of a request's head nor the time a client takes to send it, and
httptools joins a header value split across reads by bytes concatenation (quadratic), so one
client streaming an endless header could grow the server without bound and stall its event loop
for every other client. `limited_protocol` returns uvicorn's `HttpToolsProtocol` with:

- at most `max_header_bytes` of request line and headers (or of a chunked body's trailers) ever
  reach the parser, and at most `max_headers` headers: 431 and the connection closes;
- a request's line and headers must arrive within `header_timeout_seconds` of its first byte,
  its body within `body_timeout_seconds` of its headers: 408 and the connection closes (only a
  close if the response has already started);
- a new connection that sends nothing is closed after the keep-alive timeout, like an idle one
  between requests.

A deadline does not run out while the server itself holds the client up (reading paused behind a
pipelined request or an unread body, `100 Continue` not sent yet): it starts over. An error on a
pipelined request is written after the responses to the requests before it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState


@dataclass(frozen=True)
class HttpLimits:
    """What one HTTP connection may do."""

    max_header_bytes: int
    max_headers: int
    header_timeout_seconds: float
    body_timeout_seconds: float


def limited_protocol(limits: HttpLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol class, bound to these limits."""
    bound = limits

    class Bound(LimitedProtocol):
        limits = bound

    return Bound


class _Stop(Exception):
    """Raised in a parser callback to stop parsing a rejected request."""


class LimitedProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` enforcing `limits` (bind them with `limited_protocol`)."""

    limits: ClassVar[HttpLimits]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._timer: asyncio.TimerHandle | None = None
        self._in_head = True  # the next bytes belong to a request line or headers
        self._pending = False  # some bytes of an unfinished request have arrived
        self._head_bytes = 0
        self._headers = 0
        self._stopped = False  # no more input is parsed on this connection
        self._deferred: bytes | None = None  # an error to write after earlier responses

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """A new connection that sends nothing closes after the keep-alive timeout."""
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        """No timer outlives the connection."""
        self._disarm()
        self._unset_keepalive_if_required()  # uvicorn leaves it armed after a reset
        self._deferred = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse `data`, feeding at most `max_header_bytes` of a request's head."""
        self._unset_keepalive_if_required()
        limit = self.limits.max_header_bytes
        rest: bytes | memoryview = data
        while rest and not self._stopped:
            # Counted before parsing, so a flood never reaches httptools: the bytes since the
            # last progress (headers complete, body data, message complete). In a body, only
            # chunk framing and trailers count.
            piece, rest = rest, b""
            if self._in_head:
                self._pending = True
                room = limit - self._head_bytes
                if len(piece) > room:
                    view = memoryview(piece)
                    piece, rest = view[:room], view[room:]
            self._head_bytes += len(piece)
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self._stop()
                    self.handle_websocket_upgrade()
                    return
                self._unsupported_upgrade_warning()
                break
            except httptools.HttpParserError:
                if not self._stopped:
                    self._stop()
                    self.logger.warning("Invalid HTTP request received.")
                    self.send_400_response("Invalid HTTP request received.")
                return
            if self._head_bytes >= limit:
                what = "request line and headers" if self._in_head else "request trailers"
                self._reject(431, f"the {what} exceed {limit} bytes")
                return
        idle = self._in_head and not self._pending
        if self._timer is None and not idle and not self._stopped:
            self._arm()

    # Parser callbacks

    def on_message_begin(self) -> None:
        """A request starts (its head deadline runs from its first byte)."""
        super().on_message_begin()
        self._headers = 0
        self._pending = True

    def on_header(self, name: bytes, value: bytes) -> None:
        """One more header: past `max_headers`, 431."""
        self._headers += 1
        if self._headers > self.limits.max_headers:
            self._reject(431, f"the request has more than {self.limits.max_headers} headers")
            raise _Stop
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """The head is in: its deadline stops; the body's starts after this read."""
        self._in_head, self._head_bytes = False, 0
        if self._timer is not None:
            self._disarm()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """Body data: progress (only a body's framing and trailers count as head bytes)."""
        self._head_bytes = 0
        super().on_body(body)

    def on_message_complete(self) -> None:
        """The request is in: no deadline until the next one's first byte."""
        self._in_head, self._pending, self._head_bytes = True, False, 0
        if self._timer is not None:
            self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        """A response is out: a deferred error goes once every earlier request is answered."""
        super().on_response_complete()
        if self._deferred is not None and not self.transport.is_closing():
            if self.cycle.response_complete:  # every earlier request has its answer
                self.transport.write(self._deferred)
                self.transport.close()
            else:
                self.flow.pause_reading()

    # Limits

    def _stop(self) -> None:
        self._stopped = True
        self._disarm()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _seconds(self) -> float:
        limits = self.limits
        return limits.header_timeout_seconds if self._in_head else limits.body_timeout_seconds

    def _arm(self) -> None:
        self._timer = self.loop.call_later(self._seconds(), self._expired)

    def _expired(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        head = self._in_head
        if self.flow.read_paused or (not head and self.cycle.waiting_for_100_continue):
            self._arm()  # the server holds the client up: start over
            return
        what = "request line and headers" if head else "request body"
        self._reject(408, f"the {what} took longer than {self._seconds():g} s")

    def _reject(self, status: int, message: str) -> None:
        """Answer `status` and close; just close if this request's response has started."""
        self._stop()
        cycle = self.cycle
        body = orjson.dumps({"error": message})
        lines = [STATUS_LINE[status]]
        lines += [k + b": " + v + b"\r\n" for k, v in self.server_state.default_headers]
        lines += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
        if self._in_head:
            if cycle is not None and not cycle.response_complete:  # earlier requests first
                self._deferred = b"".join(lines)
                self.flow.pause_reading()
                return
        elif cycle.response_started or self.pipeline:
            self.transport.close()
            return
        else:  # the app's own answer is not written after this one
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.write(b"".join(lines))
        self.transport.close()
