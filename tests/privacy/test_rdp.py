"""Tests of capc.privacy.rdp: event curves, composition, the two conversions, save/restore, a cross-check
against Google's dp-accounting and closed-form known values."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from capc.privacy.errors import PrivacyParameterError
from capc.privacy.rdp import (
    DEFAULT_ORDERS,
    GNMaxEvent,
    RdpAccountant,
    ThresholdEvent,
    eps_from_rdp,
    eps_from_rdp_improved,
    eps_from_rdp_plain,
    event_from_dict,
)


def test_default_grid_is_the_original_one():
    o = np.array(DEFAULT_ORDERS)
    assert o.size == 196 + 200
    assert o[0] == 2.0 and o[195] == 99.5 and np.allclose(o[196], 100.0) and np.allclose(o[-1], 1000.0)
    assert np.all(np.diff(o) > 0)


def test_event_curves():
    orders = np.array([2.0, 10.0, 100.0])
    assert np.allclose(ThresholdEvent(4).rdp(orders), orders / 32)
    assert np.allclose(GNMaxEvent(4).rdp(orders), orders / 16)
    assert np.all(np.isinf(GNMaxEvent(0).rdp(orders)))
    assert np.all(np.isinf(ThresholdEvent(0).rdp(orders)))
    assert ThresholdEvent(3) == ThresholdEvent(3.0) and hash(ThresholdEvent(3)) == hash(ThresholdEvent(3.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        GNMaxEvent(1).sigma_G = 2  # type: ignore[misc]


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "x", True, None])
def test_bad_event_sigma(bad):
    with pytest.raises(PrivacyParameterError):
        GNMaxEvent(bad)
    with pytest.raises(PrivacyParameterError):
        ThresholdEvent(bad)


def test_composition_sums_rdp():
    acc = RdpAccountant([2, 3, 50])
    acc.compose(ThresholdEvent(2), 3).compose(GNMaxEvent(1)).compose(ThresholdEvent(2))
    expect = np.array([2, 3, 50]) * (4 / 8 + 1.0)
    assert np.allclose(acc.rdp(), expect)
    assert acc.events == {ThresholdEvent(2): 4, GNMaxEvent(1): 1}


def test_infinite_sigma_zero_and_empty():
    acc = RdpAccountant()
    assert acc.get_epsilon(1e-5) == 0.0
    acc.compose(GNMaxEvent(0))
    assert math.isinf(acc.get_epsilon(1e-5))


def test_improved_conversion_never_worse_than_plain_and_kl_shortcut():
    acc = RdpAccountant().compose(GNMaxEvent(7), 50).compose(ThresholdEvent(30), 80)
    for delta in (1e-3, 1e-5, 1e-8):
        assert acc.get_epsilon(delta) <= acc.get_epsilon(delta, "plain")
    # Negligible RDP: total variation is already below delta, so epsilon is 0.
    assert eps_from_rdp_improved([2.0, 3.0], [1e-14, 1.5e-14], 1e-5)[0] == 0.0


def test_plain_conversion_matches_closed_form():
    # k GNMax answers: rdp = k lam / s^2; plain eps = min_lam k lam/s^2 + L/(lam-1) with L = log(1/delta),
    # minimised at lam* = 1 + sqrt(L s^2 / k) with value k/s^2 + 2 sqrt(k L)/s (continuous orders).
    for k, s, delta in ((100, 40.0, 1e-6), (200, 7.0, 1e-5), (1, 1.0, 1e-5)):
        L = math.log(1 / delta)
        lam = 1 + math.sqrt(L * s * s / k)
        exact = k / s**2 + 2 * math.sqrt(k * L) / s
        acc = RdpAccountant(np.arange(1.05, 1000, 0.01)).compose(GNMaxEvent(s), k)
        eps, order = acc.get_epsilon_and_order(delta, "plain")
        assert exact <= eps <= exact * (1 + 1e-4)
        assert abs(order - lam) < 0.02


def test_known_budget_cut_offs_for_pate_settings():
    """Answered queries within the budget, data-independent GNMax only, plain conversion on the
    default grid: SVHN-like (sigma 40, delta 1e-6, eps 2) and CIFAR-like (sigma 7, delta 1e-5, eps 20)."""

    def max_queries(sigma, delta, budget):
        orders = np.array(DEFAULT_ORDERS)
        k = 0
        while eps_from_rdp_plain(orders, (k + 1) * orders / sigma**2, delta)[0] <= budget:
            k += 1
        return k

    assert max_queries(40, 1e-6, 2.0) == 108
    assert max_queries(7, 1e-5, 20.0) == 241
    # The accountant agrees with the closed form at the cut-off.
    acc = RdpAccountant().compose(GNMaxEvent(40), 108)
    assert acc.get_epsilon(1e-6, "plain") <= 2.0 < acc.compose(GNMaxEvent(40)).get_epsilon(1e-6, "plain")


def test_cross_check_against_dp_accounting():
    dpa = pytest.importorskip("dp_accounting")
    from dp_accounting.rdp import RdpAccountant as GoogleRdp

    cases = [(30.0, 7.0, 80, 50), (200.0, 40.0, 500, 300), (2.0, 1.0, 3, 2), (1.5, 0.5, 1, 1)]
    for sigma_t, sigma_g, n_thr, n_gnmax in cases:
        ours = RdpAccountant().compose(ThresholdEvent(sigma_t), n_thr).compose(GNMaxEvent(sigma_g), n_gnmax)
        google = GoogleRdp(orders=list(DEFAULT_ORDERS))
        google.compose(dpa.GaussianDpEvent(sigma_t), n_thr)
        # GNMax: lambda / sigma^2 is a Gaussian mechanism with noise multiplier sigma / sqrt(2).
        google.compose(dpa.GaussianDpEvent(sigma_g / math.sqrt(2)), n_gnmax)
        for delta in (1e-5, 1e-6):
            a, b = ours.get_epsilon(delta), google.get_epsilon(delta)
            assert abs(a - b) <= 1e-6 * max(abs(b), 1e-12), (sigma_t, sigma_g, delta, a, b)


def test_state_round_trip_is_exact():
    acc = RdpAccountant().compose(ThresholdEvent(30), 17).compose(GNMaxEvent(7), 9).compose(ThresholdEvent(3.3))
    text = acc.to_json()
    back = RdpAccountant.from_json(text)
    assert np.array_equal(back.rdp(), acc.rdp())
    assert back.get_epsilon(1e-5) == acc.get_epsilon(1e-5)
    assert back.events == acc.events
    assert json.loads(text)["orders"] == list(DEFAULT_ORDERS)
    assert RdpAccountant.from_dict(acc.to_dict()).to_dict() == acc.to_dict()


@pytest.mark.parametrize(
    "bad",
    [
        {"version": 99},
        "not a dict",
        {"version": 1, "orders": [2.0], "events": [{"event": {"kind": "laplace", "b": 1}, "count": 1}]},
        {"version": 1, "orders": [2.0], "events": [{"count": 1}]},
        {"version": 1, "orders": [0.5]},
    ],
)
def test_bad_state_refused(bad):
    with pytest.raises(PrivacyParameterError):
        RdpAccountant.from_dict(bad)  # type: ignore[arg-type]


def test_bad_json_refused():
    with pytest.raises(PrivacyParameterError):
        RdpAccountant.from_json("{not json")


@pytest.mark.parametrize("orders", [[], [1.0, 2.0], [0.5], [float("nan")], ["a"]])
def test_bad_orders_refused(orders):
    with pytest.raises(PrivacyParameterError):
        RdpAccountant(orders)


@pytest.mark.parametrize("delta", [0, 1, -1e-5, 2, "x", float("nan")])
def test_bad_delta_refused(delta):
    with pytest.raises(PrivacyParameterError):
        RdpAccountant().compose(GNMaxEvent(1)).get_epsilon(delta)


def test_bad_compose_and_conversion_args():
    acc = RdpAccountant()
    with pytest.raises(PrivacyParameterError):
        acc.compose("gnmax")  # type: ignore[arg-type]
    with pytest.raises(PrivacyParameterError):
        acc.compose(GNMaxEvent(1), -1)
    with pytest.raises(PrivacyParameterError):
        eps_from_rdp([2.0], [1.0], 1e-5, "fancy")  # type: ignore[arg-type]
    with pytest.raises(PrivacyParameterError):
        eps_from_rdp_plain([2.0, 3.0], [1.0], 1e-5)
    with pytest.raises(PrivacyParameterError):
        event_from_dict({"kind": "gnmax", "sigma": 1})
