"""capc.gc.GcSession: several queries per session over socketpairs, loopback TCP, TLS and two processes."""

from __future__ import annotations

import datetime
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from capc.gc import GcInputError, GcNetworkError, GcProtocolError, GcSession
from gc_helpers import in_thread, onehot, socket_pair

pytestmark = pytest.mark.usefixtures("gc_built")
TIMEOUT = 30


def _in_thread(fn):
    return in_thread(fn, TIMEOUT)


def _pair():
    return socket_pair(TIMEOUT)


def _queries(qp_sock, ap_sock, n_queries=4, C=10, seed=0):
    """Run n argmax_share queries and one noisy_argmax; check every result against numpy."""
    rng = np.random.default_rng(seed)
    inputs = []
    for _ in range(n_queries):
        v = rng.integers(-1000, 1000, C)
        b = rng.integers(-(2 ** 63), 2 ** 63 - 1, C)
        with np.errstate(over="ignore"):
            a = v - b
        m = rng.integers(-(2 ** 63), 2 ** 63 - 1, C)
        inputs.append((v, a, b, m))
    votes = rng.integers(0, 20, C)
    M = rng.integers(-(2 ** 63), 2 ** 63 - 1, C)
    with np.errstate(over="ignore"):
        W = votes - M
    eta_g = rng.integers(-3, 3, C)

    def garbler():
        s = GcSession(ap_sock, "garbler")
        for _, _, b, m in inputs:
            assert s.argmax_share_garbler(b, m) is None
        answered = s.noisy_argmax_garbler(M, eta_g, 0, int(votes.max()))
        return answered, s

    join = _in_thread(garbler)
    qp = GcSession(qp_sock, "evaluator")
    sent = []
    for v, a, _, m in inputs:
        w = qp.argmax_share_evaluator(a)
        sent.append(qp.bytes_received)
        assert w.dtype == np.int64 and w.shape == (C,)
        with np.errstate(over="ignore"):
            assert np.array_equal(w + m, onehot(int(np.argmax(v)), C))
    answered, label = qp.noisy_argmax_evaluator(W)
    pg_answered, ap_session = join()
    assert answered is True and pg_answered is True
    assert label == int(np.argmax(votes + eta_g))
    assert qp.queries == n_queries + 1
    assert qp.bytes_sent == ap_session.bytes_received and qp.bytes_received == ap_session.bytes_sent
    return sent


def test_several_queries_over_socketpair():
    a, b = _pair()
    with a, b:
        received = _queries(a, b)
    # Base OTs run at the first query only: later queries receive 128 fewer curve points (65 bytes each).
    first = received[0]
    later = [received[i] - received[i - 1] for i in range(1, len(received))]
    assert all(first - x >= 128 * 65 for x in later)
    assert len(set(later)) == 1  # every later query costs the same


def test_queries_over_loopback_tcp():
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    join = _in_thread(lambda: srv.accept()[0])
    cli = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    conn = join()
    conn.settimeout(TIMEOUT)
    with srv, cli, conn:
        _queries(cli, conn, n_queries=3, C=100, seed=3)


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_queries_over_mutual_tls(tmp_path):
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.load_verify_locations(cert)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    client_ctx.load_cert_chain(cert, key)
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def accept():
        conn, _ = srv.accept()
        conn.settimeout(TIMEOUT)
        return server_ctx.wrap_socket(conn, server_side=True)

    join = _in_thread(accept)
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    cli = client_ctx.wrap_socket(raw, server_hostname="localhost")
    conn = join()
    with srv, cli, conn:
        _queries(cli, conn, n_queries=3, C=10, seed=5)


def test_mismatched_calls_raise_on_both_sides():
    a, b = _pair()
    with a, b:
        join = _in_thread(lambda: GcSession(b, "garbler").noisy_argmax_garbler(
            np.zeros(4, np.int64), np.zeros(4, np.int64), 0, 0))
        with pytest.raises(GcProtocolError, match="query mismatch"):
            GcSession(a, "evaluator").argmax_share_evaluator(np.zeros(4, np.int64))
        with pytest.raises(GcProtocolError, match="query mismatch"):
            join()


def test_class_count_mismatch_and_broken_session():
    a, b = _pair()
    with a, b:
        ap = GcSession(b, "garbler")
        join = _in_thread(lambda: ap.argmax_share_garbler(np.zeros(5, np.int64), np.zeros(5, np.int64)))
        qp = GcSession(a, "evaluator")
        with pytest.raises(GcProtocolError, match="size mismatch"):
            qp.argmax_share_evaluator(np.zeros(4, np.int64))
        with pytest.raises(GcProtocolError):
            join()
        with pytest.raises(GcProtocolError, match="out of sync"):
            qp.argmax_share_evaluator(np.zeros(4, np.int64))


def test_two_evaluators_fail():
    a, b = _pair()
    with a, b:
        join = _in_thread(lambda: GcSession(b, "evaluator").argmax_share_evaluator(np.zeros(3, np.int64)))
        with pytest.raises(GcProtocolError, match="both parties"):
            GcSession(a, "evaluator").argmax_share_evaluator(np.zeros(3, np.int64))
        with pytest.raises(GcProtocolError):
            join()


def test_peer_closing_raises_network_error():
    a, b = _pair()
    with a:
        b.close()
        with pytest.raises(GcNetworkError):
            GcSession(a, "evaluator").argmax_share_evaluator(np.zeros(3, np.int64))


def test_peer_silent_times_out():
    a, b = _pair()
    a.settimeout(0.5)
    with a, b:
        with pytest.raises(GcNetworkError):
            GcSession(a, "evaluator").argmax_share_evaluator(np.zeros(3, np.int64))


@pytest.mark.parametrize("call,msg", [
    (lambda s: s.argmax_share_evaluator(np.zeros((2, 2), np.int64)), "1-D"),
    (lambda s: s.argmax_share_evaluator(np.zeros(3)), "integers"),
    (lambda s: s.argmax_share_evaluator(np.zeros(0, np.int64)), "empty"),
    (lambda s: s.argmax_share_garbler(np.zeros(3, np.int64), np.zeros(3, np.int64)), "garbler"),
])
def test_bad_arguments_evaluator(call, msg):
    a, b = _pair()
    with a, b:
        s = GcSession(a, "evaluator")
        with pytest.raises(GcInputError, match=msg):
            call(s)
        assert s.bytes_sent == 0  # rejected before anything was sent


def test_bad_arguments_garbler_and_role():
    a, b = _pair()
    with a, b:
        s = GcSession(b, "garbler")
        with pytest.raises(GcInputError, match="same length"):
            s.argmax_share_garbler(np.zeros(3, np.int64), np.zeros(4, np.int64))
        with pytest.raises(GcInputError, match="eta_T"):
            s.noisy_argmax_garbler(np.zeros(3, np.int64), np.zeros(3, np.int64), 1.5, 0)
        with pytest.raises(GcInputError, match="threshold"):
            s.noisy_argmax_garbler(np.zeros(3, np.int64), np.zeros(3, np.int64), 0, 2 ** 64)
        with pytest.raises(GcInputError, match="evaluator"):
            s.noisy_argmax_evaluator(np.zeros(3, np.int64))
        with pytest.raises(GcInputError, match="role"):
            GcSession(a, "qp")
        with pytest.raises(GcInputError, match="sendall"):
            GcSession(object(), "garbler")


_GARBLER_PROCESS = r"""
import socket, sys
import numpy as np
from capc.gc import GcSession
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
s = GcSession(sock, "garbler")
b = np.array([5, 1, 9, 9], dtype=np.int64)
for q in range(3):
    s.argmax_share_garbler(b, np.full(4, 100 + q, dtype=np.int64))
print(s.noisy_argmax_garbler(np.array([0, 10, 0, 0]), np.zeros(4, np.int64), 0, 11))
"""


def test_two_processes_over_tcp():
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", _GARBLER_PROCESS, str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        srv.settimeout(TIMEOUT)
        conn, _ = srv.accept()
        conn.settimeout(TIMEOUT)
        with conn:
            qp = GcSession(conn, "evaluator")
            for q in range(3):
                w = qp.argmax_share_evaluator(np.array([0, 0, 0, 1], dtype=np.int64))
                # v = [5, 1, 9, 10] -> argmax 3
                assert w.tolist() == [-(100 + q)] * 3 + [1 - (100 + q)]
            assert qp.noisy_argmax_evaluator(np.array([0, 0, 0, 0])) == (False, None)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill() if proc.poll() is None else None
        srv.close()
    assert proc.returncode == 0, err
    assert out.strip() == "False"


def test_parallel_sessions_in_one_process():
    """A QP serving several APs at once: independent sessions in parallel threads do not interfere."""
    n_aps, C = 3, 10
    pairs = [_pair() for _ in range(n_aps)]
    rng = np.random.default_rng(42)
    data = [(rng.integers(-50, 50, C), rng.integers(-(2 ** 62), 2 ** 62, C), rng.integers(-(2 ** 62), 2 ** 62, C))
            for _ in range(n_aps)]

    def ap(j):
        s = GcSession(pairs[j][1], "garbler")
        v, b, m = data[j]
        for _ in range(3):
            s.argmax_share_garbler(b, m)

    def qp(j):
        s = GcSession(pairs[j][0], "evaluator")
        v, b, _ = data[j]
        return [s.argmax_share_evaluator(v - b) for _ in range(3)]

    joins = [_in_thread(lambda j=j: ap(j)) for j in range(n_aps)]
    qjoins = [_in_thread(lambda j=j: qp(j)) for j in range(n_aps)]
    results = [q() for q in qjoins]
    for j in joins:
        j()
    for j, ws in enumerate(results):
        v, _, m = data[j]
        for w in ws:
            with np.errstate(over="ignore"):
                assert np.array_equal(w + m, onehot(int(np.argmax(v)), C))
    for a, b in pairs:
        a.close()
        b.close()


def test_message_right_after_a_circuit_is_not_swallowed():
    """Regression: the engine reads ahead (256 KiB buffer), so a framed message the garbler sends right
    after its last 2PC byte could land in the evaluator's engine buffer and be lost (the QP then timed
    out waiting for the AP's StepDone after a hybrid model's GC layers). The engine now hands read-ahead
    bytes back to the channel after every program."""
    from capc.net.channel import channel_pair
    from capc.net.messages import StepDone

    qp, ap = channel_pair("qp-0", "ap-1")
    rng = np.random.default_rng(5)
    rounds = 12
    a, b, m = (rng.integers(-1000, 1000, (rounds, 8)) for _ in range(3))

    def garbler():
        s = GcSession(ap.raw_io(), "garbler")
        for i in range(rounds):
            s.relu_share_garbler(b[i], m[i])
            s.argmax_share_garbler(b[i][:4], m[i][:4])
            ap.send(StepDone(query_id=i, step="vote_shares_sent"))  # at once, no round trip in between
        s.close()

    join = in_thread(garbler)
    s = GcSession(qp.raw_io(), "evaluator")
    for i in range(rounds):
        y = s.relu_share_evaluator(a[i])
        assert np.array_equal(y + m[i], np.maximum(a[i] + b[i], 0))
        s.argmax_share_evaluator(a[i][:4])
        assert qp.recv(StepDone, timeout=10).query_id == i
    join()
    s.close()
    qp.close()
    ap.close()
