"""Tests of capc.privacy.gnmax: units and rounding, the decision and tie rules of the plaintext
reference, the guardian's noise draw, and bad input."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capc.privacy.errors import PrivacyParameterError
from capc.privacy.gnmax import (
    ConfidentGNMaxParams,
    PrivacyGuardianNoise,
    confident_gnmax,
    noisy_aggregate,
    suggested_parameters,
    vote_histogram,
)
from capc.privacy.noise import SeededRandomSource, discrete_gaussian_pmf
from capc.privacy.rdp import GNMaxEvent, RdpAccountant, ThresholdEvent


def test_units_are_exact_and_threshold_rounds_half_up():
    p = ConfidentGNMaxParams("0.1", 2, "2.5", vote_scale_bits=3)
    assert p.scale == 8
    assert p.sigma_G_units == Fraction(4, 5)
    assert p.sigma_T_units == 16
    assert p.threshold_units == 20
    assert ConfidentGNMaxParams(1, 1, "0.3", 2).threshold_units == 1  # 1.2 -> 1
    assert ConfidentGNMaxParams(1, 1, "0.375", 2).threshold_units == 2  # 1.5 -> 2 (half up)
    assert ConfidentGNMaxParams(1, 1, "2.5", 0).threshold_units == 3
    assert ConfidentGNMaxParams(1, 1, "-0.5", 0).threshold_units == 0


def test_plain_gnmax_has_no_threshold_charge():
    plain = ConfidentGNMaxParams(3, 0, 0, 4)
    assert plain.is_plain_gnmax
    assert plain.threshold_events() == ()
    assert plain.worst_case_events() == (GNMaxEvent(3.0),)
    conf = ConfidentGNMaxParams(3, 5, 10)
    assert not conf.is_plain_gnmax
    assert conf.worst_case_events() == (ThresholdEvent(5.0), GNMaxEvent(3.0))
    # sigma_T = 0 with a positive threshold is a deterministic, non-private check: charged as infinite.
    det = ConfidentGNMaxParams(3, 0, 1)
    assert not det.is_plain_gnmax
    assert math.isinf(RdpAccountant().compose_all(det.worst_case_events()).get_epsilon(1e-5))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(sigma_G=-1, sigma_T=1, threshold=1),
        dict(sigma_G=1, sigma_T=-0.1, threshold=1),
        dict(sigma_G=1, sigma_T=1, threshold=float("nan")),
        dict(sigma_G=1, sigma_T=1, threshold=1, vote_scale_bits=-1),
        dict(sigma_G=1, sigma_T=1, threshold=1, vote_scale_bits=99),
        dict(sigma_G=1, sigma_T=1, threshold=1, vote_scale_bits=2.0),
        dict(sigma_G=2**40, sigma_T=1, threshold=1, vote_scale_bits=8),
        dict(sigma_G="x", sigma_T=1, threshold=1),
    ],
)
def test_bad_params_refused(kwargs):
    with pytest.raises(PrivacyParameterError):
        ConfidentGNMaxParams(**kwargs)


def test_threshold_boundary_is_inclusive():
    h = [4, 9, 1]
    assert confident_gnmax(h, [0, 0, 0], 1, 10).answered  # 9 + 1 >= 10
    r = confident_gnmax(h, [0, 0, 0], 0, 10)
    assert not r.answered and r.label is None  # 9 + 0 < 10


def test_lowest_index_wins_ties():
    assert confident_gnmax([5, 5, 1], [0, 0, 0], 0, 0).label == 0
    assert confident_gnmax([1, 5, 5], [0, 0, 0], 0, 0).label == 1
    assert confident_gnmax([3, 1, 0], [0, 2, 3], 0, 0).label == 0  # 3, 3, 3
    assert confident_gnmax([0, 0, 0, 0], [-1, -1, -1, -1], 0, 0).label == 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 2**20), min_size=2, max_size=12).flatmap(
        lambda h: st.tuples(
            st.just(h),
            st.lists(st.integers(-(2**30), 2**30), min_size=len(h), max_size=len(h)),
            st.integers(-(2**30), 2**30),
            st.integers(-(2**20), 2**21),
        )
    )
)
def test_reference_matches_independent_formula(case):
    h, eta_g, eta_t, thr = case
    r = confident_gnmax(h, eta_g, eta_t, thr)
    expect_answered = max(h) + eta_t >= thr
    assert r.answered == expect_answered
    if expect_answered:
        assert r.label == int(np.argmax(np.array(h, dtype=np.int64) + np.array(eta_g, dtype=np.int64)))
    else:
        assert r.label is None


@pytest.mark.parametrize(
    "args",
    [
        ([1, 2], [0], 0, 0),
        ([1.5, 2], [0, 0], 0, 0),
        ([], [], 0, 0),
        ([[1, 2]], [[0, 0]], 0, 0),
        ([1, 2], [0, 0], 0.5, 0),
        ([1, 2], [0, 0], 0, "1"),
        ([2**63 - 1, 0], [0, 0], 0, 0),
    ],
)
def test_reference_rejects_bad_input(args):
    with pytest.raises(PrivacyParameterError):
        confident_gnmax(*args)


def test_noise_draw_shapes_scale_and_zero():
    p = ConfidentGNMaxParams(40, 0, 0, 8)
    noise = PrivacyGuardianNoise(p)
    d = noise.draw(1000)
    assert d.eta_G.shape == (1000,) and d.eta_G.dtype == np.int64
    assert d.eta_T == 0  # sigma_T = 0
    # The spread is in circuit units (2^8 * 40 = 10240): second moment within 6 standard errors.
    sigma = 10240.0
    xs = np.arange(-40 * sigma, 40 * sigma + 1)
    pmf = discrete_gaussian_pmf(sigma, xs)
    m2, m4 = float((xs**2 * pmf).sum()), float((xs**4 * pmf).sum())
    assert abs(float((d.eta_G.astype(float) ** 2).mean()) - m2) <= 6 * math.sqrt((m4 - m2 * m2) / 1000)
    with pytest.raises(PrivacyParameterError):
        noise.draw(1)
    with pytest.raises(PrivacyParameterError):
        PrivacyGuardianNoise("not params")  # type: ignore[arg-type]


def test_noisy_aggregate_without_noise_is_exact_argmax():
    p = ConfidentGNMaxParams(0, 0, 2, vote_scale_bits=5)
    assert noisy_aggregate([0, 3, 3, 1], p).label == 1
    assert not noisy_aggregate([1, 1, 0, 0], p).answered
    with pytest.raises(PrivacyParameterError):
        noisy_aggregate([1, -1], p)


def test_noisy_aggregate_is_reproducible_with_seeded_source():
    p = ConfidentGNMaxParams(2, 2, 1, 4)
    a = [noisy_aggregate([3, 2, 0], p, PrivacyGuardianNoise(p, SeededRandomSource(7))) for _ in range(3)]
    b = [noisy_aggregate([3, 2, 0], p, PrivacyGuardianNoise(p, SeededRandomSource(7))) for _ in range(3)]
    assert a == b


def test_vote_histogram():
    assert vote_histogram([0, 2, 2, 1], 4).tolist() == [1, 1, 2, 0]
    assert vote_histogram([], 3).tolist() == [0, 0, 0]
    for bad in ([0, 4], [-1], [0.5]):
        with pytest.raises(PrivacyParameterError):
            vote_histogram(bad, 4)


def test_suggested_parameters_and_their_documented_cost():
    demo = suggested_parameters(3, vote_scale_bits=8)
    assert (demo.sigma_G, demo.sigma_T, demo.threshold) == (1, 2, 2)
    answered = RdpAccountant().compose_all(demo.worst_case_events()).get_epsilon(1e-5)
    declined = RdpAccountant().compose_all(demo.threshold_events()).get_epsilon(1e-5)
    assert 7.5 < answered < 7.7 and 2.1 < declined < 2.25  # the numbers the module docstring states
    assert suggested_parameters(4) == suggested_parameters(3)
    p250 = suggested_parameters(250)
    assert (p250.sigma_G, p250.sigma_T, p250.threshold) == (40, 200, 300)
    with pytest.raises(PrivacyParameterError):
        suggested_parameters(0)
