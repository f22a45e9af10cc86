"""Models with ReLU and max-pooling: CKKS segments joined by garbled-circuit layers.

A ReLU or a max over a pooling window is not a polynomial, so CKKS cannot evaluate it.  The hybrid
protocol (Gazelle / Delphi style; :mod:`capc.parties.hybrid` runs it between the parties) splits such
a model at every non-polynomial layer:

* a **segment** is an ordinary :class:`~capc.he.plan.Plan` (affine maps and squares) that the
  answering party (AP) evaluates under CKKS on a *fresh* ciphertext, so each segment needs only its
  own levels: the modulus chain no longer grows with the network's depth;
* a **GC layer** (:class:`GcLayer`) is computed by a garbled circuit on additive shares of the
  segment's output: element-wise ReLU, or the max over each pooling window, optionally followed by a
  ReLU.  Consecutive non-polynomial layers are merged into one GC layer (``relu(max(x)) =
  max(relu(x))``, and a max-pool of a max-pool is a max over the composed windows).

The compiler (:mod:`capc.he.compiler`) emits :class:`RawRelu` / :class:`RawMaxPool` between its raw
affine and polynomial operations; :func:`build_plan` returns a plain :class:`~capc.he.plan.Plan`
when there are none and a :class:`HybridPlan` otherwise.  :class:`PublicHybridPlan` is what the
querying party (QP) may see: every segment's :class:`~capc.he.plan.PublicPlan` and the GC layers'
shapes and pooling windows -- structure, never weights.

**Fixed point and the error bound.** Every share lives in Z_2^64 with the run's ``f`` fraction bits.
The products are all inside CKKS (each rescale is CKKS's own truncation), so the circuits only
compare and select: ReLU and max are exact on the shares and 1-Lipschitz.  A segment's output as the
shares hold it is off by at most ``2^-f`` (the querying party rounds ``z - r`` and the answering party
``r`` to the grid) plus the CKKS error ``e`` of the segment; the next segment multiplies the incoming
error by at most its weights' largest row sum ``L``.  :func:`logit_error_bound` composes this:
``E_k = L_k E_(k-1) + e + 2^-f``, ``E_(-1) = 0`` -- a worst case, typically 10-100 times the
observed error (the rounding errors are independent and partly cancel).

**What each party sees, per GC layer** (semi-honest): the answering party sees only ciphertexts
under the querying party's key and garbles without learning the circuit's outputs; the querying party
sees the segment's pre-activations ``z - r`` with ``r`` uniform on a range ``2^s`` times the sound
bound on ``|z|`` (statistical distance ``2^-s`` per value, s as reported in the run's hiding record),
flooded with Gaussian noise and in a re-randomised ciphertext (circuit privacy, as for the logits),
and the layer's outputs ``y - m``, ``m`` drawn the same way (``2^-s`` per value).  The pooling
windows and layer sizes are public (they are the model's architecture, which the querying party needs
to lay out its queries).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from capc.he.errors import HEError, UnsupportedModelError
from capc.he.plan import Plan, PlanFacts, PublicPlan, RawLinear, RawPoly, _identity, normalise

HYBRID_FORMAT = "capc-he-hybrid-plan-1"

#: Register widths of the garbled-circuit layers (public constants, so both sides agree without a
#: word). Every mask is sized with s + ceil(log2 B) + f + 1 <= PRECISION_BITS (48) and s >= 24
#: (:func:`capc.he.params.mask_sizing`), so a layer input |a + b| ~ 2^f |z| <= 2^(ceil(log2 B) + f) is
#: below 2^23 and fits 26 signed bits, and an output y - m, |m| <= 2^(s + ceil(log2 B) + f) <= 2^47,
#: fits 49: the circuits add, compare and select on 26 bits and subtract the mask on 49, about half
#: the gates and a third of the QP's input bits of 64-bit registers.
GC_IN_BITS = 26
GC_OUT_BITS = 49
#: the keyword arguments of the GC layers' calls (``GcSession.relu_share_*`` / ``maxpool_share_*``)
GC_WIDTHS = {"in_bits": GC_IN_BITS, "out_bits": GC_OUT_BITS}


@dataclass(frozen=True)
class RawRelu:
    """An element-wise ReLU, as read from one model layer."""

    name: str


@dataclass(frozen=True)
class RawMaxPool:
    """A max-pooling layer: output ``i`` is the max of the flat inputs ``windows[i, :]``."""

    windows: np.ndarray = field(repr=False)
    name: str = ""


RawOp = RawLinear | RawPoly | RawRelu | RawMaxPool


@dataclass(frozen=True, eq=False)
class GcLayer:
    """A non-polynomial layer computed on shares by a garbled circuit.

    Attributes:
        size_in: length of the input vector (the previous segment's output).
        windows: None for an element-wise ReLU; else int64 ``[size_out, w]``, output ``i`` being the
            max of the inputs ``windows[i]`` (a ragged window repeats one of its own indices).
        relu: apply a ReLU (after the max, when there are windows).
    """

    size_in: int
    windows: np.ndarray | None = field(default=None, repr=False)
    relu: bool = True

    def __post_init__(self) -> None:
        if self.windows is not None:
            w = np.ascontiguousarray(self.windows, dtype=np.int64)
            if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 1:
                raise HEError(f"a pooling layer needs windows of shape [outputs, window], got {w.shape}")
            if w.min() < 0 or w.max() >= self.size_in:
                raise HEError(f"pooling window indices must lie in 0..{self.size_in - 1}")
            object.__setattr__(self, "windows", w)
        elif not self.relu:
            raise HEError("a GC layer without windows must be a ReLU")

    @property
    def kind(self) -> str:
        """``"relu"`` or ``"maxpool"`` (the garbled-circuit program that computes it)."""
        return "relu" if self.windows is None else "maxpool"

    @property
    def size_out(self) -> int:
        return self.size_in if self.windows is None else int(self.windows.shape[0])

    @property
    def window(self) -> int:
        """Values per pooling window (1 for a ReLU)."""
        return 1 if self.windows is None else int(self.windows.shape[1])

    def gather(self, v: np.ndarray) -> np.ndarray:
        """The circuit's input order: ``v[..., windows].reshape(..., size_out * window)`` (``v`` as is
        for a ReLU).  Works on additive shares, since it only moves values."""
        if self.windows is None:
            return v
        g = v[..., self.windows]
        return g.reshape(*v.shape[:-1], self.size_out * self.window)

    def apply(self, v: np.ndarray) -> np.ndarray:
        """The layer on real values ``[..., size_in]`` (the plaintext reference)."""
        out = v if self.windows is None else np.max(v[..., self.windows], axis=-1)
        return np.maximum(out, 0.0) if self.relu else out

    def interval(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The exact range of each output over the box ``[lo, hi]`` (ReLU and max are monotone)."""
        return self.apply(lo), self.apply(hi)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"size_in": self.size_in, "relu": self.relu}
        if self.windows is not None:
            d["windows"] = base64.b64encode(np.asarray(self.windows, "<i8").tobytes()).decode()
            d["window"] = self.window
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "GcLayer":
        try:
            windows = None
            if "windows" in d:
                flat = np.frombuffer(base64.b64decode(d["windows"]), "<i8").copy()
                windows = flat.reshape(-1, int(d["window"]))
            return cls(int(d["size_in"]), windows, bool(d["relu"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise HEError(f"malformed GC layer: {exc}") from None

    def digest(self) -> bytes:
        h = hashlib.sha256(json.dumps([self.size_in, self.relu, self.window]).encode())
        if self.windows is not None:
            h.update(np.asarray(self.windows, "<i8").tobytes())
        return h.digest()


class PublicHybridPlan:
    """What the querying party needs: each segment's public plan and the GC layers between them."""

    def __init__(self, segments: Sequence[PublicPlan], gc_layers: Sequence[GcLayer]) -> None:
        self.segments = tuple(segments)
        self.gc_layers = tuple(gc_layers)
        _check_chain([s.input_size for s in self.segments], [s.num_classes for s in self.segments],
                     self.gc_layers)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.segments[0].input_shape

    @property
    def input_size(self) -> int:
        return self.segments[0].input_size

    @property
    def num_classes(self) -> int:
        return self.segments[-1].num_classes

    @property
    def depth(self) -> int:
        """Levels one ciphertext needs: the deepest segment (every segment starts on a fresh one)."""
        return max(s.depth for s in self.segments)

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256(HYBRID_FORMAT.encode())
        for s in self.segments:
            h.update(bytes.fromhex(s.fingerprint))
        for g in self.gc_layers:
            h.update(g.digest())
        return h.hexdigest()

    def rotations(self, packing: str, poly_modulus_degree: int) -> list[int]:
        """Every rotation step any segment's layout needs."""
        last = len(self.segments) - 1
        return sorted({r for k, s in enumerate(self.segments)
                       for r in s.rotations(packing, poly_modulus_degree, hidden=k < last)})

    def to_bytes(self) -> bytes:
        return json.dumps({"format": HYBRID_FORMAT,
                           "segments": [json.loads(s.to_bytes()) for s in self.segments],
                           "gc_layers": [g.to_dict() for g in self.gc_layers]}).encode()

    @classmethod
    def from_bytes(cls, blob: bytes) -> "PublicHybridPlan":
        try:
            d = json.loads(blob)
            if d.get("format") != HYBRID_FORMAT:
                raise ValueError("unknown format tag")
            segments = [PublicPlan.from_bytes(json.dumps(s).encode()) for s in d["segments"]]
            layers = [GcLayer.from_dict(g) for g in d["gc_layers"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise HEError(f"malformed hybrid plan: {exc}") from None
        return cls(segments, layers)


class HybridPlan(PlanFacts):
    """A compiled model with non-polynomial layers: CKKS segments joined by GC layers.

    Attributes:
        segments: the :class:`~capc.he.plan.Plan` of each segment (with weights); segment 0 takes the
            model input, segment ``k > 0`` the output of ``gc_layers[k - 1]``.
        gc_layers: the :class:`GcLayer` after each segment but the last.
        public_plan: the :class:`PublicHybridPlan`.
    """

    def __init__(self, segments: Sequence[Plan], gc_layers: Sequence[GcLayer], input_shape: tuple[int, ...],
                 layers: Sequence[str], source: str = "") -> None:
        self.segments = tuple(segments)
        self.gc_layers = tuple(gc_layers)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.layers = tuple(layers)
        self.source = source
        self.public_plan = PublicHybridPlan([s.public_plan for s in self.segments], self.gc_layers)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Plaintext float64 reference: logits [C] for one input, [B, C] for a batch."""
        arr = np.asarray(x, dtype=np.float64)
        single = arr.size == self.input_size
        n = 1 if single else arr.size // self.input_size
        # Plan.forward returns [C] for a batch of one, so restore the batch axis after every segment.
        v = self.segments[0].forward(arr.reshape(n, self.input_size)).reshape(n, -1)
        for gc, seg in zip(self.gc_layers, self.segments[1:]):
            v = seg.forward(gc.apply(v)).reshape(n, -1)
        return v[0] if single else v

    def describe(self) -> str:
        lines = [f"hybrid plan from {self.source or 'model'}: input {self.input_shape}, "
                 f"{self.num_classes} classes, {len(self.segments)} CKKS segments (deepest {self.depth} "
                 f"levels), {len(self.gc_layers)} garbled-circuit layers"]
        lines += [f"  layer {ln}" for ln in self.layers]
        for i, seg in enumerate(self.segments):
            for kind, a, b in seg.public_plan.stage_shapes:
                lines.append(f"  segment {i}: {kind} {b} -> {a}")
            if i < len(self.gc_layers):
                g = self.gc_layers[i]
                what = "relu" if g.windows is None else f"max over windows of {g.window}" + (
                    " then relu" if g.relu else "")
                lines.append(f"  gc layer {i}: {what}, {g.size_in} -> {g.size_out}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"HybridPlan(input_shape={self.input_shape}, num_classes={self.num_classes}, "
                f"segments={len(self.segments)}, gc_layers={[g.kind for g in self.gc_layers]})")


def _check_chain(in_sizes: list[int], out_sizes: list[int], gcs: Sequence[GcLayer]) -> None:
    if len(in_sizes) != len(gcs) + 1:
        raise HEError(f"a hybrid plan needs one segment more than GC layers, got {len(in_sizes)} and {len(gcs)}")
    for k, g in enumerate(gcs):
        if g.size_in != out_sizes[k] or g.size_out != in_sizes[k + 1]:
            raise HEError(f"GC layer {k} maps {g.size_in} -> {g.size_out} values but segment {k} has "
                          f"{out_sizes[k]} outputs and segment {k + 1} {in_sizes[k + 1]} inputs")


def build_plan(raw: Sequence[RawOp], input_shape: tuple[int, ...], layers: Sequence[str],
               source: str = "") -> Plan | HybridPlan:
    """Normalise the compiler's raw operations: a :class:`Plan` if all are affine or polynomial,
    else a :class:`HybridPlan` split at the (merged) non-polynomial layers."""
    size = int(np.prod(input_shape))
    groups: list[list[RawLinear | RawPoly]] = [[]]
    gcs: list[GcLayer] = []
    pending: tuple[np.ndarray | None, bool, int] | None = None
    for op in raw:
        if isinstance(op, (RawRelu, RawMaxPool)):
            windows, relu, size_in = pending if pending is not None else (None, False, size)
            if isinstance(op, RawRelu):
                relu = True
            else:
                w = np.asarray(op.windows, dtype=np.int64)
                if w.ndim != 2 or w.size == 0 or w.min() < 0 or w.max() >= size:
                    raise UnsupportedModelError(f"layer '{op.name}': pooling windows do not fit its "
                                                f"{size} inputs")
                windows = w if windows is None else windows[w].reshape(w.shape[0], -1)
                size = int(w.shape[0])
            pending = (windows, relu, size_in)
            continue
        if pending is not None:
            gcs.append(GcLayer(pending[2], pending[0], pending[1]))
            groups.append([])
            pending = None
        groups[-1].append(op)
        if isinstance(op, RawLinear):
            size = int(op.weight.shape[0])
    if pending is not None:
        gcs.append(GcLayer(pending[2], pending[0], pending[1]))
        groups.append([])
    if not gcs:
        return Plan(normalise(list(raw), size_of(input_shape)), input_shape, list(layers), source)
    segments: list[Plan] = []
    seg_in = size_of(input_shape)
    for k, ops in enumerate(groups):
        stages = normalise(ops or [_identity(seg_in)], seg_in)
        segments.append(Plan(stages, input_shape if k == 0 else (seg_in,), [], source))
        if k < len(gcs):
            seg_in = gcs[k].size_out
    return HybridPlan(segments, gcs, input_shape, layers, source)


def logit_error_bound(plan: Any, frac_bits: int, ckks_error: float) -> float:
    """Worst-case ``|logit - plan.forward(x)|`` of the hybrid evaluation of a square-free ``plan``
    (plain or hybrid, with weights) at ``frac_bits`` fraction bits, each CKKS segment erring by at
    most ``ckks_error`` (see the module docstring; :func:`capc.he.params.ckks_error`).

    Raises:
        HEError: for a plan with squares (its error is not bounded by a row sum).
    """
    from capc.he.plan import LinearStage

    q = 2.0 ** -int(frac_bits)
    err = 0.0
    for k, seg in enumerate(segments_of(plan)):
        stages = getattr(seg, "stages", None)
        if stages is None or not all(isinstance(st, LinearStage) for st in stages):
            raise HEError(f"segment {k} squares its input (or has no weights): no row-sum error bound")
        lip = 1.0
        for st in stages:
            w = st.weight
            # row sums of |W| from the data array: scipy's abs() would sort the matrix's indices in
            # place, reordering the first layer the public layout was derived from
            m = int(w.shape[0])
            rows = np.bincount(np.repeat(np.arange(m), np.diff(w.indptr)), weights=np.abs(w.data), minlength=m)
            lip *= float(np.max(rows)) if m else 0.0
        err = lip * err + float(ckks_error) + q
    return err


def segment_width(gc_layers: Sequence[GcLayer], k: int, num_classes: int) -> int:
    """Outputs of segment k: the next GC layer's inputs, or the logits for the last segment."""
    return num_classes if k == len(gc_layers) else gc_layers[k].size_in


def garble_layer(session: Any, layer: GcLayer, b: np.ndarray, m: np.ndarray) -> None:
    """The AP's side of a GC layer for a whole batch: its shares b (uint64[B, size_in]) and its fresh
    mask m (uint64[B, size_out]), on the circuits' narrow registers (:data:`GC_WIDTHS`)."""
    flat, mflat = layer.gather(b).reshape(-1).view(np.int64), np.ascontiguousarray(m).reshape(-1).view(np.int64)
    if layer.kind == "relu":
        session.relu_share_garbler(flat, mflat, **GC_WIDTHS)
    else:
        session.maxpool_share_garbler(flat, mflat, layer.window, relu_after=layer.relu, **GC_WIDTHS)


def evaluate_layer(session: Any, layer: GcLayer, a: np.ndarray) -> np.ndarray:
    """The QP's side of a GC layer for a whole batch: from its shares a (uint64[B, size_in]) return
    its share y - m of the layer's outputs (uint64[B, size_out])."""
    flat = layer.gather(a).reshape(-1).view(np.int64)
    if layer.kind == "relu":
        y = session.relu_share_evaluator(flat, **GC_WIDTHS)
    else:
        y = session.maxpool_share_evaluator(flat, layer.window, relu_after=layer.relu, **GC_WIDTHS)
    return np.asarray(y, dtype=np.int64).view(np.uint64).reshape(a.shape[0], layer.size_out)


def size_of(shape: Sequence[int]) -> int:
    return int(np.prod(shape))


AnyPlan = Plan | HybridPlan
AnyPublicPlan = PublicPlan | PublicHybridPlan


def segments_of(plan: Any) -> tuple[Any, ...]:
    """The segments of a (public) plan: itself for a plain one."""
    return tuple(plan.segments) if isinstance(plan, (HybridPlan, PublicHybridPlan)) else (plan,)


def gc_layers_of(plan: Any) -> tuple[GcLayer, ...]:
    return tuple(plan.gc_layers) if isinstance(plan, (HybridPlan, PublicHybridPlan)) else ()


def public_plan_from_bytes(blob: bytes) -> AnyPublicPlan:
    """Read a plain or hybrid public plan (see the ``to_bytes`` methods)."""
    try:
        fmt = json.loads(blob).get("format")
    except (ValueError, AttributeError):
        raise HEError("malformed public plan: not JSON") from None
    if fmt == HYBRID_FORMAT:
        return PublicHybridPlan.from_bytes(blob)
    return PublicPlan.from_bytes(blob)
