"""Tests of the simulation-only data-dependent bounds (capc.privacy.data_dependent) and of the plaintext
query simulation (capc.privacy.simulate)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from capc.privacy.data_dependent import (
    log_pr_answered_simulation_only,
    log_q_gnmax_simulation_only,
    rdp_gaussian_data_dependent_simulation_only,
    rdp_gnmax_data_dependent_simulation_only,
    rdp_threshold_data_dependent_simulation_only,
)
from capc.privacy.errors import PrivacyParameterError
from capc.privacy.gnmax import ConfidentGNMaxParams
from capc.privacy.rdp import DEFAULT_ORDERS, GNMaxEvent, RdpAccountant
from capc.privacy.simulate import plot_privacy_utility, simulate_queries

ORDERS = np.array(DEFAULT_ORDERS)


def _theorem6_direct(q, sigma, lam):
    """PATE 2018 Theorem 6 with Proposition 10's mu1, mu2, evaluated without logarithms."""
    mu2 = sigma * math.sqrt(math.log(1 / q))
    mu1 = mu2 + 1
    e1, e2 = mu1 / sigma**2, mu2 / sigma**2
    a = (1 - q) / (1 - (q * math.exp(e2)) ** ((mu2 - 1) / mu2))
    b = math.exp(e1) / q ** (1 / (mu1 - 1))
    return math.log((1 - q) * a ** (lam - 1) + q * b ** (lam - 1)) / (lam - 1)


def test_log_q_union_bound():
    votes = [100, 10, 0]
    expect = np.logaddexp(stats.norm.logsf(90, scale=10 * math.sqrt(2)), stats.norm.logsf(100, scale=10 * math.sqrt(2)))
    assert log_q_gnmax_simulation_only(votes, 10) == pytest.approx(expect)
    assert log_q_gnmax_simulation_only([5, 5, 5], 10) == pytest.approx(math.log(2 / 3))  # capped at 1 - 1/C
    sub = log_q_gnmax_simulation_only(votes, 10, tail="subgaussian")
    assert sub >= log_q_gnmax_simulation_only(votes, 10)  # the subgaussian bound is looser
    with pytest.raises(PrivacyParameterError):
        log_q_gnmax_simulation_only(votes, 0)
    with pytest.raises(PrivacyParameterError):
        log_q_gnmax_simulation_only(votes, 1, tail="laplace")  # type: ignore[arg-type]


def test_data_dependent_gnmax_matches_theorem_6_and_never_exceeds_data_independent():
    votes, sigma = [240, 5, 3, 2], 40.0
    logq = log_q_gnmax_simulation_only(votes, sigma)
    rdp = rdp_gnmax_data_dependent_simulation_only(votes, sigma, ORDERS)
    assert np.all(rdp <= ORDERS / sigma**2 + 1e-15) and np.all(rdp >= 0)
    q = math.exp(logq)
    mu1 = sigma * math.sqrt(-logq) + 1
    used = [lam for lam in ORDERS if lam < mu1]
    assert used, "test design: the bound must apply at some order"
    for lam in used[:: max(1, len(used) // 10)]:
        i = int(np.where(ORDERS == lam)[0][0])
        assert rdp[i] == pytest.approx(min(lam / sigma**2, _theorem6_direct(q, sigma, lam)), rel=1e-9)
    assert rdp[0] < 0.05 * ORDERS[0] / sigma**2  # a clear consensus costs far less


def test_data_dependent_falls_back_when_not_applicable():
    close_votes = [120, 118, 12]
    rdp = rdp_gnmax_data_dependent_simulation_only(close_votes, 40.0, ORDERS)
    assert np.array_equal(rdp, ORDERS / 1600.0)
    assert np.array_equal(rdp_gaussian_data_dependent_simulation_only(0.0, 5.0, ORDERS), ORDERS / 25.0)


def test_threshold_data_dependent():
    sigma_t = 30.0
    di = ORDERS / (2 * sigma_t**2)
    far_below = rdp_threshold_data_dependent_simulation_only(10, 300, sigma_t, ORDERS)
    near = rdp_threshold_data_dependent_simulation_only(300, 300, sigma_t, ORDERS)
    assert np.all(far_below <= di + 1e-15) and far_below[0] < 0.1 * di[0]
    assert np.allclose(near, di)  # Pr[answered] = 1/2: no data-dependent gain
    assert log_pr_answered_simulation_only(300, 300, sigma_t) == pytest.approx(math.log(0.5))
    with pytest.raises(PrivacyParameterError):
        log_pr_answered_simulation_only(1, 1, 0)


def _histograms(n_queries: int, n_parties: int, classes: int, agree: float, seed: int):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, n_queries)
    votes = np.zeros((n_queries, classes), dtype=np.int64)
    for q in range(n_queries):
        right = rng.random(n_parties) < agree
        preds = np.where(right, truth[q], rng.integers(0, classes, n_parties))
        votes[q] = np.bincount(preds, minlength=classes)
    return votes, truth


def test_simulation_charges_like_the_ledger_and_is_reproducible():
    votes, truth = _histograms(60, 50, 10, 0.8, seed=1)
    params = ConfidentGNMaxParams(7, 30, 50, vote_scale_bits=4)
    a = simulate_queries(votes, params, 1e-5, true_labels=truth, seed=3)
    b = simulate_queries(votes, params, 1e-5, true_labels=truth, seed=3)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.eps_data_independent, b.eps_data_independent)
    assert a.processed == 60 and not a.stopped_by_budget
    acc = RdpAccountant()
    for ans in a.answered:
        acc.compose_all(params.worst_case_events() if ans else params.threshold_events())
    assert a.eps_data_independent[-1] == acc.get_epsilon(1e-5)
    assert np.all(np.diff(a.eps_data_independent) >= 0)
    assert np.all(a.labels[~a.answered] == -1)
    assert 0.8 < a.label_accuracy <= 1.0
    dd = a.eps_data_dependent_simulation_only
    assert np.all(dd <= a.eps_data_independent + 1e-9)


def test_simulation_stops_at_the_budget():
    votes, _ = _histograms(400, 250, 10, 0.9, seed=2)
    params = ConfidentGNMaxParams(40, 0, 0)  # plain GNMax: every query answered
    budget = 2.0
    res = simulate_queries(votes, params, 1e-6, budget, seed=5)
    k = 0
    while RdpAccountant().compose(GNMaxEvent(40), k + 1).get_epsilon(1e-6) <= budget:
        k += 1
    assert res.processed == k and res.answered_count == k and res.stopped_by_budget
    assert res.eps_data_independent[-1] <= budget


def test_simulation_without_noise_is_exact_argmax():
    votes = np.array([[0, 3, 1], [2, 2, 0], [0, 0, 1]])
    res = simulate_queries(votes, ConfidentGNMaxParams(0, 0, 0), 1e-5)
    assert res.labels.tolist() == [1, 0, 2]
    assert math.isinf(res.eps_data_independent[-1]) and np.all(np.isnan(res.eps_data_dependent_simulation_only))


@pytest.mark.parametrize(
    "votes,kw",
    [
        (np.array([1, 2, 3]), {}),
        (np.array([[1.5, 2.0]]), {}),
        (np.array([[1, -2]]), {}),
        (np.array([[1, 2]]), {"true_labels": [0, 1]}),
    ],
)
def test_simulation_bad_input(votes, kw):
    with pytest.raises(PrivacyParameterError):
        simulate_queries(votes, ConfidentGNMaxParams(1, 1, 1), 1e-5, **kw)


def test_plot_writes_a_png(tmp_path):
    votes, truth = _histograms(30, 50, 10, 0.8, seed=4)
    res = simulate_queries(votes, ConfidentGNMaxParams(7, 30, 50), 1e-5, true_labels=truth, seed=1)
    out = tmp_path / "privacy.png"
    fig = plot_privacy_utility(res, out)
    assert out.stat().st_size > 1000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.pyplot as plt

    plt.close(fig)
