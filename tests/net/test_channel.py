"""Channels over the in-memory socketpair: messages, deadlines, raw 2PC bytes, malformed input."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from capc.net.framing import PROTOCOL_VERSION

from capc.net.channel import channel_pair
from capc.net.errors import ChannelClosed, ChannelTimeout, PeerError, ProtocolError
from capc.net.framing import MAGIC, MessageType, encode_frame
from capc.net.messages import (ErrorReply, GcStart, QueryRequest, QueryResult, Shutdown, StepDone,
                               VoteShare)


def test_messages_both_directions_and_counters() -> None:
    qp, ap = channel_pair("qp-0", "ap-1")
    with qp, ap:
        qp.send(QueryRequest([3], (b"ct0", b"ct1"), 10, 8))
        req = ap.recv(QueryRequest, timeout=5)
        assert req.ciphertexts == (b"ct0", b"ct1") and req.num_classes == 10
        ap.send(QueryResult([3], (b"res",)))
        assert qp.recv((QueryResult, StepDone), timeout=5).ciphertexts == (b"res",)
        assert qp.bytes_sent == ap.bytes_received > 0
        assert ap.bytes_sent == qp.bytes_received > 0
        assert qp.stats()["messages_sent"] == 1 and qp.stats()["messages_received"] == 1
        assert (qp.peer, ap.peer) == ("ap-1", "qp-0")


def test_recv_timeout_names_peer_and_awaited_type_and_channel_survives() -> None:
    qp, ap = channel_pair("qp-0", "pg")
    with qp, ap:
        with pytest.raises(ChannelTimeout, match="waiting for VoteShare or StepDone from pg"):
            qp.recv((VoteShare, StepDone), timeout=0.02)
        # nothing was consumed, so the channel still works
        ap.send(StepDone(1, "vote_share"))
        assert qp.recv(StepDone, timeout=5).step == "vote_share"


def test_send_timeout_when_peer_does_not_read(in_thread) -> None:
    qp, ap = channel_pair("qp-0", "ap-1")
    with qp, ap:
        big = QueryRequest([1], (b"\0" * (8 << 20),), 10, 8)
        with pytest.raises(ChannelTimeout, match="sending QUERY_REQUEST to ap-1"):
            qp.send(big, timeout=0.05)
        with pytest.raises(ChannelClosed, match="unusable"):
            qp.send(Shutdown())


def test_large_message_through_a_thread(in_thread) -> None:
    qp, ap = channel_pair("qp-0", "ap-1")
    with qp, ap:
        blob = np.random.default_rng(0).bytes(3 << 20)
        fut = in_thread(ap.recv, QueryRequest, 10)
        qp.send(QueryRequest([1], (blob,), 10, 8), timeout=10)
        assert fut.result(10).ciphertexts == (blob,)


def test_unexpected_type_and_error_reply() -> None:
    qp, ap = channel_pair("qp-0", "ap-1")
    with qp, ap:
        ap.send(Shutdown("bye"))
        with pytest.raises(ProtocolError, match="from ap-1: expected QueryResult, got Shutdown"):
            qp.recv(QueryResult, timeout=5)
        # the frame was refused unread, so the channel is closed and the sender told why
        assert qp.closed
        reply = ap.recv(ErrorReply, timeout=5)
        assert reply.code == "protocol_error" and "got Shutdown" in reply.message
    qp, ap = channel_pair("qp-0", "ap-1")
    with qp, ap:
        ap.send(ErrorReply("budget_exhausted", "no budget left"))
        with pytest.raises(PeerError, match="ap-1 reported error 'budget_exhausted': no budget left"):
            qp.recv(QueryResult, timeout=5)
        ap.send(ErrorReply("x", "y"))
        assert qp.recv(ErrorReply, timeout=5).code == "x"


def test_closed_peer() -> None:
    qp, ap = channel_pair("qp-0", "ap-1")
    ap.close()
    with pytest.raises(ChannelClosed, match="ap-1 closed the connection while we awaited QueryResult"):
        qp.recv(QueryResult, timeout=5)
    qp.close()
    with pytest.raises(ChannelClosed, match="closed"):
        qp.send(Shutdown())


def test_raw_io_between_framed_messages() -> None:
    qp, ap = channel_pair("qp-0", "ap-1")
    with qp, ap:
        qp.send(GcStart([5], "argmax_share", 10, {"bits": 64}))
        start = ap.recv(GcStart, timeout=5)
        assert start.options == {"bits": 64}
        q_io, a_io = qp.raw_io(timeout=5), ap.raw_io(timeout=5, buffered=True)
        payload = bytes(range(256)) * 10
        q_io.sendall(payload)  # unbuffered: on the wire at once
        a_io.sendall(b"garbled")
        a_io.sendall(b" tables")
        assert a_io.recv_exact(len(payload)) == payload  # reading flushes a_io's queued bytes
        buf = bytearray(64)
        n = q_io.recv_into(buf, 7)
        assert 1 <= n <= 7
        rest = q_io.recv_exact(14 - n)
        assert bytes(buf[:n]) + rest == b"garbled tables"
        # framed messages resume exactly where the raw bytes end
        ap.send(StepDone(5, "argmax_share"))
        assert qp.recv(StepDone, timeout=5).query_id == 5
        assert qp.bytes_received == ap.bytes_sent


def test_raw_io_flush_and_buffering(in_thread) -> None:
    qp, ap = channel_pair("qp-0", "ap-1")
    with qp, ap:
        io = qp.raw_io(timeout=5, buffered=True)
        io.sendall(b"abc")
        assert qp.bytes_sent == 0  # queued, not yet written
        io.flush()
        assert qp.bytes_sent == 3
        assert ap.raw_io(timeout=5).recv_exact(3) == b"abc"
        a_io = ap.raw_io(timeout=5)
        fut = in_thread(lambda: (a_io.recv_exact((100 << 10) + 4), ap.recv(StepDone, timeout=5)))
        io.sendall(b"x" * (100 << 10))  # beyond the 64 KiB buffer: written at once
        assert qp.bytes_sent == 3 + (100 << 10)
        io.sendall(b"tail")
        qp.send(StepDone(1, "argmax_share"))  # a framed message flushes pending raw bytes first
        raw, done = fut.result(10)
        assert raw[-4:] == b"tail" and done.step == "argmax_share"


def test_raw_io_timeout() -> None:
    qp, ap = channel_pair("qp-0", "ap-1")
    with qp, ap:
        with pytest.raises(ChannelTimeout, match="2PC bytes from ap-1"):
            qp.raw_io(timeout=0.02).recv_exact(4)


@pytest.mark.parametrize("garbage, match", [
    (b"GET / HTTP/1.1\r\n\r\n", "bad frame magic"),
    (struct.pack(">4sHHHQ", MAGIC, 9, int(MessageType.SHUTDOWN), 0, 0), "wrong protocol version 9"),
    (struct.pack(">4sHHHQ", MAGIC, PROTOCOL_VERSION, 4242, 0, 0), "unknown message type code 4242"),
    (struct.pack(">4sHHHQ", MAGIC, PROTOCOL_VERSION, int(MessageType.SHUTDOWN), 0, 1 << 40), "oversize frame"),
    (encode_frame(MessageType.SHUTDOWN, b"\0\0\0\x02{}"), "must be an object with keys"),
])
def test_malformed_input_raises_and_informs_peer(garbage: bytes, match: str) -> None:
    qp, ap = channel_pair("qp-0", "ap-1")
    with qp, ap:
        qp.raw_io(timeout=5).sendall(garbage)
        with pytest.raises(ProtocolError, match=match):
            ap.recv(Shutdown, timeout=5)
        assert ap.closed
        with pytest.raises(PeerError, match="protocol_error"):
            qp.recv(Shutdown, timeout=5)


def test_truncated_frame_then_close() -> None:
    qp, ap = channel_pair("qp-0", "ap-1")
    with ap:
        io = qp.raw_io(timeout=5, buffered=True)
        io.sendall(encode_frame(MessageType.STEP_DONE, b"x" * 100)[:50])
        qp.close()  # close flushes queued raw bytes
        with pytest.raises(ProtocolError, match="truncated frame"):
            ap.recv(StepDone, timeout=5)
