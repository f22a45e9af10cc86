"""Circuit privacy, tested as the querying party's attack on the answering party's weights.

The QP holds the secret key, made every evaluation key and chose the randomness of every query
ciphertext (it encrypts symmetrically).  Before re-randomisation the AP's mask and bias were added with
``sub_plain`` / ``add_plain``, which change c0 only, so the c1 of a returned ciphertext was a
deterministic function of the query, the keys and the weights: the QP re-ran the evaluation on a
candidate model and compared c1 (one weight changed by 1e-6 no longer matched), and in batch packing
the c1 of a Dense layer is a known linear image of the query's c1 through the weights, the starting
point of a lattice recovery of the weights.  Each test below first shows the attack on what the AP
computes before its output step (``evaluate``, the unmasked result, is exactly the old c1) and then
that it fails on what the AP returns (``evaluate_masked``).
"""

from __future__ import annotations

import numpy as np
import pytest
import tenseal.sealapi as seal

from capc.he import HEError, ModelEvaluator, QueryKeys, choose_params, compile_model, raw
from capc.he.mask import draw_flood, flooding_bits
from capc.he.seal import CONTEXT_MAGIC, RESULT_MAGIC, _Scratch, frame, unframe


def _c1(keys: QueryKeys, blob: bytes) -> list[np.ndarray]:
    """The QP's view: the c1 polynomial (RNS residues) of every ciphertext of a result."""
    from capc.he import raw

    _, sections = unframe(blob, RESULT_MAGIC, "result")
    out, scratch = [], _Scratch()
    for _, data in sections:
        ct = seal.Ciphertext()
        scratch.load(ct, bytes(data), keys._ctx)
        out.append(np.array(raw.residues(ct)[1], copy=True))
    return out


def _perturbed(model, delta: float = 1e-6):
    """The same Keras model with one weight of the last Dense layer moved by ``delta``."""
    import keras

    other = keras.models.clone_model(model)
    other.set_weights(model.get_weights())
    w = other.layers[-1].kernel.numpy()
    w[0, 0] += delta
    other.layers[-1].kernel.assign(w)
    return other


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


def _agreement(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Fraction of equal residues (about 2^-40 for independent uniform polynomials)."""
    return float(np.mean(np.concatenate([(x == y).ravel() for x, y in zip(a, b)])))


@pytest.fixture(scope="module", params=["single", "batch"])
def setup(request, model):
    plan = compile_model(model)
    keys = QueryKeys(plan.public_plan, choose_params(plan.public_plan, packing=request.param),
                     packing=request.param)
    ev = ModelEvaluator(plan, keys.public_context(), workers=1)
    x = np.random.default_rng(11).uniform(0, 1, (1, 8, 8, 1) if request.param == "batch" else (8, 8, 1))
    yield request.param, model, plan, keys, ev, keys.encrypt(x)
    ev.close()


def test_same_query_twice_gives_unrelated_c1(setup):
    _, _, _, keys, ev, q = setup
    # the attack's premise on the old output: evaluating one query twice repeats c1 exactly
    assert _same(_c1(keys, ev.evaluate(q)), _c1(keys, ev.evaluate(q)))
    first, _ = ev.evaluate_masked(q, 3)
    second, _ = ev.evaluate_masked(q, 3)
    c1a, c1b = _c1(keys, first), _c1(keys, second)
    assert _agreement(c1a, c1b) < 1e-3
    assert _agreement(c1a, _c1(keys, ev.evaluate(q))) < 1e-3


def test_candidate_model_is_not_recognised(setup):
    packing, model, plan, keys, ev, q = setup
    candidates = {"true": plan, "one weight +1e-6": compile_model(_perturbed(model))}
    views = {}
    for name, cand in candidates.items():
        with ModelEvaluator(cand, keys.public_context(), workers=1) as mine:
            views[name] = _c1(keys, mine.evaluate(q))
    # the attack works on the old output: the true model matches, the perturbed one does not
    old = _c1(keys, ev.evaluate(q))
    assert _same(views["true"], old) and not _same(views["one weight +1e-6"], old)
    # ... and fails on what the AP returns: no candidate matches, not even the true one
    returned = _c1(keys, ev.evaluate_masked(q, 3)[0])
    for name, view in views.items():
        assert _agreement(view, returned) < 1e-3, name


def test_batch_dense_layer_c1_is_fresh_uniform(model):
    """Batch packing of a bare Dense layer, the case of the lattice recovery: with one input feature
    per ciphertext the old c1 of output k is Rescale(sum_i W_ki c1_i), a fixed function of the
    integer weights W and of the query's c1, which the QP chose.  The returned c1 must carry no such
    function: it matches no re-evaluation and its residues are spread like fresh uniform ones."""
    import keras

    keras.utils.set_random_seed(3)
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    plan = compile_model(dense)
    keys = QueryKeys(plan.public_plan, choose_params(plan.public_plan, packing="batch"), packing="batch")
    with ModelEvaluator(plan, keys.public_context(), workers=1) as ev:
        x = np.random.default_rng(1).uniform(0, 1, (3, 4))
        q = keys.encrypt(x)
        old = _c1(keys, ev.evaluate(q))
        new = _c1(keys, ev.evaluate_masked(q, 3)[0])
        # the same output polynomial's c1 must be a fixed function of the weights on the old path:
        # two independent evaluations with a different AP instance give identical c1 ...
        with ModelEvaluator(plan, keys.public_context(), workers=1) as again:
            assert _same(old, _c1(keys, again.evaluate(q)))
        # ... while the returned c1 is spread uniformly: its residues mod the first prime look
        # like independent uniform draws (mean close to p/2, no agreement with the old c1)
        p = int(keys._ctx.first_context_data().parms().coeff_modulus()[0].value())
        for o, n in zip(old, new):
            assert np.mean(o[0] == n[0]) < 1e-3
            mean = float(np.mean(n[0].astype(np.float64))) / p
            assert abs(mean - 0.5) < 0.02


def test_context_without_public_key_is_refused(setup):
    _, _, plan, keys, _, _ = setup
    header, sections = unframe(keys.public_context(), CONTEXT_MAGIC, "ctx")
    stripped = frame(CONTEXT_MAGIC, header, [(t, bytes(v)) for t, v in sections if t != b"K"])
    with pytest.raises(HEError, match="no public key"):
        ModelEvaluator(plan, stripped)


def _coefficients(keys: QueryKeys, ct: seal.Ciphertext) -> np.ndarray:
    """c1 of ``ct`` in coefficient form ([L, N] residues)."""
    out = seal.Ciphertext()
    seal.Evaluator(keys._ctx).transform_from_ntt(ct, out)
    return raw.residues(out)[1].copy()


def _recover_dense_weights(a: list[np.ndarray], c1_out: np.ndarray, q0: int, q_last: int,
                           equations: int = 10) -> list[int] | None:
    """The QP's weight recovery for a batch-packed Dense layer ``y = sum_j w_j x_j`` (one output).

    Multiplying a ciphertext by the encoded weight ``w_j`` multiplies its c1 by ``w_j`` modulo every
    prime, so before the rescale ``c1_pre = sum_j w_j c1_j``; the rescale divides by ``q_last`` and
    rounds, so per coefficient ``k``: ``sum_j w_j a_jk - q_last c1_out,k = d_k (mod q0)`` with
    ``|d_k| <= q_last / 2``.  The unknown integers ``w_j`` (about ``q_last`` times the weight) and the
    small ``d_k`` form a short vector of a lattice spanned by these relations; LLL finds it (Kannan
    embedding, the last column marks the target row).  Returns the ``w_j`` or None.
    """
    from sympy import ZZ
    from sympy.polys.matrices import DomainMatrix

    n = len(a)
    d = n + equations + 1
    rows = [[int(i == j) for i in range(n)] + [int(a[j][0, k]) for k in range(equations)] + [0]
            for j in range(n)]
    rows += [[0] * n + [q0 * int(i == k) for i in range(equations)] + [0] for k in range(equations)]
    rows.append([0] * n + [(-q_last * int(c1_out[0, k])) % q0 for k in range(equations)] + [q_last // 2])
    basis = DomainMatrix([[ZZ(v) for v in r] for r in rows], (d, d), ZZ).lll().to_Matrix()
    for r in range(d):
        if abs(basis[r, d - 1]) == q_last // 2:
            sign = 1 if basis[r, d - 1] > 0 else -1
            return [int(basis[r, j]) * sign for j in range(n)]
    return None


def test_weights_of_a_batch_dense_layer_are_not_recoverable_from_c1():
    """Attack: for a batch-packed Dense layer (2 inputs, 1 output) the QP takes the c1 of its own
    query ciphertexts and of the AP's result and solves the linear relation between them for the
    weights (:func:`_recover_dense_weights`).  On the old output (the unmasked evaluation, whose c1 the old masked result shared) it
    recovers both weights to 1e-6; on the returned ciphertext, where c1 carries a fresh
    ``u * pk1 + e2``, the lattice has no such short vector and the recovery fails."""
    pytest.importorskip("sympy")
    import keras

    from capc.he import residue_wire
    from capc.he.seal import QUERY_MAGIC

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    weights = model.layers[0].get_weights()[0][:, 0].astype(np.float64)
    plan = compile_model(model)
    keys = QueryKeys(plan.public_plan, choose_params(plan.public_plan, packing="batch"), packing="batch")
    query = keys.encrypt(np.random.default_rng(0).uniform(0, 1, (4, 2)))
    # the QP's own knowledge: its query ciphertexts' c1
    header, sections = unframe(query, QUERY_MAGIC, "query")
    primes = [m.value() for m in keys._ctx.first_context_data().parms().coeff_modulus()]
    assert header.get("encoding") == residue_wire.ENCODING
    x = residue_wire.unpack(sections, primes, 2, keys.slots * 2)
    a = [_coefficients(keys, raw.new_ciphertext(keys._ctx, keys._ctx.first_parms_id(), x[j],
                                                keys.setup.he_params.scale)) for j in range(2)]

    def result_c1(blob: bytes) -> np.ndarray:
        _, secs = unframe(blob, RESULT_MAGIC, "result")
        return _coefficients(keys, keys._scratch.load(seal.Ciphertext(), bytes(secs[0][1]), keys._ctx))

    with ModelEvaluator(plan, keys.public_context(), workers=1) as ev:
        w_scale = ev._segs[0].single[0]["w_scale"]  # public: q * Delta / Delta, from the public parameters
        old = result_c1(ev.evaluate(query))  # c1 as the old masked result had it (masks touch c0 only)
        new = result_c1(ev.evaluate_masked(query, 3)[0])
    recovered = _recover_dense_weights(a, old, primes[0], primes[-1])
    assert recovered is not None
    np.testing.assert_allclose(np.array(recovered) / w_scale, weights, atol=1e-6)
    again = _recover_dense_weights(a, new, primes[0], primes[-1])
    assert again is None or not np.allclose(np.array(again) / w_scale, weights, atol=1e-3)


def test_flooding_noise_is_gaussian_and_from_the_csprng():
    g = draw_flood(200_001, 0.5)
    assert g.shape == (200_001,)
    assert abs(g.mean()) < 0.01 and abs(g.std() - 0.5) < 0.01
    assert not np.array_equal(g[:1000], draw_flood(1000, 0.5))
    # 4-sigma tail mass of a Gaussian: 6.3e-5
    assert np.mean(np.abs(g) > 2.0) < 2e-4
    assert flooding_bits(2.0 ** -21, 2.0 ** -8, 2 * 8192) == pytest.approx(-np.log2(2.0 ** 7 * 2.0 ** -21 / 2.0 ** -7))


def _all_slots(keys: QueryKeys, blob: bytes) -> np.ndarray:
    """The QP's view of every slot (real parts) of a one-ciphertext single-packing result."""
    _, sections = unframe(blob, RESULT_MAGIC, "result")
    (_, data), = sections
    ct, pt = seal.Ciphertext(), seal.Plaintext()
    _Scratch().load(ct, bytes(data), keys._ctx)
    keys._decryptor.decrypt(ct, pt)
    return np.asarray(keys._encoder.decode_double(pt), dtype=np.float64)


def test_partial_sums_of_the_last_map_are_hidden_like_the_logits():
    """Single packing's last map leaves partial sums of logit rows in slots the QP decrypts.  The attack:
    the QP reads those slots.  On the unmasked output they are the partial sums (premise: exact
    agreement with the AP's own computation); on what the AP returns, the QP's values have no
    correlation with them, and every one is masked by far more than its sound bound."""
    import scipy.sparse as sp

    from capc.he.bounds import partial_sum_bound
    from capc.he.layout import result_support
    from capc.he.plan import LinearStage, Plan, SquareStage

    rng = np.random.default_rng(21)
    m, n, k = 200, 64, 9
    cols = np.stack([rng.choice(n, k, replace=False) for _ in range(m)])
    w1 = sp.csr_matrix((rng.normal(size=m * k) / 3, cols.reshape(-1), np.arange(0, m * k + 1, k)), shape=(m, n))
    plan = Plan([LinearStage(w1, rng.normal(size=m) * 0.1), SquareStage(m),
                 LinearStage(sp.csr_matrix(rng.normal(size=(10, m)) / 10), rng.normal(size=10))], (n,), [])
    keys = QueryKeys(plan.public_plan, choose_params(plan.public_plan))
    spec = keys._layouts[0].diags[2]
    support = result_support(spec, keys.slots)
    partial = support.copy()
    partial[:10] = False
    assert partial.sum() > 100  # the folds spread partial sums over many slots
    truth, seen = [], []
    with ModelEvaluator(plan, keys.public_context()) as ev:
        for _ in range(3):
            q = keys.encrypt(rng.uniform(0, 1, n))
            plain = _all_slots(keys, ev.evaluate(q))
            masked = _all_slots(keys, ev.evaluate_masked(q, 3)[0])
            truth.append(plain[partial])
            seen.append(masked[partial])
        assert ev.last_hiding["partial_coords"] == partial.sum()
    truth, seen = np.concatenate(truth), np.concatenate(seen)
    assert np.abs(truth).max() <= partial_sum_bound(plan) and np.abs(truth).max() > 0.1
    assert abs(np.corrcoef(truth, seen)[0, 1]) < 0.2  # about 1/sqrt(samples) if independent
    assert np.abs(seen).std() > 2.0 ** 20 * np.abs(truth).max()
