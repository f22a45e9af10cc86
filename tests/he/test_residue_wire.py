"""Residue-encoded batch queries (capc.he.residue_wire): exact round trip, hostile input refused, and
the same results as SEAL-serialised queries on the fast and the slow evaluation path."""

from __future__ import annotations

import numpy as np
import pytest

from capc.he import HEError, ModelEvaluator, QueryKeys, choose_params, compile_model
from capc.he import residue_wire as rw
from capc.he.seal import QUERY_MAGIC, frame, unframe

PRIMES = [(1 << 60) - 93, 1099511480321, (1 << 30) - 35, (1 << 48) - 59, (1 << 36) - 5]


def _residues(rng: np.random.Generator, n: int, N: int = 64) -> np.ndarray:
    x = np.empty((n, 2, len(PRIMES), N), dtype=np.uint64)
    for i, q in enumerate(PRIMES):
        x[:, :, i, :] = rng.integers(0, q, (n, 2, N), dtype=np.uint64)
        x[0, 0, i, 0] = q - 1  # the largest residue must survive packing
    return x


def _packed(seed: int, n: int) -> tuple[np.ndarray, list]:
    """Random residues of ``n`` ciphertexts and their planes."""
    x = _residues(np.random.default_rng(seed), n)
    packer = rw.ResiduePacker(PRIMES, n, 64)
    for j in range(n):
        packer.put(j, x[j])
    return x, packer.sections()


def test_round_trip_is_exact_and_compact():
    x, secs = _packed(0, 5)
    assert len(secs) == rw.plane_count(PRIMES) == 9  # the 30-bit prime has no high plane
    np.testing.assert_array_equal(rw.unpack(secs, PRIMES, 5, 64), x)
    # bytes per residue: 8 (60 bits), 5 (40), 4 (30), 6 (48), 5 (36)
    assert sum(len(v) for _, v in secs) == 5 * 2 * 64 * (8 + 5 + 4 + 6 + 5)
    # through the query framing (zero-copy views on both sides)
    blob = frame(QUERY_MAGIC, {"n": 5}, secs)
    _, back = unframe(blob, QUERY_MAGIC, "query")
    out = np.zeros_like(x)
    assert rw.unpack(back, PRIMES, 5, 64, out=out) is out
    np.testing.assert_array_equal(out, x)


def test_hostile_planes_are_refused():
    x, views = _packed(1, 2)
    secs = [(t, bytes(v)) for t, v in views]
    # a residue equal to its prime (SEAL's load refuses it too; the exact arithmetic assumes x < q)
    bad = [list(s) for s in secs]
    lo = np.frombuffer(bad[2][1], dtype=np.uint32).copy()  # planes of the 40-bit prime: lo, hi
    hi = np.frombuffer(bad[3][1], dtype=np.uint8).copy()
    q = PRIMES[1]
    lo[0], hi[0] = q & 0xFFFFFFFF, q >> 32
    bad[2][1], bad[3][1] = lo.tobytes(), hi.tobytes()
    with pytest.raises(HEError, match="not below RNS prime 1"):
        rw.unpack([tuple(s) for s in bad], PRIMES, 2, 64)
    with pytest.raises(HEError, match="planes"):
        rw.unpack(secs[:-1], PRIMES, 2, 64)
    with pytest.raises(HEError, match="bytes, expected"):
        rw.unpack([secs[0], (secs[1][0], secs[1][1][:-4])] + secs[2:], PRIMES, 2, 64)
    with pytest.raises(HEError, match="not a residue plane"):
        rw.unpack([(b"C", secs[0][1])] + secs[1:], PRIMES, 2, 64)
    with pytest.raises(HEError, match="shape"):
        rw.ResiduePacker(PRIMES, 1, 64).put(0, x[0, :, :2])


@pytest.fixture(scope="module")
def batch_keys(model):
    plan = compile_model(model)
    return plan, QueryKeys(plan, choose_params(plan, packing="batch"), packing="batch")


def test_residue_and_seal_encodings_give_the_same_results(batch_keys):
    plan, keys = batch_keys
    x = np.random.default_rng(4).uniform(0, 1, (40, 8, 8, 1))
    assert keys.residue_encoding
    q_res = keys.encrypt(x)
    header, secs = unframe(q_res, QUERY_MAGIC, "query")
    assert header["encoding"] == rw.ENCODING and all(t == rw.PLANE_TAG for t, _ in secs)
    keys.residue_encoding = False
    try:
        q_seal = keys.encrypt(x)
    finally:
        keys.residue_encoding = True
    assert "encoding" not in unframe(q_seal, QUERY_MAGIC, "query")[0]
    ref = plan.forward(x)
    for fast in (True, False):
        with ModelEvaluator(plan, keys.public_context(), workers=1, fast_batch=fast) as ev:
            for q in (q_res, q_seal):
                np.testing.assert_allclose(keys.decrypt_logits(ev.evaluate(q)), ref, atol=1e-4)


def test_evaluator_refuses_bad_residue_queries(batch_keys):
    plan, keys = batch_keys
    q = keys.encrypt(np.random.default_rng(5).uniform(0, 1, (3, 8, 8, 1)))
    header, secs = unframe(q, QUERY_MAGIC, "query")
    with ModelEvaluator(plan, keys.public_context(), workers=1) as ev:
        with pytest.raises(HEError, match="planes"):
            ev.evaluate(frame(QUERY_MAGIC, header, secs[:-1]))
        with pytest.raises(HEError, match="unknown encoding"):
            ev.evaluate(frame(QUERY_MAGIC, {**header, "encoding": "zip"}, secs))
        lo = np.frombuffer(secs[0][1], dtype=np.uint32).copy()
        hi = np.frombuffer(secs[1][1], dtype=np.uint32).copy()  # 60-bit top prime: 32-bit high plane
        lo[:], hi[:] = 0xFFFFFFFF, 0xFFFFFFFF
        with pytest.raises(HEError, match="not below RNS prime 0"):
            ev.evaluate(frame(QUERY_MAGIC, header, [(rw.PLANE_TAG, lo.tobytes()), (rw.PLANE_TAG, hi.tobytes())]
                              + [(t, bytes(v)) for t, v in secs[2:]]))
        ev.evaluate(q)  # still usable


def test_parallel_encryption_matches_and_stops_its_workers(batch_keys):
    plan, keys = batch_keys
    x = np.random.default_rng(6).uniform(0, 1, (70, 8, 8, 1))
    with QueryKeys(plan, keys.setup, packing="batch", encrypt_workers=2) as par:
        par.warm_up()
        q = par.encrypt(x)
        pool = par._pool
        assert pool is not None and len(pool._processes) == 2
        with ModelEvaluator(plan, par.public_context(), workers=1) as ev:
            np.testing.assert_allclose(par.decrypt_logits(ev.evaluate(q)), plan.forward(x), atol=1e-4)
        procs = list(pool._processes.values())
    assert par._pool is None and all(not p.is_alive() for p in procs)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(HEError, match="encrypt_workers"):
            QueryKeys(plan, keys.setup, packing="batch", encrypt_workers=bad)


def test_a_dead_encryption_worker_falls_back_to_this_process(batch_keys):
    plan, keys = batch_keys
    # more than half the slots: one lane, so the query has one ciphertext per input (enough to split)
    x = np.random.default_rng(7).uniform(0, 1, (keys.slots // 2 + 1, 8, 8, 1))
    with QueryKeys(plan, keys.setup, packing="batch", encrypt_workers=2) as par:
        assert par.batch_layout(0, len(x)).lanes == 1
        par.warm_up()
        par.encrypt(x[:keys.slots // 2 + 1])
        for proc in list(par._pool._processes.values()):
            proc.kill()
            proc.join()
        with pytest.warns(RuntimeWarning, match="parallel encryption failed"):
            q = par.encrypt(x)
        assert par.encrypt_workers == 1 and par._pool is None
        with ModelEvaluator(plan, par.public_context(), workers=1) as ev:
            np.testing.assert_allclose(par.decrypt_logits(ev.evaluate(q)), plan.forward(x), atol=1e-4)
