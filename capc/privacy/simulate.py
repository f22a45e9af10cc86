"""Plaintext CaPC/PATE simulation of a sequence of Confident-GNMax queries from vote histograms.

For each query in order, the simulation does what the protocol does jointly -- scale the histogram by
2^g, draw the privacy guardian's exact discrete-Gaussian noise, decide and label -- and charges the
data-independent RDP cost exactly as :class:`capc.privacy.ledger.BudgetLedger` would (worst case
checked against the budget before answering; threshold only for declined queries). It stops at the
first query whose worst case no longer fits the budget.

Alongside, and clearly labelled, it tracks the *data-dependent* cost (PATE 2018, Theorem 6; see
:mod:`capc.privacy.data_dependent`), which needs the histogram and so exists only in simulation.
:func:`plot_privacy_utility` draws epsilon against answered queries and label accuracy, for
reproducing the paper's privacy/utility figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from capc.privacy.data_dependent import (
    log_pr_answered_simulation_only,
    rdp_gnmax_data_dependent_simulation_only,
    rdp_threshold_data_dependent_simulation_only,
)
from capc.privacy.errors import PrivacyParameterError
from capc.privacy.gnmax import ConfidentGNMaxParams, PrivacyGuardianNoise, confident_gnmax
from capc.privacy.noise import SecureRandomSource, SeededRandomSource
from capc.privacy.rdp import RdpAccountant, eps_from_rdp, validate_delta, validate_orders
from capc.privacy.smooth_sensitivity import (SMOOTH_SENSITIVITY_LABEL, ReleaseSettings, SmoothSensitivityRelease,
                                             smooth_sensitivity_release_simulation_only)

__all__ = [
    "SimulationResult",
    "simulate_queries",
    "plot_privacy_utility",
    "PaperAccounting",
    "paper_accounting_simulation_only",
    "protocol_answerable",
    "MEANINGLESS_EPSILON",
    "PAPER_LABEL",
    "PROTOCOL_LABEL",
    "SMOOTH_SENSITIVITY_LABEL",
    "ReleaseSettings",
    "SmoothSensitivityRelease",
    "EpsilonWarning",
    "warn_if_meaningless",
]

#: Above this epsilon a differential-privacy statement says next to nothing (the paper's largest
#: budget is CIFAR-10's 20); runs that spend more are warned about by name.
MEANINGLESS_EPSILON = 20.0

PAPER_LABEL = "the paper's accounting (expected data-dependent RDP, simulation only)"
PROTOCOL_LABEL = "what the protocol would charge (data-independent ledger)"


class EpsilonWarning(UserWarning):
    """A run's epsilon is so large (or its budget infinite) that its privacy claim is meaningless."""


def warn_if_meaningless(eps: float, what: str, budget_eps: float | None = None) -> bool:
    """Warn (:class:`EpsilonWarning`) when ``eps`` exceeds :data:`MEANINGLESS_EPSILON` or the budget
    is infinite, naming ``what`` (e.g. "querying party 2"); returns whether it warned."""
    import warnings

    warned = False
    if budget_eps is not None and math.isinf(budget_eps):
        warnings.warn(f"{what}: no privacy budget set (infinite); it spent epsilon = {eps:.3g}", EpsilonWarning, stacklevel=2)
        warned = True
    if eps > MEANINGLESS_EPSILON:
        warnings.warn(f"{what}: epsilon = {eps:.3g} is above {MEANINGLESS_EPSILON:g}, a meaningless privacy guarantee",
                      EpsilonWarning, stacklevel=2)
        warned = True
    return warned


@dataclass(frozen=True)
class SimulationResult:
    """Per processed query (``processed`` of them, in order): the released label (-1 when declined),
    whether it was answered, and cumulative epsilon after it. ``stopped_by_budget`` says whether the
    run stopped before the last histogram. Epsilons are at ``delta`` with the improved conversion.

    ``eps_data_dependent_simulation_only`` is an analysis figure (needs the histogram, unreleased;
    :func:`capc.privacy.smooth_sensitivity.smooth_sensitivity_release_simulation_only` with
    ``answered=result.answered`` releases it), not a guarantee; NaN when the parameters make it
    undefined (sigma = 0).
    """

    labels: np.ndarray
    answered: np.ndarray
    eps_data_independent: np.ndarray
    eps_data_dependent_simulation_only: np.ndarray
    delta: float
    params: ConfidentGNMaxParams
    stopped_by_budget: bool
    true_labels: np.ndarray | None = None

    @property
    def processed(self) -> int:
        """How many queries were processed (answered or declined) before stopping."""
        return int(self.labels.size)

    @property
    def answered_count(self) -> int:
        """How many queries were answered."""
        return int(self.answered.sum())

    @property
    def label_accuracy(self) -> float:
        """Fraction of answered queries whose label equals the true label (NaN if unknown or none)."""
        if self.true_labels is None or self.answered_count == 0:
            return float("nan")
        mask = self.answered
        return float(np.mean(self.labels[mask] == self.true_labels[: self.processed][mask]))


def simulate_queries(
    vote_histograms: Sequence[Sequence[int]] | np.ndarray,
    params: ConfidentGNMaxParams,
    delta: float,
    budget_eps: float = float("inf"),
    *,
    true_labels: Sequence[int] | None = None,
    seed: int | None = None,
    orders: Sequence[float] | None = None,
    tail: Literal["gaussian", "subgaussian"] = "gaussian",
) -> SimulationResult:
    """Run Confident-GNMax over ``vote_histograms`` (shape (queries, classes), non-negative ints).

    ``seed`` makes the noise reproducible (a seeded, NOT cryptographic source: simulation only);
    without it the noise comes from the OS CSPRNG. ``budget_eps`` stops the run like the ledger would.
    """
    votes = np.asarray(vote_histograms)
    if votes.ndim != 2 or votes.shape[1] < 2 or votes.dtype.kind not in "iu":
        raise PrivacyParameterError(f"vote_histograms must be a 2-D integer array (queries, classes >= 2), got {votes.shape} {votes.dtype}")
    if votes.size and votes.min() < 0:
        raise PrivacyParameterError("vote counts must be >= 0")
    d = validate_delta(delta)
    grid = validate_orders(orders)
    truth = None if true_labels is None else np.asarray(true_labels, dtype=np.int64)
    if truth is not None and truth.shape != (votes.shape[0],):
        raise PrivacyParameterError(f"true_labels must have one entry per query ({votes.shape[0]}), got {truth.shape}")
    noise = PrivacyGuardianNoise(params, SeededRandomSource(seed) if seed is not None else SecureRandomSource())

    thr_events, worst_events = params.threshold_events(), params.worst_case_events()
    acc = RdpAccountant(grid)
    dd_rdp = np.zeros_like(grid)
    sigma_G, sigma_T, T = float(params.sigma_G), float(params.sigma_T), float(params.threshold)
    dd_defined = sigma_G > 0 and (params.is_plain_gnmax or sigma_T > 0)

    labels, answered, eps_di, eps_dd = [], [], [], []
    stopped = False
    for n in votes:
        trial = RdpAccountant.from_dict(acc.to_dict()).compose_all(worst_events)
        if trial.get_epsilon(d) > budget_eps:
            stopped = True
            break
        draw = noise.draw(votes.shape[1])
        res = confident_gnmax(n.astype(np.int64) * params.scale, draw.eta_G, draw.eta_T, params.threshold_units)
        acc.compose_all(worst_events if res.answered else thr_events)
        labels.append(res.label if res.answered else -1)
        answered.append(res.answered)
        eps_di.append(acc.get_epsilon(d))
        if dd_defined:
            if not params.is_plain_gnmax:
                dd_rdp = dd_rdp + rdp_threshold_data_dependent_simulation_only(float(n.max()), T, sigma_T, grid)
            if res.answered:
                dd_rdp = dd_rdp + rdp_gnmax_data_dependent_simulation_only(n, sigma_G, grid, tail)
            eps_dd.append(eps_from_rdp(grid, dd_rdp, d)[0])
        else:
            eps_dd.append(float("nan"))
    return SimulationResult(
        labels=np.asarray(labels, dtype=np.int64),
        answered=np.asarray(answered, dtype=bool),
        eps_data_independent=np.asarray(eps_di, dtype=np.float64),
        eps_data_dependent_simulation_only=np.asarray(eps_dd, dtype=np.float64),
        delta=d,
        params=params,
        stopped_by_budget=stopped,
        true_labels=truth,
    )


def plot_privacy_utility(result: SimulationResult, path: str | Path | None = None, title: str | None = None):
    """Plot cumulative epsilon (data-independent, and the labelled data-dependent analysis figure)
    against the number of answered queries, and running label accuracy when true labels are known.

    Returns the matplotlib Figure; saves it to ``path`` when given (works without a display).
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    answered_so_far = np.cumsum(result.answered)
    ax.plot(answered_so_far, result.eps_data_independent, label="epsilon (data-independent, charged)")
    if np.any(np.isfinite(result.eps_data_dependent_simulation_only)):
        ax.plot(answered_so_far, result.eps_data_dependent_simulation_only, "--", label="epsilon (data-dependent, simulation only)")
    ax.set_xlabel("queries answered")
    ax.set_ylabel(f"epsilon at delta = {result.delta:.0e}")
    if result.true_labels is not None and result.answered_count:
        correct = np.cumsum((result.labels == result.true_labels[: result.processed]) & result.answered)
        with np.errstate(invalid="ignore", divide="ignore"):
            running = np.where(answered_so_far > 0, correct / np.maximum(answered_so_far, 1), np.nan)
        ax2 = ax.twinx()
        ax2.plot(answered_so_far, running, color="tab:green", alpha=0.7, label="label accuracy")
        ax2.set_ylabel("accuracy of answered labels")
        ax2.set_ylim(0, 1.05)
        ax2.legend(loc="lower right")
    ax.legend(loc="upper left")
    p = result.params
    ax.set_title(title or f"Confident-GNMax: sigma_G={float(p.sigma_G):g}, sigma_T={float(p.sigma_T):g}, T={float(p.threshold):g}")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig


@dataclass(frozen=True)
class PaperAccounting:
    """The original analysis of a sequence of queries (PATE 2018 / CaPC's ``analysis``), SIMULATION ONLY.

    Per processed query: cumulative expected answered count (sum of Pr[answered]) and cumulative
    epsilon of the expected data-dependent RDP. ``processed`` queries fit the budget; the original
    stops at the first query whose cumulative epsilon exceeds it (``stopped_by_budget``).
    Needs the true histograms: an analysis figure only.

    ``release``, when asked for, is PATE 2018's smooth-sensitivity release of the expected
    data-dependent cost of the ``processed`` queries (:mod:`capc.privacy.smooth_sensitivity`), with
    its own label: ``release.eps_released`` is the published noisy epsilon including the release's
    own cost ``release.rdp_release_cost`` (RDP at ``release.order``).
    """

    expected_answered: np.ndarray
    eps: np.ndarray
    delta: float
    stopped_by_budget: bool
    label: str = PAPER_LABEL
    release: SmoothSensitivityRelease | None = None

    @property
    def processed(self) -> int:
        """Queries processed before the budget stop."""
        return int(self.eps.size)

    @property
    def answered(self) -> float:
        """Expected number of answered queries within the budget."""
        return float(self.expected_answered[-1]) if self.expected_answered.size else 0.0


def paper_accounting_simulation_only(
    vote_histograms: Sequence[Sequence[int]] | np.ndarray,
    params: ConfidentGNMaxParams,
    delta: float,
    budget_eps: float = float("inf"),
    *,
    orders: Sequence[float] | None = None,
    release: ReleaseSettings | None = None,
) -> PaperAccounting:
    """The paper's accounting: for each query, the data-dependent RDP of the threshold check plus
    Pr[answered] times the data-dependent RDP of GNMax (PATE 2018, Theorem 6 / Prop. 10 with the
    Gaussian tail), composed; stop when the epsilon exceeds ``budget_eps`` (the original's rule).
    With ``release`` (e.g. ``ReleaseSettings(seed=0)``), also release the processed queries' cost by
    smooth sensitivity (PATE 2018, Appendix B and Theorem 23) into ``PaperAccounting.release``.

    Raises:
        PrivacyParameterError: bad histograms, delta, orders, or noise scales of zero; a release
            whose conditions C5/C6 fail (unless ``release.require_conditions`` is False).
    """
    votes = np.asarray(vote_histograms)
    if votes.ndim != 2 or votes.shape[1] < 2 or votes.dtype.kind not in "iu":
        raise PrivacyParameterError(f"vote_histograms must be a 2-D integer array (queries, classes >= 2), got {votes.shape} {votes.dtype}")
    if votes.size and votes.min() < 0:
        raise PrivacyParameterError("vote counts must be >= 0")
    d = validate_delta(delta)
    grid = validate_orders(orders)
    sigma_G, sigma_T, T = float(params.sigma_G), float(params.sigma_T), float(params.threshold)
    if not sigma_G > 0 or (not params.is_plain_gnmax and not sigma_T > 0):
        raise PrivacyParameterError("the data-dependent analysis needs sigma_G > 0 and sigma_T > 0")
    rdp = np.zeros_like(grid)
    answered, eps = [], []
    total, stopped = 0.0, False
    for n in votes:
        if params.is_plain_gnmax:
            step, pr = np.zeros_like(grid), 1.0
        else:
            step = rdp_threshold_data_dependent_simulation_only(float(n.max()), T, sigma_T, grid)
            pr = math.exp(log_pr_answered_simulation_only(float(n.max()), T, sigma_T))
        step = step + pr * rdp_gnmax_data_dependent_simulation_only(n, sigma_G, grid, "gaussian")
        e = eps_from_rdp(grid, rdp + step, d)[0]
        if e > budget_eps:
            stopped = True
            break
        rdp = rdp + step
        total += pr
        answered.append(total)
        eps.append(e)
    released = None
    if release is not None:
        released = smooth_sensitivity_release_simulation_only(votes[:len(eps)], params, d, release, orders=grid)
    return PaperAccounting(np.asarray(answered, np.float64), np.asarray(eps, np.float64), d, stopped,
                           release=released)


def protocol_answerable(params: ConfidentGNMaxParams, delta: float, budget_eps: float,
                        *, orders: Sequence[float] | None = None, limit: int = 10**6) -> int:
    """What the protocol would charge: how many queries the privacy guardian's data-independent
    ledger answers within ``budget_eps`` (each answered query charged its worst case, checked before
    answering as :class:`capc.privacy.ledger.BudgetLedger` does), found by bisection up to ``limit``."""
    d = validate_delta(delta)
    grid = validate_orders(orders)
    one = RdpAccountant(grid).compose_all(params.worst_case_events()).rdp()

    def eps_of(k: int) -> float:
        return eps_from_rdp(grid, one * k, d)[0]

    if eps_of(1) > budget_eps:
        return 0
    lo, hi = 1, 2
    while hi <= limit and eps_of(hi) <= budget_eps:
        lo, hi = hi, hi * 2
    if hi > limit:
        return limit
    while hi - lo > 1:  # eps_of(lo) fits, eps_of(hi) does not
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if eps_of(mid) <= budget_eps else (lo, mid)
    return lo
