"""Confident-GNMax (Papernot et al. 2018, "Scalable Private Learning with PATE", Algorithm 1) on
integer vote histograms: the parameters, the privacy guardian's noise draw, and a plaintext reference
of what the step-3 garbled circuit computes.

Units. Votes are scaled by 2^g (the vote scale, ``vote_scale_bits = g``): the circuit sees
h = 2^g * n, where n is the vote histogram. All noise is integer in the same units:

* eta_G ~ N_Z(0, (2^g sigma_G)^2)^C   (one coordinate per class),
* eta_T ~ N_Z(0, (2^g sigma_T)^2),
* threshold_units = round(2^g * T), rounding half up (floor(2^g T + 1/2)) in exact arithmetic.
  For g >= 1 and the usual integer or half-integer T this is exact; otherwise the effective threshold
  moves by at most 2^-(g+1) votes. The threshold is a public constant, so rounding it costs no privacy.

Decision rule (identical to the circuit's, all in exact integers):
``answered = max(h) + eta_T >= threshold_units``; if answered, ``label = argmax(h + eta_G)`` with the
lowest index winning ties; otherwise no label. With sigma_T = 0 and T <= 0 the check always passes
(h >= 0), which is plain GNMax; that threshold step is then constant and costs no privacy.

Parameter defaults to suggest (sigma_G, sigma_T, T in votes; epsilon per *answered* query at
delta = 1e-5 with the improved conversion, computed by :mod:`capc.privacy.rdp`; see
:func:`suggested_parameters`):

* the original used (0.01, 0.01, 0.01) for one answering party -- essentially no privacy
  (epsilon about 3e4 per query on the default grid of orders);
* the original PATE/CaPC table for many parties (e.g. 50 -> (7, 30, 50) at about 0.81 epsilon per
  answered query, 250 -> (40, 200, 300) at about 0.12);
* for the 3-party demo capc suggests sigma_G = 1, sigma_T = 2, T = 2 (answer when the noisy top count
  reaches 2 of 3 votes): about 7.6 epsilon for an answered query and 2.2 for a declined one. With
  10 classes a unanimous vote is answered about 70 % of the time and then labelled correctly about
  90 % of the time. Three parties cannot buy strong per-query privacy with useful labels; that is a
  property of the mechanism with so few votes, not of capc.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import numpy as np

from capc.privacy.errors import PrivacyParameterError
from capc.privacy.noise import DiscreteGaussianSampler, RandomSource, SecureRandomSource, as_exact_fraction
from capc.privacy.rdp import GNMaxEvent, PrivacyEvent, ThresholdEvent

__all__ = [
    "ConfidentGNMaxParams",
    "GNMaxNoise",
    "GNMaxResult",
    "PrivacyGuardianNoise",
    "confident_gnmax",
    "vote_histogram",
    "noisy_aggregate",
    "suggested_parameters",
    "paper_parameters",
    "DATASET_DELTA",
    "dataset_delta",
    "MAX_VOTE_SCALE_BITS",
]

#: Upper bound on g: h, the noise and their sums must stay far inside the signed 64-bit ring.
MAX_VOTE_SCALE_BITS = 24
_RING_LIMIT = 1 << 62


@dataclass(frozen=True)
class ConfidentGNMaxParams:
    """sigma_G, sigma_T and T in votes, and the vote scale 2^g of the circuit.

    Values may be ints, floats, Fractions or decimal strings; they are kept as exact Fractions so the
    noise scale 2^g sigma is exact.
    """

    sigma_G: Fraction
    sigma_T: Fraction
    threshold: Fraction
    vote_scale_bits: int = 0

    def __init__(self, sigma_G: object, sigma_T: object, threshold: object, vote_scale_bits: int = 0) -> None:
        sg = as_exact_fraction(sigma_G, "sigma_G")
        st = as_exact_fraction(sigma_T, "sigma_T")
        th = as_exact_fraction(threshold, "threshold")
        if sg < 0:
            raise PrivacyParameterError(f"sigma_G must be >= 0, got {sigma_G!r}")
        if st < 0:
            raise PrivacyParameterError(f"sigma_T must be >= 0, got {sigma_T!r}")
        if isinstance(vote_scale_bits, bool) or not isinstance(vote_scale_bits, (int, np.integer)):
            raise PrivacyParameterError(f"vote_scale_bits must be an integer, got {vote_scale_bits!r}")
        if not 0 <= vote_scale_bits <= MAX_VOTE_SCALE_BITS:
            raise PrivacyParameterError(
                f"vote_scale_bits must be in [0, {MAX_VOTE_SCALE_BITS}], got {vote_scale_bits}"
            )
        for name, v in (("sigma_G", sg), ("sigma_T", st), ("threshold", th)):
            if abs(v) * (1 << int(vote_scale_bits)) > 1 << 40:
                raise PrivacyParameterError(f"{name} = {float(v):g} is too large for the 64-bit vote ring")
        object.__setattr__(self, "sigma_G", sg)
        object.__setattr__(self, "sigma_T", st)
        object.__setattr__(self, "threshold", th)
        object.__setattr__(self, "vote_scale_bits", int(vote_scale_bits))

    @property
    def scale(self) -> int:
        """The vote scale 2^g."""
        return 1 << self.vote_scale_bits

    @property
    def sigma_G_units(self) -> Fraction:
        """2^g sigma_G, the GNMax noise scale in circuit units."""
        return self.sigma_G * self.scale

    @property
    def sigma_T_units(self) -> Fraction:
        """2^g sigma_T, the threshold noise scale in circuit units."""
        return self.sigma_T * self.scale

    @property
    def threshold_units(self) -> int:
        """round(2^g T), half up: floor(2^g T + 1/2), exactly."""
        return math.floor(self.threshold * self.scale + Fraction(1, 2))

    @property
    def is_plain_gnmax(self) -> bool:
        """True when the threshold check always passes (sigma_T = 0 and T <= 0)."""
        return self.sigma_T == 0 and self.threshold_units <= 0

    def threshold_events(self) -> tuple[PrivacyEvent, ...]:
        """The charge of a declined query: the threshold check, or nothing in plain GNMax."""
        return () if self.is_plain_gnmax else (ThresholdEvent(float(self.sigma_T)),)

    def worst_case_events(self) -> tuple[PrivacyEvent, ...]:
        """The charge of an answered query (the worst case): threshold check plus GNMax."""
        return self.threshold_events() + (GNMaxEvent(float(self.sigma_G)),)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (exact values as strings like '3/2')."""
        return {
            "sigma_G": str(self.sigma_G),
            "sigma_T": str(self.sigma_T),
            "threshold": str(self.threshold),
            "vote_scale_bits": self.vote_scale_bits,
        }


@dataclass(frozen=True)
class GNMaxNoise:
    """One query's noise in circuit units: ``eta_G`` (int64, one per class) and ``eta_T``."""

    eta_G: np.ndarray
    eta_T: int


@dataclass(frozen=True)
class GNMaxResult:
    """The outcome of Confident-GNMax: ``answered`` and, only when answered, ``label``."""

    answered: bool
    label: int | None


class PrivacyGuardianNoise:
    """Draws the privacy guardian's noise (eta_G, eta_T) for one query from exact discrete Gaussians
    with cryptographic randomness (``rng`` defaults to :class:`SecureRandomSource`)."""

    def __init__(self, params: ConfidentGNMaxParams, rng: RandomSource | None = None) -> None:
        if not isinstance(params, ConfidentGNMaxParams):
            raise PrivacyParameterError(f"params must be ConfidentGNMaxParams, got {type(params).__name__}")
        self.params = params
        source = rng if rng is not None else SecureRandomSource()
        self._gnmax = DiscreteGaussianSampler(params.sigma_G_units, source)
        self._threshold = DiscreteGaussianSampler(params.sigma_T_units, source)

    def draw(self, num_classes: int) -> GNMaxNoise:
        """Fresh noise for one query over ``num_classes`` classes (>= 2)."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise PrivacyParameterError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        return GNMaxNoise(eta_G=self._gnmax.sample_vector(int(num_classes)), eta_T=self._threshold.sample())


def _int_vector(values: object, name: str) -> list[int]:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size == 0:
        raise PrivacyParameterError(f"{name} must be a non-empty 1-D vector, got shape {arr.shape}")
    if arr.dtype.kind not in "iu" and not (arr.dtype == object and all(isinstance(v, int) for v in arr.tolist())):
        raise PrivacyParameterError(f"{name} must hold integers, got dtype {arr.dtype}")
    out = [int(v) for v in arr.tolist()]
    if any(abs(v) >= _RING_LIMIT for v in out):
        raise PrivacyParameterError(f"{name} has entries outside +-2^62; the 64-bit circuit would wrap")
    return out


def confident_gnmax(h: Sequence[int], eta_G: Sequence[int], eta_T: int, threshold_units: int) -> GNMaxResult:
    """Plaintext reference of the step-3 circuit on the scaled histogram ``h`` (= 2^g n).

    answered = max(h) + eta_T >= threshold_units; label = argmax(h + eta_G), lowest index on ties,
    returned only when answered. Exact integer arithmetic throughout.
    """
    hv = _int_vector(h, "h")
    gv = _int_vector(eta_G, "eta_G")
    if len(hv) != len(gv):
        raise PrivacyParameterError(f"h has {len(hv)} classes but eta_G has {len(gv)}")
    if isinstance(eta_T, bool) or not isinstance(eta_T, (int, np.integer)):
        raise PrivacyParameterError(f"eta_T must be an integer, got {eta_T!r}")
    if isinstance(threshold_units, bool) or not isinstance(threshold_units, (int, np.integer)):
        raise PrivacyParameterError(f"threshold_units must be an integer, got {threshold_units!r}")
    if max(hv) + int(eta_T) < int(threshold_units):
        return GNMaxResult(answered=False, label=None)
    noisy = [a + b for a, b in zip(hv, gv)]
    best = 0
    for i in range(1, len(noisy)):
        if noisy[i] > noisy[best]:  # strict: the lowest index keeps a tie
            best = i
    return GNMaxResult(answered=True, label=best)


def vote_histogram(predictions: Sequence[int], num_classes: int) -> np.ndarray:
    """The vote histogram n (int64, length ``num_classes``) of the answering parties' labels."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise PrivacyParameterError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    preds = np.asarray(predictions)
    if preds.ndim != 1 or (preds.size and preds.dtype.kind not in "iu"):
        raise PrivacyParameterError("predictions must be a 1-D sequence of integer labels")
    if preds.size and (preds.min() < 0 or preds.max() >= num_classes):
        raise PrivacyParameterError(f"every prediction must be in [0, {num_classes}), got {preds.min()}..{preds.max()}")
    return np.bincount(preds.astype(np.int64), minlength=num_classes).astype(np.int64)


def noisy_aggregate(votes: Sequence[int], params: ConfidentGNMaxParams, noise: PrivacyGuardianNoise | None = None) -> GNMaxResult:
    """Confident-GNMax on an unscaled vote histogram: scale by 2^g, draw fresh noise, decide.

    This is what the protocol computes jointly, in one process (simulation mode, tests).
    """
    v = np.asarray(_int_vector(votes, "votes"), dtype=np.int64)
    if np.any(v < 0):
        raise PrivacyParameterError("vote counts must be >= 0")
    noise = noise if noise is not None else PrivacyGuardianNoise(params)
    draw = noise.draw(len(v))
    return confident_gnmax(v * params.scale, draw.eta_G, draw.eta_T, params.threshold_units)


# (sigma_G, sigma_T, T) by number of answering parties: the original PATE/CaPC table, plus capc's
# choice for the 3-party demo (see the module docstring for its epsilon).
_SUGGESTED: dict[int, tuple[str, str, str]] = {
    1: ("0.01", "0.01", "0.01"),
    3: ("1", "2", "2"),
    5: ("1", "3", "5"),
    10: ("2", "6", "10"),
    50: ("7", "30", "50"),
    100: ("25", "65", "135"),
    150: ("30", "110", "190"),
    200: ("35", "155", "245"),
    250: ("40", "200", "300"),
    300: ("50", "245", "355"),
    400: ("60", "300", "450"),
}


def suggested_parameters(n_parties: int, vote_scale_bits: int = 0) -> ConfidentGNMaxParams:
    """Suggested (sigma_G, sigma_T, T): the entry of the original table with the largest party count
    <= n_parties (1 -> the original near-zero-noise setting, 3 -> capc's demo choice).

    The original table is keyed by the *total* number of models K (its ``num_models``), so pass K to
    get the paper's presets (K = 50 -> 7/30/50, K = 250 -> 40/200/300); see :func:`paper_parameters`."""
    if isinstance(n_parties, bool) or not isinstance(n_parties, (int, np.integer)) or n_parties < 1:
        raise PrivacyParameterError(f"n_parties must be an integer >= 1, got {n_parties!r}")
    key = max(k for k in _SUGGESTED if k <= n_parties)
    sg, st, t = _SUGGESTED[key]
    return ConfidentGNMaxParams(sg, st, t, vote_scale_bits)


def paper_parameters(total_parties: int, vote_scale_bits: int = 0) -> ConfidentGNMaxParams:
    """The original's (sigma_G, sigma_T, T) for exactly ``total_parties`` = K models (querying party
    included), e.g. K = 50 -> 7/30/50 and K = 250 -> 40/200/300.

    Raises:
        PrivacyParameterError: K is not one of the original table's party counts (the message lists
            them; :func:`suggested_parameters` gives the nearest smaller entry instead).
    """
    if isinstance(total_parties, bool) or not isinstance(total_parties, (int, np.integer)) or total_parties not in _SUGGESTED or total_parties == 3:
        known = ", ".join(str(k) for k in _SUGGESTED if k != 3)
        raise PrivacyParameterError(f"the paper has no preset for K = {total_parties!r} parties (it has K in {known})")
    sg, st, t = _SUGGESTED[int(total_parties)]
    return ConfidentGNMaxParams(sg, st, t, vote_scale_bits)


#: delta per dataset as the original (``main.py``): 1e-6 for SVHN, 1e-5 otherwise.
DATASET_DELTA: dict[str, float] = {"mnist": 1e-5, "fashion_mnist": 1e-5, "cifar10": 1e-5, "svhn": 1e-6, "digits": 1e-5}


def dataset_delta(dataset: str) -> float:
    """The original's delta for ``dataset`` (1e-6 for SVHN, 1e-5 for MNIST, CIFAR-10 and others)."""
    return DATASET_DELTA.get(str(dataset).lower().replace("-", "_"), 1e-5)
