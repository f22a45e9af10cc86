"""ReLU and max-pool on additive shares (relu_share, maxpool_share): GcSession over a socketpair with the
garbler in a second thread, the masking of the QP's output, protocol mismatches, and the standalone programs.

Every check is exact: y + m (mod 2^64) must equal the plain computation, with the rescale
round_shift(x, t) = floor((x + 2^(t-1)) / 2^t) computed on Python integers (no int64 overflow).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from capc.gc import GcInputError, GcProtocolError, GcSession
from gc_helpers import Relay, in_thread, read_ints, run_pair, socket_pair, wrap, write_ints

pytestmark = pytest.mark.usefixtures("gc_built")
I64_MIN, I64_MAX = -(2 ** 63), 2 ** 63 - 1


# ------------------------------------------------------------------ plain reference

def round_shift(x: int, t: int) -> int:
    return x if t == 0 else (x + (1 << (t - 1))) >> t  # Python's >> floors


def ref_relu(v, t: int) -> list[int]:
    return [round_shift(max(int(x), 0), t) for x in v]


def ref_maxpool(v, w: int, t: int, relu_after: bool = False) -> list[int]:
    out = []
    for j in range(len(v) // w):
        mx = max(int(x) for x in v[j * w:(j + 1) * w])
        out.append(round_shift(max(mx, 0) if relu_after else mx, t))
    return out


def unmask(y: np.ndarray, m: np.ndarray) -> list[int]:
    """y + m (mod 2^64) read as signed Python integers."""
    return wrap(y.astype(object) + m.astype(object)).tolist()


def edge_values(n: int, t: int, rng: np.random.Generator) -> np.ndarray:
    """n values: the sign boundary, the int64 extremes and the rounding ties of shift t first, then random."""
    edges = [0, -1, 1, I64_MIN, I64_MAX, I64_MIN + 1, I64_MAX - 1, 2 ** 62, -(2 ** 62)]
    if t:
        edges += [k * 2 ** t + 2 ** (t - 1) + d for k in (-2, -1, 0, 1, 2) for d in (-1, 0, 1)]
    vals = edges[:n] + rng.integers(-(2 ** 40), 2 ** 40, max(0, n - len(edges))).tolist()
    return np.array(vals, dtype=np.int64)


def share(v: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split v into a + b (mod 2^64) with b uniform."""
    b = rng.integers(I64_MIN, I64_MAX, v.size, endpoint=True)
    return wrap(v.astype(object) - b.astype(object)), b


def session_pair(garbler_calls):
    """Start a garbler GcSession in a thread that runs garbler_calls(session); return (evaluator, join)."""
    qp_sock, ap_sock = socket_pair()
    join = in_thread(lambda: garbler_calls(GcSession(ap_sock, "garbler")))
    return GcSession(qp_sock, "evaluator"), join, (qp_sock, ap_sock)


# ------------------------------------------------------------------ correctness through GcSession

@pytest.mark.parametrize("n", [1, 7, 1000])
def test_relu_share_exact(n):
    rng = np.random.default_rng(n)
    cases = []
    for t in (0, 8):
        v = edge_values(n, t, rng)
        a, b = share(v, rng)
        m = rng.integers(-(2 ** 40), 2 ** 40, n)
        cases.append((t, v, a, b, m))
    qp, join, socks = session_pair(lambda s: [s.relu_share_garbler(b, m, shift=t) for t, _, _, b, m in cases])
    with socks[0], socks[1]:
        for t, v, a, _, m in cases:
            y = qp.relu_share_evaluator(a, shift=t)
            assert y.dtype == np.int64 and y.shape == (n,)
            assert unmask(y, m) == ref_relu(v, t)
        assert join() == [None, None]


@pytest.mark.parametrize("window", [2, 4, 9])
@pytest.mark.parametrize("k", [1, 7, 111])
def test_maxpool_share_exact(window, k):
    rng = np.random.default_rng(100 * window + k)
    n = k * window
    cases = []
    for t, relu_after in ((0, False), (8, False), (8, True)):
        v = edge_values(n, t, rng)
        if k > 1:
            v[-window:] = 3  # a window of ties
        v = v.reshape(k, window)[rng.permutation(k)].reshape(-1)  # edge values land in various windows
        a, b = share(v, rng)
        m = rng.integers(-(2 ** 40), 2 ** 40, k)
        cases.append((t, relu_after, v, a, b, m))

    def garbler(s):
        for t, relu_after, _, _, b, m in cases:
            s.maxpool_share_garbler(b, m, window, shift=t, relu_after=relu_after)

    qp, join, socks = session_pair(garbler)
    with socks[0], socks[1]:
        for t, relu_after, v, a, _, m in cases:
            y = qp.maxpool_share_evaluator(a, window, shift=t, relu_after=relu_after)
            assert y.dtype == np.int64 and y.shape == (k,)
            assert unmask(y, m) == ref_maxpool(v, window, t, relu_after)
        join()


def test_large_batch_spans_chunks_and_mixes_operations():
    """A batch larger than the engine's internal chunk, a window longer than a chunk, and the existing
    argmax_share in the same session: all exact, and the session stays in step."""
    rng = np.random.default_rng(1)
    n = 20_000
    v = rng.integers(-(2 ** 30), 2 ** 30, n)
    a, b = share(v, rng)
    m = rng.integers(I64_MIN, I64_MAX, n, endpoint=True)
    w_big = 5_000
    m_pool = rng.integers(I64_MIN, I64_MAX, n // w_big, endpoint=True)
    logits = np.array([3, 9, 1], dtype=np.int64)
    m_arg = np.array([5, 6, 7], dtype=np.int64)

    def garbler(s):
        s.relu_share_garbler(b, m, shift=12)
        s.maxpool_share_garbler(b, m_pool, w_big)
        s.argmax_share_garbler(logits, m_arg)
        return s.queries

    qp, join, socks = session_pair(garbler)
    with socks[0], socks[1]:
        y = qp.relu_share_evaluator(a, shift=12)
        assert unmask(y, m) == ref_relu(v, 12)
        y = qp.maxpool_share_evaluator(a, w_big)
        assert unmask(y, m_pool) == ref_maxpool(v, w_big, 0)
        w = qp.argmax_share_evaluator(np.zeros(3, dtype=np.int64))
        assert (w + m_arg).tolist() == [0, 1, 0]
        assert join() == 3 and qp.queries == 3


# ------------------------------------------------------------------ what the QP sees

def _top_bits_histogram(y: np.ndarray, bits: int = 4) -> np.ndarray:
    return np.bincount(y.view(np.uint64) >> np.uint64(64 - bits), minlength=2 ** bits)


def test_evaluator_output_is_uniformly_masked():
    """With m uniform on Z_2^64 the QP's y is uniform whatever v is; with m uniform on a bounded range
    [-R, R) and |v| << R, the distribution of y does not depend on v (chi-square tests, fixed seed)."""
    rng = np.random.default_rng(2024)
    n = 4000
    v_zero = np.zeros(n, dtype=np.int64)
    v_big = rng.integers(2 ** 20, 2 ** 21, n)  # all positive: relu keeps them
    R = 2 ** 40
    queries = []
    for v in (v_zero, v_big):
        a, b = share(v, rng)
        queries.append((a, b, rng.integers(I64_MIN, I64_MAX, n, endpoint=True), rng.integers(-R, R, n)))

    def garbler(s):
        for _, b, m_full, m_bounded in queries:
            s.relu_share_garbler(b, m_full)
            s.relu_share_garbler(b, m_bounded)

    qp, join, socks = session_pair(garbler)
    with socks[0], socks[1]:
        outs = [(qp.relu_share_evaluator(a), qp.relu_share_evaluator(a)) for a, _, _, _ in queries]
        join()
    (y0_full, y0_bounded), (y1_full, y1_bounded) = outs
    for (y_full, y_bounded), (_, _, m_full, m_bounded), v in zip(outs, queries, (v_zero, v_big)):
        assert unmask(y_full, m_full) == ref_relu(v, 0) and unmask(y_bounded, m_bounded) == ref_relu(v, 0)
        # Uniform on Z_2^64: the top 4 bits are uniform over 16 values.
        assert stats.chisquare(_top_bits_histogram(y_full)).pvalue > 1e-4
    # Bounded masks: y = relu(v) - m lies in (-R, R + 2^21]; histograms in 16 bins for v = 0 and for v ~ 2^20
    # must be indistinguishable (the shift of 2^20 is 2^-20 of a bin).
    edges = np.linspace(-R, R + 2 ** 21 + 1, 17)
    h0, _ = np.histogram(y0_bounded.astype(np.float64), edges)
    h1, _ = np.histogram(y1_bounded.astype(np.float64), edges)
    assert stats.chi2_contingency(np.stack([h0, h1])).pvalue > 1e-4
    assert stats.chisquare(h0).pvalue > 1e-4 and stats.chisquare(h1).pvalue > 1e-4
    # y does not track v within a query either.
    assert abs(np.corrcoef(y1_bounded.astype(np.float64), v_big.astype(np.float64))[0, 1]) < 0.1


# ------------------------------------------------------------------ mismatches and bad arguments

def _both_fail(evaluator_call, garbler_call, match: str) -> None:
    qp_sock, ap_sock = socket_pair()
    with qp_sock, ap_sock:
        join = in_thread(lambda: garbler_call(GcSession(ap_sock, "garbler")))
        with pytest.raises(GcProtocolError, match=match):
            evaluator_call(GcSession(qp_sock, "evaluator"))
        with pytest.raises(GcProtocolError, match=match):
            join()


Z8 = np.zeros(8, dtype=np.int64)


@pytest.mark.parametrize("evaluator_call,garbler_call,match", [
    (lambda s: s.relu_share_evaluator(Z8), lambda s: s.maxpool_share_garbler(Z8, Z8[:4], 2), "query mismatch"),
    (lambda s: s.maxpool_share_evaluator(Z8, 2), lambda s: s.argmax_share_garbler(Z8, Z8), "query mismatch"),
    (lambda s: s.relu_share_evaluator(Z8, shift=8), lambda s: s.relu_share_garbler(Z8, Z8), "shift"),
    (lambda s: s.maxpool_share_evaluator(Z8, 4), lambda s: s.maxpool_share_garbler(Z8, Z8[:4], 2), "window"),
    (lambda s: s.maxpool_share_evaluator(Z8, 2, relu_after=True), lambda s: s.maxpool_share_garbler(Z8, Z8[:4], 2),
     "relu_after"),
    (lambda s: s.relu_share_evaluator(Z8[:7]), lambda s: s.relu_share_garbler(Z8, Z8), "size mismatch.*values"),
])
def test_mismatched_calls_raise_on_both_sides(evaluator_call, garbler_call, match):
    _both_fail(evaluator_call, garbler_call, match)


@pytest.mark.parametrize("call,msg", [
    (lambda s: s.relu_share_evaluator(np.zeros(4)), "integers"),
    (lambda s: s.relu_share_evaluator(np.zeros((2, 2), np.int64)), "1-D"),
    (lambda s: s.relu_share_evaluator(np.zeros(0, np.int64)), "empty"),
    (lambda s: s.relu_share_evaluator(Z8, shift=63), "shift"),
    (lambda s: s.relu_share_evaluator(Z8, shift=-1), "shift"),
    (lambda s: s.relu_share_evaluator(Z8, shift=1.0), "shift"),
    (lambda s: s.maxpool_share_evaluator(Z8, 3), "does not divide"),
    (lambda s: s.maxpool_share_evaluator(Z8, 0), "window"),
    (lambda s: s.maxpool_share_evaluator(Z8, True), "window"),
    (lambda s: s.maxpool_share_evaluator(Z8, 2, relu_after=1), "relu_after"),
    (lambda s: s.relu_share_garbler(Z8, Z8), "garbler"),
])
def test_bad_arguments_evaluator(call, msg):
    a, b = socket_pair()
    with a, b:
        s = GcSession(a, "evaluator")
        with pytest.raises(GcInputError, match=msg):
            call(s)
        assert s.bytes_sent == 0  # rejected before anything was sent


@pytest.mark.parametrize("call,msg", [
    (lambda s: s.relu_share_garbler(Z8, Z8[:7]), "same length"),
    (lambda s: s.relu_share_garbler(Z8, Z8.astype(np.float32)), "integers"),
    (lambda s: s.maxpool_share_garbler(Z8, Z8, 2), "one entry per window"),
    (lambda s: s.maxpool_share_garbler(Z8[:6], Z8[:2], 4), "does not divide"),
    (lambda s: s.maxpool_share_evaluator(Z8, 2), "evaluator"),
])
def test_bad_arguments_garbler(call, msg):
    a, b = socket_pair()
    with a, b:
        s = GcSession(b, "garbler")
        with pytest.raises(GcInputError, match=msg):
            call(s)
        assert s.bytes_sent == 0


# ------------------------------------------------------------------ the standalone programs

def _program(tmp_path, port, program, qp_values, ap_values, extra_qp=(), extra_ap=(), bob_port=None):
    qp_in = write_ints(tmp_path / "qp.txt", qp_values)
    ap_in = write_ints(tmp_path / "ap.txt", ap_values)
    qp_out, ap_out = tmp_path / "qp_out.txt", tmp_path / "ap_out.txt"
    ra, rb = run_pair(program, [str(ap_in), str(ap_out), *extra_ap], [str(qp_in), str(qp_out), *extra_qp], port,
                      bob_port=bob_port)
    return ra, rb, qp_out, ap_out


@pytest.mark.parametrize("shift", [0, 8])
def test_relu_share_program(tmp_path, free_port, shift):
    rng = np.random.default_rng(shift)
    v = edge_values(30, shift, rng)
    a, b = share(v, rng)
    m = rng.integers(-(2 ** 40), 2 ** 40, v.size)
    opt = ["--shift", str(shift)]
    ra, rb, qp_out, ap_out = _program(tmp_path, free_port, "relu_share", a, list(b) + list(m), opt, opt)
    assert ra.returncode == 0 and rb.returncode == 0, (ra.stderr, rb.stderr)
    assert unmask(np.array(read_ints(qp_out), dtype=np.int64), m) == ref_relu(v, shift)
    assert ap_out.read_text() == ""  # the AP learns nothing
    for r in (ra, rb):
        assert r.stdout == "" and r.stderr == ""


def test_maxpool_share_program(tmp_path, free_port):
    rng = np.random.default_rng(5)
    w, k = 4, 9
    v = edge_values(w * k, 8, rng)
    a, b = share(v, rng)
    m = rng.integers(-(2 ** 40), 2 ** 40, k)
    opt = ["--window", str(w), "--shift", "8", "--relu-after"]
    ra, rb, qp_out, ap_out = _program(tmp_path, free_port, "maxpool_share", a, list(b) + list(m), opt, opt)
    assert ra.returncode == 0 and rb.returncode == 0, (ra.stderr, rb.stderr)
    assert unmask(np.array(read_ints(qp_out), dtype=np.int64), m) == ref_maxpool(v, w, 8, relu_after=True)
    assert ap_out.read_text() == ""


def test_programs_agree_on_parameters(tmp_path, free_port):
    ra, rb, qp_out, _ = _program(tmp_path, free_port, "maxpool_share", [0] * 8, [0] * 12,
                                 ["--window", "2"], ["--window", "2", "--shift", "3"])
    assert ra.returncode == 1 and rb.returncode == 1
    assert "parameter mismatch" in ra.stderr and "shift" in rb.stderr
    assert not qp_out.exists()


def test_relu_share_program_wire_carries_no_input(tmp_path, free_port):
    n = 16
    a = [0x1122334455660000 + i * 0x101 for i in range(n)]
    b = [0x0A0B0C0D0E0F0000 + i * 0x10001 for i in range(n)]
    m = [0x0123456789A00000 + i * 0x1003 for i in range(n)]
    v = wrap([x + y for x, y in zip(a, b)])
    relay = Relay(free_port)
    ra, rb, qp_out, _ = _program(tmp_path, free_port, "relu_share", a, b + m, bob_port=relay.port)
    traffic = relay.join()
    assert ra.returncode == 0 and rb.returncode == 0, (ra.stderr, rb.stderr)
    for x in list(a) + b + m + v.tolist():
        for needle in (int(x).to_bytes(8, "little", signed=True), int(x).to_bytes(8, "big", signed=True),
                       str(int(x)).encode()):
            assert needle not in traffic
    assert unmask(np.array(read_ints(qp_out), dtype=np.int64), np.array(m, dtype=np.int64)) == ref_relu(v, 0)


def _run_one(program, args):
    import subprocess

    from capc.gc import program_path

    return subprocess.run([str(program_path(program)), *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("program,args,content,msg", [
    ("relu_share", ["1"], "1\n2\n3\n", "2*n lines"),
    ("relu_share", ["2", "--classes", "3"], "1\n", "unknown option '--classes'"),
    ("relu_share", ["2", "--shift", "63"], "1\n", "--shift must be an integer in 0..62"),
    ("maxpool_share", ["2"], "1\n2\n", "--window W is required"),
    ("maxpool_share", ["2", "--window", "3"], "1\n2\n", "k*W lines"),
    ("maxpool_share", ["1", "--window", "2"], "1\n2\n3\n4\n", "(W+1)*k lines"),
    ("maxpool_share", ["2", "--window", "0"], "1\n", "--window must be"),
    ("argmax_share", ["2", "--window", "2"], "1\n", "unknown option '--window'"),
])
def test_program_bad_input(tmp_path, free_port, program, args, content, msg):
    f = tmp_path / "in.txt"
    f.write_text(content)
    party, *opts = args
    r = _run_one(program, [party, str(free_port), str(f), *opts])
    assert r.returncode == 2, r.stderr
    assert msg in r.stderr


# ------------------------------------------------------------------ narrow registers (the hybrid's)

@pytest.mark.parametrize("window,relu_after", [(1, True), (3, True), (3, False)])
def test_narrow_registers_are_exact_within_range_and_cheaper(window, relu_after):
    """in_bits = 26, out_bits = 49 (capc.he.hybrid.GC_WIDTHS): for |a + b| < 2^25 and |m| < 2^47 the
    result equals the 64-bit circuit's, sign-extended, with fewer bytes on the wire."""
    from capc.he.hybrid import GC_IN_BITS, GC_OUT_BITS

    rng = np.random.default_rng(window)
    n = 300 * window
    v = rng.integers(-(2 ** 25) + 1, 2 ** 25 - 1, n)
    v[:4] = [0, -1, 2 ** 25 - 1, -(2 ** 25) + 1]
    a, b = share(v, rng)
    m = rng.integers(-(2 ** 47), 2 ** 47, n // window)
    out = {}
    for bits in ((64, 64), (GC_IN_BITS, GC_OUT_BITS)):
        def garbler(s, bits=bits):
            if window == 1:
                s.relu_share_garbler(b, m, in_bits=bits[0], out_bits=bits[1])
            else:
                s.maxpool_share_garbler(b, m, window, relu_after=relu_after, in_bits=bits[0], out_bits=bits[1])
            return s.bytes_sent

        ev, join, socks = session_pair(garbler)
        if window == 1:
            y = ev.relu_share_evaluator(a, in_bits=bits[0], out_bits=bits[1])
        else:
            y = ev.maxpool_share_evaluator(a, window, relu_after=relu_after, in_bits=bits[0], out_bits=bits[1])
        out[bits] = (unmask(np.asarray(y), m), join() + ev.bytes_sent)
        for s in socks:
            s.close()
    wide, narrow = out[(64, 64)], out[(GC_IN_BITS, GC_OUT_BITS)]
    want = ref_maxpool(v, window, 0, relu_after) if window > 1 else ref_relu(v, 0)
    assert wide[0] == want and narrow[0] == want
    assert narrow[1] < 0.7 * wide[1], (narrow[1], wide[1])


def test_widths_must_agree_and_be_ordered():
    with pytest.raises(GcInputError, match="in_bits <= out_bits"):
        GcSession(socket_pair()[0], "evaluator").relu_share_evaluator(np.zeros(2, np.int64), in_bits=40, out_bits=30)
    b = np.zeros(4, np.int64)
    ev, join, socks = session_pair(lambda s: s.relu_share_garbler(b, b, in_bits=26, out_bits=49))
    with pytest.raises(GcProtocolError):
        ev.relu_share_evaluator(b, in_bits=26, out_bits=48)
    with pytest.raises(GcProtocolError):
        join()
    for s in socks:
        s.close()


def test_qp_cannot_tell_the_aps_inputs_apart_from_what_it_receives(tmp_path, free_port):
    """The QP (evaluator) as attacker, under protocol 2 (one Delta per session, the garbler's input
    labels expanded from the shared seed, masked outputs as tables): it holds its own share ``a`` and
    every byte the AP sends it, and tries to tell an AP whose share and mask are all zero from one
    whose share and mask are all ones in every bit.  The streams have the same length and each is
    indistinguishable from uniform bytes to the tests it can run: byte frequencies (chi-square) and
    the bit count per 16-byte label (z-test); the two runs do not agree more than chance."""
    n = 64
    a = [int(x) for x in np.random.default_rng(5).integers(-(2 ** 20), 2 ** 20, n)]
    streams = []
    for k, fill in enumerate((0, -1)):  # -1: all 64 bits set
        relay = Relay(free_port)
        d = tmp_path / f"run{k}"
        d.mkdir()
        ra, rb, _, _ = _program(d, free_port, "relu_share", a, [fill] * (2 * n), bob_port=relay.port)
        relay.join()
        assert ra.returncode == 0 and rb.returncode == 0, (ra.stderr, rb.stderr)
        streams.append(bytes(relay.captured["to_bob"]))
    s0, s1 = streams
    assert len(s0) == len(s1) > 50_000
    body0, body1 = (np.frombuffer(s[256:len(s) - len(s) % 16], dtype=np.uint8) for s in (s0, s1))
    for body in (body0, body1):
        counts = np.bincount(body, minlength=256)
        expected = body.size / 256
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < 255 + 6 * np.sqrt(2 * 255), chi2  # 6 sigma above the mean of chi^2(255)
        bits = np.unpackbits(body).reshape(-1, 128).sum(axis=1)
        z = (bits.mean() - 64) / (np.sqrt(32 / bits.size))
        assert abs(z) < 6, z
    # the all-zero and all-one APs produce streams that agree on about half of their bits
    agree = 1 - np.unpackbits(body0 ^ body1).mean()
    assert abs(agree - 0.5) < 6 * np.sqrt(0.25 / (8 * body0.size)), agree
