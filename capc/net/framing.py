"""Length-prefixed frames: the unit every capc message travels in.

Wire format (all integers big-endian), 18 bytes of header then the payload::

    magic    4 bytes   b"CAPC"
    version  uint16    PROTOCOL_VERSION (a peer speaking another version is refused)
    type     uint16    a MessageType code
    flags    uint16    reserved, must be 0
    length   uint64    payload length in bytes

Each message type has a payload size limit (small for control messages, large for HE contexts and
ciphertexts) and no frame may exceed :data:`GLOBAL_MAX_PAYLOAD`. The header is fully checked before
the payload buffer is allocated, so a peer cannot make us allocate a size it merely claims. A receiver
names the types it expects: a frame of any other type is refused from its header alone, so that an
authenticated peer cannot make us buffer a large payload of a type we would throw away anyway (only
the expected types' limits apply).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import IntEnum

from capc.net.errors import ChannelClosed, ProtocolError

MAGIC = b"CAPC"
#: 2: one query is a batch of one (every request carries a list of ids); 3: hybrid segments; 4: single-query
#: layouts with spread, complex packing and the conjugation key, residue-plane single queries, paired lane
#: sums, spooled batch queries named by a chunked digest (a peer of version 3 would lay queries out
#: differently)
PROTOCOL_VERSION = 4
HEADER = struct.Struct(">4sHHHQ")
HEADER_SIZE = HEADER.size

KiB = 1024
MiB = 1024 * KiB

#: Largest payload of any frame. Public HE contexts with the Galois keys capc's inference plan needs
#: are 50-175 MB; a batched one-ciphertext-per-pixel 28x28 query at N = 16384 is about 0.7-1.4 GB
#: (only QUERY_REQUEST may be that large).
GLOBAL_MAX_PAYLOAD = 1536 * MiB
CONTROL_MAX_PAYLOAD = 64 * KiB


class MessageType(IntEnum):
    """Wire codes of the capc message types (see :mod:`capc.net.messages`)."""

    HELLO = 1
    HELLO_ACK = 2
    PUBLIC_CONTEXT = 3
    QUERY_REQUEST = 4
    QUERY_RESULT = 5
    GC_START = 6
    VOTE_SHARE = 7
    NOISY_ARGMAX_REQUEST = 8
    STEP_DONE = 9
    ERROR_REPLY = 10
    SHUTDOWN = 11
    MODEL_PLAN = 12
    BUDGET_RESERVED = 15


#: Per-type payload limits in bytes.
PAYLOAD_LIMITS: dict[MessageType, int] = {
    MessageType.HELLO: CONTROL_MAX_PAYLOAD,
    MessageType.HELLO_ACK: CONTROL_MAX_PAYLOAD,
    MessageType.PUBLIC_CONTEXT: 512 * MiB,
    MessageType.QUERY_REQUEST: GLOBAL_MAX_PAYLOAD,
    MessageType.QUERY_RESULT: 256 * MiB,
    MessageType.GC_START: 1 * MiB,
    MessageType.VOTE_SHARE: 256 * MiB,
    MessageType.NOISY_ARGMAX_REQUEST: 4 * MiB,
    MessageType.STEP_DONE: CONTROL_MAX_PAYLOAD,
    MessageType.ERROR_REPLY: CONTROL_MAX_PAYLOAD,
    MessageType.SHUTDOWN: CONTROL_MAX_PAYLOAD,
    MessageType.MODEL_PLAN: 16 * MiB,
    MessageType.BUDGET_RESERVED: CONTROL_MAX_PAYLOAD,
}
assert set(PAYLOAD_LIMITS) == set(MessageType)
assert max(PAYLOAD_LIMITS.values()) <= GLOBAL_MAX_PAYLOAD


@dataclass(frozen=True)
class FrameHeader:
    """A validated frame header."""

    type: MessageType
    flags: int
    length: int
    version: int = PROTOCOL_VERSION


def type_name(code: int) -> str:
    """Return the name of a message type code, or ``"type <code>"`` if it is unknown."""
    try:
        return MessageType(code).name
    except ValueError:
        return f"type {code}"


def check_payload_size(mtype: MessageType, length: int) -> None:
    """Raise :class:`ProtocolError` if ``length`` exceeds the limit of ``mtype`` or the global limit."""
    limit = min(PAYLOAD_LIMITS[mtype], GLOBAL_MAX_PAYLOAD)
    if length > limit:
        raise ProtocolError(f"oversize frame: {mtype.name} payload of {length} bytes exceeds its "
                            f"limit of {limit} bytes")


def pack_header(mtype: MessageType | int, length: int, flags: int = 0) -> bytes:
    """Return the 18-byte header of a frame, refusing sizes and flags the receiver would refuse."""
    try:
        mt = MessageType(mtype)
    except ValueError:
        raise ProtocolError(f"cannot send unknown message {type_name(int(mtype))}") from None
    if flags != 0:
        raise ProtocolError(f"frame flags must be 0 in protocol version {PROTOCOL_VERSION}, got {flags}")
    if length < 0:
        raise ProtocolError(f"negative payload length {length}")
    check_payload_size(mt, length)
    return HEADER.pack(MAGIC, PROTOCOL_VERSION, int(mt), flags, length)


class UnexpectedFrame(ProtocolError):
    """A frame header announced a message type the receiver does not expect at this point; its
    payload was not read. ``got`` is the announced type, ``length`` its announced payload size."""

    def __init__(self, message: str, got: MessageType, length: int) -> None:
        super().__init__(message)
        self.got = got
        self.length = length


def describe_types(types: Collection[MessageType]) -> str:
    """``"A or B"`` for a set of message types, in wire-code order."""
    return " or ".join(t.name for t in sorted(types)) or "no message"


def unpack_header(data: bytes | bytearray | memoryview,
                  expected: Collection[MessageType] | None = None) -> FrameHeader:
    """Parse and validate an 18-byte frame header.

    Checks, in order: magic, protocol version, message type (known, and one of ``expected`` unless
    that is None), flags, payload size limit of that type. Raises :class:`ProtocolError` naming the
    first thing that is wrong.
    """
    if len(data) != HEADER_SIZE:
        raise ProtocolError(f"truncated frame header: {len(data)} of {HEADER_SIZE} bytes")
    magic, version, code, flags, length = HEADER.unpack(data)
    if magic != MAGIC:
        raise ProtocolError(f"bad frame magic {bytes(magic)!r} (expected {MAGIC!r}); "
                            "the peer is not speaking the capc protocol")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"wrong protocol version {version} (this party speaks version "
                            f"{PROTOCOL_VERSION})")
    try:
        mtype = MessageType(code)
    except ValueError:
        raise ProtocolError(f"unknown message type code {code}") from None
    if expected is not None and mtype not in expected:
        raise UnexpectedFrame(f"unexpected message: expected {describe_types(expected)}, got {mtype.name} "
                              f"(announcing a {length}-byte payload, refused unread)", mtype, length)
    if flags != 0:
        raise ProtocolError(f"unsupported frame flags 0x{flags:04x} on {mtype.name} (must be 0)")
    check_payload_size(mtype, length)
    return FrameHeader(type=mtype, flags=flags, length=length, version=version)


def encode_frame(mtype: MessageType | int, payload: bytes | bytearray | memoryview,
                 flags: int = 0) -> bytes:
    """Return header + payload as one bytes object."""
    return pack_header(mtype, len(payload), flags) + bytes(payload)


def read_frame(recv_into: Callable[[memoryview], int],
               expected: Collection[MessageType] | None = None) -> tuple[FrameHeader, bytearray]:
    """Read one frame through ``recv_into`` (socket-like: fills a buffer, returns 0 at end of stream).

    ``expected`` is the set of message types the caller can accept here (None: any type). A frame of
    another type is refused with a :class:`ProtocolError` naming expected and received types before
    a single payload byte is read or allocated.

    Raises :class:`ChannelClosed` if the stream ends before the first header byte (a clean close at a
    frame boundary) and :class:`ProtocolError` if it ends inside a frame or the header is invalid.
    The payload buffer is allocated only after the header passed its type and size checks.
    """
    head = bytearray(HEADER_SIZE)
    got = _fill(recv_into, memoryview(head))
    if got == 0:
        raise ChannelClosed("peer closed the connection")
    if got < HEADER_SIZE:
        raise ProtocolError(f"truncated frame: stream ended after {got} of {HEADER_SIZE} header bytes")
    header = unpack_header(head, expected)
    payload = bytearray(header.length)
    got = _fill(recv_into, memoryview(payload))
    if got < header.length:
        raise ProtocolError(f"truncated frame: stream ended after {got} of {header.length} payload "
                            f"bytes of {header.type.name}")
    return header, payload


def _fill(recv_into: Callable[[memoryview], int], view: memoryview) -> int:
    """Fill ``view`` completely unless the stream ends; return the number of bytes read."""
    n = 0
    total = len(view)
    while n < total:
        k = recv_into(view[n:])
        if k == 0:
            break
        n += k
    return n
