"""The engine's wire protocol (version 2): the hello refuses a peer of the other backend or of another
protocol version at once, over real sockets, naming both sides; and the bytes of a query are exactly
the garbled tables, the evaluator's OT extension and the output tables (nothing for the garbler's inputs,
no per-OT correction), below the EMP toolkit's figures for the same circuits."""

from __future__ import annotations

import struct
import subprocess

import numpy as np
import pytest

from capc.gc import GcProtocolError, GcSession, program_path
from gc_helpers import in_thread, onehot, socket_pair, write_ints

pytestmark = pytest.mark.usefixtures("gc_built")
MAGIC = b"CAPCGC\x01\x00"
BACKEND_CAPC, BACKEND_EMP = 1, 2
PROG_SESSION, PROG_ARGMAX = 1, 2


def hello(version: int = 2, backend: int = BACKEND_EMP, program: int = PROG_SESSION, size: int = 0,
          role: int = 1) -> bytes:
    """A peer's hello as the given build would send it (version 1 had no backend field)."""
    nonce = bytes(range(16))
    if version == 1:
        return MAGIC + struct.pack("<IIII", 1, program, size, role) + nonce
    return MAGIC + struct.pack("<IIIII", version, backend, program, size, role) + nonce


def recv_exact(sock, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def test_emp_backend_peer_is_refused_at_the_hello():
    """A party built with -DCAPC_GC_BACKEND=emp sends backend 2: the capc session refuses it before any
    base OT, with both backends named (it used to pass the hello and time out)."""
    qp, peer = socket_pair(10)
    with qp, peer:
        join = in_thread(lambda: recv_exact(peer, 44))
        peer.sendall(hello(backend=BACKEND_EMP, role=1))
        with pytest.raises(GcProtocolError) as err:
            GcSession(qp, "evaluator").argmax_share_evaluator(np.zeros(3, np.int64))
        msg = str(err.value)
        assert "backend mismatch" in msg
        assert "this party runs capc's garbled-circuit engine" in msg
        assert "the peer runs the EMP toolkit" in msg
        ours = join()
    # The capc party's own hello announces version 2 and backend 1 (so an EMP build refuses it too).
    assert ours[:8] == MAGIC and struct.unpack("<II", ours[8:16]) == (2, BACKEND_CAPC)


def test_older_protocol_version_is_refused_without_waiting():
    """A version-1 peer's hello is 40 bytes, ours 44: the version is read first, so the refusal comes at
    once instead of waiting for bytes that never come."""
    ap, peer = socket_pair(10)
    with ap, peer:
        peer.sendall(hello(version=1, role=2))
        with pytest.raises(GcProtocolError, match="protocol version mismatch: the peer speaks version 1.*"
                                                  "speaks version 2"):
            GcSession(ap, "garbler").argmax_share_garbler(np.zeros(3, np.int64), np.zeros(3, np.int64))


def test_program_refuses_emp_backend_peer(tmp_path):
    """The standalone programs do the same over TCP: the evaluator connects to a listener that answers
    with an EMP build's hello, and exits 1 naming both backends."""
    import socket

    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    srv.settimeout(10)

    def emp_listener():
        conn, _ = srv.accept()
        with conn:
            conn.sendall(hello(backend=BACKEND_EMP, program=PROG_ARGMAX, size=2, role=1))
            return recv_exact(conn, 44)

    join = in_thread(emp_listener)
    qp_in = write_ints(tmp_path / "qp.txt", [1, 2])
    r = subprocess.run([str(program_path("argmax_share")), "2", str(port), str(qp_in), "--io-timeout", "10"],
                       capture_output=True, text=True, timeout=30)
    join()
    srv.close()
    assert r.returncode == 1
    assert "backend mismatch" in r.stderr and "EMP toolkit" in r.stderr and "capc's" in r.stderr


def _argmax_ands(C: int) -> int:
    return 63 * C + 128 * (C - 1) + max(C - 2, 0)


@pytest.mark.parametrize("C,emp_bytes", [(10, 91_000), (100, 970_000)])
def test_argmax_query_bytes(C, emp_bytes):
    """A warm argmax_share query costs exactly 32 B per AND gate, 16 B per OT (the QP's 64 C input bits),
    16 B of output table per class and the two 20-byte query headers; below EMP's bytes for C classes."""
    qp_sock, ap_sock = socket_pair()
    rng = np.random.default_rng(C)
    v = rng.integers(-1000, 1000, C)
    b = rng.integers(-(2 ** 62), 2 ** 62, C)
    m = rng.integers(-(2 ** 62), 2 ** 62, C)

    def garbler():
        s = GcSession(ap_sock, "garbler")
        for _ in range(3):
            s.argmax_share_garbler(b, m)
        s.close()
        assert s.and_gates == 3 * _argmax_ands(C)  # kept after close, as the byte counters

    join = in_thread(garbler)
    with qp_sock, ap_sock:
        qp = GcSession(qp_sock, "evaluator")
        per_query, gates = [], []
        for _ in range(3):
            before, g0 = qp.bytes_sent + qp.bytes_received, qp.and_gates
            w = qp.argmax_share_evaluator(v - b)
            per_query.append(qp.bytes_sent + qp.bytes_received - before)
            gates.append(qp.and_gates - g0)
            with np.errstate(over="ignore"):
                assert np.array_equal(w + m, onehot(int(np.argmax(v)), C))
        join()
    ot = -(-64 * C // 128) * 128 * 16
    want = 32 * _argmax_ands(C) + ot + 16 * C + 2 * 20
    assert per_query[1] == per_query[2] == want
    assert gates == [_argmax_ands(C)] * 3
    assert want < emp_bytes


def test_relu_layer_bytes_at_the_hybrids_widths():
    """relu_share on 26/49-bit registers: per value 16 B for each of the QP's 26 input bits, 32 B for each of
    its 50 AND gates and 254 B of output tables (25 wires, 2 * ceil((49 - k) / 8) bytes for wire k)."""
    from capc.he.hybrid import GC_WIDTHS

    n = 4096  # one round; 26 * 4096 OTs need no padding
    rng = np.random.default_rng(7)
    v = rng.integers(-(2 ** 22), 2 ** 22, n)
    b = rng.integers(-(2 ** 62), 2 ** 62, n)
    m = rng.integers(-(2 ** 46), 2 ** 46, n)
    qp_sock, ap_sock = socket_pair()

    def garbler():
        s = GcSession(ap_sock, "garbler")
        s.relu_share_garbler(b, m, **GC_WIDTHS)
        s.relu_share_garbler(b, m, **GC_WIDTHS)

    join = in_thread(garbler)
    with qp_sock, ap_sock:
        qp = GcSession(qp_sock, "evaluator")
        qp.relu_share_evaluator(v - b, **GC_WIDTHS)
        before = qp.bytes_sent + qp.bytes_received
        y = qp.relu_share_evaluator(v - b, **GC_WIDTHS)
        used = qp.bytes_sent + qp.bytes_received - before
        join()
    assert np.array_equal(y + m, np.maximum(v, 0))
    tables = sum(2 * -(-(49 - k) // 8) for k in range(25))
    assert tables == 254
    assert used == n * (26 * 16 + 50 * 32 + tables) + 2 * (20 + 12)  # headers carry shift, in_bits, out_bits
