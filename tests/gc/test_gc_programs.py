"""The standalone 2PC programs as real process pairs over loopback TCP: correctness, bad input, leaks."""

from __future__ import annotations

import numpy as np
import pytest

from gc_helpers import Relay, onehot, read_ints, run_pair, wrap, write_ints

pytestmark = pytest.mark.usefixtures("gc_built")
I64_MIN, I64_MAX = -(2 ** 63), 2 ** 63 - 1


def _argmax_share(tmp_path, port, a, b, m, **env):
    qp_in = write_ints(tmp_path / "qp.txt", a)
    ap_in = write_ints(tmp_path / "ap.txt", list(b) + list(m))
    out = tmp_path / "w.txt"
    ra, rb = run_pair("argmax_share", [str(ap_in)], [str(qp_in), str(out)], port, **env)
    assert ra.returncode == 0, ra.stderr
    assert rb.returncode == 0, rb.stderr
    return np.array(read_ints(out), dtype=np.int64), ra, rb


@pytest.mark.parametrize("C", [2, 10, 100])
def test_argmax_share_outputs_valid_shares(tmp_path, free_port, C):
    rng = np.random.default_rng(C)
    v = rng.integers(-10 ** 6, 10 ** 6, C)
    b = rng.integers(I64_MIN, I64_MAX, C, endpoint=True)
    a = wrap(v.astype(object) - b.astype(object))
    m = rng.integers(I64_MIN, I64_MAX, C, endpoint=True)
    w, ra, rb = _argmax_share(tmp_path, free_port, a, b, m)
    assert w.shape == (C,)
    with np.errstate(over="ignore"):
        assert np.array_equal(w + m, onehot(int(np.argmax(v)), C))


@pytest.mark.parametrize("side", ["alice_env", "bob_env"])
def test_aesni_and_openssl_paths_interoperate(tmp_path, free_port, side):
    """One party forced onto the OpenSSL AES path, the other on AES-NI (when present): same results."""
    C = 10
    rng = np.random.default_rng(11)
    v = rng.integers(-500, 500, C)
    b = rng.integers(-(2 ** 60), 2 ** 60, C)
    m = rng.integers(-(2 ** 60), 2 ** 60, C)
    w, _, _ = _argmax_share(tmp_path, free_port, v - b, b, m, **{side: {"CAPC_GC_NO_AESNI": "1"}})
    assert np.array_equal(w + m, onehot(int(np.argmax(v)), C))


def test_argmax_share_ties_and_extremes(tmp_path, free_port):
    # v = [MIN, MAX, MAX, -1]: the lowest index of the maximum wins; the sum wraps mod 2^64.
    v = [I64_MIN, I64_MAX, I64_MAX, -1]
    b = [5, -(2 ** 62), I64_MAX, I64_MIN]
    a = wrap([x - y for x, y in zip(v, b)])
    m = [0, 0, 0, 0]
    w, _, _ = _argmax_share(tmp_path, free_port, a, b, m)
    assert w.tolist() == [0, 1, 0, 0]


@pytest.mark.parametrize("case", ["answered", "not_answered", "plain_gnmax"])
def test_noisy_argmax(tmp_path, free_port, case):
    rng = np.random.default_rng(7)
    C = 10
    votes = rng.integers(0, 30, C) * 16
    M = rng.integers(I64_MIN, I64_MAX, C, endpoint=True)
    W = wrap(votes.astype(object) - M.astype(object))
    eta_g = rng.integers(-40, 40, C)
    eta_t = -3
    threshold = {"answered": int(votes.max()) - 10, "not_answered": int(votes.max()) + 100,
                 "plain_gnmax": 0}[case]
    pg_in = write_ints(tmp_path / "pg.txt", list(M) + list(eta_g) + [eta_t, threshold])
    qp_in = write_ints(tmp_path / "qp.txt", W)
    pg_out, qp_out = tmp_path / "pg_out.txt", tmp_path / "qp_out.txt"
    ra, rb = run_pair("noisy_argmax", [str(pg_in), str(pg_out)], [str(qp_in), str(qp_out)], free_port)
    assert ra.returncode == 0 and rb.returncode == 0, (ra.stderr, rb.stderr)
    answered = int(votes.max()) + eta_t >= threshold
    label = int(np.argmax(votes + eta_g))
    assert read_ints(qp_out) == ([1, label] if answered else [0, -1])
    assert read_ints(pg_out) == [int(answered)]  # the PG learns the bit only
    for r in (ra, rb):
        assert r.stdout == "" and r.stderr == ""


def test_outputs_hold_nothing_but_the_share(tmp_path, free_port):
    C = 10
    a = [1000 + i for i in range(C)]
    b = [0] * C
    m = [7 * (i + 1) for i in range(C)]
    ap_out = tmp_path / "ap_out.txt"
    qp_in = write_ints(tmp_path / "qp.txt", a)
    ap_in = write_ints(tmp_path / "ap.txt", b + m)
    qp_out = tmp_path / "qp_out.txt"
    ra, rb = run_pair("argmax_share", [str(ap_in), str(ap_out)], [str(qp_in), str(qp_out)], free_port)
    assert ra.returncode == 0 and rb.returncode == 0
    assert ap_out.read_text() == ""  # the AP learns nothing
    assert read_ints(qp_out) == [-x for x in m[:-1]] + [1 - m[-1]]
    for r in (ra, rb):  # no debug prints of values (the original printed the logits)
        assert r.stdout == "" and r.stderr == ""


def _needles(values) -> list[bytes]:
    out = []
    for v in values:
        v = int(v)
        out.append(int(v).to_bytes(8, "little", signed=True))
        out.append(int(v).to_bytes(8, "big", signed=True))
        out.append(str(v).encode())
    return out


def test_wire_carries_no_input_in_the_clear(tmp_path, free_port):
    """Capture all traffic through a relay; no party's input (or their sum) may appear in it."""
    C = 10
    rng = np.random.default_rng(99)
    a = [0x1122334455660000 + i * 0x101 for i in range(C)]        # QP's share: travels via OT only
    b = [0x0A0B0C0D0E0F0000 + i * 0x10001 for i in range(C)]      # AP's share
    m = [int(x) for x in rng.integers(2 ** 40, 2 ** 62, C)]        # AP's mask
    v = wrap([x + y for x, y in zip(a, b)])
    relay = Relay(free_port)
    qp_in = write_ints(tmp_path / "qp.txt", a)
    ap_in = write_ints(tmp_path / "ap.txt", b + m)
    out = tmp_path / "w.txt"
    ra, rb = run_pair("argmax_share", [str(ap_in)], [str(qp_in), str(out)], free_port, bob_port=relay.port)
    traffic = relay.join()
    assert ra.returncode == 0 and rb.returncode == 0, (ra.stderr, rb.stderr)
    assert len(traffic) > 10_000
    for needle in _needles(list(a) + list(b) + list(m) + list(v)):
        assert needle not in traffic, f"input {needle!r} found on the wire"
    # Also the QP's input bits: the whole 64-bit pattern of each a_i must not appear bit-packed.
    w = np.array(read_ints(out), dtype=np.int64)
    with np.errstate(over="ignore"):
        assert np.array_equal(w + np.array(m, dtype=np.int64), onehot(int(np.argmax(v)), C))


def test_noisy_argmax_wire_and_pg_learn_no_label(tmp_path, free_port):
    C = 10
    W = [0x5566778899AA0000 + i for i in range(C)]
    M = wrap([-x + (300 if i == 6 else 100) for i, x in enumerate(W)])
    eta_g = [0x00ABCDEF12 + i for i in range(C)]
    relay = Relay(free_port)
    pg_in = write_ints(tmp_path / "pg.txt", list(M) + eta_g + [0x0FEDCBA987, -5])
    qp_in = write_ints(tmp_path / "qp.txt", W)
    pg_out, qp_out = tmp_path / "pg_out.txt", tmp_path / "qp_out.txt"
    ra, rb = run_pair("noisy_argmax", [str(pg_in), str(pg_out)], [str(qp_in), str(qp_out)], free_port,
                      bob_port=relay.port)
    traffic = relay.join()
    assert ra.returncode == 0 and rb.returncode == 0, (ra.stderr, rb.stderr)
    h = [300 if i == 6 else 100 for i in range(C)]
    expected_label = int(np.argmax(np.array(h) + np.array(eta_g)))
    assert read_ints(qp_out) == [1, expected_label]
    assert read_ints(pg_out) == [1]
    for needle in _needles(W + list(M) + eta_g + [0x0FEDCBA987]):
        assert needle not in traffic


# ------------------------------------------------------------------ bad input and wrong peers

def _run_one(program, args, timeout=30):
    import subprocess

    from capc.gc import program_path

    return subprocess.run([str(program_path(program)), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("content,msg", [
    ("1\n2\nthree\n", "in.txt:3: not a signed 64-bit integer"),
    ("1\n\n2\n", "blank line"),
    ("", "needs"),
    ("1\n99999999999999999999\n", "not a signed 64-bit integer"),
    ("1.5\n2\n", "not a signed 64-bit integer"),
])
def test_malformed_input_file(tmp_path, free_port, content, msg):
    f = tmp_path / "in.txt"
    f.write_text(content)
    out = tmp_path / "out.txt"
    r = _run_one("argmax_share", ["2", str(free_port), str(f), str(out)])
    assert r.returncode == 2
    assert msg in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_odd_ap_file_and_missing_file(tmp_path, free_port):
    f = write_ints(tmp_path / "ap.txt", [1, 2, 3])
    r = _run_one("argmax_share", ["1", str(free_port), str(f)])
    assert r.returncode == 2 and "2*C lines" in r.stderr
    r = _run_one("noisy_argmax", ["2", str(free_port), str(tmp_path / "nope.txt")])
    assert r.returncode == 2 and "cannot open input file" in r.stderr


@pytest.mark.parametrize("args,msg", [
    (["3", "5000", "x"], "party must be 1"),
    (["1", "70000", "x"], "port must be"),
    (["1", "5000"], "usage"),
    (["1", "5000", "x", "--bogus"], "unknown option"),
    (["1", "5000", "x", "--classes", "0"], "--classes"),
    (["2", "5000", "x", "/nonexistent-dir/out.txt"], "output directory"),
])
def test_bad_command_line(args, msg):
    r = _run_one("argmax_share", args)
    assert r.returncode == 2 and msg in r.stderr


def test_class_count_mismatch_fails_on_both_sides(tmp_path, free_port):
    qp_in = write_ints(tmp_path / "qp.txt", [1, 2, 3])
    ap_in = write_ints(tmp_path / "ap.txt", [0] * 8)
    out = tmp_path / "w.txt"
    ra, rb = run_pair("argmax_share", [str(ap_in)], [str(qp_in), str(out)], free_port)
    assert ra.returncode == 1 and rb.returncode == 1
    assert "size mismatch" in ra.stderr and "size mismatch" in rb.stderr
    assert not out.exists()


def test_program_mismatch_fails(tmp_path, free_port):
    import subprocess

    from capc.gc import program_path

    ap_in = write_ints(tmp_path / "ap.txt", [0] * 4)
    qp_in = write_ints(tmp_path / "qp.txt", [1, 2])
    a = subprocess.Popen([str(program_path("argmax_share")), "1", str(free_port), str(ap_in)],
                         stderr=subprocess.PIPE, text=True)
    b = subprocess.run([str(program_path("noisy_argmax")), "2", str(free_port), str(qp_in),
                        "--connect-timeout", "10"], capture_output=True, text=True, timeout=30)
    _, a_err = a.communicate(timeout=30)
    assert a.returncode == 1 and b.returncode == 1
    assert "program mismatch" in a_err and "program mismatch" in b.stderr


def test_same_role_twice_fails_without_hanging(tmp_path, free_port):
    qp_in = write_ints(tmp_path / "qp.txt", [1, 2])
    # Two evaluators: nobody listens, both give up at the connect deadline.
    r = _run_one("argmax_share", ["2", str(free_port), str(qp_in), "--connect-timeout", "0.5"])
    assert r.returncode == 1 and "could not connect" in r.stderr
    # Two garblers on one port: the second cannot bind; the first gives up waiting for a peer.
    import subprocess

    from capc.gc import program_path

    ap_in = write_ints(tmp_path / "ap.txt", [0] * 4)
    exe = str(program_path("argmax_share"))
    first = subprocess.Popen([exe, "1", str(free_port), str(ap_in), "--connect-timeout", "2"],
                             stderr=subprocess.PIPE, text=True)
    try:
        _wait_listening(free_port)
        second = subprocess.run([exe, "1", str(free_port), str(ap_in), "--connect-timeout", "0.5"],
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 1 and "cannot listen" in second.stderr
    finally:
        _, err = first.communicate(timeout=30)
    assert first.returncode == 1 and "no peer connected" in err


def _wait_listening(port: int) -> None:
    """Return once a socket listens on port, read from /proc/net/tcp (binding a probe socket would race
    with the program's own bind)."""
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = open(table).read().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A = LISTEN
                    return
        time.sleep(0.005)  # polling a port's state, not synchronising parties
    raise AssertionError(f"nothing listened on port {port}")
