"""Integration: mutual-TLS channels over real sockets on 127.0.0.1 with real certificates."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import numpy as np
import pytest

from capc.net.framing import PROTOCOL_VERSION

from capc.net.channel import Listener, connect
from capc.net.errors import (ChannelTimeout, ConnectError, PeerAuthError, PeerError, ProtocolError)
from capc.net.framing import MAGIC, MessageType
from capc.net.messages import (NoisyArgmaxRequest, PublicContext, QueryRequest, QueryResult,
                               Shutdown, StepDone, VoteShare)
from capc.net.tls import PartyTLS, make_client_context, make_server_context

RUN = "run-1"


def _listener(creds, name="pg", allowed=("qp-0", "ap-1"), **kw) -> Listener:
    return Listener("127.0.0.1", 0, tls=creds[name], allowed_peers=allowed, run_id=RUN, **kw)


def test_listener_binds_loopback_and_reports_port(creds) -> None:
    with _listener(creds) as lst:
        assert lst.port > 0 and lst._sock.getsockname()[0] == "127.0.0.1"
        assert lst.address == f"127.0.0.1:{lst.port}"


def test_happy_path_both_directions(creds, in_thread) -> None:
    with _listener(creds) as lst:
        def server():
            ch, peer = lst.accept(timeout=10)
            with ch:
                assert ch._sock.version() == "TLSv1.3"
                share = ch.recv(VoteShare, timeout=10)
                ch.send(StepDone(int(share.query_ids[0]), "vote_share"))
                ch.send(PublicContext(b"ctx" * 1000, {"n": 8192}))
                assert ch.recv(Shutdown, timeout=10).reason == "done"
                return peer, share
        fut = in_thread(server)
        with connect("127.0.0.1", lst.port, creds["ap-1"], "pg", 10, run_id=RUN) as ch:
            ch.send(VoteShare("qp-0", [4], 3, np.array([[2**64 - 1, 0, 7]], dtype=np.uint64)))
            assert ch.recv(StepDone, timeout=10).step == "vote_share"
            assert ch.recv(PublicContext, timeout=10).params == {"n": 8192}
            ch.send(Shutdown("done"))
            peer, share = fut.result(10)
        assert peer == "ap-1"
        assert share.shares[0].tolist() == [2**64 - 1, 0, 7]


def test_raw_io_over_tls(creds, in_thread) -> None:
    with _listener(creds, name="ap-1", allowed=("qp-0",)) as lst:
        data = np.random.default_rng(1).bytes(300_000)

        def server():
            ch, _ = lst.accept(timeout=10)
            with ch:
                ch.recv(QueryRequest, timeout=10)
                io = ch.raw_io(timeout=10)
                got = io.recv_exact(len(data))
                io.sendall(got[::-1])
                ch.send(QueryResult([1], (b"r",)))
                return got == data
        fut = in_thread(server)
        with connect("127.0.0.1", lst.port, creds["qp-0"], "ap-1", 10, run_id=RUN) as ch:
            ch.send(QueryRequest([1], (b"q",), 10, 8))
            io = ch.raw_io(timeout=10)
            io.sendall(data)
            assert io.recv_exact(len(data)) == data[::-1]
            assert ch.recv(QueryResult, timeout=10).ciphertexts == (b"r",)
        assert fut.result(10)


def _serve_good_after(lst: Listener):
    """Accept connections until a good one arrives; reply and return its peer name."""
    ch, peer = lst.accept(timeout=20)
    with ch:
        ch.recv(Shutdown, timeout=10)
    return peer


def _good_client(lst: Listener, creds) -> None:
    with connect("127.0.0.1", lst.port, creds["qp-0"], "pg", 10, run_id=RUN) as ch:
        ch.send(Shutdown())


def _creds_without_cert(pki_dir: Path) -> PartyTLS:
    base = PartyTLS.load(pki_dir, "qp-0")
    return PartyTLS(name="qp-0", ca_file=base.ca_file, cert_file=base.cert_file,
                    key_file=base.key_file,
                    client_context=make_client_context(pki_dir / "ca.pem", None, None),
                    server_context=base.server_context)


def _creds_foreign_cert(pki_dir: Path, other: Path) -> PartyTLS:
    """Trusts this run's CA but presents a certificate from another CA."""
    base = PartyTLS.load(pki_dir, "qp-0")
    return PartyTLS(name="qp-0", ca_file=base.ca_file, cert_file=other / "qp-0.pem",
                    key_file=other / "qp-0.key",
                    client_context=make_client_context(pki_dir / "ca.pem", other / "qp-0.pem",
                                                       other / "qp-0.key"),
                    server_context=base.server_context)


@pytest.mark.parametrize("case", ["no_cert", "foreign_ca", "not_allowed", "wrong_run"])
def test_bad_clients_are_refused_and_listener_keeps_serving(case, creds, pki_dir, other_pki_dir,
                                                            in_thread) -> None:
    with _listener(creds, allowed=("qp-0", "ap-1")) as lst:
        fut = in_thread(_serve_good_after, lst)
        if case == "no_cert":
            bad, expect, server_reason = (_creds_without_cert(pki_dir), "certificate required",
                                          "TLS handshake failed")
        elif case == "foreign_ca":
            bad, expect, server_reason = (_creds_foreign_cert(pki_dir, other_pki_dir), "unknown ca",
                                          "TLS handshake failed")
        elif case == "not_allowed":
            bad, expect, server_reason = (creds["ap-2"], "party 'ap-2' is not allowed",
                                          "party 'ap-2' is not allowed")
        else:
            bad, expect, server_reason = creds["ap-1"], "run id 'other-run'", "does not match this run"
        run = "other-run" if case == "wrong_run" else RUN
        with pytest.raises(PeerAuthError, match=expect) as ei:
            connect("127.0.0.1", lst.port, bad, "pg", 10, run_id=run)
        assert "pg at 127.0.0.1" in str(ei.value)
        _good_client(lst, creds)
        assert fut.result(20) == "qp-0"
        assert len(lst.refusals) == 1
        assert server_reason in lst.refusals[0].reason


def test_client_refuses_server_from_other_ca(pki_dir, other_pki_dir, creds, in_thread) -> None:
    foreign = PartyTLS.load(other_pki_dir, "pg")  # a "pg" certified by another run's CA
    lst = Listener("127.0.0.1", 0, tls=foreign, allowed_peers=None, run_id=RUN)
    with lst:
        fut = in_thread(lst.accept, 0.5)
        with pytest.raises(PeerAuthError, match="refused the certificate of pg at 127.0.0.1.*"
                                                "not issued by this run's CA"):
            connect("127.0.0.1", lst.port, creds["qp-0"], "pg", 10, run_id=RUN)
        with pytest.raises(ChannelTimeout, match="refused meanwhile: 127.0.0.1.*TLS handshake failed"):
            fut.result(10)


def test_client_refuses_server_with_wrong_name(creds, in_thread) -> None:
    with _listener(creds, name="ap-2", allowed=None) as lst:
        fut = in_thread(lst.accept, 0.5)
        with pytest.raises(PeerAuthError, match="peer certificate names 'ap-2', expected 'pg'"):
            connect("127.0.0.1", lst.port, creds["qp-0"], "pg", 10, run_id=RUN)
        with pytest.raises(ChannelTimeout, match="unexpected_peer"):
            fut.result(10)
        assert lst.refusals[0].peer == "qp-0"


def _open_and_send_garbage(lst: Listener, creds, garbage: bytes) -> str:
    ch = connect("127.0.0.1", lst.port, creds["qp-0"], "pg", 10, run_id=RUN)
    with ch:
        ch.raw_io(timeout=5).sendall(garbage)
        try:
            ch.recv(Shutdown, timeout=5)
        except PeerError as e:
            return e.code
        except Exception as e:  # the server may close before its reply is read
            return type(e).__name__
    return "no error"


def test_malformed_frames_over_tls_server_stays_up(creds, in_thread) -> None:
    import struct

    cases = [
        (b"\x16\x03\x01 not capc at all.", "bad frame magic"),
        (struct.pack(">4sHHHQ", MAGIC, 7, int(MessageType.SHUTDOWN), 0, 0), "wrong protocol version 7"),
        (struct.pack(">4sHHHQ", MAGIC, PROTOCOL_VERSION, 300, 0, 0), "unknown message type code 300"),
        (struct.pack(">4sHHHQ", MAGIC, PROTOCOL_VERSION, int(MessageType.SHUTDOWN), 0, 1 << 33), "oversize frame"),
        (struct.pack(">4sHHHQ", MAGIC, PROTOCOL_VERSION, int(MessageType.QUERY_REQUEST), 0, 1 << 30),
         "expected Shutdown, got QueryRequest"),
    ]
    with _listener(creds) as lst:
        def server():
            seen = []
            for _ in cases:
                ch, _peer = lst.accept(timeout=10)
                with pytest.raises(ProtocolError) as ei:
                    ch.recv(Shutdown, timeout=10)
                seen.append(str(ei.value))
            ch, _peer = lst.accept(timeout=10)
            with ch:
                ch.recv(NoisyArgmaxRequest, timeout=10)
                ch.send(StepDone(1, "noisy_argmax"))
            return seen
        fut = in_thread(server)
        codes = [_open_and_send_garbage(lst, creds, g) for g, _ in cases]
        with connect("127.0.0.1", lst.port, creds["qp-0"], "pg", 10, run_id=RUN) as ch:
            ch.send(NoisyArgmaxRequest("qp-0", [1], [3], 10))
            assert ch.recv(StepDone, timeout=10).ok
        seen = fut.result(20)
    for (_, match), msg in zip(cases, seen):
        assert match in msg and "qp-0" in msg
    assert codes == ["protocol_error"] * len(cases)  # every client read the server's explanation


def test_silent_client_does_not_block_listener(creds, in_thread) -> None:
    with _listener(creds, handshake_timeout=0.2) as lst:
        fut = in_thread(_serve_good_after, lst)
        silent = socket.create_connection(("127.0.0.1", lst.port))
        try:
            # the listener gives up on the silent client after 0.2 s and then serves the good one
            _good_client(lst, creds)
            assert fut.result(20) == "qp-0"
            assert "not finished within 0.2s" in lst.refusals[0].reason
        finally:
            silent.close()


def test_accept_timeout(creds) -> None:
    with _listener(creds) as lst:
        with pytest.raises(ChannelTimeout, match=r"pg timed out after 0.05s waiting on 127.0.0.1:\d+ "
                                                 r"for a connection from ap-1, qp-0"):
            lst.accept(timeout=0.05)


def test_recv_timeout_over_tls(creds, in_thread) -> None:
    with _listener(creds) as lst:
        fut = in_thread(lst.accept, 10)
        with connect("127.0.0.1", lst.port, creds["qp-0"], "pg", 10, run_id=RUN) as ch:
            srv, _ = fut.result(10)
            with srv:
                with pytest.raises(ChannelTimeout, match="waiting for StepDone from pg"):
                    ch.recv(StepDone, timeout=0.05)
                srv.send(StepDone(2, "x"))
                assert ch.recv(StepDone, timeout=10).query_id == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connect_retries_until_listener_appears(creds, in_thread) -> None:
    port = _free_port()
    first_failure = threading.Event()
    attempts: list[int] = []

    def on_retry(attempt: int, err: BaseException) -> None:
        attempts.append(attempt)
        first_failure.set()

    def late_server():
        # bind `port` only after the client's first attempt was refused
        assert first_failure.wait(10)
        with Listener("127.0.0.1", port, tls=creds["pg"], allowed_peers=["qp-0"], run_id=RUN) as lst:
            ch, peer = lst.accept(timeout=10)
            with ch:
                ch.send(StepDone(0, "ready"))
            return peer

    fut = in_thread(late_server)
    with connect("127.0.0.1", port, creds["qp-0"], "pg", 15, run_id=RUN, on_retry=on_retry) as ch:
        assert ch.recv(StepDone, timeout=10).step == "ready"
    assert attempts[0] == 1
    assert fut.result(10) == "qp-0"


def test_connect_fails_clearly_at_deadline(creds) -> None:
    port = _free_port()
    with pytest.raises(ConnectError, match=rf"could not connect to pg at 127.0.0.1:{port} within "
                                           r"0.3s \(\d+ attempts; last error: .*refused"):
        connect("127.0.0.1", port, creds["qp-0"], "pg", 0.3, run_id=RUN)


def test_contexts_are_tls13_mutual(pki_dir) -> None:
    s = make_server_context(pki_dir / "ca.pem", pki_dir / "pg.pem", pki_dir / "pg.key")
    c = make_client_context(pki_dir / "ca.pem", pki_dir / "qp-0.pem", pki_dir / "qp-0.key")
    for ctx in (s, c):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
        assert ctx.verify_mode == ssl.CERT_REQUIRED
        assert len(ctx.get_ca_certs()) == 1
