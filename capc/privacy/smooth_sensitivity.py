"""SIMULATION ONLY: PATE 2018's smooth-sensitivity release of the data-dependent privacy cost.

Every function here needs the true vote histograms, which in CaPC nobody sees (the privacy guardian
holds random shares only); the module exists to reproduce the original analysis in plaintext
simulation, beside the protocol's data-independent ledger, which stays the protocol's truth.

The data-dependent RDP of :mod:`capc.privacy.data_dependent` (Papernot et al. 2018, "Scalable
Private Learning with PATE", Theorem 6 / Proposition 10) is a function of the private data, so
publishing it leaks. PATE 2018 (Appendix B; theorem and algorithm numbers as in arXiv:1802.08908
and its reference code) publishes it with Gaussian noise scaled by its smooth sensitivity
(Nissim, Raskhodnikova & Smith 2007, "Smooth Sensitivity and Sampling", Section 3):

* Neighbouring data sets differ in one teacher (answering party), whose vote may change on every
  query; a data set at distance d changes at most d votes of each histogram.
* Local sensitivity at distance d: A^(d)(D) = max over D' within distance d of LS(D'), where
  LS(D') = max over neighbours D'' of |f(D'') - f(D')|. Here each A^(d) is an upper bound built so
  that it is itself a maximum over the ball (it never decreases with d), which keeps the smooth
  bound below valid.
* beta-smooth sensitivity: SS_beta(D) = max_d e^(-beta d) A^(d)(D) (NRS 2007, Section 3).
* GNMax step (PATE 2018 Appendix B.3): for a histogram with union bound q, every neighbour's q lies
  in [BL(q), BU(q)] with BU/BL(q) = (m-1)/2 erfc(erfcinv(2q/(m-1)) -/+ 1/sigma) (Proposition 13),
  so LS <= max(beta(BU(q)) - beta(q), beta(q) - beta(BL(q))) (Algorithm 3), where beta(q) is the
  Theorem 6 bound at one order. Under conditions C5 (beta non-decreasing in q below q0, the point
  where the bound meets the data-independent lambda/sigma^2) and C6 (beta(BU(q)) - beta(q)
  non-decreasing below q1 = BL(q0)), Appendix B.4.2, that bound is largest on the plateau
  [q1, q0], and the maximum over a ball is reached by walking the histogram towards it, one vote
  per step (Algorithms 4 and 5): from the runner-up to the winner when q > q0, from the winner to
  the runner-up when q < q1. The conditions are checked numerically on the reachable range of q
  (:func:`check_conditions_simulation_only`).
* Threshold step: its data-dependent RDP depends on the largest count v only (one teacher moves v
  by at most 1), so its local sensitivity at distance d is exact: the largest step of the curve
  over v' in [v - d - 1, v + d + 1].
* The expected cost of a Confident-GNMax query is t(v) + p(v) g(q) (p = Pr[answered]). Its local
  sensitivity is bounded by the product rule: LS_t + p LS_g + LS_p * lambda/sigma_G^2 (g never
  exceeds the data-independent lambda/sigma_G^2), with p and LS_p maximised over the ball. The
  reference code weights LS_g by p at the current histogram and leaves out the LS_p term; this
  module keeps it, so its smooth sensitivity bounds the released function itself. Costs add over
  queries, and so do their sensitivity bounds.
* Release (the GNSS mechanism, PATE 2018 Theorem 23): at a fixed order lambda, publish
  f(D) + SS_beta(D) sigma_s Z with Z ~ N(0, 1). For 0 < beta < 1/(2 lambda) it is
  (lambda, lambda e^(2 beta) / sigma_s^2 + (beta lambda - log(1 - 2 lambda beta)/2) / (lambda - 1))-RDP;
  the run with its release is then (lambda, f(D) + that)-RDP, converted to (epsilon, delta) at that
  order.

PATE 2018 chose lambda, beta and sigma_s by looking at the data (lambda minimising the unreleased
epsilon; beta and sigma_s minimising f + release cost + 2 SS sigma_s, with
sigma_s = (lambda e^(2 beta) / SS)^(1/3)); :func:`smooth_sensitivity_release_simulation_only` does
the same when they are not given, and says so (``tuned``). A rigorous release fixes them in advance.
Every number from this module is an analysis figure of a simulation, not the protocol's guarantee.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import special

from capc.privacy.data_dependent import (
    log_pr_answered_simulation_only,
    log_q_gnmax_many_simulation_only,
    rdp_gaussian_data_dependent_many_simulation_only,
    rdp_gnmax_data_dependent_simulation_only,
    rdp_threshold_data_dependent_simulation_only,
)
from capc.privacy.errors import PrivacyParameterError
from capc.privacy.gnmax import ConfidentGNMaxParams
from capc.privacy.rdp import eps_from_rdp, validate_delta, validate_orders

__all__ = [
    "SMOOTH_SENSITIVITY_LABEL",
    "ReleaseSettings",
    "SmoothSensitivityRelease",
    "local_sensitivity_gnmax_simulation_only",
    "local_sensitivity_threshold_simulation_only",
    "local_sensitivity_queries_simulation_only",
    "smooth_sensitivity_from_local",
    "rdp_gnss_release",
    "check_conditions_simulation_only",
    "smooth_sensitivity_release_simulation_only",
]

SMOOTH_SENSITIVITY_LABEL = ("PATE 2018's smooth-sensitivity release of the data-dependent epsilon "
                            "(noisy estimate plus the release's own cost, simulation only)")

_SQRT2 = math.sqrt(2.0)


def _order(order: float) -> float:
    try:
        lam = float(order)
    except (TypeError, ValueError):
        raise PrivacyParameterError(f"order must be a number > 1, got {order!r}") from None
    if not (math.isfinite(lam) and lam > 1.0):
        raise PrivacyParameterError(f"order must be finite and > 1, got {order!r}")
    return lam


def _positive(value: float, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise PrivacyParameterError(f"{name} must be a positive number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise PrivacyParameterError(f"{name} must be finite and > 0, got {value!r}")
    return v


# ---------------------------------------------------------------------------------------------
# GNMax: beta(q), BU/BL, q0/q1 and Algorithm 3
# ---------------------------------------------------------------------------------------------


def _beta(logq: np.ndarray, sigma: float, order: float) -> np.ndarray:
    """Theorem 6 bound at one order for every log q (the function the release publishes)."""
    return rdp_gaussian_data_dependent_many_simulation_only(np.atleast_1d(logq), sigma, [order])[:, 0]


def _log_bu(logq: np.ndarray, sigma: float, m: int) -> np.ndarray:
    """log BU(q) (Proposition 13), in log space: q/(m-1) = Phi(z), BU = (m-1) Phi(z + sqrt2/sigma)."""
    lm = math.log(m - 1)
    z = special.ndtri_exp(np.minimum(np.asarray(logq, np.float64) - lm, 0.0))
    return np.minimum(lm + special.log_ndtr(z + _SQRT2 / sigma), 0.0)


def _log_bl(logq: np.ndarray, sigma: float, m: int) -> np.ndarray:
    """log BL(q) (Proposition 13): (m-1) Phi(z - sqrt2/sigma)."""
    lm = math.log(m - 1)
    z = special.ndtri_exp(np.minimum(np.asarray(logq, np.float64) - lm, 0.0))
    return lm + special.log_ndtr(z - _SQRT2 / sigma)


@functools.lru_cache(maxsize=256)
def _logq0(sigma: float, order: float, m: int) -> float:
    """log q0: below it the data-dependent bound beats lambda/sigma^2, above it does not (C5 makes
    the set an interval; checked separately). -inf when the bound never helps."""
    ind = order / sigma**2
    hi = math.log1p(-1.0 / m)  # the largest q the union bound can report
    if _beta(np.array([hi]), sigma, order)[0] < ind:
        return hi
    lo = -1.0
    while _beta(np.array([lo]), sigma, order)[0] >= ind:
        lo *= 2.0
        if lo < -1e7:
            return -math.inf
    for _ in range(200):  # bisection: beta(lo) < ind <= beta(hi)
        mid = 0.5 * (lo + hi)
        if _beta(np.array([mid]), sigma, order)[0] < ind:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, abs(lo)):
            break
    return hi


def _alg3(logq: np.ndarray, sigma: float, order: float, m: int) -> np.ndarray:
    """Algorithm 3: upper bound on the local sensitivity of beta at a histogram with this log q."""
    lq = np.asarray(logq, np.float64).copy()
    q0 = _logq0(sigma, order, m)
    if q0 == -math.inf:
        return np.zeros_like(lq)
    q1 = float(_log_bl(np.array([q0]), sigma, m)[0])
    lq[(lq >= q1) & (lq <= q0)] = q1  # the plateau: the bound's maximum (C5, C6)
    b = _beta(lq, sigma, order)
    return np.maximum(_beta(_log_bu(lq, sigma, m), sigma, order) - b, b - _beta(_log_bl(lq, sigma, m), sigma, order))


def _histogram(votes: Sequence[int], name: str = "votes") -> np.ndarray:
    v = np.asarray(votes)
    if v.ndim != 1 or v.size < 2 or v.dtype.kind not in "iu":
        raise PrivacyParameterError(f"{name} must be a 1-D integer histogram with at least 2 classes, got {v.shape} {v.dtype}")
    if v.min() < 0:
        raise PrivacyParameterError(f"{name}: vote counts must be >= 0")
    return v.astype(np.int64)


def local_sensitivity_gnmax_simulation_only(votes: Sequence[int], sigma_G: float, order: float,
                                            max_distance: int | None = None) -> np.ndarray:
    """Upper bounds A^(d), d = 0..max_distance (default: the number of votes), on the local
    sensitivity within distance d of GNMax's data-dependent RDP at ``order`` (PATE 2018 Algorithms
    3-5; Appendix B.3). Non-decreasing in d; A^(0) bounds the local sensitivity at ``votes``.
    Valid under conditions C5/C6 (:func:`check_conditions_simulation_only`)."""
    v = _histogram(votes)
    sigma, lam = _positive(sigma_G, "sigma_G"), _order(order)
    n_total = int(v.sum())
    dmax = n_total if max_distance is None else int(max_distance)
    if dmax < 0:
        raise PrivacyParameterError(f"max_distance must be >= 0, got {max_distance!r}")
    return _gnmax_ls(tuple(sorted(v.tolist(), reverse=True)), sigma, lam, dmax).copy()


@functools.lru_cache(maxsize=65536)
def _gnmax_ls(sorted_votes: tuple[int, ...], sigma: float, order: float, dmax: int) -> np.ndarray:
    m = len(sorted_votes)
    q0 = _logq0(sigma, order, m)
    if q0 == -math.inf:
        out = np.zeros(dmax + 1)
        out.setflags(write=False)
        return out
    q1 = float(_log_bl(np.array([q0]), sigma, m)[0])
    plateau = float(_alg3(np.array([q1]), sigma, order, m)[0])
    res = np.full(dmax + 1, plateau)
    n = list(sorted_votes)
    logq = float(log_q_gnmax_many_simulation_only(np.array([n]), sigma)[0])
    if q1 <= logq <= q0:
        res.setflags(write=False)
        return res
    walk = [list(n)]
    if logq > q0:
        # Algorithm 4: lower q fastest by moving a vote from the runner-up to the winner.
        while len(walk) <= dmax and n[1] > 0:
            n[0] += 1
            n[1] -= 1
            i = 1
            while i < m - 1 and n[i] < n[i + 1]:  # keep the histogram sorted
                n[i], n[i + 1] = n[i + 1], n[i]
                i += 1
            walk.append(list(n))
    else:
        # Algorithm 5: raise q fastest by moving a vote from the winner to the runner-up; stop
        # before a tie (the plateau value, which bounds everything, is kept from there on).
        while len(walk) <= dmax and n[0] - n[1] >= 2:
            n[0] -= 1
            n[1] += 1
            walk.append(list(n))
    lqs = log_q_gnmax_many_simulation_only(np.array(walk), sigma)
    # the first histogram that reaches the plateau side ends the walk: from there on, the plateau
    stop = np.nonzero(lqs <= q0)[0] if logq > q0 else np.nonzero(lqs >= q1)[0]
    last = int(stop[0]) if stop.size else len(walk) - 1
    res[: last + 1] = _alg3(lqs[: last + 1], sigma, order, m)
    if not stop.size:
        res[last + 1:] = plateau
    out = np.maximum.accumulate(res)
    out.setflags(write=False)
    return out


# ---------------------------------------------------------------------------------------------
# Threshold step and Pr[answered]
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _threshold_curves(n_total: int, threshold: float, sigma_T: float, order: float) -> tuple[np.ndarray, np.ndarray]:
    """Data-dependent threshold RDP t(v) and Pr[answered] p(v) for every largest count v = 0..n_total."""
    t = np.array([rdp_threshold_data_dependent_simulation_only(float(v), threshold, sigma_T, [order])[0]
                  for v in range(n_total + 1)])
    p = np.exp([log_pr_answered_simulation_only(float(v), threshold, sigma_T) for v in range(n_total + 1)])
    t.setflags(write=False)  # cached: shared by every caller
    p.setflags(write=False)
    return t, p


def _steps(curve: np.ndarray) -> np.ndarray:
    """Local sensitivity of a function of v (v moves by at most 1): the larger adjacent step."""
    d = np.abs(np.diff(curve))
    ls = np.zeros_like(curve)
    ls[:-1] = d
    ls[1:] = np.maximum(ls[1:], d)
    return ls


def _ball_max(values: np.ndarray, v: int, dmax: int) -> np.ndarray:
    """max of values[v'] over |v' - v| <= d, for d = 0..dmax (values indexed 0..n_total)."""
    n = len(values) - 1
    d = np.arange(dmax + 1)
    down = np.maximum.accumulate(values[v::-1])  # max over [v - d, v]
    up = np.maximum.accumulate(values[v:])  # max over [v, v + d]
    return np.maximum(down[np.minimum(d, v)], up[np.minimum(d, n - v)])


def local_sensitivity_threshold_simulation_only(max_votes: int, num_teachers: int, threshold: float,
                                                sigma_T: float, order: float,
                                                max_distance: int | None = None) -> np.ndarray:
    """A^(d), d = 0..max_distance (default ``num_teachers``): the exact largest local sensitivity,
    within distance d, of the threshold step's data-dependent RDP at ``order`` (it depends on the
    largest count only, which moves by at most one per changed teacher). Non-decreasing in d."""
    v, n = int(max_votes), int(num_teachers)
    if not 0 <= v <= n:
        raise PrivacyParameterError(f"max_votes must be in 0..num_teachers ({n}), got {max_votes!r}")
    t, _ = _threshold_curves(n, float(threshold), _positive(sigma_T, "sigma_T"), _order(order))
    dmax = n if max_distance is None else int(max_distance)
    return _ball_max(_steps(t), v, dmax)


# ---------------------------------------------------------------------------------------------
# A sequence of queries
# ---------------------------------------------------------------------------------------------


def _histograms(vote_histograms: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    votes = np.asarray(vote_histograms)
    if votes.ndim != 2 or votes.shape[1] < 2 or votes.dtype.kind not in "iu":
        raise PrivacyParameterError(f"vote_histograms must be a 2-D integer array (queries, classes >= 2), got {votes.shape} {votes.dtype}")
    if votes.size and votes.min() < 0:
        raise PrivacyParameterError("vote counts must be >= 0")
    return votes.astype(np.int64)


def _answered_mask(answered: Sequence[bool] | None, queries: int) -> np.ndarray | None:
    if answered is None:
        return None
    a = np.asarray(answered)
    if a.shape != (queries,) or a.dtype.kind not in "bui":
        raise PrivacyParameterError(f"answered must be one boolean per query ({queries}), got {a.shape} {a.dtype}")
    return a.astype(bool)


def local_sensitivity_queries_simulation_only(vote_histograms: Sequence[Sequence[int]] | np.ndarray,
                                              params: ConfidentGNMaxParams, order: float,
                                              answered: Sequence[bool] | None = None) -> np.ndarray:
    """A^(d), d = 0..N (N the largest number of votes in a histogram), for the data-dependent RDP at
    ``order`` of the whole sequence: the sum over queries of each query's bound.

    Without ``answered`` the released function is the paper's expected cost t + Pr[answered] g
    (product-rule bound, see the module docstring); with it, the realised cost t + [answered] g.
    Plain GNMax has no threshold term.
    """
    votes = _histograms(vote_histograms)
    lam = _order(order)
    mask = _answered_mask(answered, votes.shape[0])
    sigma_G = _positive(float(params.sigma_G), "sigma_G")
    plain = params.is_plain_gnmax
    sigma_T, T = float(params.sigma_T), float(params.threshold)
    if not plain:
        _positive(sigma_T, "sigma_T")
    ind_g = lam / sigma_G**2
    dmax = int(votes.sum(axis=1).max()) if votes.size else 0
    total = np.zeros(dmax + 1)
    for i, n in enumerate(votes):
        n_total = int(n.sum())
        # a histogram of n_total votes reaches everything within n_total changed teachers
        pad = lambda a: np.concatenate((a, np.full(dmax - n_total, a[-1]))) if dmax > n_total else a  # noqa: E731
        g = pad(_gnmax_ls(tuple(sorted(n.tolist(), reverse=True)), sigma_G, lam, n_total))
        if plain:
            total += g if mask is None or mask[i] else 0.0
            continue
        t, p = _threshold_curves(n_total, T, sigma_T, lam)
        v = int(n.max())
        a_t = pad(_ball_max(_steps(t), v, n_total))
        if mask is not None:
            total += a_t + (g if mask[i] else 0.0)
            continue
        p_ball = pad(p[np.minimum(v + np.arange(n_total + 1), n_total)])  # p increases with v
        a_p = pad(_ball_max(_steps(p), v, n_total))
        total += a_t + p_ball * g + a_p * ind_g
    return total


def smooth_sensitivity_from_local(local_by_distance: Sequence[float], beta: float) -> float:
    """SS_beta = max_d e^(-beta d) A^(d) (NRS 2007, Section 3), from A^(d), d = 0, 1, ..."""
    a = np.asarray(local_by_distance, dtype=np.float64)
    if a.ndim != 1 or a.size == 0 or np.any(a < 0) or not np.all(np.isfinite(a)):
        raise PrivacyParameterError("local_by_distance must be a non-empty 1-D array of finite values >= 0")
    b = _positive(beta, "beta")
    return float(np.max(a * np.exp(-b * np.arange(a.size))))


def rdp_gnss_release(beta: float, sigma_ss: float, order: float) -> float:
    """RDP at ``order`` of publishing f(D) + SS_beta(D) sigma_ss N(0, 1) (PATE 2018, Theorem 23):
    lambda e^(2 beta) / sigma_ss^2 + (beta lambda - log(1 - 2 lambda beta) / 2) / (lambda - 1),
    for 0 < beta < 1 / (2 lambda)."""
    lam, b, s = _order(order), _positive(beta, "beta"), _positive(sigma_ss, "sigma_ss")
    if not b < 1.0 / (2.0 * lam):
        raise PrivacyParameterError(f"beta must be below 1/(2 order) = {1 / (2 * lam):.4g} for order {lam:g}, got {beta!r}")
    return lam * math.exp(2.0 * b) / s**2 + (b * lam - 0.5 * math.log1p(-2.0 * lam * b)) / (lam - 1.0)


def check_conditions_simulation_only(sigma_G: float, num_classes: int, order: float,
                                     logq_min: float, points: int = 2000) -> tuple[bool, bool]:
    """Conditions C5 and C6 of PATE 2018 (Appendix B.4.2), checked numerically on a grid of
    ``points`` values of log q in [logq_min, log q0] (C5: beta(q) non-decreasing) and
    [logq_min, log q1] (C6: beta(BU(q)) - beta(q) non-decreasing). ``logq_min`` is the smallest log q
    the data can reach (a unanimous histogram). Returns (C5 holds, C6 holds)."""
    sigma, lam, m = _positive(sigma_G, "sigma_G"), _order(order), int(num_classes)
    if m < 2:
        raise PrivacyParameterError(f"num_classes must be >= 2, got {num_classes!r}")
    q0 = _logq0(sigma, lam, m)
    if q0 == -math.inf:
        return True, True  # the bound is data-independent everywhere: nothing to smooth
    q1 = float(_log_bl(np.array([q0]), sigma, m)[0])
    lo = min(float(logq_min), q1) - 1.0
    tol = 1e-12 * lam / sigma**2

    def nondecreasing(f: np.ndarray) -> bool:
        return bool(np.all(np.diff(f) >= -tol))

    grid5 = np.linspace(lo, q0, points)
    c5 = nondecreasing(_beta(grid5, sigma, lam))
    grid6 = np.linspace(lo, q1, points)
    c6 = nondecreasing(_beta(_log_bu(grid6, sigma, m), sigma, lam) - _beta(grid6, sigma, lam))
    return c5, c6


# ---------------------------------------------------------------------------------------------
# The release
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseSettings:
    """Parameters of the smooth-sensitivity release. ``None`` means chosen from the data as PATE 2018
    did (order: the best order of the unreleased epsilon among those where C5/C6 hold; beta over [0.1, 0.495)/order and
    sigma_ss = (order e^(2 beta) / SS)^(1/3) minimising cost + 2 SS sigma_ss); fixing all three in
    advance makes the release a differentially private statement. ``seed`` seeds the release noise
    (NumPy generator, simulation only). ``require_conditions`` raises when C5/C6 fail."""

    order: float | None = None
    beta: float | None = None
    sigma_ss: float | None = None
    seed: int | None = None
    require_conditions: bool = True


@dataclass(frozen=True)
class SmoothSensitivityRelease:
    """One smooth-sensitivity release of a run's data-dependent cost, all at one RDP ``order``.

    ``rdp_data_dependent`` is the unreleased data-dependent RDP f(D); ``rdp_released`` the published
    noisy value max(0, f(D) + smooth_sensitivity * sigma_ss * Z); ``rdp_release_cost`` the
    release's own RDP (Theorem 23). ``eps_released`` converts rdp_released + rdp_release_cost to
    epsilon at ``delta`` (the published figure); ``eps_data_dependent_at_order`` does the same
    without noise (what the release estimates); ``eps_noise_std`` is the noise's standard
    deviation in epsilon (= in RDP at a fixed order). ``tuned`` names the parameters chosen from
    the data; ``conditions_hold`` says whether C5/C6 held.
    """

    order: float
    beta: float
    sigma_ss: float
    smooth_sensitivity: float
    rdp_data_dependent: float
    rdp_release_cost: float
    rdp_released: float
    eps_data_dependent_at_order: float
    eps_released: float
    eps_noise_std: float
    delta: float
    queries: int
    expected_cost: bool
    conditions_hold: bool
    tuned: tuple[str, ...] = ()
    label: str = field(default=SMOOTH_SENSITIVITY_LABEL)

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _data_dependent_curve(votes: np.ndarray, params: ConfidentGNMaxParams, grid: np.ndarray,
                          mask: np.ndarray | None) -> np.ndarray:
    """The cumulative data-dependent RDP over ``grid`` (expected cost, or realised with ``mask``)."""
    sigma_G, sigma_T, T = float(params.sigma_G), float(params.sigma_T), float(params.threshold)
    rdp = np.zeros_like(grid)
    for i, n in enumerate(votes):
        g = rdp_gnmax_data_dependent_simulation_only(n, sigma_G, grid, "gaussian")
        if params.is_plain_gnmax:
            rdp = rdp + (g if mask is None or mask[i] else 0.0)
            continue
        rdp = rdp + rdp_threshold_data_dependent_simulation_only(float(n.max()), T, sigma_T, grid)
        w = math.exp(log_pr_answered_simulation_only(float(n.max()), T, sigma_T)) if mask is None else float(mask[i])
        rdp = rdp + w * g
    return rdp


def smooth_sensitivity_release_simulation_only(
    vote_histograms: Sequence[Sequence[int]] | np.ndarray,
    params: ConfidentGNMaxParams,
    delta: float,
    settings: ReleaseSettings = ReleaseSettings(),
    *,
    answered: Sequence[bool] | None = None,
    orders: Sequence[float] | None = None,
) -> SmoothSensitivityRelease:
    """Release the data-dependent RDP of the queries in ``vote_histograms`` by the GNSS mechanism.

    Without ``answered`` the released quantity is the paper's expected cost (what
    :func:`capc.privacy.simulate.paper_accounting_simulation_only` composes); with a boolean per
    query it is the realised cost of those answers. ``orders`` is the grid the order is chosen from
    when ``settings.order`` is None.

    Raises:
        PrivacyParameterError: bad histograms, delta, order, beta or sigma_ss; noise scales of zero;
            conditions C5/C6 failing while ``settings.require_conditions``.
    """
    votes = _histograms(vote_histograms)
    d = validate_delta(delta)
    mask = _answered_mask(answered, votes.shape[0])
    sigma_G, sigma_T = float(params.sigma_G), float(params.sigma_T)
    if not sigma_G > 0 or (not params.is_plain_gnmax and not sigma_T > 0):
        raise PrivacyParameterError("the smooth-sensitivity release needs sigma_G > 0 and sigma_T > 0")
    tuned: list[str] = []
    n_max = int(votes.sum(axis=1).max()) if votes.size else 0
    unanimous = np.zeros((1, votes.shape[1]), np.int64)
    unanimous[0, 0] = n_max
    logq_min = float(log_q_gnmax_many_simulation_only(unanimous, sigma_G)[0])
    if settings.order is None:
        # PATE 2018's choice, the order of the smallest unreleased epsilon, restricted to orders at
        # which C5/C6 hold (tried from the best down; the first that passes is taken)
        grid = validate_orders(orders)
        curve = _data_dependent_curve(votes, params, grid, mask)
        eps_by_order = np.array([eps_from_rdp([o], [r], d)[0] for o, r in zip(grid, curve)])
        candidates = [float(grid[i]) for i in np.argsort(eps_by_order, kind="stable")]
        lam = candidates[0]
        for o in candidates:
            if all(check_conditions_simulation_only(sigma_G, votes.shape[1], o, logq_min)):
                lam = o
                break
        tuned.append("order")
    else:
        lam = _order(settings.order)
    f = float(_data_dependent_curve(votes, params, np.array([lam]), mask)[0])
    c5, c6 = check_conditions_simulation_only(sigma_G, votes.shape[1], lam, logq_min)
    if settings.require_conditions and not (c5 and c6):
        failed = " and ".join(c for c, ok in (("C5", c5), ("C6", c6)) if not ok)
        raise PrivacyParameterError(
            f"condition {failed} of PATE 2018 (Appendix B.4.2) fails for sigma_G = {sigma_G:g}, "
            f"{votes.shape[1]} classes, order {lam:g}: the smooth-sensitivity bound is not valid there "
            "(choose another order, or ReleaseSettings(require_conditions=False) to report it anyway)")

    local = local_sensitivity_queries_simulation_only(votes, params, lam, mask) if votes.size else np.zeros(1)

    def ss_of(beta: float) -> float:
        return float(np.max(local * np.exp(-beta * np.arange(local.size))))

    def sigma_for(beta: float, ss: float) -> float:
        # minimiser of lambda e^(2 beta) / sigma^2 + 2 ss sigma (PATE 2018's choice)
        return (lam * math.exp(2.0 * beta) / ss) ** (1.0 / 3.0)

    if settings.beta is None:
        tuned.append("beta")
        best = None
        for beta in np.arange(0.1, 0.495, 0.01) / lam:
            ss = ss_of(float(beta))
            if ss == 0.0:
                best = (0.0, float(beta))
                break
            s = settings.sigma_ss if settings.sigma_ss is not None else sigma_for(float(beta), ss)
            cost = rdp_gnss_release(float(beta), s, lam) + 2.0 * ss * s
            if best is None or cost < best[0]:
                best = (cost, float(beta))
        beta = best[1]
    else:
        beta = _positive(settings.beta, "beta")
    ss = ss_of(beta)
    rng = np.random.default_rng(settings.seed)
    if ss == 0.0:
        # f is the same on every data set the teachers can produce: publishing it costs nothing
        sigma_ss = math.inf if settings.sigma_ss is None else _positive(settings.sigma_ss, "sigma_ss")
        cost, released, std = 0.0, f, 0.0
    else:
        if settings.sigma_ss is None:
            sigma_ss = sigma_for(beta, ss)
            tuned.append("sigma_ss")
        else:
            sigma_ss = _positive(settings.sigma_ss, "sigma_ss")
        cost = rdp_gnss_release(beta, sigma_ss, lam)
        std = ss * sigma_ss
        released = max(0.0, f + std * float(rng.standard_normal()))
    return SmoothSensitivityRelease(
        order=float(lam), beta=float(beta), sigma_ss=float(sigma_ss), smooth_sensitivity=ss,
        rdp_data_dependent=f, rdp_release_cost=cost, rdp_released=released,
        eps_data_dependent_at_order=eps_from_rdp([lam], [f + cost], d)[0],
        eps_released=eps_from_rdp([lam], [released + cost], d)[0],
        eps_noise_std=std, delta=d, queries=int(votes.shape[0]), expected_cost=mask is None,
        conditions_hold=c5 and c6, tuned=tuple(tuned))
