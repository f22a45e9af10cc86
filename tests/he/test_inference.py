"""Encrypted inference end to end (real SEAL keys): correctness, masking, key hygiene, bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest

from capc.he.bounds import derive_logit_bound
import tenseal.sealapi as seal

from capc import fixedpoint
from capc.he import HEError, ModelEvaluator, PublicPlan, QueryKeys, choose_params, compile_model
from capc.he.seal import CONTEXT_MAGIC, _Scratch, frame, unframe


@pytest.fixture(scope="module")
def plan(model):
    return compile_model(model)


@pytest.fixture(scope="module")
def single(plan):
    # The querying party only ever sees the public plan.
    pub = PublicPlan.from_bytes(plan.public_plan.to_bytes())
    keys = QueryKeys(pub, choose_params(pub), packing="single")
    return keys, ModelEvaluator(plan, keys.public_context())


def _x(n: int, seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, 8, 8, 1))


def test_single_query_logits_match_tensorflow(model, single):
    keys, ev = single
    for x in _x(4):
        z = keys.decrypt_logits(ev.evaluate(keys.encrypt(x)))
        ref = model(x[None].astype(np.float32), training=False).numpy()[0]
        np.testing.assert_allclose(z, ref, atol=1e-4)
        assert z.argmax() == ref.argmax()


def test_masked_shares_reconstruct_within_one(plan, single):
    keys, ev = single
    for f in (0, 3, 4):
        for x in _x(3, seed=f):
            blob, b = ev.evaluate_masked(keys.encrypt(x), f)
            v = keys.decrypt_logits(blob)
            assert np.abs(v).max() > 2.0 ** 30  # the QP sees only the masked value
            a = fixedpoint.encode(v, f)
            total = fixedpoint.to_signed(fixedpoint.reconstruct(a, b))
            target = fixedpoint.to_signed(fixedpoint.encode(plan.forward(x), f))
            assert np.abs(total - target).max() <= 1
    # the mask is sized by the sound bound D over [0, 1]^64 (it exceeds the default 16), and s is what
    # fits the decoding precision with one bit kept back for the grid: 48 - ceil(log2 D) - (f + 1)
    d = derive_logit_bound(plan)
    assert ev.last_hiding["derived_logit_bound"] == d > 16
    assert ev.last_hiding["logit_bound"] == d
    assert ev.last_hiding["per_logit_bits"] == min(40, 48 - int(np.ceil(np.log2(d))) - 5)
    assert b.dtype == np.uint64 and b.shape == (10,)


def test_masks_are_fresh(single):
    keys, ev = single
    q = keys.encrypt(_x(1)[0])
    _, b1 = ev.evaluate_masked(q, 3)
    _, b2 = ev.evaluate_masked(q, 3)
    assert not np.array_equal(b1, b2)


def test_public_context_has_no_secret_key(single):
    keys, _ = single
    blob = keys.public_context()
    header, sections = unframe(blob, CONTEXT_MAGIC, "ctx")
    assert sorted(t for t, _ in sections) == [b"G", b"K", b"P", b"R"]
    sk = _Scratch().dump(keys._sk)
    # no 32-byte window of the secret key's serialisation appears in the public context
    body = sk[len(sk) // 2:]
    assert all(body[i:i + 32] not in blob for i in range(0, len(body) - 32, 4096))
    assert header["rotation_steps"] == sorted(header["rotation_steps"])
    assert keys.sizes["galois_key_count"] == len(header["rotation_steps"]) + bool(header["conjugate"]) < 40
    # the answering party's evaluator holds no secret key object at all
    assert not any(isinstance(v, seal.SecretKey) for v in vars(single[1]).values())


def test_wrong_key_and_wrong_plan_refused(plan, single):
    keys, ev = single
    other = QueryKeys(plan.public_plan, keys.setup)
    with pytest.raises(HEError, match="different key"):
        ev.evaluate(other.encrypt(_x(1)[0]))
    with pytest.raises(HEError, match="key"):
        other.decrypt_logits(ev.evaluate(keys.encrypt(_x(1)[0])))
    from .conftest import small_model
    other_plan = compile_model(small_model(seed=1, polynomial=True))
    import keras
    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    with pytest.raises(HEError, match="different model"):
        ModelEvaluator(compile_model(m), keys.public_context())
    assert other_plan.fingerprint == plan.fingerprint  # same layout, different weights: accepted


def test_bad_queries_are_refused(single):
    keys, ev = single
    with pytest.raises(HEError, match="NaN"):
        keys.encrypt(np.full((8, 8, 1), np.nan))
    with pytest.raises(HEError, match="shape"):
        keys.encrypt(np.zeros((7, 7)))
    good = keys.encrypt(_x(1)[0])
    header, sections = unframe(good, b"CAPCHEq1", "q")
    short = frame(b"CAPCHEq1", header, sections[:-1] if len(sections) > 1 else [])
    with pytest.raises(HEError, match="ciphertexts|planes"):
        ev.evaluate(short)
    with pytest.raises(HEError, match="truncated|corrupt|load"):
        ev.evaluate(good[: len(good) // 2])
    # SEAL's serialisation (a build without raw residue access) detects corrupted bytes on load
    keys.residue_encoding = False
    try:
        corrupted = bytearray(keys.encrypt(_x(1)[0]))
    finally:
        keys.residue_encoding = True
    corrupted[-5000:-4000] = os.urandom(1000)
    with pytest.raises(HEError):
        ev.evaluate(bytes(corrupted))
    # residue planes: any residue at or above its prime is refused (tests/he/test_residue_wire.py)
    header, sections = unframe(good, b"CAPCHEq1", "q")
    lo = np.frombuffer(sections[0][1], dtype=np.uint32).copy()
    hi = np.frombuffer(sections[1][1], dtype=np.uint32).copy()
    lo[:], hi[:] = 0xFFFFFFFF, 0xFFFFFFFF
    with pytest.raises(HEError, match="not below RNS prime 0"):
        ev.evaluate(frame(b"CAPCHEq1", header, [(b"X", lo.tobytes()), (b"X", hi.tobytes())]
                          + [(t, bytes(v)) for t, v in sections[2:]]))
    with pytest.raises(HEError, match="magic"):
        ev.evaluate(b"hello")
    with pytest.raises(HEError, match="frac_bits"):
        ev.evaluate_masked(good, -1)
    # the evaluator still works after all of that
    ev.evaluate(good)


def test_non_ckks_and_garbage_contexts_refused(plan, single):
    keys, _ = single
    parms = seal.EncryptionParameters(seal.SCHEME_TYPE.BFV)
    parms.set_poly_modulus_degree(4096)
    parms.set_coeff_modulus(seal.CoeffModulus.BFVDefault(4096, seal.SEC_LEVEL_TYPE.TC128))
    parms.set_plain_modulus(seal.PlainModulus.Batching(4096, 20))
    header, sections = unframe(keys.public_context(), CONTEXT_MAGIC, "ctx")
    bfv = frame(CONTEXT_MAGIC, header, [(b"P", _Scratch().dump(parms))] + sections[1:])
    with pytest.raises(HEError, match="CKKS"):
        ModelEvaluator(plan, bfv)
    with pytest.raises(HEError):
        ModelEvaluator(plan, b"CAPCHEc1" + os.urandom(100))
    with pytest.raises(HEError):
        ModelEvaluator(plan.public_plan, keys.public_context())


def test_batch_packing_argmax_on_1000_inputs(model, plan):
    keys = QueryKeys(plan, choose_params(plan, packing="batch"), packing="batch")
    ev = ModelEvaluator(plan, keys.public_context())
    x = _x(1000, seed=11)
    ref = model(x.astype(np.float32), training=False).numpy()
    blob, b = ev.evaluate_masked(keys.encrypt(x), 3)
    v = keys.decrypt_logits(blob)
    assert v.shape == (1000, 10) and b.shape == (1000, 10)
    total = fixedpoint.decode(fixedpoint.reconstruct(fixedpoint.encode(v, 3), b), 3)
    assert np.abs(total - plan.forward(x)).max() <= 2 * 2.0 ** -3
    z = keys.decrypt_logits(ev.evaluate(keys.encrypt(x)))
    np.testing.assert_allclose(z, ref, atol=1e-4)
    assert (z.argmax(1) == ref.argmax(1)).mean() >= 0.999


@pytest.mark.slow  # run with: python -m pytest -m slow
def test_single_query_argmax_on_1000_inputs(model, single):
    keys, ev = single
    x = _x(1000, seed=12)
    ref = model(x.astype(np.float32), training=False).numpy().argmax(1)
    got = np.array([keys.decrypt_logits(ev.evaluate(keys.encrypt(xi))).argmax() for xi in x])
    assert (got == ref).mean() >= 0.999


def test_one_key_set_decrypts_from_several_threads(model, single):
    """Regression: the QP decrypts every AP's result in parallel threads with one key set; a shared
    scratch file made concurrent calls overwrite each other's serialisations."""
    from concurrent.futures import ThreadPoolExecutor

    keys, ev = single
    x = _x(6, seed=5)
    blobs = [ev.evaluate(keys.encrypt(xi)) for xi in x]
    expected = [keys.decrypt_logits(b) for b in blobs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        for _ in range(5):
            got = list(pool.map(keys.decrypt_logits, blobs))
            assert all(np.array_equal(g, e) for g, e in zip(got, expected))
            encs = list(pool.map(keys.encrypt, x))
            assert all(isinstance(e, bytes) and e for e in encs)


def test_a_single_query_splits_its_ciphertexts_over_the_encryption_workers():
    """Single packing with encryption workers: a query of several ciphertexts is encrypted by the
    workers (residue planes in shared memory, as for a batch), evaluates to the plan's logits, and a
    dead worker makes the QP encrypt in its own process instead of failing the query; a query in
    SEAL's own serialisation is still accepted."""
    import scipy.sparse as sp

    from capc.he.plan import LinearStage, Plan, SquareStage

    rng = np.random.default_rng(0)
    m, n, k = 512, 256, 200  # 200 inputs a first-layer row: a query of several ciphertexts
    cols = np.stack([rng.choice(n, k, replace=False) for _ in range(m)])
    w = sp.csr_matrix((rng.normal(size=m * k) / 10, cols.reshape(-1), np.arange(0, m * k + 1, k)), shape=(m, n))
    plan = Plan([LinearStage(w, np.zeros(m)), SquareStage(m),
                 LinearStage(sp.csr_matrix(rng.normal(size=(10, m)) / 20), np.zeros(10))], (n,), [])
    x = rng.uniform(0, 1, n)
    with QueryKeys(plan, choose_params(plan), packing="single", encrypt_workers=2) as par:
        assert par._layouts[0].query_cts >= 4
        par.warm_up()
        q = par.encrypt(x)
        pool = par._pool
        assert pool is not None and len(pool._processes) == 2
        header, sections = unframe(q, b"CAPCHEq1", "query")
        assert header["count"] == par._layouts[0].query_cts and header["encoding"] == "ntt-residues-v1"
        ev = ModelEvaluator(plan, par.public_context())
        np.testing.assert_allclose(par.decrypt_logits(ev.evaluate(q)), plan.forward(x), atol=1e-4)
        par.residue_encoding = False  # what a TenSEAL build without raw access sends
        sealed = par.encrypt(x)
        header, sections = unframe(sealed, b"CAPCHEq1", "query")
        assert "encoding" not in header and len(sections) == header["count"]
        np.testing.assert_allclose(par.decrypt_logits(ev.evaluate(sealed)), plan.forward(x), atol=1e-4)
        par.residue_encoding = True
        for proc in list(pool._processes.values()):
            proc.kill()
            proc.join()
        with pytest.warns(RuntimeWarning, match="parallel encryption failed"):
            q2 = par.encrypt(x)
        assert par.encrypt_workers == 1 and par._pool is None
        np.testing.assert_allclose(par.decrypt_logits(ev.evaluate(q2)), plan.forward(x), atol=1e-4)
