"""SPDY/3.1, as the kubelet speaks it to the API server for exec and port-forward.

The API server (and kubectl, when it speaks SPDY itself) is a `moby/spdystream` client: after an
HTTP upgrade to `SPDY/3.1` it opens streams (SYN_STREAM with headers such as `streamtype`),
sends and half-closes data on them, pings, and ends with RST_STREAMs and a GOAWAY.

Framing (big-endian): a control frame is `1|version(15)=3|type(16)|flags(8)|length(24)|payload`,
a data frame `0|stream(31)|flags(8)|length(24)|data`; flag 0x01 is FIN on both. Header blocks
(SYN_STREAM, SYN_REPLY, HEADERS) are `u32 count`, then per pair `u32 length, name (lowercase),
u32 length, value` (several values NUL-joined), compressed with one zlib stream per direction
that starts from the SPDY/3 dictionary and is sync-flushed after every block.

`Session` is the server side of one connection: it answers every stream the peer opens with an
empty SYN_REPLY at once (the client waits for it before it sends data), echoes the peer's PINGs
and ignores SETTINGS and WINDOW_UPDATE (no flow control: the peer's window is never exhausted
by the few bytes a terminal or a port-forward moves before it reads them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

VERSION = 3
SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9
FLAG_FIN = 0x01
CANCEL = 5
"""RST_STREAM status: the stream is no longer needed."""
PROTOCOL_ERROR = 1
CHUNK = 32 * 1024
"""The largest data frame the session sends."""

_NAMES = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base "
    "content-encoding content-language content-length content-location content-md5 "
    "content-range content-type date etag expect expires from host if-match if-modified-since "
    "if-none-match if-range if-unmodified-since last-modified location max-forwards pragma "
    "proxy-authenticate proxy-authorization range referer retry-after server te trailer "
    "transfer-encoding upgrade user-agent vary via warning www-authenticate method get status"
)
_WORDS = [*_NAMES.split(), "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie"]
_WORDS += ["keep-alive", "origin"]
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = b"".join(len(w).to_bytes(4, "big") + w.encode() for w in _WORDS) + _TAIL.encode()
"""The SPDY/3 header dictionary (draft 3, 2.6.10.1): 1423 bytes, Adler-32 0xe3c6a7c2; the
length-prefixed words, then the status lines, dates and media types without prefixes."""

Headers = dict[str, list[str]]


class SpdyError(Exception):
    """The peer sent something this implementation cannot read."""


@dataclass(frozen=True)
class Frame:
    """One frame: a control frame (`kind` > 0) or a data frame (`kind` 0, with `stream`)."""

    kind: int
    flags: int
    payload: bytes
    stream: int = 0

    @property
    def fin(self) -> bool:
        """The sender's last frame on the stream."""
        return bool(self.flags & FLAG_FIN)


class FrameReader:
    """Splits a byte stream into frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        """The frames `data` completes (the rest is kept for the next call)."""
        self._buffer += data
        frames = []
        while len(self._buffer) >= 8:
            first, second = struct.unpack_from(">II", self._buffer)
            length = second & 0xFFFFFF
            if len(self._buffer) < 8 + length:
                break
            payload = bytes(self._buffer[8 : 8 + length])
            del self._buffer[: 8 + length]
            if first & 0x80000000:
                version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
                if version != VERSION:
                    raise SpdyError(f"SPDY version {version}, not {VERSION}")
                frames.append(Frame(kind, second >> 24, payload))
            else:
                frames.append(Frame(0, second >> 24, payload, stream=first & 0x7FFFFFFF))
        return frames


class HeaderCodec:
    """The header compression of one connection: a compressor for what it sends and a
    decompressor for what it receives, each one zlib stream for the connection's life."""

    def __init__(self) -> None:
        self._out = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
        self._in = zlib.decompressobj(zdict=DICTIONARY)

    def encode(self, headers: Mapping[str, str | list[str]]) -> bytes:
        """A compressed header block (names lowercased, several values NUL-joined)."""
        raw = bytearray(struct.pack(">I", len(headers)))
        for name, value in headers.items():
            joined = "\0".join(value) if isinstance(value, list) else value
            for part in (name.lower().encode(), joined.encode()):
                raw += struct.pack(">I", len(part)) + part
        return self._out.compress(bytes(raw)) + self._out.flush(zlib.Z_SYNC_FLUSH)

    def decode(self, block: bytes) -> Headers:
        """The headers of a compressed block (names lowercased)."""
        try:
            raw = self._in.decompress(block)
        except zlib.error as error:
            raise SpdyError(f"header block: {error}") from error
        try:
            (count,), at = struct.unpack_from(">I", raw), 4
            headers: Headers = {}
            for _ in range(count):
                pair = []
                for _ in range(2):
                    (size,) = struct.unpack_from(">I", raw, at)
                    pair.append(raw[at + 4 : at + 4 + size].decode())
                    at += 4 + size
                headers.setdefault(pair[0].lower(), []).extend(pair[1].split("\0"))
        except (struct.error, UnicodeDecodeError) as error:
            raise SpdyError(f"header block: {error}") from error
        return headers


def control(kind: int, payload: bytes, flags: int = 0) -> bytes:
    """A control frame."""
    head = struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload))
    return head + payload


def data(stream: int, chunk: bytes, *, fin: bool = False) -> bytes:
    """A data frame."""
    flags = FLAG_FIN if fin else 0
    return struct.pack(">II", stream & 0x7FFFFFFF, (flags << 24) | len(chunk)) + chunk


def syn_stream(
    codec: HeaderCodec, stream: int, headers: Mapping[str, str | list[str]], *, fin: bool = False
) -> bytes:
    """SYN_STREAM (what a client sends to open a stream)."""
    payload = struct.pack(">IIBB", stream, 0, 0, 0) + codec.encode(headers)
    return control(SYN_STREAM, payload, FLAG_FIN if fin else 0)


def syn_reply(codec: HeaderCodec, stream: int, headers: Mapping[str, str | list[str]]) -> bytes:
    """SYN_REPLY (the answer to a SYN_STREAM)."""
    return control(SYN_REPLY, struct.pack(">I", stream) + codec.encode(headers))


def rst_stream(stream: int, status: int) -> bytes:
    """RST_STREAM: the stream ends abnormally in both directions."""
    return control(RST_STREAM, struct.pack(">II", stream, status))


def ping(ping_id: int) -> bytes:
    """PING (answered by the same frame)."""
    return control(PING, struct.pack(">I", ping_id))


def goaway(last_stream: int, status: int = 0) -> bytes:
    """GOAWAY: no new streams; `last_stream` is the last one the sender accepted."""
    return control(GOAWAY, struct.pack(">II", last_stream, status))


class Stream:
    """One stream the peer opened: its headers, what it sends, and a way to answer."""

    def __init__(self, session: Session, stream_id: int, headers: Headers) -> None:
        self.session = session
        self.id = stream_id
        self.headers = headers
        self.reset = False
        self._incoming: asyncio.Queue[bytes] = asyncio.Queue()
        self._ended = False  # the peer's side: FIN, RST or the connection's end
        self._closed = False  # our side: FIN or RST sent

    def header(self, name: str) -> str:
        """The first value of a header ("" without it)."""
        return (self.headers.get(name.lower()) or [""])[0]

    async def read(self) -> bytes:
        """The next data the peer sent on the stream; b"" once it half-closed it (or reset it,
        or the connection ended)."""
        if self._ended and self._incoming.empty():
            return b""
        chunk = await self._incoming.get()
        if not chunk:
            self._ended = True
        return chunk

    async def write(self, chunk: bytes) -> None:
        """Send data (nothing once this side is closed)."""
        for at in range(0, len(chunk), CHUNK):
            if self._closed or self.session.ended.is_set():
                return
            self.session.send(data(self.id, chunk[at : at + CHUNK]))
            await self.session.drain()

    def close(self) -> None:
        """Half-close this side (an empty data frame with FIN)."""
        if not self._closed:
            self._closed = True
            if not self.session.ended.is_set():
                self.session.send(data(self.id, b"", fin=True))

    def _received(self, chunk: bytes, *, fin: bool) -> None:
        if chunk:
            self._incoming.put_nowait(chunk)
        if fin:
            self._end()

    def _end(self) -> None:
        self._incoming.put_nowait(b"")


class Session:
    """The server side of one SPDY/3.1 connection.

    Bytes from the peer go to `feed_data` (and `feed_eof` at its end: the interface of an
    aiohttp payload parser); frames go out through `write`, with `drain` awaited between data
    frames. `accept` gives the streams the peer opens.
    """

    def __init__(
        self, write: Callable[[bytes], None], drain: Callable[[], Awaitable[None]]
    ) -> None:
        self.send = write
        self.drain = drain
        self.codec = HeaderCodec()
        self.reader = FrameReader()
        self.streams: dict[int, Stream] = {}
        self.ended = asyncio.Event()
        self.peer_goaway = False
        self.last_stream = 0
        self._new: asyncio.Queue[Stream | None] = asyncio.Queue()

    async def accept(self) -> Stream | None:
        """The next stream the peer opened (None when the connection has ended)."""
        if self.ended.is_set() and self._new.empty():
            return None
        return await self._new.get()

    def goaway(self) -> None:
        """Tell the peer no more streams are accepted (the kubelet's close)."""
        if not self.ended.is_set():
            self.send(goaway(self.last_stream))

    def feed_data(self, chunk: bytes) -> tuple[bool, bytes]:
        """Bytes from the peer; (True, b"") once the connection cannot go on."""
        if self.ended.is_set():
            return True, b""
        try:
            for frame in self.reader.feed(chunk):
                self._handle(frame)
        except SpdyError as error:
            log.warning("SPDY session: %s; closing it", error)
            with contextlib.suppress(Exception):
                self.send(goaway(self.last_stream, PROTOCOL_ERROR))
            self.feed_eof()
            return True, b""
        return False, b""

    def feed_eof(self) -> None:
        """The peer's side of the connection ended: every stream ends with it."""
        if self.ended.is_set():
            return
        self.ended.set()
        for stream in self.streams.values():
            stream._end()
        self._new.put_nowait(None)

    def _handle(self, frame: Frame) -> None:
        if frame.kind == 0:
            stream = self.streams.get(frame.stream)
            if stream is not None:
                stream._received(frame.payload, fin=frame.fin)
        elif frame.kind == SYN_STREAM:
            self._opened(frame)
        elif frame.kind in (SYN_REPLY, HEADERS):
            self.codec.decode(frame.payload[4:])  # keeps the decompressor in step
        elif frame.kind == RST_STREAM:
            (stream_id,) = struct.unpack_from(">I", frame.payload)
            stream = self.streams.pop(stream_id & 0x7FFFFFFF, None)
            if stream is not None:
                stream.reset = stream._closed = True
                stream._end()
        elif frame.kind == PING:
            (ping_id,) = struct.unpack_from(">I", frame.payload)
            if ping_id % 2:  # the peer's (a client's ids are odd): echo it
                self.send(ping(ping_id))
        elif frame.kind == GOAWAY:
            self.peer_goaway = True
        # SETTINGS, WINDOW_UPDATE and anything else: nothing to do

    def _opened(self, frame: Frame) -> None:
        if len(frame.payload) < 10:
            raise SpdyError("short SYN_STREAM")
        (stream_id,) = struct.unpack_from(">I", frame.payload)
        stream_id &= 0x7FFFFFFF
        headers = self.codec.decode(frame.payload[10:])
        self.last_stream = max(self.last_stream, stream_id)
        stream = Stream(self, stream_id, headers)
        self.streams[stream_id] = stream
        self.send(syn_reply(self.codec, stream_id, {}))
        if frame.fin:
            stream._end()
        self._new.put_nowait(stream)
