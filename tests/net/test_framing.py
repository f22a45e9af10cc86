"""Frames: header layout and every way a frame can be malformed."""

from __future__ import annotations

import io
import struct

import pytest

from capc.net.errors import ChannelClosed, ProtocolError
from capc.net.framing import (GLOBAL_MAX_PAYLOAD, HEADER_SIZE, MAGIC, PAYLOAD_LIMITS,
                              PROTOCOL_VERSION, MessageType, encode_frame, pack_header, read_frame,
                              unpack_header)


def _reader(data: bytes):
    return io.BytesIO(data).readinto


def _raw_header(magic=MAGIC, version=PROTOCOL_VERSION, code=int(MessageType.SHUTDOWN), flags=0,
                length=0) -> bytes:
    return struct.pack(">4sHHHQ", magic, version, code, flags, length)


def test_round_trip() -> None:
    frame = encode_frame(MessageType.QUERY_RESULT, b"payload")
    assert len(frame) == HEADER_SIZE + 7 and frame.startswith(MAGIC)
    h, p = read_frame(_reader(frame))
    assert (h.type, h.flags, h.length, bytes(p)) == (MessageType.QUERY_RESULT, 0, 7, b"payload")


def test_two_frames_back_to_back() -> None:
    r = _reader(encode_frame(MessageType.HELLO, b"a") + encode_frame(MessageType.SHUTDOWN, b""))
    assert read_frame(r)[0].type == MessageType.HELLO
    assert read_frame(r)[0].type == MessageType.SHUTDOWN
    with pytest.raises(ChannelClosed):
        read_frame(r)


@pytest.mark.parametrize("header, match", [
    (_raw_header(magic=b"HTTP"), "bad frame magic"),
    (_raw_header(version=PROTOCOL_VERSION + 1), f"wrong protocol version {PROTOCOL_VERSION + 1}"),
    (_raw_header(version=0), "wrong protocol version 0"),
    (_raw_header(code=999), "unknown message type code 999"),
    (_raw_header(code=0), "unknown message type code 0"),
    (_raw_header(flags=1), "unsupported frame flags"),
    (_raw_header(code=int(MessageType.HELLO), length=PAYLOAD_LIMITS[MessageType.HELLO] + 1),
     "oversize frame: HELLO payload"),
    (_raw_header(code=int(MessageType.PUBLIC_CONTEXT), length=GLOBAL_MAX_PAYLOAD + 1),
     "oversize frame: PUBLIC_CONTEXT"),
])
def test_malformed_header(header: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        unpack_header(header)
    with pytest.raises(ProtocolError, match=match):
        read_frame(_reader(header + b"x" * 16))


def test_huge_claimed_length_is_refused_before_allocation() -> None:
    # 2^63 bytes could never be allocated: reaching the check proves nothing was allocated first.
    hdr = _raw_header(code=int(MessageType.QUERY_REQUEST), length=2**63)
    with pytest.raises(ProtocolError, match="oversize"):
        read_frame(_reader(hdr))


def test_truncated_frames() -> None:
    frame = encode_frame(MessageType.STEP_DONE, b"0123456789")
    with pytest.raises(ProtocolError, match="truncated frame: stream ended after 5 of 18 header"):
        read_frame(_reader(frame[:5]))
    with pytest.raises(ProtocolError, match="truncated frame: stream ended after 4 of 10 payload"):
        read_frame(_reader(frame[:HEADER_SIZE + 4]))
    with pytest.raises(ChannelClosed):
        read_frame(_reader(b""))


def test_sender_side_limits() -> None:
    with pytest.raises(ProtocolError, match="oversize"):
        pack_header(MessageType.ERROR_REPLY, PAYLOAD_LIMITS[MessageType.ERROR_REPLY] + 1)
    with pytest.raises(ProtocolError, match="unknown message"):
        pack_header(77, 0)
    with pytest.raises(ProtocolError, match="flags"):
        pack_header(MessageType.SHUTDOWN, 0, flags=4)
