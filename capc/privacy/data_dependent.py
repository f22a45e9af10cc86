"""SIMULATION ONLY: data-dependent RDP bounds of Confident-GNMax (Papernot et al. 2018, "Scalable
Private Learning with PATE", Theorem 6 and Proposition 10).

These bounds need the true vote histogram, which in CaPC nobody sees (the privacy guardian holds
only random shares), so the privacy guardian can never use them. They are here to reproduce the
PATE/CaPC privacy analyses in plaintext simulation (:mod:`capc.privacy.simulate`). A data-dependent
epsilon is itself a function of the private data: publishing it requires a smooth-sensitivity
release step (PATE 2018, section 4), which capc does not implement; treat every number from this
module as an analysis figure, not as a privacy guarantee.

Bounds (all RDP at order lambda, natural logarithms):

* q-bound for GNMax (union bound; PATE 2018 Prop. 7): q <= sum_{i != i*} Pr[N(0, 2 sigma^2) >= n_i* - n_i],
  capped at 1 - 1/C. ``tail="gaussian"`` uses the Gaussian tail (the original analysis);
  ``tail="subgaussian"`` uses exp(-gap^2 / (4 sigma^2)), which also holds for discrete Gaussian noise
  (the discrete Gaussian is sigma-subgaussian: Canonne, Kamath & Steinke 2020).
* Theorem 6 with Proposition 10's choice mu2 = sigma sqrt(log(1/q)), mu1 = mu2 + 1,
  eps_i = mu_i / sigma^2: for lambda < mu1,
  rdp <= 1/(lambda-1) log((1-q) A^(lambda-1) + q B^(lambda-1)),
  A = (1-q) / (1 - (q e^eps2)^((mu2-1)/mu2)), B = e^eps1 / q^(1/(mu1-1)),
  valid when mu2 > 1, q e^eps2 < 1 and q <= e^((mu2-1) eps2) / (mu1/(mu1-1) * mu2/(mu2-1))^mu2;
  the result is never above the data-independent lambda/sigma^2.
* Threshold check: the same theorem applied to the Gaussian mechanism with sigma_T sqrt(2)
  (its data-independent RDP is lambda/(2 sigma_T^2)) and q = min(Pr[answered], Pr[declined]).
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np
from scipy import stats

from capc.privacy.errors import PrivacyParameterError

__all__ = [
    "log_q_gnmax_simulation_only",
    "rdp_gaussian_data_dependent_simulation_only",
    "rdp_gnmax_data_dependent_simulation_only",
    "log_pr_answered_simulation_only",
    "rdp_threshold_data_dependent_simulation_only",
]


def _log1mexp(x: float) -> float:
    """log(1 - exp(x)) for x <= 0, accurately."""
    if x > 0:
        raise PrivacyParameterError(f"log1mexp needs x <= 0, got {x}")
    if x == 0:
        return -math.inf
    return math.log(-math.expm1(x)) if x > -0.693 else math.log1p(-math.exp(x))


def log_q_gnmax_simulation_only(votes: Sequence[float], sigma: float, tail: Literal["gaussian", "subgaussian"] = "gaussian") -> float:
    """log of an upper bound on Pr[GNMax(votes) != argmax votes] (union bound), capped at log(1 - 1/C)."""
    v = np.asarray(votes, dtype=np.float64)
    if v.ndim != 1 or v.size < 2:
        raise PrivacyParameterError("votes must be a 1-D histogram with at least 2 classes")
    if not sigma > 0:
        raise PrivacyParameterError(f"sigma must be > 0 for a data-dependent bound, got {sigma!r}")
    top = int(np.argmax(v))
    gaps = np.delete(v[top] - v, top)
    if tail == "gaussian":
        logs = stats.norm.logsf(gaps, scale=math.sqrt(2.0) * sigma)
    elif tail == "subgaussian":
        logs = np.where(gaps > 0, -(gaps**2) / (4.0 * sigma**2), 0.0)
    else:
        raise PrivacyParameterError(f"tail must be 'gaussian' or 'subgaussian', got {tail!r}")
    logq = float(np.logaddexp.reduce(logs))
    return min(logq, math.log1p(-1.0 / v.size))


def rdp_gaussian_data_dependent_simulation_only(logq: float, sigma: float, orders: Sequence[float]) -> np.ndarray:
    """Theorem 6 / Proposition 10 bound for a mechanism whose data-independent RDP is lambda/sigma^2,
    given log q (q bounds the probability of leaving the likely outcome); min with lambda/sigma^2."""
    o = np.asarray(orders, dtype=np.float64)
    if not sigma > 0:
        raise PrivacyParameterError(f"sigma must be > 0, got {sigma!r}")
    var = sigma**2
    ret = o / var
    logq = min(float(logq), 0.0)
    if logq == 0.0 or logq == -math.inf:
        # q = 1: nothing better than data-independent. q = 0 cannot be certified by a tail bound.
        return ret
    mu2 = math.sqrt(var * -logq)
    mu1 = mu2 + 1.0
    eps1, eps2 = mu1 / var, mu2 / var
    if mu2 <= 1.0:
        return ret
    log_cond = (mu2 - 1.0) * eps2 - mu2 * (math.log(mu1 / (mu1 - 1.0)) + math.log(mu2 / (mu2 - 1.0)))
    if not (logq <= log_cond and -logq > eps2):
        return ret
    mask = o < mu1
    if not np.any(mask):
        return ret
    log1q = _log1mexp(logq)
    log_a = (o - 1.0) * (log1q - _log1mexp((logq + eps2) * (1.0 - 1.0 / mu2)))
    log_b = (o - 1.0) * (eps1 - logq / (mu1 - 1.0))
    log_s = np.logaddexp(log1q + log_a, logq + log_b)
    bound = log_s / (o - 1.0)
    ret = np.where(mask, np.minimum(ret, bound), ret)
    return np.maximum(ret, 0.0)


def rdp_gnmax_data_dependent_simulation_only(
    votes: Sequence[float], sigma_G: float, orders: Sequence[float], tail: Literal["gaussian", "subgaussian"] = "gaussian"
) -> np.ndarray:
    """Data-dependent RDP of one GNMax answer on ``votes`` (needs the histogram: simulation only)."""
    return rdp_gaussian_data_dependent_simulation_only(log_q_gnmax_simulation_only(votes, sigma_G, tail), sigma_G, orders)


def log_pr_answered_simulation_only(max_votes: float, threshold: float, sigma_T: float) -> float:
    """log Pr[max_votes + N(0, sigma_T^2) >= threshold] (Gaussian approximation of the discrete noise)."""
    if not sigma_T > 0:
        raise PrivacyParameterError(f"sigma_T must be > 0, got {sigma_T!r}")
    return float(stats.norm.logsf(threshold - max_votes, scale=sigma_T))


def rdp_threshold_data_dependent_simulation_only(
    max_votes: float, threshold: float, sigma_T: float, orders: Sequence[float]
) -> np.ndarray:
    """Data-dependent RDP of the threshold check: Theorem 6 with sigma_T sqrt(2) and
    q = min(Pr[answered], Pr[declined])."""
    logpr = log_pr_answered_simulation_only(max_votes, threshold, sigma_T)
    # logpr == 0 gives logq = -inf, for which the bound falls back to the data-independent one.
    logq = min(logpr, _log1mexp(logpr))
    return rdp_gaussian_data_dependent_simulation_only(logq, math.sqrt(2.0) * sigma_T, orders)
