"""Declared input domain of a model, and a sound bound on its logits over that domain.

The answering party's mask hides a logit ``z`` only if ``|z| <= B`` (:mod:`capc.he.mask`).  ``B``
must therefore be a *bound*, not an observation: :func:`derive_logit_bound` propagates the declared
input box through the plan's stages by interval arithmetic (per neuron, centre/radius form):

* affine stage ``y = W x + b``: centre ``W c + b``, radius ``|W| r`` (the exact per-neuron range of
  an affine map over a box);
* square stage: the exact range of ``x^2`` for ``x`` in ``[l, u]`` (``0`` when the interval
  contains 0).  A degree-2 polynomial activation was already rewritten by :mod:`capc.he.plan` into
  affine maps around one square, so it is bounded soundly too; folded batch norm and average pooling
  are affine maps.

The bound is then widened by a relative margin for float64 rounding and an absolute margin for the
CKKS approximation error (far below ``2^-(f+1)``, the share tolerance).

The domain is only enforced where the querying party encrypts (:class:`capc.he.keys.QueryKeys`):
the answering party cannot inspect an encrypted query, so a querying party that deviates from the
protocol and encrypts out-of-domain values voids the mask's guarantee (capc is semi-honest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from capc.he.errors import HEError

#: Relative widening of the interval bound for float64 rounding in the propagation itself.
REL_MARGIN = 2.0 ** -20
#: Absolute widening for the CKKS approximation error of the encrypted evaluation.
ABS_MARGIN = 2.0 ** -10


@dataclass(frozen=True)
class InputDomain:
    """A box ``[lo, hi]`` every query value must lie in (one interval for all inputs).

    Attributes:
        lo, hi: finite bounds with ``lo <= hi``.
        description: what the values are (for error messages and cards).
    """

    lo: float
    hi: float
    description: str = ""

    def __post_init__(self) -> None:
        for name, v in (("lo", self.lo), ("hi", self.hi)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise HEError(f"input domain {name} must be a finite number, got {v!r}")
        if self.lo > self.hi:
            raise HEError(f"input domain is empty: lo {self.lo} > hi {self.hi}")

    def __str__(self) -> str:
        text = f"[{self.lo:g}, {self.hi:g}]"
        return f"{text} ({self.description})" if self.description else text

    def to_dict(self) -> dict[str, Any]:
        """JSON form for model cards and public plans."""
        return {"lo": float(self.lo), "hi": float(self.hi), "description": self.description}

    @classmethod
    def from_dict(cls, d: Any) -> "InputDomain":
        """Inverse of :meth:`to_dict`; raises :class:`HEError` on malformed input."""
        if not isinstance(d, dict) or "lo" not in d or "hi" not in d:
            raise HEError(f"an input domain needs 'lo' and 'hi', got {d!r}")
        return cls(d["lo"], d["hi"], str(d.get("description", "")))

    def check(self, values: Any, what: str = "the query") -> None:
        """Raise :class:`HEError` naming the domain and the first offending value if any value of
        ``values`` lies outside ``[lo, hi]`` (or is NaN)."""
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
        bad = ~((arr >= self.lo) & (arr <= self.hi))  # NaN fails both comparisons
        if np.any(bad):
            i = int(np.argmax(bad))
            raise HEError(f"{what} has value {arr[i]!r} at flat index {i}, outside the model's declared "
                          f"input domain {self}; {int(bad.sum())} of {arr.size} values are out of range")


#: Pixels scaled to [0, 1]: the domain of every capc dataset and default model.
PIXELS = InputDomain(0.0, 1.0, "pixels scaled to [0, 1]")


def interval_logits(plan: Any, domain: InputDomain) -> tuple[np.ndarray, np.ndarray]:
    """Per-logit lower and upper bounds of ``plan.forward(x)`` over all ``x`` in the box (before
    margins)."""
    stages = getattr(plan, "stages", None)
    if stages is None:
        raise HEError("deriving a logit bound needs the full Plan (with weights)")
    n = plan.input_size
    return interval_stages(stages, np.full(n, float(domain.lo)), np.full(n, float(domain.hi)))


def interval_stages(stages: Any, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-output bounds of a plan's stages over the box ``[lo, hi]`` (per-input vectors)."""
    from capc.he.plan import LinearStage, SquareStage

    c = (np.asarray(lo, np.float64) + np.asarray(hi, np.float64)) / 2.0
    r = (np.asarray(hi, np.float64) - np.asarray(lo, np.float64)) / 2.0
    for st in stages:
        if isinstance(st, LinearStage):
            c = st.weight @ c + st.bias
            w = st.weight
            # |W| built from copies: scipy's abs() canonicalises (sorts) the matrix in place, which
            # would reorder the first layer's indices that the public layout was derived from
            r = sp.csr_matrix((np.abs(w.data), w.indices.copy(), w.indptr.copy()), shape=w.shape) @ r
        elif isinstance(st, SquareStage):
            lo, hi = c - r, c + r
            top = np.maximum(lo * lo, hi * hi)
            bottom = np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(lo * lo, hi * hi))
            c, r = (top + bottom) / 2.0, (top - bottom) / 2.0
        else:  # pragma: no cover - the plan only has these two stage kinds
            raise HEError(f"unknown stage {type(st).__name__}")
    return c - r, c + r


def derive_logit_bound(plan: Any, domain: InputDomain = PIXELS) -> float:
    """A sound bound ``B >= |z_i|`` for every logit ``z_i`` of ``plan`` on every input in ``domain``,
    widened for float64 rounding and CKKS error (see module docstring).

    A :class:`~capc.he.hybrid.HybridPlan`'s logit bound is the last of :func:`segment_bounds`.

    Raises:
        HEError: if the plan is not a full :class:`~capc.he.plan.Plan` or the bound is not finite.
    """
    from capc.he.hybrid import HybridPlan

    if isinstance(plan, HybridPlan):
        return segment_bounds(plan, domain)[-1]
    lo, hi = interval_logits(plan, domain)
    raw = float(max(np.max(np.abs(lo)), np.max(np.abs(hi))))
    if not math.isfinite(raw):
        raise HEError("the logit bound over the input domain overflows float64; the model's weights "
                      "are too large to mask")
    return raw * (1.0 + REL_MARGIN) + ABS_MARGIN


#: Widening of a hidden layer's interval where it crosses a garbled-circuit layer: the activations
#: carry the fixed-point rounding of the shares and the CKKS error, well below this for f >= 2.
GC_ABS_MARGIN = 2.0 ** -2


def _widen(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pad = np.maximum(np.abs(lo), np.abs(hi)) * REL_MARGIN + GC_ABS_MARGIN
    return lo - pad, hi + pad


def segment_bounds(plan: Any, domain: InputDomain = PIXELS) -> list[float]:
    """Sound bounds on the outputs of each CKKS segment of ``plan`` over ``domain``: one bound (the
    logit bound of :func:`derive_logit_bound`) for a plain plan; for a
    :class:`~capc.he.hybrid.HybridPlan` the bound on each segment's pre-activations, the intervals
    passing exactly through each ReLU / max (monotone) and widened by :data:`GC_ABS_MARGIN` for the
    error the shared activations carry.

    Raises:
        HEError: for a plan without weights or a bound that is not finite.
    """
    from capc.he.hybrid import HybridPlan

    if not isinstance(plan, HybridPlan):
        return [derive_logit_bound(plan, domain)]
    out: list[float] = []
    n = plan.input_size
    lo, hi = np.full(n, float(domain.lo)), np.full(n, float(domain.hi))
    for k, seg in enumerate(plan.segments):
        lo, hi = interval_stages(seg.stages, lo, hi)
        raw = float(max(np.max(np.abs(lo)), np.max(np.abs(hi))))
        if not math.isfinite(raw):
            raise HEError(f"segment {k}'s outputs have no finite bound over the input domain")
        out.append(raw * (1.0 + REL_MARGIN) + ABS_MARGIN + (GC_ABS_MARGIN if k else 0.0))
        if k < len(plan.gc_layers):
            lo, hi = plan.gc_layers[k].interval(*_widen(lo, hi))
    return out


def partial_sum_bound(plan: Any, domain: InputDomain = PIXELS) -> float:
    """A sound bound on every partial sum ``|sum_{j in S} W_ij x_j|`` (any subset ``S``, no bias) of a
    row of the plan's last affine map over ``domain``: single packing's last map leaves such sums in
    slots other than the logits' (:func:`capc.he.layout.result_support`), masked like the logits.
    Over the map's input box ``[lo, hi]`` the largest subset sum of row ``i`` takes every term that can
    be positive at its largest, ``sum_j max(0, W_ij lo_j, W_ij hi_j)``, and the most negative one
    likewise; the bound is the larger of the two over all rows (exact), widened like
    :func:`derive_logit_bound`.

    Raises:
        HEError: for a plan without weights or a bound that is not finite.
    """
    from capc.he.hybrid import HybridPlan
    from capc.he.plan import LinearStage

    stages = getattr(plan, "stages", None) if not isinstance(plan, HybridPlan) else None
    if isinstance(plan, HybridPlan):
        n = plan.input_size
        lo, hi = np.full(n, float(domain.lo)), np.full(n, float(domain.hi))
        for k, seg in enumerate(plan.segments[:-1]):
            lo, hi = plan.gc_layers[k].interval(*_widen(*interval_stages(seg.stages, lo, hi)))
        stages = plan.segments[-1].stages
    elif stages is None:
        raise HEError("a partial-sum bound needs the full Plan (with weights)")
    else:
        n = plan.input_size
        lo, hi = np.full(n, float(domain.lo)), np.full(n, float(domain.hi))
    last = stages[-1]
    if not isinstance(last, LinearStage):
        raise HEError("the plan does not end with an affine map")
    lo, hi = interval_stages(stages[:-1], lo, hi)
    w = last.weight
    up, down = np.maximum(hi, 0.0), np.maximum(-lo, 0.0)  # how far each input reaches above / below 0

    def part(sign: float) -> sp.csr_matrix:
        # copies: scipy would canonicalise (sort) the plan's own index arrays in place
        return sp.csr_matrix((np.maximum(sign * w.data, 0.0), w.indices.copy(), w.indptr.copy()), shape=w.shape)

    pos, neg = part(1.0), part(-1.0)
    rows = np.maximum(pos @ up + neg @ down, pos @ down + neg @ up)
    raw = float(np.max(rows)) if rows.size else 0.0
    if not math.isfinite(raw):
        raise HEError("the partial-sum bound over the input domain overflows float64")
    return raw * (1.0 + REL_MARGIN) + ABS_MARGIN
