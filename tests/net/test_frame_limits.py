"""Frame limits by expected type: a peer cannot make a receiver buffer a large frame it does not expect.

Each test plays an authenticated but malicious peer that announces a 1 GiB ``QUERY_REQUEST``
(a type whose own limit allows it) where the receiver expects only small messages, and actually
streams payload bytes after the header. Before the fix, ``read_frame`` checked the frame against the
limit of its *own* declared type and allocated the 1 GiB buffer before the receiver looked at the
type (measured: the PG's RSS went from 49 to 1,073 MiB); the same attack then shows a tracemalloc
peak of about 1 GiB instead of the few KiB asserted here.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import tracemalloc

import pytest

from capc.net.channel import Channel, Listener, connect
from capc.net.errors import ProtocolError
from capc.net.framing import HEADER_SIZE, MAGIC, PROTOCOL_VERSION, MessageType, UnexpectedFrame, read_frame
from capc.net.messages import ErrorReply, Hello, Shutdown, VoteShare

RUN = "run-1"
GiB = 1 << 30
#: A receiver that refuses from the header may allocate a little for the error reply and TLS
#: records; a receiver that buffers the announced payload allocates 1 GiB.
MAX_PEAK = 4 << 20


def _oversized_header(mtype: MessageType = MessageType.QUERY_REQUEST, length: int = GiB) -> bytes:
    return struct.pack(">4sHHHQ", MAGIC, PROTOCOL_VERSION, int(mtype), 0, length)


def _stream(sock: socket.socket, head: bytes, total: int = 16 << 20) -> threading.Thread:
    """Send ``head`` then up to ``total`` payload bytes from a background thread, until the receiver
    hangs up (the attacker really streams, so a receiver that reads the payload would get it)."""
    chunk = b"\xa5" * (64 << 10)  # allocated once, before the receiver's measurement starts

    def run() -> None:
        try:
            sock.sendall(head)
            sent = 0
            while sent < total:
                sock.sendall(chunk)
                sent += len(chunk)
        except (OSError, ssl.SSLError):
            pass  # the receiver refused and closed: expected

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _peak_during(fn) -> tuple[int, BaseException | None]:
    """Run ``fn`` with tracemalloc on; return (peak bytes allocated during it, the exception it raised)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        err = None
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            err = e
        return tracemalloc.get_traced_memory()[1] - base, err
    finally:
        tracemalloc.stop()


def test_read_frame_refuses_unexpected_type_from_the_header() -> None:
    """Only the 18 header bytes are consumed; the error names what was expected and what came."""
    data = _oversized_header() + b"\0" * 4096
    consumed = [0]

    def recv_into(view: memoryview) -> int:
        n = min(len(view), len(data) - consumed[0])
        view[:n] = data[consumed[0]:consumed[0] + n]
        consumed[0] += n
        return n

    with pytest.raises(UnexpectedFrame, match=r"expected VOTE_SHARE or ERROR_REPLY, got QUERY_REQUEST") as ei:
        read_frame(recv_into, {MessageType.VOTE_SHARE, MessageType.ERROR_REPLY})
    assert consumed[0] == HEADER_SIZE
    assert ei.value.got is MessageType.QUERY_REQUEST and ei.value.length == GiB


def test_expected_type_still_has_its_own_limit() -> None:
    """An expected type larger than its limit is refused as oversize (the type check comes first,
    the size check still applies)."""
    head = _oversized_header(MessageType.VOTE_SHARE, 512 << 20)
    with pytest.raises(ProtocolError, match="oversize frame: VOTE_SHARE"):
        read_frame(lambda v: (v.__setitem__(slice(0, HEADER_SIZE), head), HEADER_SIZE)[1],
                   {MessageType.VOTE_SHARE})


def test_channel_refuses_oversized_unexpected_frame_without_buffering(creds, in_thread) -> None:
    """The PG's AP session (expects VoteShare or Shutdown) over mutual TLS, attacked by an
    authenticated AP: refused with expected vs got, the AP is told why, memory stays flat."""
    with Listener("127.0.0.1", 0, tls=creds["pg"], allowed_peers=["ap-1"], run_id=RUN) as lst:
        fut = in_thread(lst.accept, 10)
        ap = connect("127.0.0.1", lst.port, creds["ap-1"], "pg", 10, run_id=RUN)
        pg_side, peer = fut.result(10)
        assert peer == "ap-1"
        sender = _stream(ap._sock, _oversized_header())
        peak, err = _peak_during(lambda: pg_side.recv((VoteShare, Shutdown), timeout=10))
        assert isinstance(err, ProtocolError), err
        assert "expected VoteShare or Shutdown, got QueryRequest" in str(err)
        assert str(GiB) in str(err)
        assert peak < MAX_PEAK, f"receiver allocated {peak} bytes"
        assert pg_side.closed
        sender.join(10)
        assert not sender.is_alive()
        ap.close()


def test_socketpair_channel_refuses_and_reports(in_thread) -> None:
    """Same attack over a plain socket pair; the attacker reads the receiver's ErrorReply."""
    a, b = socket.socketpair()
    pg_side = Channel(a, peer="ap-1", local="pg", default_timeout=10)
    attacker = Channel(b, peer="pg", local="ap-1", default_timeout=10)
    with pg_side, attacker:
        b.sendall(_oversized_header())
        b.sendall(b"\x5a" * (128 << 10))  # some payload: the receiver must not read it
        peak, err = _peak_during(lambda: pg_side.recv(VoteShare, timeout=10))
        assert isinstance(err, ProtocolError) and "got QueryRequest" in str(err)
        assert peak < MAX_PEAK
        reply = attacker.recv(ErrorReply, timeout=10)
        assert reply.code == "protocol_error" and "expected VoteShare" in reply.message


def test_listener_hello_refuses_oversized_unexpected_frame(creds, in_thread) -> None:
    """A client with a valid run certificate sends, instead of its Hello, the header of a 1 GiB
    QueryRequest and streams bytes: the listener refuses it without buffering, records why,
    and accepts the next (good) client."""
    with Listener("127.0.0.1", 0, tls=creds["pg"], allowed_peers=["ap-1", "qp-0"], run_id=RUN) as lst:
        raw = socket.create_connection(("127.0.0.1", lst.port), timeout=10)
        tls = creds["ap-1"].client_context.wrap_socket(raw, server_side=False, do_handshake_on_connect=False)
        hs = in_thread(tls.do_handshake)
        accepted: list = []

        def accept_next() -> None:
            accepted.append(lst.accept(timeout=20))

        def good_client() -> None:
            hs.result(10)
            sender = _stream(tls, _oversized_header())
            # the listener handles connections one after another: this one waits behind the attack
            with connect("127.0.0.1", lst.port, creds["qp-0"], "pg", 20, run_id=RUN) as ch:
                ch.send(Shutdown())
            sender.join(10)

        client = in_thread(good_client)
        peak, err = _peak_during(accept_next)
        client.result(20)
        assert err is None, err
        ch, peer = accepted[0]
        with ch:
            assert peer == "qp-0"
        assert peak < MAX_PEAK, f"listener allocated {peak} bytes"
        refusal = lst.refusals[0]
        assert refusal.peer == "ap-1"
        assert "expected Hello, got QueryRequest" in refusal.reason
        tls.close()


def test_hello_of_normal_size_still_accepted(creds, in_thread) -> None:
    """Control: the expected-type check does not refuse the ordinary handshake."""
    with Listener("127.0.0.1", 0, tls=creds["pg"], allowed_peers=["ap-1"], run_id=RUN) as lst:
        fut = in_thread(lst.accept, 10)
        with connect("127.0.0.1", lst.port, creds["ap-1"], "pg", 10, run_id=RUN) as ch:
            srv, peer = fut.result(10)
            with srv:
                ch.send(Shutdown("bye"))
                assert srv.recv(Shutdown, timeout=10).reason == "bye"
    assert Hello.TYPE is MessageType.HELLO
