"""Tests of capc.privacy.noise: exactness edge cases, bad input, and statistical checks of the discrete
Gaussian sampler against its exact pmf.

Statistical tests use fixed sample sizes; each tolerance is 6 standard errors (two-sided false-failure
probability about 2e-9) and each chi-square test rejects at p < 1e-9, so a false failure is
astronomically unlikely while real bias of a few percent in any bin is caught.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from capc.errors import CapcError
from capc.privacy.errors import PrivacyParameterError
from capc.privacy.noise import (
    DiscreteGaussianSampler,
    SecureRandomSource,
    SeededRandomSource,
    _bernoulli_exp_minus,
    as_exact_fraction,
    discrete_gaussian_pmf,
    sample_discrete_gaussian,
    sample_discrete_laplace,
)

Z = 6.0  # standard errors allowed
P_REJECT = 1e-9


def _exact_moments(sigma: float) -> tuple[float, float, float]:
    """E[X^2], E[X^4] of N_Z(0, sigma^2) from the exact pmf, and the support half-width used."""
    bound = int(40 * sigma) + 2
    xs = np.arange(-bound, bound + 1, dtype=np.float64)
    p = discrete_gaussian_pmf(sigma, xs)
    return float((xs**2 * p).sum()), float((xs**4 * p).sum()), bound


def _check_moments(samples: np.ndarray, sigma: float) -> None:
    n = samples.size
    m2, m4, _ = _exact_moments(sigma)
    mean = samples.mean()
    assert abs(mean) <= Z * math.sqrt(m2 / n), f"mean {mean} too far from 0 (sigma={sigma})"
    var_hat = float((samples.astype(np.float64) ** 2).mean())  # E[X] = 0 exactly, so E[X^2] is the variance
    se = math.sqrt((m4 - m2 * m2) / n)
    assert abs(var_hat - m2) <= Z * se, f"second moment {var_hat} vs exact {m2} (sigma={sigma})"


def _chi_square(samples: np.ndarray, edges_lo: np.ndarray, probs: np.ndarray) -> None:
    """Chi-square goodness of fit; bins [edges_lo[i], edges_lo[i+1]) plus open tails, exact probs."""
    n = samples.size
    idx = np.searchsorted(edges_lo, samples, side="right") - 1
    observed = np.bincount(idx, minlength=len(probs)).astype(np.float64)
    expected = n * probs
    assert expected.min() >= 5, "test design: every bin needs an expected count of at least 5"
    stat = float(((observed - expected) ** 2 / expected).sum())
    crit = stats.chi2.isf(P_REJECT, df=len(probs) - 1)
    assert stat < crit, f"chi-square {stat:.1f} >= {crit:.1f} with {len(probs)} bins"


def _integer_bins(sigma: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """One bin per integer where n * pmf >= 20, both tails merged into the end bins."""
    m2, _, bound = _exact_moments(sigma)
    xs = np.arange(-bound, bound + 1)
    p = discrete_gaussian_pmf(sigma, xs)
    keep = xs[n * p >= 20]
    lo, hi = int(keep.min()), int(keep.max())
    inner = np.arange(lo + 1, hi)  # own bins
    edges = np.concatenate(([-(10**18)], inner, [hi]))
    probs = [p[xs <= lo].sum()] + [p[xs == x].sum() for x in inner] + [p[xs >= hi].sum()]
    return edges, np.asarray(probs)


def _quantile_bins(sigma: float, nbins: int) -> tuple[np.ndarray, np.ndarray]:
    """About ``nbins`` bins of roughly equal exact probability (for large sigma)."""
    _, _, bound = _exact_moments(sigma)
    xs = np.arange(-bound, bound + 1)
    p = discrete_gaussian_pmf(sigma, xs)
    cdf = np.cumsum(p)
    cuts = np.unique(np.searchsorted(cdf, np.linspace(0, 1, nbins + 1)[1:-1]))
    starts = xs[cuts + 1]
    edges = np.concatenate(([-(10**18)], starts))
    bounds = np.concatenate(([0], cuts + 1, [len(xs)]))
    probs = np.array([p[bounds[i] : bounds[i + 1]].sum() for i in range(len(bounds) - 1)])
    return edges, probs


# -- exactness and input checks ----------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0, 0.0, "0", Fraction(0)])
def test_sigma_zero_gives_exactly_zero(sigma):
    s = DiscreteGaussianSampler(sigma)
    assert s.sample() == 0
    v = s.sample_vector(1000)
    assert v.dtype == np.int64 and v.shape == (1000,) and not v.any()


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan"), float("inf"), "abc", None, True, [1.0]])
def test_bad_sigma_is_refused(bad):
    with pytest.raises(PrivacyParameterError) as err:
        DiscreteGaussianSampler(bad)
    assert "sigma" in str(err.value)
    assert isinstance(err.value, CapcError)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_bad_size_is_refused(bad):
    with pytest.raises(PrivacyParameterError):
        DiscreteGaussianSampler(2).sample_vector(bad)


def test_exact_fraction_conversion():
    assert as_exact_fraction("0.1", "x") == Fraction(1, 10)
    assert as_exact_fraction(0.5, "x") == Fraction(1, 2)
    assert as_exact_fraction(np.int64(7), "x") == 7
    assert DiscreteGaussianSampler("2.5").sigma2 == Fraction(25, 4)


def test_secure_source_randbelow_uniform_and_checked():
    src = SecureRandomSource()
    n = 70_000
    draws = np.array([src.randbelow(7) for _ in range(n)])
    assert draws.min() == 0 and draws.max() == 6
    _chi_square(draws, np.arange(7), np.full(7, 1 / 7))
    assert src.randbelow(1) == 0
    big = 1 << 200
    assert 0 <= src.randbelow(big) < big
    with pytest.raises(PrivacyParameterError):
        src.randbelow(0)


def test_seeded_source_is_reproducible():
    a = DiscreteGaussianSampler(5, SeededRandomSource(42)).sample_vector(50)
    b = DiscreteGaussianSampler(5, SeededRandomSource(42)).sample_vector(50)
    assert np.array_equal(a, b)
    assert sample_discrete_gaussian(3, rng=SeededRandomSource(1)) == sample_discrete_gaussian(3, rng=SeededRandomSource(1))


# -- building blocks --------------------------------------------------------------------------------


@pytest.mark.parametrize("num,den", [(1, 2), (1, 1), (5, 2), (0, 3)])
def test_bernoulli_exp_frequency(num, den):
    src = SecureRandomSource()
    n = 20_000
    hits = sum(_bernoulli_exp_minus(num, den, src) for _ in range(n))
    p = math.exp(-num / den)
    assert abs(hits / n - p) <= Z * math.sqrt(max(p * (1 - p), 1e-12) / n)


def test_discrete_laplace_matches_pmf():
    t, n = 3, 30_000
    src = SecureRandomSource()
    samples = np.array([sample_discrete_laplace(t, src) for _ in range(n)])
    xs = np.arange(-200, 201)
    p = np.exp(-np.abs(xs) / t)
    p /= p.sum()
    keep = xs[n * p >= 20]
    lo, hi = keep.min(), keep.max()
    inner = np.arange(lo + 1, hi)
    edges = np.concatenate(([-(10**18)], inner, [hi]))
    probs = np.array([p[xs <= lo].sum()] + [p[xs == x].sum() for x in inner] + [p[xs >= hi].sum()])
    _chi_square(samples, edges, probs)
    with pytest.raises(PrivacyParameterError):
        sample_discrete_laplace(0, src)


# -- the discrete Gaussian --------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.5, 1, Fraction(7, 3), 4.5])
def test_discrete_gaussian_small_sigma_fits_exact_pmf(sigma):
    n = 30_000
    samples = DiscreteGaussianSampler(sigma).sample_vector(n)
    sf = float(Fraction(sigma))
    _check_moments(samples, sf)
    edges, probs = _integer_bins(sf, n)
    _chi_square(samples, edges, probs)


@pytest.mark.parametrize("sigma", [40.0, 40 * 256])
def test_discrete_gaussian_large_sigma_fits_exact_pmf(sigma):
    n = 10_000
    samples = DiscreteGaussianSampler(sigma).sample_vector(n)
    _check_moments(samples, sigma)
    edges, probs = _quantile_bins(sigma, 40)
    _chi_square(samples, edges, probs)


def test_discrete_gaussian_is_symmetric_and_integer():
    samples = DiscreteGaussianSampler(2).sample_vector(20_000)
    pos, neg = int((samples > 0).sum()), int((samples < 0).sum())
    # Under symmetry pos ~ Binomial(pos + neg, 1/2).
    m = pos + neg
    assert abs(pos - m / 2) <= Z * math.sqrt(m) / 2
    assert samples.dtype == np.int64
