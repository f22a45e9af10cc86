"""Errors raised by :mod:`capc.privacy`: bad noise or accounting parameters, an exhausted budget,
a replayed query and a damaged or mismatched budget ledger."""

from __future__ import annotations

from capc.errors import CapcError


class PrivacyError(CapcError):
    """Base class of every error :mod:`capc.privacy` raises on purpose."""


class PrivacyParameterError(PrivacyError, ValueError):
    """A privacy parameter (sigma, threshold, scale, delta, orders, budget) is invalid; the message
    names the parameter and the value that was given."""


class BudgetExceeded(PrivacyError):
    """Answering a query would take a querying party past its (epsilon, delta) budget.

    Attributes give the numbers of the message: ``qp_id``, ``spent_eps`` (already charged),
    ``query_eps`` (what the total would become with this query), ``budget_eps`` and ``delta``.
    """

    def __init__(self, qp_id: str, spent_eps: float, query_eps: float, budget_eps: float, delta: float):
        self.qp_id = qp_id
        self.spent_eps = spent_eps
        self.query_eps = query_eps
        self.budget_eps = budget_eps
        self.delta = delta
        super().__init__(
            f"privacy budget exceeded for querying party {qp_id!r}: spent epsilon {spent_eps:.6g}, "
            f"this query would bring it to {query_eps:.6g} (cost {query_eps - spent_eps:.6g} "
            f"in the worst case) > budget {budget_eps:.6g} at delta {delta:.3g}; query refused, nothing charged"
        )


class ReplayedQuery(PrivacyError):
    """A querying party reused a query id that the ledger has already charged."""


class LedgerError(PrivacyError):
    """The budget ledger file is unreadable, of another format, or opened with parameters that
    contradict the ones stored in it; or settle() names a query that was never reserved."""
