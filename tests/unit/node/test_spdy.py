"""The SPDY/3.1 codec of the local node's kubelet API: frames, header blocks and the server
session's answers."""

from __future__ import annotations

import struct
import zlib

import pytest

from devcluster.node import spdy
from devcluster.node.spdy import Frame, FrameReader, HeaderCodec, Session, SpdyError


def test_the_dictionary_is_the_spdy3_one() -> None:
    # Draft 3, 2.6.10.1: 1423 bytes; zlib names a preset dictionary by its Adler-32, which a
    # Go peer (compress/zlib NewReaderDict) checks against its own copy.
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


def test_a_header_block_is_a_zlib_stream_with_the_dictionary_named_in_its_header() -> None:
    block = HeaderCodec().encode({"streamType": "error"})
    # 0x78 0xf9: deflate, 32 KiB window, best compression, FDICT set; then the dictionary id,
    # exactly what moby/spdystream's compressor (level 9 with the dictionary) starts with.
    assert block[:6] == bytes.fromhex("78f9e3c6a7c2")
    assert block.endswith(b"\x00\x00\xff\xff")  # sync-flushed: the block ends on a boundary
    raw = zlib.decompressobj(zdict=spdy.DICTIONARY).decompress(block)
    assert raw == struct.pack(">I", 1) + b"\x00\x00\x00\x0astreamtype\x00\x00\x00\x05error"


def test_header_blocks_round_trip_on_one_compression_context_per_direction() -> None:
    sender, receiver = HeaderCodec(), HeaderCodec()
    blocks: list[dict[str, str | list[str]]] = [
        {"streamtype": "data", "port": "8080", "requestid": "0"},
        {"streamtype": "error", "port": "8080", "requestid": "0"},
        {"Accept": ["a", "b"]},
        {},
    ]
    encoded = [sender.encode(block) for block in blocks]
    assert len(encoded[1]) < len(encoded[0])  # the second reuses the first's history
    decoded = [receiver.decode(block) for block in encoded]
    assert decoded == [
        {"streamtype": ["data"], "port": ["8080"], "requestid": ["0"]},
        {"streamtype": ["error"], "port": ["8080"], "requestid": ["0"]},
        {"accept": ["a", "b"]},
        {},
    ]
    with pytest.raises(SpdyError):  # out of step: a fresh decompressor cannot read the 2nd
        HeaderCodec().decode(encoded[1])


def test_frames_are_framed_big_endian_with_flags_and_lengths() -> None:
    assert spdy.data(5, b"hi", fin=True) == bytes.fromhex("00000005 01000002") + b"hi"
    assert spdy.ping(7) == bytes.fromhex("80030006 00000004 00000007")
    assert spdy.goaway(3) == bytes.fromhex("80030007 00000008 00000003 00000000")
    assert spdy.rst_stream(9, spdy.CANCEL) == bytes.fromhex("80030003 00000008 00000009 00000005")
    reader = FrameReader()
    wire = spdy.data(5, b"hi", fin=True) + spdy.ping(7) + spdy.data(2**31 - 1, b"x" * 70000)
    frames = reader.feed(wire[:3]) + reader.feed(wire[3:20]) + reader.feed(wire[20:])
    assert frames == [
        Frame(0, spdy.FLAG_FIN, b"hi", stream=5),
        Frame(spdy.PING, 0, b"\x00\x00\x00\x07"),
        Frame(0, 0, b"x" * 70000, stream=2**31 - 1),
    ]
    assert frames[0].fin
    assert not frames[2].fin
    with pytest.raises(SpdyError):
        FrameReader().feed(bytes.fromhex("80020001 00000000"))  # SPDY/2


def test_syn_stream_and_reply_carry_their_stream_and_headers() -> None:
    client, server = HeaderCodec(), HeaderCodec()
    (frame,) = FrameReader().feed(spdy.syn_stream(client, 3, {"streamtype": "stdin"}, fin=True))
    assert (frame.kind, frame.fin) == (spdy.SYN_STREAM, True)
    assert struct.unpack_from(">II", frame.payload) == (3, 0)
    assert server.decode(frame.payload[10:]) == {"streamtype": ["stdin"]}
    (reply,) = FrameReader().feed(spdy.syn_reply(server, 3, {}))
    assert reply.kind == spdy.SYN_REPLY
    assert struct.unpack_from(">I", reply.payload) == (3,)
    assert client.decode(reply.payload[4:]) == {}


async def _drain() -> None:
    return None


async def test_the_session_replies_to_streams_echoes_pings_and_delivers_data() -> None:
    sent: list[bytes] = []
    session = Session(sent.append, _drain)
    client = HeaderCodec()
    wire = (
        spdy.syn_stream(client, 1, {"streamtype": "error"})
        + spdy.syn_stream(client, 3, {"streamtype": "stdin"})
        + spdy.data(3, b"hello ")
        + spdy.control(spdy.SETTINGS, b"\x00\x00\x00\x00")
        + spdy.ping(1)
        + spdy.ping(2)  # an even id would be ours: not echoed
        + spdy.data(3, b"world", fin=True)
    )
    assert session.feed_data(wire[:11]) == (False, b"")
    session.feed_data(wire[11:])
    first, second = await session.accept(), await session.accept()
    assert first is not None
    assert second is not None
    assert (first.id, first.header("streamType")) == (1, "error")
    assert (second.id, second.header("streamtype")) == (3, "stdin")
    assert [await second.read(), await second.read(), await second.read()] == [
        b"hello ",
        b"world",
        b"",
    ]
    frames = FrameReader().feed(b"".join(sent))
    assert [f.kind for f in frames] == [spdy.SYN_REPLY, spdy.SYN_REPLY, spdy.PING]
    assert [client.decode(f.payload[4:]) for f in frames[:2]] == [{}, {}]
    assert frames[2].payload == b"\x00\x00\x00\x01"

    sent.clear()
    await first.write(b"x" * (spdy.CHUNK + 1))
    first.close()
    first.close()  # once only
    session.goaway()
    frames = FrameReader().feed(b"".join(sent))
    assert [(f.stream, len(f.payload), f.fin) for f in frames[:3]] == [
        (1, spdy.CHUNK, False),
        (1, 1, False),
        (1, 0, True),
    ]
    assert frames[3] == Frame(spdy.GOAWAY, 0, struct.pack(">II", 3, 0))


async def test_a_reset_or_the_end_of_the_connection_ends_the_streams() -> None:
    sent: list[bytes] = []
    session = Session(sent.append, _drain)
    client = HeaderCodec()
    session.feed_data(
        spdy.syn_stream(client, 1, {"streamtype": "data"})
        + spdy.syn_stream(client, 3, {"streamtype": "error"})
        + spdy.rst_stream(1, spdy.CANCEL)
    )
    reset, other = await session.accept(), await session.accept()
    assert reset is not None
    assert other is not None
    assert await reset.read() == b""
    assert reset.reset
    sent.clear()
    await reset.write(b"late")  # nothing is sent on a reset stream
    assert sent == []
    session.feed_eof()
    assert await other.read() == b""
    assert not other.reset
    assert await session.accept() is None
    assert session.feed_data(spdy.ping(1)) == (True, b"")


async def test_garbage_ends_the_session_with_a_protocol_error() -> None:
    sent: list[bytes] = []
    session = Session(sent.append, _drain)
    bad_block = spdy.control(spdy.SYN_STREAM, struct.pack(">IIBB", 1, 0, 0, 0) + b"not zlib")
    assert session.feed_data(bad_block) == (True, b"")
    assert session.ended.is_set()
    (frame,) = FrameReader().feed(b"".join(sent))
    assert frame == Frame(spdy.GOAWAY, 0, struct.pack(">II", 0, spdy.PROTOCOL_ERROR))
