"""The hybrid protocol's views, tested as attacks (curious QP with its secret key, its randomness,
the AP's public architecture and candidate weights):

* every ciphertext the AP returns, at every segment, is re-randomised: the unmasked evaluation of one
  query repeats c1 exactly (the attack's premise), the returned results of two evaluations do not, and
  no candidate model's re-evaluation matches what came back;
* the QP's decrypted view of a hidden layer (the masked pre-activations z - r) and of a GC layer's
  output (y - m) does not tell two weight sets apart: the best distinguisher against a uniform mask
  of half-width R, the support test "is v - z within [-R, R]?", accepts the wrong model on every
  draw; the same test with the mask shrunk to a few bits catches it at once (the test can fail).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from capc import fixedpoint
from capc.config import load_he_params
from capc.he import ModelEvaluator, QueryKeys, choose_params, compile_model
from capc.he.hybrid import HybridPlan
from capc.he.plan import LinearStage, Plan

from .test_circuit_privacy import _agreement, _c1, _same

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "digits-cryptonets-relu" / "party-1.keras"
F = 8


@pytest.fixture(scope="module")
def plan() -> HybridPlan:
    p = compile_model(str(MODEL))
    assert isinstance(p, HybridPlan) and len(p.segments) == 3
    return p


def _other(plan: HybridPlan, seed: int = 5) -> HybridPlan:
    """A candidate: the same architecture, the hidden segment's weights redrawn."""
    rng = np.random.default_rng(seed)
    segs = list(plan.segments)
    st = segs[1].stages[0]
    w = st.weight.copy()
    w.data = rng.normal(0, np.std(w.data), w.nnz)
    segs[1] = Plan([LinearStage(sp.csr_matrix(w), st.bias.copy())], segs[1].input_shape, [])
    return HybridPlan(segs, plan.gc_layers, plan.input_shape, plan.layers)


def _pair(plan, packing):
    he = load_he_params(str(ROOT / "config" / "10.json")) if packing == "batch" else None
    keys = QueryKeys(plan.public_plan, choose_params(plan.public_plan, he, packing=packing, frac_bits=F,
                                                     hiding_bits=30), packing=packing)
    return keys, ModelEvaluator(plan, keys.public_context(), hiding_bits=30, workers=1)


def _segment_query(keys, ev, packing, k, x):
    """The blob and the AP's unmask for segment k of query x (k > 0: masked activations)."""
    if k == 0:
        return keys.encrypt(x if packing == "batch" else x[0]), None
    n = ev.plan.segments[k].input_size
    y = np.abs(np.random.default_rng(k).normal(0, 1, (len(x), n)))
    m = ev.activation_mask(k - 1, len(x), F)
    masked = fixedpoint.decode(fixedpoint.sub(fixedpoint.encode(y, F), m), F)
    if packing == "single":
        return keys.encrypt(masked[0], segment=k), m[0]
    return keys.encrypt(masked, segment=k), m


@pytest.mark.parametrize("packing", ["batch", "single"])
def test_every_segment_returns_rerandomised_ciphertexts(plan, packing):
    keys, ev = _pair(plan, packing)
    cand = ModelEvaluator(plan, keys.public_context(), hiding_bits=30, workers=1)  # the QP's replica
    x = np.random.default_rng(2).uniform(0, 1, (2, 8, 8, 1))
    try:
        for k in range(3):
            q, unmask = _segment_query(keys, ev, packing, k, x)
            old = _c1(keys, ev.evaluate(q, unmask, F))
            assert _same(old, _c1(keys, cand.evaluate(q, unmask, F)))  # premise: a replica matches
            first = _c1(keys, ev.evaluate_masked(q, F, unmask)[0])
            second = _c1(keys, ev.evaluate_masked(q, F, unmask)[0])
            assert _agreement(first, second) < 1e-3, k
            assert _agreement(first, old) < 1e-3, k
    finally:
        ev.close()
        cand.close()


def _support_test(views: np.ndarray, z: np.ndarray, half_width: float) -> bool:
    """True if every view is consistent with pre-activations z under a mask in [-R, R]."""
    return bool(np.all(np.abs(views - z) <= half_width))


def test_qp_view_of_a_hidden_layer_does_not_tell_weights_apart(plan):
    """Segment 1's masked pre-activations under the true weights are consistent with a candidate's."""
    other = _other(plan)
    keys, ev = _pair(plan, "batch")
    x = np.random.default_rng(4).uniform(0, 1, (4, 8, 8, 1))
    y = np.maximum(plan.segments[0].forward(x.reshape(4, -1)), 0.0)
    z_true, z_other = plan.segments[1].forward(y), other.segments[1].forward(y)
    assert np.abs(z_true - z_other).max() > 1.0  # the candidates differ
    try:
        views = []
        for _ in range(8):
            m = ev.activation_mask(0, 4, F)
            masked = fixedpoint.decode(fixedpoint.sub(fixedpoint.encode(y, F), m), F)
            res, _ = ev.evaluate_masked(keys.encrypt(masked, segment=1), F, m)
            views.append(keys.decrypt_logits(res))
        hiding = ev.last_hiding
        half = 2.0 ** (hiding["requested_bits"] + int(np.ceil(np.log2(hiding["logit_bound"]))))
        v = np.stack(views)
        assert _support_test(v, z_true, half)
        assert _support_test(v, z_other, half)  # the wrong model is never excluded
        # control: the same distinguisher against a 2-bit mask tells them apart at once
        small = np.random.default_rng(0).uniform(-4, 4, v.shape)
        assert _support_test(z_true + small, z_true, 4.0)
        assert not _support_test(z_true + small, z_other, 4.0)
    finally:
        ev.close()


def test_qp_view_of_a_gc_layer_output_does_not_tell_activations_apart(plan):
    """y - m for the layer outputs of two different models: the mask's support covers both."""
    keys, ev = _pair(plan, "batch")
    try:
        rng = np.random.default_rng(8)
        y_a = np.maximum(rng.normal(0, 3, (4, 80)), 0)
        y_b = np.maximum(rng.normal(0, 3, (4, 80)), 0)
        bound = ev._segs[0].bound
        views = np.stack([fixedpoint.decode(fixedpoint.sub(fixedpoint.encode(y_a, F), ev.activation_mask(0, 4, F)), F)
                          for _ in range(16)])
        from capc.he.params import mask_sizing

        s, b, _ = mask_sizing(0.0, bound, F, requested=30)
        assert s >= 24
        half = 2.0 ** (s + b)
        assert _support_test(views, y_b, half + 1) and _support_test(views, y_a, half + 1)
        # the mask is spread over its whole range (not, say, a constant or a few bits)
        spread = float(np.std(views))
        assert spread > 0.3 * half
    finally:
        ev.close()
