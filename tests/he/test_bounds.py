"""Declared input domain and the sound logit bound (capc.he.bounds) that sizes the mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capc.he import HEError, ParameterError, QueryKeys, choose_params, compile_model
from capc.he.bounds import PIXELS, InputDomain, derive_logit_bound
from capc.he.params import PRECISION_BITS, achievable_hiding_bits
from capc.he.plan import LinearStage, Plan, SquareStage
from tests.he.conftest import small_model

MODELS = Path(__file__).resolve().parents[2] / "models" / "digits"


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    out = {f"digits-{i}": compile_model(str(MODELS / f"party-{i}.pb")) for i in range(1, 4)}
    out["random-poly"] = compile_model(small_model(seed=5, polynomial=True))
    return out


def _coordinate_ascent(plan: Plan, bound: float, seed: int, sweeps: int = 2) -> float:
    """Gradient-free adversary: maximise max|z| over the box by trying each pixel at 0 and 1."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, plan.input_size).astype(np.float64)
    best = float(np.abs(plan.forward(x)).max())
    for _ in range(sweeps):
        for i in rng.permutation(plan.input_size):
            cand = np.repeat(x[None], 2, axis=0)
            cand[:, i] = (0.0, 1.0)
            vals = np.abs(plan.forward(cand)).max(axis=1)
            k = int(np.argmax(vals))
            if vals[k] > best:
                best, x = float(vals[k]), cand[k]
    assert best <= bound
    return best


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_logits_never_exceed_the_derived_bound(plans: dict[str, Plan], data: st.DataObject) -> None:
    """Random in-domain inputs, box corners and mixtures never reach past the derived bound."""
    name = data.draw(st.sampled_from(sorted(plans)))
    plan = plans[name]
    bound = derive_logit_bound(plan, PIXELS)
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = data.draw(st.sampled_from(["uniform", "corner", "sparse"]))
    if kind == "uniform":
        x = rng.uniform(0, 1, (16, plan.input_size))
    elif kind == "corner":
        x = rng.integers(0, 2, (16, plan.input_size)).astype(np.float64)
    else:
        x = (rng.uniform(0, 1, (16, plan.input_size)) < 0.1).astype(np.float64)
    assert np.abs(plan.forward(x)).max() <= bound


def test_adversarial_search_stays_below_the_bound(plans: dict[str, Plan]) -> None:
    """Coordinate ascent over the pixel corners (where an IBP-sound bound is approached) stays
    below the bound, and beats random inputs, so the test exercises the bound's worst case."""
    for name, plan in plans.items():
        bound = derive_logit_bound(plan)
        best = _coordinate_ascent(plan, bound, seed=1)
        rand = np.abs(plan.forward(np.random.default_rng(0).uniform(0, 1, (64, plan.input_size)))).max()
        assert best >= rand, name


def test_bound_is_exact_for_a_single_affine_map() -> None:
    """For y = Wx + b over a box the interval bound is attained at a corner (tightness check)."""
    w = np.array([[2.0, -3.0, 0.5]])
    plan = Plan([LinearStage(sp.csr_matrix(w), np.array([0.25]))], (3,), ["dense"])
    # max |2a - 3b + 0.5c + 0.25| on [0,1]^3: 2 + 0.5 + 0.25 = 2.75 vs |-3 + 0.25| = 2.75
    assert derive_logit_bound(plan) == pytest.approx(2.75, abs=2e-3)
    assert derive_logit_bound(plan) >= 2.75


def test_square_of_an_interval_across_zero() -> None:
    """x in [-1, 2] -> x^2 in [0, 4]: the square stage is exact per neuron (not [1, 4])."""
    ident = sp.identity(1, format="csr")
    plan = Plan([LinearStage(ident, np.array([0.0])), SquareStage(1),
                 LinearStage(-ident, np.array([0.0]))], (1,), [])
    domain = InputDomain(-1.0, 2.0)
    assert 4.0 <= derive_logit_bound(plan, domain) < 4.01


def test_large_weights_get_a_larger_bound_and_fewer_or_refused_hiding_bits(plans) -> None:
    """Scaling the last layer's weights scales B, which lowers the achievable hiding bits and
    finally refuses the mask."""
    plan = plans["digits-1"]
    b = derive_logit_bound(plan)
    last = plan.stages[-1]
    big = Plan([*plan.stages[:-1], LinearStage(last.weight * 2.0**10, last.bias * 2.0**10)],
               plan.input_shape, [])
    b_big = derive_logit_bound(big)
    assert b_big == pytest.approx(b * 2.0**10, rel=1e-3)
    s = achievable_hiding_bits(b, 3)
    assert s + int(np.ceil(np.log2(b))) + 3 <= PRECISION_BITS
    with pytest.raises(ParameterError, match="too large to mask"):
        achievable_hiding_bits(b_big, 3)


def test_query_keys_refuse_out_of_domain_values(plans) -> None:
    """A QP encrypting x = 2^58 e_k (the weight-reading attack) or a scaled-up image is refused,
    naming the domain and the value; before the domain check such a query was encrypted."""
    plan = plans["digits-1"]
    keys = QueryKeys(plan.public_plan, choose_params(plan))
    x = np.zeros(plan.input_shape)
    x.flat[7] = 2.0**58
    with pytest.raises(HEError, match=r"outside the model's declared input domain \[0, 1\]") as exc:
        keys.encrypt(x)
    assert "2.88230376151711" in str(exc.value) and "index 7" in str(exc.value)
    with pytest.raises(HEError, match="input domain"):
        keys.encrypt(np.full(plan.input_shape, -0.5))
    keys.encrypt(np.ones(plan.input_shape))  # the box's corner is in the domain


def test_input_domain_rejects_bad_declarations() -> None:
    with pytest.raises(HEError, match="empty"):
        InputDomain(1.0, 0.0)
    with pytest.raises(HEError, match="finite"):
        InputDomain(0.0, float("inf"))
    assert InputDomain.from_dict(PIXELS.to_dict()) == PIXELS
    with pytest.raises(HEError, match="'lo' and 'hi'"):
        InputDomain.from_dict({"lo": 0})


def test_learning_side_declares_the_same_pixel_domain() -> None:
    """capc.learning (which must work without the HE stack) mirrors PIXELS for datasets and cards."""
    from capc.learning.cards import _pixels
    from capc.learning.datasets import PIXEL_DOMAIN

    assert (PIXELS.lo, PIXELS.hi) == PIXEL_DOMAIN
    assert InputDomain.from_dict(_pixels()) == PIXELS


def test_hiding_report_is_honest_about_a_trusted_bound_below_the_derived_one() -> None:
    """Old behaviour: with B = 16 trusted, a logit up to D = 2^12 gives the QP a distinguishing
    advantage up to 2^-40 * D / B = 2^-32, while the report claimed 40 bits.  Now it says 32."""
    from capc.he.mask import hiding_report

    h = hiding_report(40, 16.0, 3, 10, 100, derived_bound=2.0**12)
    assert h["per_logit_bits"] == pytest.approx(32.0) and h["requested_bits"] == 40.0
    assert h["result_bits"] < 32.0
    assert hiding_report(40, 16.0, 3, 10, 100, derived_bound=8.0)["per_logit_bits"] == 40.0


def test_deriving_the_bound_leaves_the_plan_untouched() -> None:
    """The first layer's index order fixes the public gather layout: bounding must not sort it."""
    plan = compile_model(small_model(seed=2))
    w = plan.stages[0].weight
    before = (w.indices.copy(), w.data.copy(), plan.fingerprint)
    derive_logit_bound(plan)
    assert np.array_equal(w.indices, before[0]) and np.array_equal(w.data, before[1])
    assert plan.fingerprint == before[2]


def test_hiding_report_counts_partial_sums_at_their_own_bound() -> None:
    """Single packing's last map leaves partial sums of logit rows in other slots: each counts in the
    union bound with its own bound A, so 150 of them at A = 2B cost log2(1 + 150 * 2 / 10) bits."""
    from capc.he.mask import hiding_report

    base = hiding_report(40, 16.0, 3, 10, 0)
    h = hiding_report(40, 16.0, 3, 10, 0, partial_coords=150, partial_bound=32.0)
    assert h["per_logit_bits"] == base["per_logit_bits"] == 40.0
    assert h["per_partial_bits"] == pytest.approx(39.0) and h["partial_coords"] == 150.0
    assert h["result_bits"] == pytest.approx(base["result_bits"] - np.log2(1 + 150 * 2 / 10))


def test_partial_sum_bound_covers_every_subset_sum_of_a_last_row() -> None:
    """Brute force over all subsets of a small last map's terms: each subset sum's exact extremes
    over the input box (every term at the end of its interval that makes it largest or smallest)."""
    from itertools import combinations

    from capc.he.bounds import interval_stages, partial_sum_bound

    rng = np.random.default_rng(7)
    w1 = sp.csr_matrix(rng.normal(size=(6, 4)))
    w2 = sp.csr_matrix(rng.normal(size=(3, 6)) * 3)
    plan = Plan([LinearStage(w1, rng.normal(size=6)), SquareStage(6), LinearStage(w2, np.full(3, -50.0))], (4,), [])
    a = partial_sum_bound(plan)
    lo, hi = interval_stages(plan.stages[:-1], np.zeros(4), np.ones(4))
    w = w2.toarray()
    top = 0.0
    for i in range(3):
        for r in range(1, 7):
            for sub in combinations(range(6), r):
                ends = np.array([[w[i, j] * lo[j], w[i, j] * hi[j]] for j in sub])
                top = max(top, ends.max(axis=1).sum(), -ends.min(axis=1).sum())
    assert top <= a <= top * (1 + 2.0 ** -19) + 2.0 ** -9  # sound, and tight up to the margins
