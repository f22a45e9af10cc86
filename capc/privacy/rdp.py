"""Renyi-DP accounting of Confident-GNMax, in the style of Google's ``dp-accounting``.

A query answered by the privacy guardian is described by immutable events:

* :class:`ThresholdEvent` -- the confidence check ``max(n) + N(0, sigma_T^2) >= T``. It is a
  Gaussian mechanism on max(n), whose sensitivity is 1 (one answering party changing its vote moves
  the largest count by at most 1), so it is (lambda, lambda / (2 sigma_T^2))-RDP for every order
  lambda > 1 (Mironov 2017, "Renyi Differential Privacy", Table 2).
* :class:`GNMaxEvent` -- the noisy argmax ``argmax(n + N(0, sigma_G^2 I))``. Data-independent bound:
  (lambda, lambda / sigma_G^2)-RDP (Papernot et al. 2018, "Scalable Private Learning with PATE",
  Proposition 8): the histogram has L2 sensitivity sqrt(2) (one vote moves between two classes) and
  the argmax is post-processing.

capc adds *discrete* Gaussian noise in units of 2^-g votes. The discrete Gaussian N_Z(0, s^2) with
integer sensitivity D satisfies the same Renyi bound lambda D^2 / (2 s^2) as the continuous one, also
for product noise in several coordinates (Canonne, Kamath & Steinke 2020, "The Discrete Gaussian for
Differential Privacy", concentrated-DP guarantee); with s = 2^g sigma and D = 2^g (or ||D||_2 = 2^g
sqrt 2) the scale cancels and the bounds above hold unchanged.

:class:`RdpAccountant` sums the RDP curves of composed events on a fixed grid of orders (adaptive
composition adds RDP, Mironov 2017 Proposition 1) and converts to (epsilon, delta):

* improved conversion (Balle et al. 2020, "Hypothesis Testing Interpretations and Renyi
  Differential Privacy", Theorem 21; Canonne, Kamath & Steinke 2020, Proposition 12; Asoodeh et al.
  2020, "A Better Bound Gives a Hundred Rounds"):
  ``eps = min_lambda  rdp(lambda) + log1p(-1/lambda) - (log(delta) + log(lambda)) / (lambda - 1)``,
  with eps = 0 when delta^2 + expm1(-rdp) > 0 (then the total variation distance, bounded through the
  KL divergence by Bretagnolle-Huber, is already below delta);
* plain conversion (Mironov 2017, Proposition 3): ``eps = min_lambda rdp(lambda) + log(1/delta)/(lambda-1)``.

The default grid is the original CaPC/PATE one: 2, 2.5, ..., 99.5 plus 200 log-spaced orders in
[100, 1000]. The accountant's state (orders and the multiset of composed events) round-trips through
:meth:`RdpAccountant.to_dict` / :meth:`RdpAccountant.from_dict` (or JSON) and the restored curve is
recomputed from the events, so it is bit-for-bit the same.

Known limit: when the number of answered queries is itself decided by earlier noisy outputs, the
budget stop is a privacy *filter*; RDP filters are valid at each fixed order (Feldman & Zrnic 2021,
"Individual Privacy Accounting via a Renyi Filter"), while the minimum over orders taken here is the
conventional PATE practice rather than a proven filter guarantee.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Literal, Sequence

import numpy as np

from capc.privacy.errors import PrivacyParameterError

__all__ = [
    "DEFAULT_ORDERS",
    "PrivacyEvent",
    "ThresholdEvent",
    "GNMaxEvent",
    "RdpAccountant",
    "event_from_dict",
    "eps_from_rdp_improved",
    "eps_from_rdp_plain",
    "eps_from_rdp",
    "validate_orders",
    "validate_delta",
]

#: The original CaPC / PATE 2018 grid: 2..99.5 in steps of 0.5, then 200 log-spaced orders in [100, 1000].
DEFAULT_ORDERS: tuple[float, ...] = tuple(
    float(x)
    for x in np.concatenate((np.arange(2.0, 100.0, 0.5), np.logspace(np.log10(100.0), np.log10(1000.0), num=200)))
)


def validate_orders(orders: Iterable[float] | None) -> np.ndarray:
    """Return ``orders`` (default :data:`DEFAULT_ORDERS`) as a read-only float64 array; every order
    must be finite and > 1."""
    if orders is None:
        orders = DEFAULT_ORDERS
    try:
        arr = np.array([float(o) for o in orders], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PrivacyParameterError(f"orders must be a sequence of numbers ({exc})") from None
    if arr.size == 0:
        raise PrivacyParameterError("orders must not be empty")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 1.0):
        bad = arr[~np.isfinite(arr) | (arr <= 1.0)]
        raise PrivacyParameterError(f"every RDP order must be finite and > 1; got {bad[:5].tolist()}")
    arr.setflags(write=False)
    return arr


def validate_delta(delta: float) -> float:
    """Return delta as a float after checking 0 < delta < 1."""
    try:
        d = float(delta)
    except (TypeError, ValueError):
        raise PrivacyParameterError(f"delta must be a number in (0, 1), got {delta!r}") from None
    if not (0.0 < d < 1.0):
        raise PrivacyParameterError(f"delta must be in (0, 1), got {delta!r}")
    return d


def _check_sigma(value: float, name: str) -> float:
    if isinstance(value, bool):
        raise PrivacyParameterError(f"{name} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise PrivacyParameterError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise PrivacyParameterError(f"{name} must be finite and >= 0, got {value!r}")
    return v


class PrivacyEvent:
    """Base class of the immutable accounting events. Subclasses are frozen dataclasses with a
    ``kind`` tag and implement :meth:`rdp`."""

    kind: ClassVar[str] = ""

    def rdp(self, orders: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """The RDP epsilon of this event at each order (``inf`` where unbounded)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, readable by :func:`event_from_dict`."""
        raise NotImplementedError  # pragma: no cover - abstract


@dataclass(frozen=True)
class ThresholdEvent(PrivacyEvent):
    """The Confident-GNMax threshold check with Gaussian noise sigma_T (in votes), sensitivity 1:
    RDP lambda / (2 sigma_T^2); sigma_T = 0 is unbounded (infinite)."""

    sigma_T: float
    kind: ClassVar[str] = "threshold"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma_T", _check_sigma(self.sigma_T, "sigma_T"))

    def rdp(self, orders: np.ndarray) -> np.ndarray:
        """lambda / (2 sigma_T^2) at each order lambda."""
        orders = np.asarray(orders, dtype=np.float64)
        if self.sigma_T == 0.0:
            return np.full(orders.shape, np.inf)
        return orders / (2.0 * self.sigma_T**2)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "sigma_T": self.sigma_T}


@dataclass(frozen=True)
class GNMaxEvent(PrivacyEvent):
    """One GNMax noisy argmax with Gaussian noise sigma_G (in votes), data-independent bound
    lambda / sigma_G^2 (PATE 2018, Prop. 8); sigma_G = 0 is unbounded (infinite)."""

    sigma_G: float
    kind: ClassVar[str] = "gnmax"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma_G", _check_sigma(self.sigma_G, "sigma_G"))

    def rdp(self, orders: np.ndarray) -> np.ndarray:
        """lambda / sigma_G^2 at each order lambda."""
        orders = np.asarray(orders, dtype=np.float64)
        if self.sigma_G == 0.0:
            return np.full(orders.shape, np.inf)
        return orders / self.sigma_G**2

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "sigma_G": self.sigma_G}


_EVENT_TYPES: dict[str, type[PrivacyEvent]] = {ThresholdEvent.kind: ThresholdEvent, GNMaxEvent.kind: GNMaxEvent}


def event_from_dict(data: dict[str, Any]) -> PrivacyEvent:
    """Rebuild an event from :meth:`PrivacyEvent.to_dict` output; unknown kinds are refused."""
    if not isinstance(data, dict) or "kind" not in data:
        raise PrivacyParameterError(f"an event description must be a dict with a 'kind', got {data!r}")
    cls = _EVENT_TYPES.get(data["kind"])
    if cls is None:
        raise PrivacyParameterError(f"unknown privacy event kind {data['kind']!r}; known: {sorted(_EVENT_TYPES)}")
    fields = {k: v for k, v in data.items() if k != "kind"}
    try:
        return cls(**fields)
    except TypeError as exc:
        raise PrivacyParameterError(f"bad fields for a {data['kind']!r} event: {exc}") from None


def _as_curve(orders: Sequence[float], rdp: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    o = np.asarray(orders, dtype=np.float64)
    r = np.asarray(rdp, dtype=np.float64)
    if o.shape != r.shape or o.ndim != 1:
        raise PrivacyParameterError(f"orders and rdp must be 1-D of the same length, got {o.shape} and {r.shape}")
    if np.any(o <= 1.0):
        raise PrivacyParameterError("every RDP order must be > 1")
    if np.any(np.isnan(r)) or np.any(r < 0):
        raise PrivacyParameterError("RDP values must be >= 0 and not NaN")
    return o, r


def eps_from_rdp_improved(orders: Sequence[float], rdp: Sequence[float], delta: float) -> tuple[float, float]:
    """(epsilon, best order) by the improved RDP -> (eps, delta) conversion.

    eps(lambda) = rdp + log1p(-1/lambda) - (log delta + log lambda) / (lambda - 1)
    (Balle et al. 2020, Thm. 21; Canonne-Kamath-Steinke 2020, Prop. 12; Asoodeh et al. 2020), taken as
    0 where delta^2 + expm1(-rdp) > 0 (the KL bound alone gives total variation <= delta), then
    minimised over the orders and clipped at 0.
    """
    o, r = _as_curve(orders, rdp)
    d = validate_delta(delta)
    with np.errstate(invalid="ignore", over="ignore"):
        eps = r + np.log1p(-1.0 / o) - (math.log(d) + np.log(o)) / (o - 1.0)
        eps = np.where(np.isinf(r), np.inf, eps)
        eps = np.where(d * d + np.expm1(-r) > 0, 0.0, eps)
    i = int(np.argmin(eps))
    return max(0.0, float(eps[i])), float(o[i])


def eps_from_rdp_plain(orders: Sequence[float], rdp: Sequence[float], delta: float) -> tuple[float, float]:
    """(epsilon, best order) by the plain conversion eps = min_lambda rdp + log(1/delta)/(lambda - 1)
    (Mironov 2017, Prop. 3)."""
    o, r = _as_curve(orders, rdp)
    d = validate_delta(delta)
    eps = r + math.log(1.0 / d) / (o - 1.0)
    i = int(np.argmin(eps))
    return float(eps[i]), float(o[i])


Conversion = Literal["improved", "plain"]


def eps_from_rdp(orders: Sequence[float], rdp: Sequence[float], delta: float, conversion: Conversion = "improved") -> tuple[float, float]:
    """Dispatch to :func:`eps_from_rdp_improved` or :func:`eps_from_rdp_plain`."""
    if conversion == "improved":
        return eps_from_rdp_improved(orders, rdp, delta)
    if conversion == "plain":
        return eps_from_rdp_plain(orders, rdp, delta)
    raise PrivacyParameterError(f"conversion must be 'improved' or 'plain', got {conversion!r}")


class RdpAccountant:
    """Composes :class:`PrivacyEvent` s on a fixed grid of orders and reports (epsilon, delta).

    The state is the multiset of composed events (in first-seen order) with their counts; the RDP
    curve is recomputed from it, so a state restored by :meth:`from_dict` gives identical numbers.
    """

    STATE_VERSION = 1

    def __init__(self, orders: Iterable[float] | None = None) -> None:
        self._orders = validate_orders(orders)
        self._counts: dict[PrivacyEvent, int] = {}

    @property
    def orders(self) -> np.ndarray:
        """The (read-only) grid of orders."""
        return self._orders

    def compose(self, event: PrivacyEvent, count: int = 1) -> "RdpAccountant":
        """Add ``count`` independent (possibly adaptive) runs of ``event``; returns self."""
        if not isinstance(event, PrivacyEvent):
            raise PrivacyParameterError(f"compose() needs a PrivacyEvent, got {type(event).__name__}")
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise PrivacyParameterError(f"count must be a non-negative integer, got {count!r}")
        if count:
            self._counts[event] = self._counts.get(event, 0) + int(count)
        return self

    def compose_all(self, events: Iterable[PrivacyEvent]) -> "RdpAccountant":
        """Compose every event of ``events`` once; returns self."""
        for e in events:
            self.compose(e)
        return self

    @property
    def events(self) -> dict[PrivacyEvent, int]:
        """A copy of the composed events and their counts."""
        return dict(self._counts)

    def rdp(self) -> np.ndarray:
        """The total RDP curve (sum over events of count * curve) on :attr:`orders`."""
        total = np.zeros_like(self._orders)
        for event, count in self._counts.items():
            total = total + count * event.rdp(self._orders)
        return total

    def get_epsilon_and_order(self, delta: float, conversion: Conversion = "improved") -> tuple[float, float]:
        """(epsilon, the order achieving it) at ``delta``."""
        return eps_from_rdp(self._orders, self.rdp(), delta, conversion)

    def get_epsilon(self, delta: float, conversion: Conversion = "improved") -> float:
        """The smallest epsilon over the grid at ``delta`` (0 if nothing was composed)."""
        return self.get_epsilon_and_order(delta, conversion)[0]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready snapshot: version, orders and the list of (event, count)."""
        return {
            "version": self.STATE_VERSION,
            "orders": [float(o) for o in self._orders],
            "events": [{"event": e.to_dict(), "count": c} for e, c in self._counts.items()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RdpAccountant":
        """Restore an accountant saved by :meth:`to_dict`."""
        if not isinstance(data, dict) or data.get("version") != cls.STATE_VERSION:
            raise PrivacyParameterError(
                f"not an RdpAccountant state of version {cls.STATE_VERSION}: "
                f"{(data.get('version') if isinstance(data, dict) else type(data).__name__)!r}"
            )
        acc = cls(data.get("orders"))
        for item in data.get("events", []):
            try:
                acc.compose(event_from_dict(item["event"]), item["count"])
            except (KeyError, TypeError):
                raise PrivacyParameterError(f"bad event entry in accountant state: {item!r}") from None
        return acc

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "RdpAccountant":
        """Restore from :meth:`to_json` output."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PrivacyParameterError(f"accountant state is not valid JSON: {exc}") from None
        return cls.from_dict(data)
