"""The paper's accounting (expected data-dependent RDP) beside the protocol's ledger, presets by K."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from capc.privacy.errors import PrivacyParameterError
from capc.privacy.gnmax import ConfidentGNMaxParams, dataset_delta, paper_parameters, suggested_parameters
from capc.privacy.rdp import eps_from_rdp
from capc.privacy.simulate import (EpsilonWarning, paper_accounting_simulation_only, protocol_answerable,
                                   warn_if_meaningless)


def _theorem6_by_hand(q: float, sigma: float, lam: float) -> float:
    """PATE 2018 Theorem 6 with Prop. 10's mu1/mu2, evaluated directly (no log space)."""
    mu2 = sigma * math.sqrt(math.log(1 / q))
    mu1 = mu2 + 1
    e1, e2 = mu1 / sigma**2, mu2 / sigma**2
    assert lam < mu1 and mu2 > 1 and q * math.exp(e2) < 1
    assert q <= math.exp((mu2 - 1) * e2) / ((mu1 / (mu1 - 1)) * (mu2 / (mu2 - 1))) ** mu2
    a = (1 - q) / (1 - (q * math.exp(e2)) ** ((mu2 - 1) / mu2))
    b = math.exp(e1) / q ** (1 / (mu1 - 1))
    return min(lam / sigma**2, math.log((1 - q) * a ** (lam - 1) + q * b ** (lam - 1)) / (lam - 1))


def test_one_query_matches_the_formula_computed_by_hand():
    params = ConfidentGNMaxParams(40, 150, 200)
    votes = np.array([[200, 30, 20, 0]])
    orders = [2.0, 5.0, 10.0, 20.0, 40.0]
    res = paper_accounting_simulation_only(votes, params, 1e-5, orders=orders)
    # GNMax: union bound with N(0, 2 sigma_G^2) tails; threshold: sigma_T sqrt(2), q = min(Pr answered, declined).
    q_g = sum(stats.norm.sf(200 - n, scale=40 * math.sqrt(2)) for n in (30, 20, 0))
    pr = stats.norm.sf(200 - 200, scale=150)  # max vote at the threshold: Pr[answered] = 1/2
    q_t = min(pr, 1 - pr)
    rdp = []
    for lam in orders:
        thr = lam / (2 * 150**2)  # q_t = 1/2: Theorem 6 does not apply, data-independent bound
        assert q_t == 0.5
        rdp.append(thr + pr * _theorem6_by_hand(q_g, 40.0, lam))
    expect = eps_from_rdp(orders, rdp, 1e-5)[0]
    assert res.processed == 1 and res.answered == pytest.approx(0.5)
    assert res.eps[0] == pytest.approx(expect, rel=1e-9)
    # The bound is strictly data-dependent here: below the data-independent composition.
    di = eps_from_rdp(orders, [lam / (2 * 150**2) + lam / 40**2 for lam in orders], 1e-5)[0]
    assert res.eps[0] < di


def test_tied_votes_fall_back_to_dp_accountings_gaussian():
    """Plain GNMax (no threshold) on tied votes: q is at its cap, so the bound is data-independent and
    the cost is 50 Gaussian mechanisms, as dp-accounting computes."""
    dpa = pytest.importorskip("dp_accounting")
    from dp_accounting.rdp import RdpAccountant as GoogleRdp

    orders = [2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
    params = ConfidentGNMaxParams(10, 0, 0)
    votes = np.tile([[100, 100, 0]], (50, 1))
    res = paper_accounting_simulation_only(votes, params, 1e-5, orders=orders)
    g = GoogleRdp(orders=orders)
    g.compose(dpa.GaussianDpEvent(10 / math.sqrt(2)), 50)  # RDP lambda / sigma_G^2 per answer
    assert res.answered == pytest.approx(50)
    assert res.eps[-1] == pytest.approx(g.get_epsilon(1e-5), rel=1e-3)


def test_stopping_rule_and_the_papers_counts():
    """SVHN K=250 (40/200/300, delta 1e-6) and CIFAR-10 K=50 (7/30/50, eps 20) on unanimous votes:
    the paper's accounting answers thousands, the protocol's ledger about a hundred or two."""
    for k, delta, budget, paper_lo, paper_hi, proto_hi in ((250, 1e-6, 2.0, 2500, 2700, 160), (50, 1e-5, 20.0, 4600, 4800, 280)):
        p = paper_parameters(k)
        votes = np.zeros((12000, 10), np.int64)
        votes[:, 0] = k - 1
        res = paper_accounting_simulation_only(votes, p, delta, budget)
        assert res.stopped_by_budget and res.eps[-1] <= budget
        assert paper_lo < res.answered < paper_hi
        assert 100 < protocol_answerable(p, delta, budget) < proto_hi


def test_protocol_answerable_is_the_last_count_within_budget():
    p = ConfidentGNMaxParams(40, 150, 200)
    n = protocol_answerable(p, 1e-5, 2.0)
    from capc.privacy.rdp import RdpAccountant

    one = RdpAccountant().compose_all(p.worst_case_events()).rdp()
    from capc.privacy.rdp import DEFAULT_ORDERS

    assert eps_from_rdp(DEFAULT_ORDERS, one * n, 1e-5)[0] <= 2.0 < eps_from_rdp(DEFAULT_ORDERS, one * (n + 1), 1e-5)[0]


def test_presets_by_total_party_count_and_delta():
    for k, expect in ((50, (7, 30, 50)), (250, (40, 200, 300))):
        for p in (paper_parameters(k), suggested_parameters(k)):
            assert (p.sigma_G, p.sigma_T, p.threshold) == expect
    with pytest.raises(PrivacyParameterError, match="K = 49"):
        paper_parameters(49)
    assert dataset_delta("svhn") == 1e-6 and dataset_delta("cifar10") == 1e-5 and dataset_delta("mnist") == 1e-5


def test_meaningless_epsilon_warns_by_name():
    with pytest.warns(EpsilonWarning, match="querying party 7.*above 20"):
        warn_if_meaningless(25.0, "querying party 7", 30.0)
    with pytest.warns(EpsilonWarning, match="no privacy budget"):
        warn_if_meaningless(1.0, "querying party 0", math.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_if_meaningless(2.0, "querying party 0", 2.0)


def test_bad_input_is_named():
    with pytest.raises(PrivacyParameterError, match="vote_histograms"):
        paper_accounting_simulation_only(np.zeros(3, np.int64), ConfidentGNMaxParams(1, 1, 1), 1e-5)
    with pytest.raises(PrivacyParameterError, match="sigma_G > 0"):
        paper_accounting_simulation_only(np.ones((2, 3), np.int64), ConfidentGNMaxParams(0, 1, 1), 1e-5)
