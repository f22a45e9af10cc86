"""SIMULATION ONLY: data-dependent RDP bounds of Confident-GNMax (Papernot et al. 2018, "Scalable
Private Learning with PATE", Theorem 6 and Proposition 10).

These bounds need the true vote histogram, which in CaPC nobody sees (the privacy guardian holds
only random shares), so the privacy guardian can never use them. They are here to reproduce the
PATE/CaPC privacy analyses in plaintext simulation (:mod:`capc.privacy.simulate`). A data-dependent
epsilon is itself a function of the private data: publishing it requires a smooth-sensitivity
release step (PATE 2018, Appendix B; :mod:`capc.privacy.smooth_sensitivity`); treat every number
from this module as an analysis figure, not as a privacy guarantee.

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
    "log_q_gnmax_many_simulation_only",
    "rdp_gaussian_data_dependent_simulation_only",
    "rdp_gaussian_data_dependent_many_simulation_only",
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


def _log1mexp_many(x: np.ndarray) -> np.ndarray:
    """:func:`_log1mexp` elementwise (x < 0), with the same branch, so results agree bit for bit."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > -0.693, np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


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


def log_q_gnmax_many_simulation_only(votes: np.ndarray, sigma: float) -> np.ndarray:
    """:func:`log_q_gnmax_simulation_only` (Gaussian tail) for each row of a 2-D array of histograms."""
    v = np.asarray(votes, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] < 2:
        raise PrivacyParameterError("votes must be a 2-D array of histograms with at least 2 classes")
    if not sigma > 0:
        raise PrivacyParameterError(f"sigma must be > 0 for a data-dependent bound, got {sigma!r}")
    top = np.argmax(v, axis=1)
    logs = stats.norm.logsf(v[np.arange(len(v)), top][:, None] - v, scale=math.sqrt(2.0) * sigma)
    logs[np.arange(len(v)), top] = -np.inf  # the winner itself is not a way to leave it
    return np.minimum(np.logaddexp.reduce(logs, axis=1), math.log1p(-1.0 / v.shape[1]))


def rdp_gaussian_data_dependent_simulation_only(logq: float, sigma: float, orders: Sequence[float]) -> np.ndarray:
    """Theorem 6 / Proposition 10 bound for a mechanism whose data-independent RDP is lambda/sigma^2,
    given log q (q bounds the probability of leaving the likely outcome); min with lambda/sigma^2."""
    return rdp_gaussian_data_dependent_many_simulation_only([float(logq)], sigma, orders)[0]


def rdp_gaussian_data_dependent_many_simulation_only(logqs: Sequence[float], sigma: float,
                                                     orders: Sequence[float]) -> np.ndarray:
    """:func:`rdp_gaussian_data_dependent_simulation_only` for several values of log q at once:
    returns shape (len(logqs), len(orders)); row i is the bound for ``logqs[i]`` (same arithmetic)."""
    o = np.asarray(orders, dtype=np.float64)[None, :]
    if not sigma > 0:
        raise PrivacyParameterError(f"sigma must be > 0, got {sigma!r}")
    var = float(sigma) ** 2
    lq = np.minimum(np.asarray(logqs, dtype=np.float64).reshape(-1), 0.0)[:, None]
    ret = np.broadcast_to(o / var, (lq.shape[0], o.shape[1])).copy()
    # q = 1: nothing better than data-independent. q = 0 cannot be certified by a tail bound.
    usable = (lq < 0.0) & np.isfinite(lq)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mu2 = np.sqrt(var * -np.where(usable, lq, -1.0))
        mu1 = mu2 + 1.0
        eps1, eps2 = mu1 / var, mu2 / var
        usable &= mu2 > 1.0
        mu2s = np.where(usable, mu2, 2.0)  # placeholder where unusable, keeps the logs finite
        mu1s = mu2s + 1.0
        log_cond = (mu2s - 1.0) * eps2 - mu2s * (np.log(mu1s / (mu1s - 1.0)) + np.log(mu2s / (mu2s - 1.0)))
        usable &= (lq <= log_cond) & (-lq > eps2)
        mask = usable & (o < mu1)
        lqs = np.where(usable, lq, -1.0)
        log1q = _log1mexp_many(lqs)
        inner = (lqs + eps2) * (1.0 - 1.0 / mu2s)  # < 0 where usable (-logq > eps2)
        log_a = (o - 1.0) * (log1q - _log1mexp_many(np.minimum(inner, -1e-300)))
        log_b = (o - 1.0) * (eps1 - lqs / (mu1s - 1.0))
        bound = np.logaddexp(log1q + log_a, lqs + log_b) / (o - 1.0)
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
