"""Fast batch packing (capc.he.batch / capc.he.raw): exact RNS arithmetic, worker processes, shutdown."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from capc.he import ModelEvaluator, QueryKeys, choose_params, compile_model, raw


def test_raw_layout_is_recognised():
    assert raw.supported()


def test_compiled_limb_kernels_are_built():
    assert raw._rns is not None, "capc.he._rns was not built (pip install -e . compiles it)"


@pytest.mark.parametrize("kernel", ["compiled", "numpy"])
def test_matmul_mod_is_exact(kernel, monkeypatch):
    if kernel == "numpy":
        monkeypatch.setattr(raw, "_rns", None)
    rng = np.random.default_rng(0)
    # a 60-bit, a 40-bit and a 53-bit modulus (the boundary of the two reduction paths)
    for q in ((1 << 60) - 93, 1099511480321, (1 << 53) - 111):
        w = rng.integers(-2 ** 22, 2 ** 22, (7, 300)).astype(np.float64)
        w[:, ::3] = 0
        w[0] = 2 ** 22 - 1  # the largest row sum: partial sums close to 2^53
        x = rng.integers(0, q, (300, 50), dtype=np.uint64)
        x[:, 0] = q - 1
        factor = int(rng.integers(1, q))
        bias = rng.integers(0, q, 7, dtype=np.uint64)
        want = np.array([[sum(int(a) * int(b) for a, b in zip(w[i], x[:, k])) % q for k in range(50)]
                         for i in range(7)], dtype=object)
        for ww in (w, sp.csr_matrix(w)):
            got = raw.matmul_mod(ww, x, q, raw.limb_bits(ww))
            assert (got.astype(object) == want).all()
            got = raw.matmul_mod(ww, x, q, raw.limb_bits(ww), factor, bias)
            expect = (want * factor + bias.astype(object)[:, None]) % q
            assert (got.astype(object) == expect).all()
        c = int(rng.integers(0, q))
        assert [int(v) for v in raw.mulmod(x[0], c, q)] == [int(v) * c % q for v in x[0]]


@pytest.fixture(scope="module")
def batch_setup(model):
    plan = compile_model(model)
    keys = QueryKeys(plan, choose_params(plan, packing="batch"), packing="batch")
    return plan, keys


def test_two_workers_match_one_worker_and_slow_path(batch_setup):
    plan, keys = batch_setup
    x = np.random.default_rng(3).uniform(0, 1, (64, 8, 8, 1))
    q = keys.encrypt(x)
    with ModelEvaluator(plan, keys.public_context(), workers=1) as ev1:
        z1 = keys.decrypt_logits(ev1.evaluate(q))
    with ModelEvaluator(plan, keys.public_context(), workers=2) as ev2:
        assert ev2._segs[0].engine is not None
        z2 = keys.decrypt_logits(ev2.evaluate(q))
        z2b = keys.decrypt_logits(ev2.evaluate(q))  # the pool is reused across queries
        pool = ev2._segs[0].engine._pool
        assert pool is not None
    z0 = keys.decrypt_logits(ModelEvaluator(plan, keys.public_context(), fast_batch=False).evaluate(q))
    # evaluation is deterministic and the RNS arithmetic exact: splitting over processes changes nothing
    np.testing.assert_array_equal(z1, z2)
    np.testing.assert_array_equal(z2, z2b)
    np.testing.assert_allclose(z1, plan.forward(x), atol=1e-4)
    np.testing.assert_allclose(z1, z0, atol=1e-4)
    # clean shutdown: leaving the with-block stopped every worker process
    assert ev2._segs[0].engine._pool is None
    assert all(not p.is_alive() for p in pool._processes.values()) if pool._processes else True


def test_close_is_idempotent_and_evaluator_restarts(batch_setup):
    plan, keys = batch_setup
    x = np.random.default_rng(4).uniform(0, 1, (5, 8, 8, 1))
    ev = ModelEvaluator(plan, keys.public_context(), workers=2)
    z = keys.decrypt_logits(ev.evaluate(keys.encrypt(x)))
    procs = list(ev._segs[0].engine._pool._processes.values())
    assert procs and all(p.is_alive() for p in procs)
    ev.close()
    ev.close()
    assert all(not p.is_alive() for p in procs)
    np.testing.assert_allclose(keys.decrypt_logits(ev.evaluate(keys.encrypt(x))), z, atol=1e-6)
    ev.close()


def test_prepare_builds_the_batch_stages_and_starts_the_workers(batch_setup):
    """prepare(B) at set-up: the lane stages for B's lane count exist and every worker process is up
    before the first batch; a prepared evaluator gives exactly the results of an unprepared one, also
    for a batch of another size; bad sizes are refused."""
    from capc.he import HEError

    plan, keys = batch_setup
    x = np.random.default_rng(5).uniform(0, 1, (40, 8, 8, 1))
    q = keys.encrypt(x)
    lanes = keys.batch_layout(0, 40).lanes
    with ModelEvaluator(plan, keys.public_context(), workers=2) as cold:
        want = keys.decrypt_logits(cold.evaluate(q))
    with ModelEvaluator(plan, keys.public_context(), workers=2) as ev:
        engine = ev._segs[0].engine
        assert engine._pool is None and not engine._lane_stages
        ev.prepare(40)
        assert lanes > 1 and lanes in engine._lane_stages
        assert engine._lane_stages[lanes][2].paired  # the lane-summed outputs are finished in pairs
        procs = list(engine._pool._processes.values())
        assert len(procs) == 2 and all(p.is_alive() for p in procs)
        np.testing.assert_array_equal(keys.decrypt_logits(ev.evaluate(q)), want)
        assert list(engine._pool._processes.values()) == procs  # the same workers served the batch
        np.testing.assert_allclose(keys.decrypt_logits(ev.evaluate(keys.encrypt(x[:3]))), want[:3], atol=1e-6)
        for bad in (0, -1, keys.slots + 1, True, 2.5):
            with pytest.raises(HEError, match="batch_size"):
                ev.prepare(bad)


def test_bad_worker_count(batch_setup):
    plan, keys = batch_setup
    from capc.he import HEError

    with pytest.raises(HEError, match="workers"):
        ModelEvaluator(plan, keys.public_context(), workers=0)


def test_blocked_threaded_affine_stage_is_exact(batch_setup):
    """_Linear.apply (column blocks on 1 or 2 threads, sizes 2 and 3) equals one whole-array product."""
    from capc.he import batch

    plan, keys = batch_setup
    with ModelEvaluator(plan, keys.public_context(), workers=2) as ev:
        eng = ev._segs[0].engine
        rng = np.random.default_rng(7)
        for idx, lin in eng.linear.items():
            primes = lin.primes
            n = plan.stages[idx].shape[1]
            for size in (2, 3):
                x = np.stack([rng.integers(0, q, (n, size, ev.N), dtype=np.uint64) for q in primes], axis=2)
                outs = []
                for threads in (1, 2):
                    out = np.empty((lin.m, size, len(primes), ev.N), dtype=np.uint64)
                    lin.apply(x, out, threads)
                    outs.append(out)
                np.testing.assert_array_equal(outs[0], outs[1])
                for i, q in enumerate(primes):
                    flat = np.ascontiguousarray(x[:, :, i, :]).reshape(n, size * ev.N)
                    want = raw.mulmod(raw.matmul_mod(lin.w, flat, q, lin.bits), 1 << lin.shift, q)
                    want = want.reshape(lin.m, size, ev.N)
                    want[:, 0] = raw.addmod(want[:, 0], lin.bias[i][:, None], q)
                    np.testing.assert_array_equal(outs[0][:, :, i, :], want)
        # the affine stage after a square runs one level up on size-3 inputs and rescales twice
        assert [(lin.level, lin.drops) for lin in eng.linear.values()][1:] == \
            [(eng.schedule[i - 1][0], 2) for i in list(eng.linear)[1:]]
        assert batch.CHUNK < ev.N


@pytest.mark.parametrize("hidden", [7, 8])
def test_paired_lane_sums_give_the_plain_outputs(hidden):
    """The lane-summed layer's outputs are finished two at a time (one complex ciphertext, one
    relinearisation, one lane sum, one conjugation to split): with an odd layer one output goes alone.
    Every logit matches the plaintext model, and the same evaluator without the conjugation key (the
    unpaired finish) agrees."""
    import keras

    from capc.he.layers import Square

    keras.utils.set_random_seed(hidden)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(3, 3, strides=2, padding="same"),
                              Square(), keras.layers.Flatten(), keras.layers.Dense(hidden), Square(),
                              keras.layers.Dense(10)])
    plan = compile_model(model)
    keys = QueryKeys(plan, choose_params(plan, packing="batch"), packing="batch")
    x = np.random.default_rng(hidden).uniform(0, 1, (9, 8, 8, 1))
    assert keys.batch_layout(0, 9).lanes > 1
    q = keys.encrypt(x)
    with ModelEvaluator(plan, keys.public_context(), workers=2) as ev:
        ev.prepare(9)
        lanes = keys.batch_layout(0, 9).lanes
        assert ev._segs[0].engine._lane_stages[lanes][2].paired
        z = keys.decrypt_logits(ev.evaluate(q))
        np.testing.assert_allclose(z, plan.forward(x), atol=1e-4)
        ev._segs[0].engine.conjugate = False
        ev._segs[0].engine._lane_stages.clear()
        np.testing.assert_allclose(keys.decrypt_logits(ev.evaluate(q)), z, atol=1e-4)
        assert not ev._segs[0].engine._lane_stages[lanes][2].paired
