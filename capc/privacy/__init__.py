"""Differential privacy for the privacy guardian: exact discrete-Gaussian noise, Confident-GNMax,
Renyi-DP accounting and the durable per-querying-party budget ledger.

Modules, one job each:

* :mod:`capc.privacy.noise` -- exact discrete Gaussian sampler (Canonne-Kamath-Steinke 2020) fed by
  the OS CSPRNG;
* :mod:`capc.privacy.gnmax` -- Confident-GNMax parameters, the guardian's noise draw and the
  plaintext reference of the step-3 circuit (same integers, same tie rule);
* :mod:`capc.privacy.rdp` -- immutable accounting events and the RDP accountant with the improved
  RDP -> (epsilon, delta) conversion;
* :mod:`capc.privacy.ledger` -- the SQLite budget ledger (reserve before release, settle after) and
  the ``capc budget`` table;
* :mod:`capc.privacy.data_dependent` -- SIMULATION ONLY data-dependent bounds (PATE 2018);
* :mod:`capc.privacy.smooth_sensitivity` -- SIMULATION ONLY smooth-sensitivity release of the
  data-dependent cost (PATE 2018, Appendix B);
* :mod:`capc.privacy.simulate` -- plaintext simulation of a query sequence and its plot.
"""

from capc.privacy.errors import (
    BudgetExceeded,
    LedgerError,
    PrivacyError,
    PrivacyParameterError,
    ReplayedQuery,
)
from capc.privacy.gnmax import (
    ConfidentGNMaxParams,
    GNMaxNoise,
    GNMaxResult,
    PrivacyGuardianNoise,
    confident_gnmax,
    noisy_aggregate,
    suggested_parameters,
    paper_parameters,
    dataset_delta,
    vote_histogram,
)
from capc.privacy.ledger import LEDGER_FILENAME, BudgetLedger, QpSummary, format_budget_table
from capc.privacy.noise import (
    DiscreteGaussianSampler,
    SecureRandomSource,
    SeededRandomSource,
    sample_discrete_gaussian,
)
from capc.privacy.rdp import (
    DEFAULT_ORDERS,
    GNMaxEvent,
    PrivacyEvent,
    RdpAccountant,
    ThresholdEvent,
    eps_from_rdp_improved,
    eps_from_rdp_plain,
)

__all__ = [
    "BudgetExceeded",
    "LedgerError",
    "PrivacyError",
    "PrivacyParameterError",
    "ReplayedQuery",
    "ConfidentGNMaxParams",
    "GNMaxNoise",
    "GNMaxResult",
    "PrivacyGuardianNoise",
    "confident_gnmax",
    "noisy_aggregate",
    "suggested_parameters",
    "paper_parameters",
    "dataset_delta",
    "vote_histogram",
    "LEDGER_FILENAME",
    "BudgetLedger",
    "QpSummary",
    "format_budget_table",
    "DiscreteGaussianSampler",
    "SecureRandomSource",
    "SeededRandomSource",
    "sample_discrete_gaussian",
    "DEFAULT_ORDERS",
    "GNMaxEvent",
    "PrivacyEvent",
    "RdpAccountant",
    "ThresholdEvent",
    "eps_from_rdp_improved",
    "eps_from_rdp_plain",
]
