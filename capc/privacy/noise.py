"""Exact discrete Gaussian noise from cryptographic randomness.

The privacy guardian adds integer noise inside the garbled circuit, so the noise must be an exact
sample of the discrete Gaussian N_Z(0, sigma^2), whose probability mass is proportional to
exp(-x^2 / (2 sigma^2)) for every integer x. Rounding a floating-point Gaussian would not do:
floating-point samplers leak through their rounding pattern (Mironov 2012, "On significance of the
least significant bits for differential privacy").

The sampler follows Canonne, Kamath & Steinke 2020, "The Discrete Gaussian for Differential
Privacy" (NeurIPS; arXiv:2004.00010):

* Algorithm 1 -- Bernoulli(exp(-gamma)) for rational gamma >= 0, using only Bernoulli(p) draws of
  rational p;
* Algorithm 2 -- the discrete Laplace distribution with integer scale t
  (P[x] proportional to exp(-|x| / t));
* Algorithm 3 -- the discrete Gaussian by rejection from the discrete Laplace with
  t = floor(sigma) + 1, accepting Y with probability exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2)).

Every acceptance test is done in exact integer arithmetic on the numerator and denominator of the
rational sigma^2 (the equivalent of :class:`fractions.Fraction` but without its per-operation cost),
so the output distribution is exactly N_Z(0, sigma^2) given a uniform source. ``sigma`` may be an int,
a float (taken as the exact binary value it holds), a :class:`~fractions.Fraction` or a decimal string
such as ``"0.1"`` (taken as exactly 1/10). ``sigma == 0`` gives exactly zero noise.

Randomness comes from :mod:`secrets` (the operating system's CSPRNG) through
:class:`SecureRandomSource`, which buffers OS random bytes and draws uniform integers by rejection
(no modulo bias). :class:`SeededRandomSource` is a reproducible source for simulations and tests only;
it must never feed a deployed privacy guardian.

Why not a library: OpenDP (whose samplers are also exact) installs from PyPI, but this sampler
already draws one query's noise for C = 1000 classes at sigma = 40 * 2^8 in about 7 ms in pure Python
(``scripts/bench_privacy.py``), so capc avoids a compiled dependency and its opt-in feature flags.
"""

from __future__ import annotations

import math
import random
import secrets
from decimal import Decimal
from fractions import Fraction
from numbers import Rational
from typing import Protocol

import numpy as np

from capc.privacy.errors import PrivacyParameterError

__all__ = [
    "RandomSource",
    "SecureRandomSource",
    "SeededRandomSource",
    "DiscreteGaussianSampler",
    "as_exact_fraction",
    "discrete_gaussian_pmf",
    "sample_discrete_gaussian",
    "sample_discrete_laplace",
]


class RandomSource(Protocol):
    """A source of uniform integers: ``randbelow(n)`` is uniform on {0, ..., n-1} for n >= 1."""

    def randbelow(self, n: int) -> int:  # pragma: no cover - protocol
        """Return a uniform integer in [0, n)."""
        ...


class SecureRandomSource:
    """Uniform integers from the operating system's CSPRNG (:func:`secrets.token_bytes`).

    Bytes are fetched in blocks and consumed bit by bit; ``randbelow(n)`` draws ``n.bit_length()``
    bits and rejects values >= n, so the result is exactly uniform. One instance is not thread-safe;
    give each thread its own.
    """

    _BLOCK_BYTES = 64  # small blocks keep the big-int shifts below cheap

    def __init__(self) -> None:
        self._pool = 0
        self._bits = 0

    def getrandbits(self, k: int) -> int:
        """Return k uniform random bits as a non-negative integer."""
        if k <= 0:
            return 0
        while self._bits < k:
            self._pool |= int.from_bytes(secrets.token_bytes(self._BLOCK_BYTES), "little") << self._bits
            self._bits += 8 * self._BLOCK_BYTES
        value = self._pool & ((1 << k) - 1)
        self._pool >>= k
        self._bits -= k
        return value

    def randbelow(self, n: int) -> int:
        """Return a uniform integer in [0, n) by rejection sampling on n.bit_length() bits."""
        if n <= 0:
            raise PrivacyParameterError(f"randbelow needs n >= 1, got {n}")
        k = n.bit_length()
        while True:
            value = self.getrandbits(k)
            if value < n:
                return value


class SeededRandomSource:
    """A reproducible (NOT cryptographic) source for simulations and tests; never use it to protect
    real data, since anyone who knows the seed knows the noise."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)

    def randbelow(self, n: int) -> int:
        """Return a uniform integer in [0, n) from a seeded Mersenne Twister."""
        if n <= 0:
            raise PrivacyParameterError(f"randbelow needs n >= 1, got {n}")
        return self._rng.randrange(n)


def as_exact_fraction(value: object, name: str) -> Fraction:
    """Convert ``value`` (int, float, Fraction, Decimal or decimal string) to an exact Fraction.

    Floats are converted to the binary value they hold; strings like ``"0.1"`` are exact decimals.
    Raises :class:`PrivacyParameterError` naming ``name`` for non-numbers, NaN and infinities.
    """
    if isinstance(value, bool):
        raise PrivacyParameterError(f"{name} must be a number, got the boolean {value!r}")
    try:
        if isinstance(value, (int, Rational)):
            return Fraction(value)
        if isinstance(value, (float, np.floating)):
            if not math.isfinite(value):
                raise PrivacyParameterError(f"{name} must be finite, got {value!r}")
            return Fraction(float(value))
        if isinstance(value, np.integer):
            return Fraction(int(value))
        if isinstance(value, (str, Decimal)):
            return Fraction(value)
    except (ValueError, ZeroDivisionError, OverflowError) as exc:
        raise PrivacyParameterError(f"{name} must be a finite number, got {value!r} ({exc})") from None
    raise PrivacyParameterError(f"{name} must be a number, got {type(value).__name__} {value!r}")


def _bernoulli_exp_minus(num: int, den: int, rng: RandomSource) -> bool:
    """Bernoulli(exp(-num/den)) for integers num >= 0, den >= 1 (CKS 2020, Algorithm 1).

    For gamma = num/den in [0, 1]: draw A_k ~ Bernoulli(gamma/k) for k = 1, 2, ... until the first
    A_k = 0; the result is 1 iff that k is odd. For gamma > 1 the result is the AND of floor(gamma)
    Bernoulli(exp(-1)) draws and one Bernoulli(exp(-(gamma - floor(gamma)))), stopping early.
    """
    whole, num = divmod(num, den)
    randbelow = rng.randbelow
    for _ in range(whole):
        k = 1
        while randbelow(k) == 0:  # Bernoulli(1/k) for gamma = 1
            k += 1
        if k % 2 == 0:
            return False
    k = 1
    while randbelow(den * k) < num:  # Bernoulli(gamma/k)
        k += 1
    return k % 2 == 1


def sample_discrete_laplace(t: int, rng: RandomSource) -> int:
    """One sample of the discrete Laplace with integer scale t >= 1: P[x] ~ exp(-|x|/t) (CKS 2020,
    Algorithm 2 with s = 1)."""
    if t < 1:
        raise PrivacyParameterError(f"discrete Laplace scale t must be an integer >= 1, got {t}")
    randbelow = rng.randbelow
    while True:
        u = randbelow(t)
        if not _bernoulli_exp_minus(u, t, rng):
            continue
        v = 0
        while _bernoulli_exp_minus(1, 1, rng):
            v += 1
        x = u + t * v
        negative = randbelow(2) == 1
        if negative and x == 0:
            continue  # zero would otherwise be counted twice
        return -x if negative else x


def _sample_with_variance(sn: int, sd: int, t: int, rng: RandomSource) -> int:
    """CKS 2020 Algorithm 3 for sigma^2 = sn/sd > 0 and t = floor(sigma) + 1.

    Accept Y ~ DLap(t) with probability exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2)); in integers that
    exponent is (|Y| t sd - sn)^2 / (2 t^2 sd sn).
    """
    accept_den = 2 * t * t * sd * sn
    while True:
        y = sample_discrete_laplace(t, rng)
        diff = abs(y) * t * sd - sn
        if _bernoulli_exp_minus(diff * diff, accept_den, rng):
            return y


class DiscreteGaussianSampler:
    """Exact sampler of N_Z(0, sigma^2) (CKS 2020, Algorithm 3) with cryptographic randomness.

    ``sigma`` is the standard-deviation parameter of the discrete Gaussian (its pmf is proportional
    to exp(-x^2/(2 sigma^2)); the actual variance is slightly below sigma^2). ``rng`` defaults to a
    fresh :class:`SecureRandomSource`.
    """

    def __init__(self, sigma: object, rng: RandomSource | None = None) -> None:
        sigma_q = as_exact_fraction(sigma, "sigma")
        if sigma_q < 0:
            raise PrivacyParameterError(f"sigma must be >= 0, got {sigma!r}")
        self.sigma = sigma_q
        self.sigma2 = sigma_q * sigma_q
        self.rng: RandomSource = rng if rng is not None else SecureRandomSource()
        sn, sd = self.sigma2.numerator, self.sigma2.denominator
        self._sn, self._sd = sn, sd
        # t = floor(sigma) + 1, with floor(sqrt(sn/sd)) = isqrt(sn*sd) // sd computed exactly.
        self._t = math.isqrt(sn * sd) // sd + 1

    def sample(self) -> int:
        """Return one sample (a Python int); exactly 0 when sigma == 0."""
        if self._sn == 0:
            return 0
        return _sample_with_variance(self._sn, self._sd, self._t, self.rng)

    def sample_vector(self, size: int) -> np.ndarray:
        """Return ``size`` independent samples as an int64 array (all zero when sigma == 0)."""
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
            raise PrivacyParameterError(f"size must be a non-negative integer, got {size!r}")
        out = np.zeros(int(size), dtype=np.int64)
        if self._sn == 0:
            return out
        sn, sd, t, rng = self._sn, self._sd, self._t, self.rng
        for i in range(int(size)):
            out[i] = _sample_with_variance(sn, sd, t, rng)
        return out


def sample_discrete_gaussian(sigma: object, size: int | None = None, rng: RandomSource | None = None):
    """Convenience wrapper: one sample (``size=None``) or an int64 array of ``size`` samples of
    N_Z(0, sigma^2)."""
    sampler = DiscreteGaussianSampler(sigma, rng)
    return sampler.sample() if size is None else sampler.sample_vector(size)


def discrete_gaussian_pmf(sigma: object, support: np.ndarray) -> np.ndarray:
    """The exact pmf of N_Z(0, sigma^2) at the integers ``support`` (float64), normalised by the
    sum over all integers within 40 sigma + 2 of 0 (the mass beyond is below exp(-800)).

    Used by the goodness-of-fit tests; sigma must be > 0.
    """
    sigma_f = float(as_exact_fraction(sigma, "sigma"))
    if sigma_f <= 0:
        raise PrivacyParameterError(f"the pmf needs sigma > 0, got {sigma!r}")
    bound = int(40 * sigma_f) + 2
    xs = np.arange(-bound, bound + 1, dtype=np.float64)
    norm = np.exp(-(xs**2) / (2 * sigma_f**2)).sum()
    support = np.asarray(support, dtype=np.float64)
    return np.exp(-(support**2) / (2 * sigma_f**2)) / norm
