"""The HE evaluation plan: a model reduced to alternating affine maps and squares.

:mod:`capc.he.compiler` turns a Keras model or a frozen GraphDef into a list of *raw* operations
(affine maps on the NHWC-flattened activation vector, and element-wise polynomials).  This module
normalises that list into a :class:`Plan`:

* a degree-2 polynomial ``c0 + c1 x + c2 x^2`` is rewritten as ``c2 (x + c1/(2 c2))^2 + c0 - c1^2/(4 c2)``:
  the shift joins the bias of the preceding affine map and the scale and offset join the following
  one, so every activation costs exactly one CKKS level (one ciphertext square);
* consecutive affine maps (convolution, batch-norm, pooling, dense, flatten) are multiplied into one,
  so each costs one level (one plaintext multiplication and rescale);
* the plan always starts and ends with an affine map.

The plan's multiplicative depth is therefore ``#affine + #square``.  :class:`PublicPlan` is the part
the querying party may see (shapes and the first layer's sparsity pattern, never weights); it fixes
the ciphertext layout both sides must agree on, and its :attr:`PublicPlan.fingerprint` binds the
public context to that layout.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from capc.he.errors import HEError, UnsupportedModelError


@dataclass(frozen=True)
class RawLinear:
    """An affine map ``y = W x + b`` on flattened activations, as read from one model layer."""

    weight: sp.csr_matrix
    bias: np.ndarray
    name: str


@dataclass(frozen=True)
class RawPoly:
    """An element-wise polynomial activation (coefficients lowest degree first)."""

    coeffs: tuple[float, ...]
    name: str


@dataclass(frozen=True)
class LinearStage:
    """Normalised affine stage: ``weight`` is a CSR matrix [out, in], ``bias`` a float64 vector [out]."""

    weight: sp.csr_matrix
    bias: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.weight.shape[0]), int(self.weight.shape[1]))


@dataclass(frozen=True)
class SquareStage:
    """Normalised activation stage: element-wise square of a vector of length ``size``."""

    size: int


Stage = LinearStage | SquareStage


def _identity(n: int) -> RawLinear:
    return RawLinear(sp.identity(n, format="csr", dtype=np.float64), np.zeros(n), "identity")


def normalise(raw: list[RawLinear | RawPoly], input_size: int) -> list[Stage]:
    """Rewrite raw operations into alternating affine and square stages (see module docstring).

    Raises:
        UnsupportedModelError: for a polynomial of degree above 2, or a model with no affine layer.
    """
    ops: list[RawLinear | str] = []  # "sq" marks a square
    size = input_size
    for op in raw:
        if isinstance(op, RawLinear):
            ops.append(op)
            size = op.weight.shape[0]
            continue
        c = list(op.coeffs)
        while len(c) > 1 and c[-1] == 0.0:
            c.pop()
        if len(c) > 3:
            raise UnsupportedModelError(
                f"layer '{op.name}': polynomial activation of degree {len(c) - 1}; capc evaluates "
                "degree <= 2 (one CKKS level per activation). Fit a quadratic instead.")
        if len(c) < 3:  # affine in x: a diagonal map
            c += [0.0] * (2 - len(c))
            ops.append(RawLinear(sp.identity(size, format="csr") * c[1], np.full(size, c[0]), op.name))
            continue
        c0, c1, c2 = c
        shift = c1 / (2.0 * c2)
        if not ops or not isinstance(ops[-1], RawLinear):
            ops.append(_identity(size))
        prev = ops[-1]
        assert isinstance(prev, RawLinear)
        ops[-1] = RawLinear(prev.weight, prev.bias + shift, prev.name)
        ops.append("sq")
        ops.append(RawLinear(sp.identity(size, format="csr") * c2,
                             np.full(size, c0 - c1 * c1 / (4.0 * c2)), op.name))
    if not any(isinstance(o, RawLinear) for o in ops):
        raise UnsupportedModelError("the model has no affine layer (nothing to evaluate)")
    if isinstance(ops[0], str):
        ops.insert(0, _identity(input_size))
    if isinstance(ops[-1], str):
        ops.append(_identity(size))
    stages: list[Stage] = []
    for o in ops:
        if isinstance(o, str):
            prev = stages[-1]
            assert isinstance(prev, LinearStage)
            stages.append(SquareStage(prev.shape[0]))
        elif stages and isinstance(stages[-1], LinearStage):
            last = stages[-1]
            w = (o.weight @ last.weight).tocsr()
            w.eliminate_zeros()
            stages[-1] = LinearStage(w, o.weight @ last.bias + o.bias)
        else:
            w = o.weight.tocsr().astype(np.float64)
            w.eliminate_zeros()
            stages.append(LinearStage(w, np.asarray(o.bias, dtype=np.float64).copy()))
    return stages


@dataclass(frozen=True)
class PublicPlan:
    """What the querying party needs to lay out a query: shapes and the first layer's sparsity.

    Attributes:
        input_shape: model input shape without the batch axis (NHWC order for images).
        num_classes: number of logits C.
        stage_shapes: per stage ``("linear", out, in)`` or ``("square", size, size)``.
        first_indptr, first_indices: CSR structure (not values) of the first affine map.
    """

    input_shape: tuple[int, ...]
    num_classes: int
    stage_shapes: tuple[tuple[str, int, int], ...]
    first_indptr: np.ndarray = field(repr=False)
    first_indices: np.ndarray = field(repr=False)

    @property
    def input_size(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def depth(self) -> int:
        """Multiplicative depth: one CKKS level per affine stage and per square."""
        return len(self.stage_shapes)

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the layout-relevant structure, shared by QP and AP to detect mismatches."""
        h = hashlib.sha256()
        h.update(json.dumps([list(self.input_shape), self.num_classes,
                             [list(s) for s in self.stage_shapes]]).encode())
        h.update(np.ascontiguousarray(self.first_indptr, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(self.first_indices, dtype=np.int64).tobytes())
        return h.hexdigest()

    def rotations(self, packing: str, poly_modulus_degree: int, hidden: bool = False) -> list[int]:
        """Left-rotation steps (slots) the evaluation needs for ``packing`` at ring degree N
        (``hidden``: as a hybrid plan's segment before the last, see :func:`capc.he.layout.single_layout`)."""
        from capc.he.layout import batch_layout, single_layout

        if packing == "single":
            return single_layout(self, poly_modulus_degree // 2, hidden).rotation_steps
        if packing == "batch":
            return batch_layout(self, poly_modulus_degree // 2).rotation_steps
        raise HEError(f"unknown packing {packing!r} (use 'single' or 'batch')")

    def to_bytes(self) -> bytes:
        """Serialise (JSON) so an answering party can send it to the querying party."""
        return json.dumps({
            "format": "capc-he-public-plan-1",
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "stage_shapes": [list(s) for s in self.stage_shapes],
            "first_indptr": base64.b64encode(np.asarray(self.first_indptr, "<i8").tobytes()).decode(),
            "first_indices": base64.b64encode(np.asarray(self.first_indices, "<i8").tobytes()).decode(),
        }).encode()

    @classmethod
    def from_bytes(cls, blob: bytes) -> "PublicPlan":
        """Inverse of :meth:`to_bytes`; raises :class:`HEError` on malformed input."""
        try:
            d = json.loads(blob)
            if d.get("format") != "capc-he-public-plan-1":
                raise ValueError("unknown format tag")
            plan = cls(tuple(int(v) for v in d["input_shape"]), int(d["num_classes"]),
                       tuple((str(k), int(a), int(b)) for k, a, b in d["stage_shapes"]),
                       np.frombuffer(base64.b64decode(d["first_indptr"]), "<i8").copy(),
                       np.frombuffer(base64.b64decode(d["first_indices"]), "<i8").copy())
        except (ValueError, KeyError, TypeError) as exc:
            raise HEError(f"malformed public plan: {exc}") from None
        m = plan.stage_shapes[0][1] if plan.stage_shapes else -1
        if not plan.stage_shapes or plan.first_indptr.shape != (m + 1,) or \
                (plan.first_indices.size and (plan.first_indices.min() < 0 or
                                              plan.first_indices.max() >= plan.input_size)):
            raise HEError("malformed public plan: inconsistent first-layer structure")
        return plan


class PlanFacts:
    """What a compiled plan (plain or hybrid) answers through its public part."""

    public_plan: Any

    @property
    def num_classes(self) -> int:
        return self.public_plan.num_classes

    @property
    def input_size(self) -> int:
        return self.public_plan.input_size

    @property
    def depth(self) -> int:
        return self.public_plan.depth

    @property
    def fingerprint(self) -> str:
        return self.public_plan.fingerprint

    def rotations(self, packing: str, poly_modulus_degree: int) -> list[int]:
        """Rotation steps needed for ``packing`` at ring degree N (see :meth:`PublicPlan.rotations`)."""
        return self.public_plan.rotations(packing, poly_modulus_degree)


class Plan(PlanFacts):
    """A compiled model: normalised stages plus its :class:`PublicPlan`.

    Attributes:
        input_shape, num_classes, depth: as in :class:`PublicPlan`.
        stages: the normalised :class:`LinearStage` / :class:`SquareStage` sequence.
        layers: one line per source layer that was read (for reports).
        public_plan: the weight-free part for the querying party.
    """

    def __init__(self, stages: list[Stage], input_shape: tuple[int, ...], layers: list[str],
                 source: str = "") -> None:
        self.stages: tuple[Stage, ...] = tuple(stages)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.layers = tuple(layers)
        self.source = source
        first = stages[0]
        assert isinstance(first, LinearStage)
        last = stages[-1]
        assert isinstance(last, LinearStage)
        shapes: list[tuple[str, int, int]] = []
        for s in stages:
            if isinstance(s, LinearStage):
                shapes.append(("linear", *s.shape))
            else:
                shapes.append(("square", s.size, s.size))
        self.public_plan = PublicPlan(self.input_shape, last.shape[0], tuple(shapes),
                                      first.weight.indptr.astype(np.int64),
                                      first.weight.indices.astype(np.int64))

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Plaintext float64 reference: logits for one input (any shape with ``input_size`` values,
        returns [C]) or a batch [B, *input_shape] (returns [B, C])."""
        arr = np.asarray(x, dtype=np.float64)
        single = arr.size == self.input_size
        v = arr.reshape(1 if single else -1, self.input_size).T
        for s in self.stages:
            if isinstance(s, LinearStage):
                v = s.weight @ v + s.bias[:, None]
            else:
                v = v * v
        out = v.T
        return out[0] if single else out

    def describe(self) -> str:
        """Human-readable summary: source layers, stages and depth."""
        lines = [f"plan from {self.source or 'model'}: input {self.input_shape}, "
                 f"{self.num_classes} classes, depth {self.depth}"]
        lines += [f"  layer {ln}" for ln in self.layers]
        for kind, a, b in self.public_plan.stage_shapes:
            lines.append(f"  stage {kind} {b} -> {a}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Plan(input_shape={self.input_shape}, num_classes={self.num_classes}, "
                f"depth={self.depth}, stages={[s[0] for s in self.public_plan.stage_shapes]})")


def as_public(plan: Any) -> Any:
    """Accept a :class:`Plan` or :class:`PublicPlan` (or their hybrid counterparts from
    :mod:`capc.he.hybrid`) and return the public part."""
    from capc.he.hybrid import HybridPlan, PublicHybridPlan

    if isinstance(plan, (Plan, HybridPlan)):
        return plan.public_plan
    if isinstance(plan, (PublicPlan, PublicHybridPlan)):
        return plan
    raise HEError(f"expected a capc.he Plan or PublicPlan, got {type(plan).__name__}")
