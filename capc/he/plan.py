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
class ConvGeometry:
    """Public shape of a 2-D convolution (NHWC, TF padding): input ``h x w x cin``, output
    ``ho x wo x cout``, kernel ``kh x kw``, strides ``sh, sw``, top/left padding ``pt, pl``.

    Output unit ``p * cout + c`` (``p = oy * wo + ox``) reads, at kernel offset ``k = (ky * kw + kx) *
    cin + ci``, input ``((oy*sh + ky - pt) * w + ox*sw + kx - pl) * cin + ci`` when inside the image.
    Batch packing uses it to put several output positions in one ciphertext (:mod:`capc.he.lanes`).
    """

    h: int
    w: int
    cin: int
    ho: int
    wo: int
    cout: int
    kh: int
    kw: int
    sh: int
    sw: int
    pt: int
    pl: int

    @property
    def positions(self) -> int:
        return self.ho * self.wo

    @property
    def taps(self) -> int:
        """Kernel offsets per output unit, ``kh * kw * cin``."""
        return self.kh * self.kw * self.cin

    def patches(self) -> np.ndarray:
        """int64 [positions, taps]: the input index each position reads at each offset, -1 outside."""
        oy, ox, ky, kx, ci = np.meshgrid(np.arange(self.ho), np.arange(self.wo), np.arange(self.kh),
                                         np.arange(self.kw), np.arange(self.cin), indexing="ij")
        iy = oy * self.sh + ky - self.pt
        ix = ox * self.sw + kx - self.pl
        ok = (iy >= 0) & (iy < self.h) & (ix >= 0) & (ix < self.w)
        idx = np.where(ok, (iy * self.w + ix) * self.cin + ci, -1)
        return idx.reshape(self.positions, self.taps).astype(np.int64)

    def as_list(self) -> list[int]:
        return [self.h, self.w, self.cin, self.ho, self.wo, self.cout, self.kh, self.kw, self.sh, self.sw,
                self.pt, self.pl]

    def kernel_of(self, weight: sp.csr_matrix, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(kernel [cout, taps], bias [cout])`` if ``y = weight x + bias`` is exactly this
        convolution (every position applies the same kernel and bias; nothing outside the patches),
        else None."""
        m, n = self.positions * self.cout, self.h * self.w * self.cin
        if weight.shape != (m, n) or np.shape(bias) != (m,):
            return None
        w = weight.tocsr()
        rows = np.repeat(np.arange(m), np.diff(w.indptr))
        pos, ch = rows // self.cout, rows % self.cout
        oy, ox = pos // self.wo, pos % self.wo
        cols = w.indices.astype(np.int64)
        ci, pix = cols % self.cin, cols // self.cin
        ky = pix // self.w - oy * self.sh + self.pt
        kx = pix % self.w - ox * self.sw + self.pl
        if np.any((ky < 0) | (ky >= self.kh) | (kx < 0) | (kx >= self.kw)):
            return None  # a weight outside the position's patch
        k = (ky * self.kw + kx) * self.cin + ci
        kern = np.zeros((self.cout, self.taps))
        kern[ch, k] = w.data
        if not np.array_equal(kern[ch, k], w.data):
            return None  # two positions disagree on a kernel weight
        b = np.asarray(bias, dtype=np.float64).reshape(self.positions, self.cout)
        if not np.all(b == b[0]):
            return None
        # every non-zero kernel weight must appear at every position whose patch holds its input
        inside = self.patches() >= 0
        expected = int(sum(np.count_nonzero(kern[:, inside[p]]) for p in range(self.positions)))
        if expected != w.nnz:
            return None
        return kern, b[0].copy()


@dataclass(frozen=True)
class RawLinear:
    """An affine map ``y = W x + b`` on flattened activations, as read from one model layer
    (``conv``: its geometry when the layer is a convolution)."""

    weight: sp.csr_matrix
    bias: np.ndarray
    name: str
    conv: ConvGeometry | None = None


@dataclass(frozen=True)
class RawPoly:
    """An element-wise polynomial activation (coefficients lowest degree first)."""

    coeffs: tuple[float, ...]
    name: str


@dataclass(frozen=True)
class LinearStage:
    """Normalised affine stage: ``weight`` is a CSR matrix [out, in], ``bias`` a float64 vector [out];
    ``conv``: the convolution geometry it may still have (checked by :class:`Plan`)."""

    weight: sp.csr_matrix
    bias: np.ndarray
    conv: ConvGeometry | None = None

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
        ops[-1] = RawLinear(prev.weight, prev.bias + shift, prev.name, prev.conv)
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
            # a diagonal map after a convolution (bias, per-channel scale) may keep it a convolution
            diagonal = o.weight.shape[0] == o.weight.shape[1] and sp.triu(o.weight, 1).nnz == 0 \
                and sp.tril(o.weight, -1).nnz == 0
            stages[-1] = LinearStage(w, o.weight @ last.bias + o.bias, last.conv if diagonal else None)
        else:
            w = o.weight.tocsr().astype(np.float64)
            w.eliminate_zeros()
            stages.append(LinearStage(w, np.asarray(o.bias, dtype=np.float64).copy(), o.conv))
    return stages


@dataclass(frozen=True)
class PublicPlan:
    """What the querying party needs to lay out a query: shapes and the first layer's sparsity.

    Attributes:
        input_shape: model input shape without the batch axis (NHWC order for images).
        num_classes: number of logits C.
        stage_shapes: per stage ``("linear", out, in)`` or ``("square", size, size)``.
        first_indptr, first_indices: CSR structure (not values) of the first affine map.
        first_conv: the first affine map's convolution geometry when it is exactly a convolution
            (same kernel and bias at every position), else None.
    """

    input_shape: tuple[int, ...]
    num_classes: int
    stage_shapes: tuple[tuple[str, int, int], ...]
    first_indptr: np.ndarray = field(repr=False)
    first_indices: np.ndarray = field(repr=False)
    first_conv: ConvGeometry | None = None

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
        if self.first_conv is not None:
            h.update(json.dumps(["conv", *self.first_conv.as_list()]).encode())
        return h.hexdigest()

    def rotations(self, packing: str, poly_modulus_degree: int, hidden: bool = False) -> list[int]:
        """Left-rotation steps (slots) the evaluation needs for ``packing`` at ring degree N
        (``hidden``: as a hybrid plan's segment before the last, see :func:`capc.he.layout.single_layout`;
        batch packing: for every batch size)."""
        from capc.he.layout import batch_rotation_steps, single_layout

        if packing == "single":
            return single_layout(self, poly_modulus_degree // 2, hidden).rotation_steps
        if packing == "batch":
            return batch_rotation_steps(self, poly_modulus_degree // 2)
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
            "first_conv": None if self.first_conv is None else self.first_conv.as_list(),
        }).encode()

    @classmethod
    def from_bytes(cls, blob: bytes) -> "PublicPlan":
        """Inverse of :meth:`to_bytes`; raises :class:`HEError` on malformed input."""
        try:
            d = json.loads(blob)
            if d.get("format") != "capc-he-public-plan-1":
                raise ValueError("unknown format tag")
            conv = d.get("first_conv")
            if conv is not None and (not isinstance(conv, list) or len(conv) != 12
                                     or not all(isinstance(v, int) and not isinstance(v, bool) for v in conv)):
                raise ValueError("first_conv must be a list of 12 integers")
            plan = cls(tuple(int(v) for v in d["input_shape"]), int(d["num_classes"]),
                       tuple((str(k), int(a), int(b)) for k, a, b in d["stage_shapes"]),
                       np.frombuffer(base64.b64decode(d["first_indptr"]), "<i8").copy(),
                       np.frombuffer(base64.b64decode(d["first_indices"]), "<i8").copy(),
                       None if conv is None else ConvGeometry(*conv))
        except (ValueError, KeyError, TypeError) as exc:
            raise HEError(f"malformed public plan: {exc}") from None
        m = plan.stage_shapes[0][1] if plan.stage_shapes else -1
        if not plan.stage_shapes or plan.first_indptr.shape != (m + 1,) or \
                (plan.first_indices.size and (plan.first_indices.min() < 0 or
                                              plan.first_indices.max() >= plan.input_size)):
            raise HEError("malformed public plan: inconsistent first-layer structure")
        g = plan.first_conv
        if g is not None and (min(g.as_list()[:10]) < 1 or min(g.pt, g.pl) < 0 or g.h * g.w * g.cin != plan.input_size
                              or g.positions * g.cout != m or g.taps > 4096):
            raise HEError("malformed public plan: the first convolution's geometry does not match its shapes")
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
        conv = first.conv if first.conv is not None and first.conv.kernel_of(first.weight, first.bias) is not None \
            else None
        self.public_plan = PublicPlan(self.input_shape, last.shape[0], tuple(shapes),
                                      first.weight.indptr.astype(np.int64),
                                      first.weight.indices.astype(np.int64), conv)

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
