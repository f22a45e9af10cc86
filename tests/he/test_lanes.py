"""Lane packing (capc.he.lanes): the subring arithmetic, the layout rule, and whole evaluations with
several lanes per query against the plaintext plan, in both batch evaluators."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import tenseal.sealapi as seal

from capc.he import ModelEvaluator, QueryKeys, choose_params, compile_model, raw
from capc.he import lanes as ln
from capc.he.errors import HEError
from capc.he.layout import batch_layout, query_vectors, result_values
from capc.he.plan import ConvGeometry, PublicPlan

from .conftest import small_model

CRYPTONETS = ConvGeometry(28, 28, 1, 14, 14, 5, 5, 5, 2, 2, 1, 1)


def _public(geom: ConvGeometry | None, stages: int = 5, input_size: int = 784) -> PublicPlan:
    shapes = (("linear", 980, input_size), ("square", 980, 980), ("linear", 100, 980), ("square", 100, 100),
              ("linear", 10, 100))[:stages]
    if stages == 1:
        shapes = (("linear", 980, input_size),)
    return PublicPlan((input_size,), shapes[-1][1], shapes, np.zeros(981, np.int64), np.zeros(0, np.int64), geom)


@pytest.mark.parametrize("lanes", [2, 8, 32])
def test_a_lane_weighted_product_multiplies_each_lane_by_its_weight(lanes):
    """Regression (SEAL's slot generator is 3, not 5): the NTT-class values of the polynomial in
    X^(N/2P) built by lane_coefficients multiply slot s of a ciphertext by w[s mod P]."""
    n = 4096
    parms = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(n)
    parms.set_coeff_modulus(seal.CoeffModulus.Create(n, [50, 40, 50]))
    ctx = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.NONE)
    sk = seal.KeyGenerator(ctx).secret_key()
    enc, dec, ce = seal.Encryptor(ctx, sk), seal.Decryptor(ctx, sk), seal.CKKSEncoder(ctx)
    rng = np.random.default_rng(lanes)
    x = rng.uniform(-1, 1, n // 2)
    pt = seal.Plaintext()
    ce.encode(x.tolist(), 2.0 ** 30, pt)
    ct = seal.Ciphertext()
    enc.encrypt_symmetric(pt, ct)
    pid = ct.parms_id()
    primes = [m.value() for m in ctx.get_context_data(pid).parms().coeff_modulus()]
    mono = np.zeros((2, len(primes), n), dtype=np.uint64)
    mono[:, :, n // (2 * lanes)] = 1
    y = raw.new_ciphertext(ctx, pid, mono, 1.0)
    raw.set_ntt_form(y, False)
    seal.Evaluator(ctx).transform_to_ntt_inplace(y)
    y_ntt = raw.residues(y)[0].copy()
    w = rng.uniform(-2, 2, lanes)
    coeffs = ln.lane_coefficients(w, lanes)
    res = raw.residues(ct)
    for i, q in enumerate(primes):
        cls = ln.ntt_classes(y_ntt[i], q, lanes)
        assert sorted(np.concatenate(cls.index).tolist()) == list(range(n))
        vals = ln.class_values(coeffs, 2.0 ** 20, cls)
        for c, idx in enumerate(cls.index):
            for k in range(2):
                res[k, i, idx] = raw.mulmod(res[k, i, idx].copy(), int(vals[c]), q)
    ct.scale = 2.0 ** 50
    out = seal.Plaintext()
    dec.decrypt(ct, out)
    got = np.asarray(ce.decode_double(out))
    np.testing.assert_allclose(got, x * w[np.arange(n // 2) % lanes], atol=1e-4)


def test_lane_count_follows_the_batch_and_never_grows_the_query():
    plan = _public(CRYPTONETS)
    assert [ln.lane_count(plan, b, 8192) for b in (1, 100, 512, 513, 1000, 1024)] == [16, 16, 16, 8, 8, 8]
    # 2 or 4 lanes would make the im2col query larger than the 784 plain ciphertexts
    assert [ln.lane_count(plan, b, 8192) for b in (1025, 2048, 4096, 8192)] == [1, 1, 1, 1]
    assert ln.lane_count(_public(None), 10, 8192) == 1
    one_stage = _public(CRYPTONETS, stages=1)
    assert ln.lane_count(one_stage, 100, 8192) == 64 and ln.lane_count(one_stage, 1000, 8192) == 8
    assert ln.lane_rotation_steps(plan) == [1, 2, 4, 8] and ln.lane_rotation_steps(one_stage) == []
    lay = batch_layout(plan, 8192, 1000)
    assert (lay.lanes, lay.query_cts, lay.batch_size) == (8, 25 * 25, 1024)


def test_query_and_result_tables_place_every_value_once():
    g = CRYPTONETS
    table = ln.query_table(g, 8)
    patches = g.patches()
    for ct in (0, 13, 24 * 25 + 7):
        grp, k = divmod(ct, g.taps)
        for lane in range(8):
            p = grp * 8 + lane
            assert table[ct, lane] == (patches[p, k] if p < g.positions else -1)
    units = ln.unit_table(g, 8)
    flat = units[units >= 0]
    assert sorted(flat.tolist()) == list(range(g.positions * g.cout))
    lay = batch_layout(_public(g, stages=1), 8192, 3)
    vals = np.random.default_rng(0).uniform(size=(3, 784))
    vecs = query_vectors(lay, vals)
    assert vecs.shape == (lay.query_cts, 3 * lay.lanes)
    # a result laid out by the unit table reads back in unit order
    y = np.random.default_rng(1).uniform(size=(3, 980))
    slots = np.zeros((lay.result_units.shape[0], 3 * lay.lanes))
    for j, row in enumerate(lay.result_units):
        for lane, u in enumerate(row):
            if u >= 0:
                slots[j, lane::lay.lanes] = y[:, u]
    np.testing.assert_array_equal(result_values(lay, list(slots), 3), y)


def test_conv_geometry_is_public_only_for_an_exact_convolution():
    plan = compile_model(small_model())
    g = plan.public_plan.first_conv
    assert g == ConvGeometry(8, 8, 1, 4, 4, 4, 3, 3, 2, 2, 0, 0)
    first = plan.stages[0]
    assert g.kernel_of(first.weight, first.bias) is not None
    # a per-pixel scale folded in front breaks translation invariance: no geometry, one lane
    scaled = first.weight @ sp.diags(np.linspace(0.5, 1.5, 64))
    assert g.kernel_of(sp.csr_matrix(scaled), first.bias) is None
    assert g.kernel_of(first.weight, first.bias + np.arange(first.bias.size)) is None
    back = PublicPlan.from_bytes(plan.public_plan.to_bytes())
    assert back.first_conv == g and back.fingerprint == plan.fingerprint
    import json

    d = json.loads(plan.public_plan.to_bytes())
    d["first_conv"] = [1] * 12
    with pytest.raises(HEError, match="geometry"):
        PublicPlan.from_bytes(json.dumps(d).encode())


@pytest.fixture(scope="module")
def lane_setup():
    plan = compile_model(small_model(3))
    keys = QueryKeys(plan, choose_params(plan, packing="batch"), packing="batch")
    return plan, keys


@pytest.mark.parametrize("fast", [True, False])
def test_batches_with_and_without_lanes_match_the_plaintext_plan(lane_setup, fast):
    plan, keys = lane_setup
    with ModelEvaluator(plan, keys.public_context(), workers=1, fast_batch=fast) as ev:
        for b, lanes in (((5, 16), (700, 8)) if fast else ((5, 16),)):
            x = np.random.default_rng(b).uniform(0, 1, (b, 8, 8, 1))
            lay = keys.batch_layout(0, b)
            assert lay.lanes == lanes and lay.query_cts < plan.input_size
            z = keys.decrypt_logits(ev.evaluate(keys.encrypt(x)))
            np.testing.assert_allclose(z, plan.forward(x), atol=1e-4)
        if fast:  # one lane
            b = keys.slots // 2 + 1
            x = np.random.default_rng(9).uniform(0, 1, (b, 8, 8, 1))
            assert keys.batch_layout(0, b).lanes == 1
            np.testing.assert_allclose(keys.decrypt_logits(ev.evaluate(keys.encrypt(x))), plan.forward(x), atol=1e-4)


def test_the_evaluator_refuses_a_query_with_the_wrong_lane_count(lane_setup):
    from capc.he.seal import QUERY_MAGIC, frame, unframe

    plan, keys = lane_setup
    q = keys.encrypt(np.random.default_rng(2).uniform(0, 1, (4, 8, 8, 1)))
    header, secs = unframe(q, QUERY_MAGIC, "query")
    with ModelEvaluator(plan, keys.public_context(), workers=1) as ev:
        with pytest.raises(HEError, match="lanes"):
            ev.evaluate(frame(QUERY_MAGIC, {**header, "lanes": 1}, secs))


def _simulate_slots(plan, lay, x: np.ndarray, slots: int) -> np.ndarray:
    """Plaintext model of every slot of a lane-packed evaluation (garbage lanes included)."""
    g = plan.public_plan.first_conv
    p = lay.lanes
    v = np.zeros((lay.query_cts, slots))
    v[:, :x.shape[0] * p] = query_vectors(lay, x.reshape(x.shape[0], -1))
    st0 = ln.lane_first_stage(plan.stages[0], g, p)
    cur = st0.weight @ v + st0.bias[:, None]
    lane = np.arange(slots) % p
    for idx, st in enumerate(plan.stages[1:], start=1):
        if not hasattr(st, "weight"):
            cur = cur * cur
        elif idx == 2:
            dense, bias = ln.lane_weights(st, ln.unit_table(g, p))
            a = np.einsum("ijs,js->is", dense[:, :, lane], cur) + bias[:, lane]
            cur = sum(np.roll(a, -k, axis=1) for k in range(p))
        else:
            cur = st.weight @ cur + st.bias[:, None]
    return cur


def test_every_slot_of_a_lane_result_is_the_network_on_in_box_inputs(lane_setup):
    """All slots, not just lane 0, match the layout's plaintext model, and they stay within the
    derived bound that sizes the mask and the headroom (each P-lane window holds one bias)."""
    plan, keys = lane_setup
    b = 37
    x = np.random.default_rng(11).uniform(0, 1, (b, 8, 8, 1))
    lay = keys.batch_layout(0, b)
    with ModelEvaluator(plan, keys.public_context(), workers=1) as ev:
        blob = ev.evaluate(keys.encrypt(x))
        bound = ev.derived_bound
    from capc.he.seal import RESULT_MAGIC, unframe

    _, secs = unframe(blob, RESULT_MAGIC, "result")
    got = []
    for _, data in secs:
        ct = seal.Ciphertext()
        keys._scratch.load(ct, data, keys._ctx)
        pt = seal.Plaintext()
        keys._decryptor.decrypt(ct, pt)
        got.append(keys._encoder.decode_double(pt))
    got = np.asarray(got)
    want = _simulate_slots(plan, lay, x, keys.slots)
    np.testing.assert_allclose(got, want, atol=1e-3)
    assert np.abs(got).max() <= bound
    np.testing.assert_allclose(result_values(lay, list(got), b), plan.forward(x), atol=1e-4)
    # independently of the lane code: lane l of query q is the network on the hidden layer whose
    # positions in lanes >= l come from query q and the others from query q + 1
    g = plan.public_plan.first_conv
    flat = x.reshape(b, -1)
    hidden = (plan.stages[0].weight @ flat.T + plan.stages[0].bias[:, None]) ** 2  # [units, B]
    lane_of_unit = (np.arange(hidden.shape[0]) // g.cout) % lay.lanes
    for q, lane in [(0, 1), (5, 3), (20, 7)]:
        mixed = np.where(lane_of_unit >= lane, hidden[:, q], hidden[:, q + 1])
        v = mixed
        for st in plan.stages[2:]:
            v = st.weight @ v + st.bias if hasattr(st, "weight") else v * v
        np.testing.assert_allclose(got[:, q * lay.lanes + lane], v, atol=1e-3)


def _decrypt_all_slots(keys: QueryKeys, blob: bytes) -> np.ndarray:
    """The QP's view of a result: every slot of every ciphertext, decrypted with its secret key."""
    from capc.he.seal import RESULT_MAGIC, unframe

    _, secs = unframe(blob, RESULT_MAGIC, "result")
    out = []
    for _, data in secs:
        ct = seal.Ciphertext()
        keys._scratch.load(ct, bytes(data), keys._ctx)
        pt = seal.Plaintext()
        keys._decryptor.decrypt(ct, pt)
        out.append(keys._encoder.decode_double(pt))
    return np.asarray(out, dtype=np.float64)


def test_qp_reading_the_other_lanes_of_a_returned_result_learns_nothing(lane_setup):
    """Attack: besides query q's logits in slot q P, a lane-packed result holds in every other slot
    the network on a hidden layer mixed from two queries (or on an all-zero input past the batch) --
    functions of the AP's weights, here through the paired finish.  The QP decrypts every slot.  On
    the unmasked output those slots are the values the layout defines (premise); on what the AP
    returns, the QP's values have no correlation with them and each is masked far beyond its bound."""
    plan, keys = lane_setup
    b = 37
    lay = keys.batch_layout(0, b)
    assert lay.lanes > 1 and lay.conjugate  # the paired finish is the one under attack
    x = np.random.default_rng(5).uniform(0, 1, (b, 8, 8, 1))
    other = np.ones(keys.slots, dtype=bool)
    other[np.arange(b) * lay.lanes] = False  # every slot but the logits the QP is entitled to
    with ModelEvaluator(plan, keys.public_context(), workers=1) as ev:
        q = keys.encrypt(x)
        truth = _decrypt_all_slots(keys, ev.evaluate(q))[:, other].ravel()
        seen = _decrypt_all_slots(keys, ev.evaluate_masked(q, 3)[0])[:, other].ravel()
        bound = ev.derived_bound
    want = _simulate_slots(plan, lay, x, keys.slots)[:, other].ravel()
    np.testing.assert_allclose(truth, want, atol=1e-3)
    assert np.abs(truth).max() <= bound and np.abs(truth).std() > 1e-3
    assert abs(np.corrcoef(truth, seen)[0, 1]) < 0.05  # about 1/sqrt(samples) if independent
    assert np.abs(seen).std() > 2.0 ** 20 * np.abs(truth).max()
