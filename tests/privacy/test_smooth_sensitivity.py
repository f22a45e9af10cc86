"""PATE 2018's smooth-sensitivity release (simulation only): local sensitivity by distance, the smooth
bound, the GNSS release cost, and the release itself.

Cross-checks: (1) the per-distance numbers of the public PATE 2018 reference implementation's unit
tests (tensorflow/privacy, research/pate_2018, smooth_sensitivity_test.py), with their parameters;
(2) a slow brute force in this file that enumerates every histogram (or every teacher-vote data set)
within distance d and computes the true local sensitivity of the released function.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from capc.privacy.data_dependent import (log_pr_answered_simulation_only, log_q_gnmax_simulation_only,
                                         rdp_gaussian_data_dependent_simulation_only,
                                         rdp_threshold_data_dependent_simulation_only)
from capc.privacy.errors import PrivacyParameterError
from capc.privacy.gnmax import ConfidentGNMaxParams
from capc.privacy.rdp import eps_from_rdp
from capc.privacy.simulate import paper_accounting_simulation_only
from capc.privacy.smooth_sensitivity import (ReleaseSettings, check_conditions_simulation_only,
                                             local_sensitivity_gnmax_simulation_only,
                                             local_sensitivity_queries_simulation_only,
                                             local_sensitivity_threshold_simulation_only, rdp_gnss_release,
                                             smooth_sensitivity_from_local,
                                             smooth_sensitivity_release_simulation_only)


def _within(a: np.ndarray) -> np.ndarray:
    """The reference reports the local sensitivity *at* distance d; capc reports it *within* d."""
    return np.maximum.accumulate(np.asarray(a, dtype=np.float64))


# --- (1) the reference implementation's numbers -------------------------------------------------


def test_gnmax_going_left_matches_the_reference():
    # [1000, 500, 300, 200, 0], sigma 250, order 10, 2000 teachers: q starts above q0 (data-independent)
    ref = np.array([0.0] * 298 + [2.77693450548e-7, 2.10853979548e-6] + [2.73113623988e-6] * 1700)
    got = local_sensitivity_gnmax_simulation_only(np.array([1000, 500, 300, 200, 0]), 250.0, 10.0, max_distance=1999)
    np.testing.assert_allclose(got, ref, rtol=1e-8, atol=0)


def test_gnmax_going_right_matches_the_reference_below_its_q0():
    # [10, 0, 0], sigma 0.5, order 1.5, 10 teachers. The reference treats every log q above
    # -(1 + 1/sigma)^2 = -9 as data-independent; capc's bound (the function it releases) stays
    # data-dependent up to the true crossover (-4.29), so the two agree only while q < e^-9 (d <= 2).
    ref = np.array([3.13503646e-17, 1.60178280e-08, 5.90681786e-03])
    got = local_sensitivity_gnmax_simulation_only(np.array([10, 0, 0]), 0.5, 1.5, max_distance=9)
    np.testing.assert_allclose(got[:3], ref, rtol=1e-8)
    assert np.all(got[3:] > got[2]) and got[-1] <= 1.5 / 0.25  # never above the data-independent bound


@pytest.mark.parametrize("threshold, ref", [
    (16, [0] * 3 + [1.48454129e-04, 1.47826870e-02, 3.94153241e-02, 6.45775697e-02, 9.01543247e-02,
                    1.16054002e-01, 1.42180452e-01, 1.42180452e-01, 1.48454129e-04, 1.47826870e-02,
                    3.94153241e-02, 6.45775697e-02, 9.01543266e-02, 1.16054000e-01, 1.42180452e-01,
                    1.68302106e-01, 1.93127860e-01] + [0] * 10),
    (2, [1.60212079e-01, 2.07021132e-01, 2.07021132e-01, 1.93127860e-01, 1.68302106e-01, 1.42180452e-01,
         1.16054002e-01, 9.01543247e-02, 6.45775697e-02, 3.94153241e-02, 1.47826870e-02, 1.48454129e-04]
     + [0] * 18),
    (50, [1.35750725752e-19, 1.88990500499e-17, 2.05403154065e-15, 1.74298153642e-13, 1.15489723995e-11,
          5.97584949325e-10, 2.41486826748e-08, 7.62150641922e-07, 1.87846248741e-05, 0.000360973025976,
          0.000360973025976, 2.76377015215e-50, 1.00904975276e-53, 2.87254164748e-57, 6.37583360761e-61,
          1.10331620211e-64, 1.48844393335e-68, 1.56535552444e-72, 1.28328011060e-76, 8.20047697109e-81]
     + [0] * 10),
])
def test_threshold_matches_the_reference(threshold, ref):
    # counts [20, 10, 0] (30 teachers), sigma_T 2, order 10
    got = local_sensitivity_threshold_simulation_only(20, 30, threshold, 2.0, 10.0, max_distance=29)
    np.testing.assert_allclose(got, _within(ref), rtol=1e-7, atol=1e-300)


def test_conditions_c5_c6_match_the_reference():
    # the reference's check_conditions(20, 10, 25.) == (True, False) and (30, 10, 25.) == (True, True)
    assert check_conditions_simulation_only(20.0, 10, 25.0, logq_min=-60.0) == (True, False)
    assert check_conditions_simulation_only(30.0, 10, 25.0, logq_min=-60.0) == (True, True)


# --- (2) brute force ----------------------------------------------------------------------------


def _compositions(total: int, parts: int):
    for cut in itertools.combinations(range(total + parts - 1), parts - 1):
        edges = (-1,) + cut + (total + parts - 1,)
        yield tuple(edges[i + 1] - edges[i] - 1 for i in range(parts))


def _neighbours(h: tuple[int, ...]):
    for a, b in itertools.permutations(range(len(h)), 2):
        if h[a] > 0:
            n = list(h)
            n[a] -= 1
            n[b] += 1
            yield tuple(n)


def _distance(a, b) -> int:
    return sum(abs(x - y) for x, y in zip(a, b)) // 2  # one changed vote moves one count to another


def _beta(h, sigma, order) -> float:
    return float(rdp_gaussian_data_dependent_simulation_only(log_q_gnmax_simulation_only(np.array(h), sigma), sigma, [order])[0])


@pytest.mark.parametrize("start", [(8, 0, 0), (6, 2, 0), (5, 3, 0), (4, 3, 1)])
def test_gnmax_bound_is_above_the_true_local_sensitivity_by_enumeration(start):
    sigma, order, n = 0.5, 1.5, 8
    assert check_conditions_simulation_only(sigma, 3, order, logq_min=-100.0) == (True, True)
    hists = list(_compositions(n, 3))
    beta = {h: _beta(h, sigma, order) for h in hists}
    true_ls = {h: max(abs(beta[x] - beta[h]) for x in _neighbours(h)) for h in hists}
    got = local_sensitivity_gnmax_simulation_only(np.array(start), sigma, order)
    assert got.shape == (n + 1,)
    for d in range(n + 1):
        truth = max(true_ls[h] for h in hists if _distance(h, start) <= d)
        assert got[d] >= truth * (1 - 1e-9)
    assert np.all(np.diff(got) >= 0)


def test_sequence_bound_is_above_the_true_local_sensitivity_of_the_expected_cost():
    """Every data set of 4 teachers voting on 2 queries with 3 classes (9^4 of them): the true local
    sensitivity within distance d of the expected data-dependent RDP is below capc's bound, and so
    is the true smooth sensitivity."""
    sigma_G, sigma_T, T, order, teachers = 0.5, 1.0, 3.0, 1.5, 4
    params = ConfidentGNMaxParams(sigma_G, sigma_T, T)
    codes = np.array(list(itertools.product(range(9), repeat=teachers)))  # a teacher's code = 3*vote1 + vote2

    def histograms(c: np.ndarray, j: int) -> np.ndarray:
        votes = c // 3 if j == 0 else c % 3
        return np.stack([(votes == k).sum(axis=1) for k in range(3)], axis=1)

    cache: dict[tuple[int, ...], float] = {}

    def cost(h) -> float:
        key = tuple(int(x) for x in h)
        if key not in cache:
            v = float(max(key))
            g = _beta(key, sigma_G, order)
            t = float(rdp_threshold_data_dependent_simulation_only(v, T, sigma_T, [order])[0])
            cache[key] = t + math.exp(log_pr_answered_simulation_only(v, T, sigma_T)) * g
        return cache[key]

    f = np.array([cost(a) + cost(b) for a, b in zip(histograms(codes, 0), histograms(codes, 1))])
    index = codes @ (9 ** np.arange(teachers - 1, -1, -1))
    assert np.array_equal(index, np.arange(len(codes)))
    ls = np.zeros(len(codes))
    for t in range(teachers):
        for c in range(9):
            nb = index + (c - codes[:, t]) * 9 ** (teachers - 1 - t)
            ls = np.maximum(ls, np.abs(f[nb] - f))
    beta = 0.2
    for start in (0, 9 ** 3 * 4 + 81 * 4 + 9 * 0 + 1, 1234):  # unanimous, split, mixed
        dist = (codes != codes[start]).sum(axis=1)
        truth = np.array([ls[dist <= d].max() for d in range(teachers + 1)])
        votes = np.stack([histograms(codes[start:start + 1], 0)[0], histograms(codes[start:start + 1], 1)[0]])
        got = local_sensitivity_queries_simulation_only(votes, params, order)
        assert np.all(got >= truth * (1 - 1e-9)), (start, got, truth)
        assert smooth_sensitivity_from_local(got, beta) >= smooth_sensitivity_from_local(truth, beta)


# --- hand-checkable properties --------------------------------------------------------------------


def test_unanimous_histogram_has_tiny_sensitivity():
    """sigma_G 40, order 20, 250 votes: the unanimous histogram's sensitivity is a hundredth of the
    plateau (the largest any histogram has) and reaches it only 73 changed teachers away; a 130/120
    split is data-independent (q above q0, sensitivity 0) but one step from the plateau region."""
    ind = 20.0 / 40.0**2
    unanimous = local_sensitivity_gnmax_simulation_only(np.array([250] + [0] * 9), 40.0, 20.0)
    assert 0 < unanimous[0] < 1e-2 * unanimous[-1] and unanimous[-1] < ind
    assert np.argmax(unanimous == unanimous[-1]) > 50
    split = local_sensitivity_gnmax_simulation_only(np.array([130, 120] + [0] * 8), 40.0, 20.0)
    assert split[0] == 0.0 and split[-1] == unanimous[-1]
    mid = local_sensitivity_gnmax_simulation_only(np.array([200, 50] + [0] * 8), 40.0, 20.0)
    assert unanimous[0] < mid[0] < mid[-1]


def test_monotone_and_smooth():
    rng = np.random.default_rng(3)
    for _ in range(20):
        votes = rng.multinomial(60, rng.dirichlet(np.ones(5) * 0.3))
        ls = local_sensitivity_gnmax_simulation_only(votes, 6.0, 8.0)
        assert np.all(np.diff(ls) >= 0) and ls[0] >= 0
        ss = [smooth_sensitivity_from_local(ls, b) for b in (0.01, 0.05, 0.2)]
        assert ss[0] >= ss[1] >= ss[2] >= ls[0]  # SS >= LS at distance 0; larger beta, smaller SS
        assert smooth_sensitivity_from_local(ls, 1e-9) == pytest.approx(ls[-1], rel=1e-6)


def test_gnss_release_cost_by_hand():
    lam, beta, s = 10.0, 0.03, 5.0
    expect = lam * math.exp(2 * beta) / s**2 + (beta * lam - 0.5 * math.log(1 - 2 * lam * beta)) / (lam - 1)
    assert rdp_gnss_release(beta, s, lam) == pytest.approx(expect, rel=1e-12)
    with pytest.raises(PrivacyParameterError, match=r"beta must be below 1/\(2 order\)"):
        rdp_gnss_release(0.05, s, lam)


# --- the release ------------------------------------------------------------------------------


def _votes(k: int = 50, n: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 10), np.int64)
    for i in range(n):
        top = int(rng.uniform(0.4, 1.0) * k)
        out[i, rng.integers(10)] += top
        out[i] += rng.multinomial(k - top, [0.1] * 10)
    return out


def test_release_estimates_the_papers_data_dependent_cost():
    params, delta = ConfidentGNMaxParams(40, 150, 200), 1e-5
    votes = _votes(k=250)
    rel = smooth_sensitivity_release_simulation_only(votes, params, delta, ReleaseSettings(order=12.0, seed=5))
    # the released function is the paper's expected cost: same epsilon at that order without noise
    paper = paper_accounting_simulation_only(votes, params, delta, orders=[12.0])
    assert eps_from_rdp([12.0], [rel.rdp_data_dependent], delta)[0] == pytest.approx(paper.eps[-1], rel=1e-12)
    assert rel.conditions_hold and rel.tuned == ("beta", "sigma_ss") and rel.expected_cost
    assert rel.smooth_sensitivity > 0 and rel.rdp_release_cost == pytest.approx(
        rdp_gnss_release(rel.beta, rel.sigma_ss, 12.0))
    assert rel.eps_data_dependent_at_order == pytest.approx(
        eps_from_rdp([12.0], [rel.rdp_data_dependent + rel.rdp_release_cost], delta)[0])
    assert abs(rel.eps_released - rel.eps_data_dependent_at_order) <= 4 * rel.eps_noise_std
    again = smooth_sensitivity_release_simulation_only(votes, params, delta, ReleaseSettings(order=12.0, seed=5))
    assert again.eps_released == rel.eps_released  # the seed fixes the release noise
    # over many seeds the release is centred on the data-dependent value (its noise has the stated std)
    draws = [smooth_sensitivity_release_simulation_only(votes[:40], params, delta, ReleaseSettings(
        order=12.0, beta=0.03, sigma_ss=4.0, seed=s)) for s in range(100)]
    z = np.array([(r.rdp_released - r.rdp_data_dependent) / r.eps_noise_std for r in draws])
    assert abs(z.mean()) < 0.3 and 0.8 < z.std() < 1.2


def test_release_of_the_realised_answers_and_the_order_choice():
    params, delta = ConfidentGNMaxParams(40, 150, 200), 1e-5
    votes = _votes(k=250, n=120, seed=1)
    answered = np.arange(len(votes)) % 3 != 0
    rel = smooth_sensitivity_release_simulation_only(votes, params, delta, ReleaseSettings(seed=0), answered=answered)
    expect = sum(rdp_threshold_data_dependent_simulation_only(float(n.max()), 200.0, 150.0, [rel.order])[0]
                 + (_beta(tuple(n), 40.0, rel.order) if a else 0.0) for n, a in zip(votes, answered))
    assert rel.rdp_data_dependent == pytest.approx(expect, rel=1e-12) and not rel.expected_cost
    assert "order" in rel.tuned and rel.conditions_hold


def test_conditions_failing_is_an_error_naming_them():
    params = ConfidentGNMaxParams(7, 30, 50)  # the paper's K = 50 preset: C6 fails at order 10
    with pytest.raises(PrivacyParameterError, match="C6.*sigma_G = 7.*order 10"):
        smooth_sensitivity_release_simulation_only(_votes(n=20), params, 1e-5, ReleaseSettings(order=10.0))
    rel = smooth_sensitivity_release_simulation_only(_votes(n=20), params, 1e-5,
                                                     ReleaseSettings(order=10.0, require_conditions=False, seed=0))
    assert not rel.conditions_hold
    # choosing the order itself skips the orders where the conditions fail
    assert smooth_sensitivity_release_simulation_only(_votes(n=20), params, 1e-5, ReleaseSettings(seed=0)).conditions_hold


def test_bad_input_is_named():
    p = ConfidentGNMaxParams(40, 150, 200)
    with pytest.raises(PrivacyParameterError, match="vote_histograms"):
        smooth_sensitivity_release_simulation_only(np.zeros(3, np.int64), p, 1e-5)
    with pytest.raises(PrivacyParameterError, match="answered must be one boolean per query"):
        smooth_sensitivity_release_simulation_only(_votes(n=4), p, 1e-5, answered=[True])
    with pytest.raises(PrivacyParameterError, match="sigma_G > 0"):
        smooth_sensitivity_release_simulation_only(_votes(n=4), ConfidentGNMaxParams(0, 1, 1), 1e-5)
    with pytest.raises(PrivacyParameterError, match="order must be finite and > 1"):
        local_sensitivity_gnmax_simulation_only(np.array([3, 1]), 1.0, 1.0)
    with pytest.raises(PrivacyParameterError, match="max_votes must be in 0..num_teachers"):
        local_sensitivity_threshold_simulation_only(31, 30, 10, 2.0, 5.0)


def test_paper_accounting_reports_the_three_labelled_figures():
    from capc.privacy.simulate import (PAPER_LABEL, PROTOCOL_LABEL, SMOOTH_SENSITIVITY_LABEL,
                                       protocol_answerable)

    params, delta, budget = ConfidentGNMaxParams(40, 150, 200), 1e-5, 1.0
    votes = _votes(k=250, n=400, seed=2)
    paper = paper_accounting_simulation_only(votes, params, delta, budget, release=ReleaseSettings(seed=3))
    assert paper.stopped_by_budget and paper.release is not None
    rel = paper.release
    assert rel.queries == paper.processed and rel.label == SMOOTH_SENSITIVITY_LABEL
    assert len({PAPER_LABEL, PROTOCOL_LABEL, rel.label}) == 3
    # the release states its cost at one order: never below the paper's (minimised over orders) epsilon
    assert rel.eps_data_dependent_at_order >= paper.eps[-1] and rel.rdp_release_cost > 0
    assert protocol_answerable(params, delta, budget) < paper.processed
    assert set(rel.to_dict()) >= {"eps_released", "rdp_release_cost", "order", "beta", "sigma_ss", "label"}
    assert paper_accounting_simulation_only(votes, params, delta, budget).release is None
