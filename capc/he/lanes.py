"""Lane packing: a batch of B < N/4 queries costs in proportion to B, not to the ring.

Plain batch packing puts query ``q`` in slot ``q`` and one activation per ciphertext, so every
ciphertext costs the whole ring however few queries it carries.  When the first affine map is a
convolution (:class:`capc.he.plan.ConvGeometry`, public) and ``P B <= N/2``, each ciphertext instead
carries ``P`` *lanes* per query: slot ``q P + l`` holds query ``q``'s value for output position
``g P + l`` of position group ``g``.

* **Query (im2col).**  Ciphertext ``(g, k)`` holds, in lane ``l``, the input that position ``g P + l``
  reads at kernel offset ``k`` (zero outside the image): ``ceil(positions / P) * taps`` ciphertexts.
* **First map.**  Every position applies the same kernel, so output ``(g, c) = sum_k K[c, k] (g, k) +
  b[c]`` has *scalar* weights: the ordinary exact RNS product of :mod:`capc.he.batch`, on ``P`` times
  fewer ciphertexts (and ``P`` times fewer squares after it).
* **Second map** (the first one that mixes positions).  Output ``i`` needs ``W[i, unit(j, l)]`` in lane
  ``l`` of input ``j``: a plaintext that is the same in every query but differs between lanes.  A slot
  vector of period ``P`` is a polynomial in ``Y = X^(N/2P)`` (the fixed ring of the rotation by ``P``
  slots, an automorphism group ``{a = 1 mod 4P}``), and in SEAL's NTT form such a polynomial takes
  only ``2P`` distinct values, one per *class* of NTT coefficients.  So per class the product is again
  an exact matrix product (:class:`LaneWeights`), with weights that are full residues instead of small
  integers.  ``log2 P`` rotations then sum the lanes into lane 0 (bias in lane 0 only), and every later
  stage runs as plain batch packing on slots ``q P``.  The other lanes hold the same network on a
  hidden layer mixed from queries ``q`` and ``q + 1`` (:func:`lane_weights`): values within the same
  sound bounds, masked like any other slot.
* A plan whose only stage is the convolution (a hybrid plan's first segment) returns its lane-packed
  outputs as they are.

The layout is a function of the public plan, B and N only (:func:`lane_count`), so both sides
derive it; the query names it and the answering party checks it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from capc.he.errors import HEError
from capc.he.plan import ConvGeometry, LinearStage, PublicPlan

#: Most lanes when a later stage mixes positions (its lane sum needs rotations by 1, 2, .., MAX_LANES/2).
MAX_LANES = 16


def lane_count(p: PublicPlan, batch: int, slots: int) -> int:
    """Lanes per query for a batch of ``batch`` queries in ``slots`` slots: the largest power of two
    ``P`` with ``P * batch <= slots``, at most the first convolution's positions (rounded up to a power
    of two) and, when a later stage mixes positions, at most :data:`MAX_LANES` -- provided the
    lane-packed query has no more ciphertexts than the plain one (im2col repeats every input about
    ``taps / stride^2`` times, so few lanes can make the query larger); else 1 (also without a first
    convolution)."""
    g = p.first_conv
    if g is None or batch < 1:
        return 1
    cap = 1 << max(0, math.ceil(math.log2(g.positions)))
    if len(p.stage_shapes) > 1:
        cap = min(cap, MAX_LANES)
    lanes = 1
    while lanes * 2 <= cap and lanes * 2 * batch <= slots:
        lanes *= 2
    if lanes > 1 and -(-g.positions // lanes) * g.taps > p.input_size:
        return 1
    return lanes


def lane_rotation_steps(p: PublicPlan) -> list[int]:
    """Rotation steps the lane sum can need for any batch size (none for a one-stage plan)."""
    if p.first_conv is None or len(p.stage_shapes) == 1:
        return []
    return [1 << j for j in range(int(math.log2(MAX_LANES)))]


def query_table(g: ConvGeometry, lanes: int) -> np.ndarray:
    """int64 [groups * taps, lanes]: the input index query ciphertext ``(group, tap)`` carries in each
    lane (-1: zero)."""
    groups = -(-g.positions // lanes)
    patches = np.vstack([g.patches(), np.full((groups * lanes - g.positions, g.taps), -1, np.int64)])
    # [groups, lanes, taps] -> [groups, taps, lanes]
    return patches.reshape(groups, lanes, g.taps).transpose(0, 2, 1).reshape(groups * g.taps, lanes).copy()


def unit_table(g: ConvGeometry, lanes: int) -> np.ndarray:
    """int64 [groups * cout, lanes]: the convolution's output unit ``p * cout + c`` that ciphertext
    ``(group, c)`` carries in each lane (-1: a padding lane)."""
    groups = -(-g.positions // lanes)
    pos = np.arange(groups * lanes).reshape(groups, 1, lanes)
    ch = np.arange(g.cout).reshape(1, g.cout, 1)
    units = np.where(pos < g.positions, pos * g.cout + ch, -1)
    return units.reshape(groups * g.cout, lanes).astype(np.int64)


def lane_first_stage(st: LinearStage, g: ConvGeometry, lanes: int) -> LinearStage:
    """The first stage on lane-packed ciphertexts: block-diagonal ``kron(I_groups, kernel)`` with
    the per-channel bias (scalar weights)."""
    found = g.kernel_of(st.weight, st.bias)
    if found is None:
        raise HEError("the first affine map is not the convolution its public geometry names")
    kernel, bias = found
    groups = -(-g.positions // lanes)
    w = sp.kron(sp.identity(groups, format="csr"), sp.csr_matrix(kernel), format="csr")
    w.eliminate_zeros()
    return LinearStage(w, np.tile(bias, groups))


def lane_weights(st: LinearStage, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-lane weights of a position-mixing stage on lane-packed inputs: ``[m, n_cts, lanes]``
    with ``W[i, units[j, l]]`` (0 on padding lanes), and the bias in lane 0 only ``[m, lanes]``.

    After the lane sum, slot ``q P + l`` (l > 0) holds the sum over the P lanes from ``q P + l``,
    which runs into query ``q + 1``: every term ``W[i, u] x[u]`` exactly once (from one query or the
    other) and exactly one lane 0, so one bias.  That is the stage's output for an input whose every
    value lies in its own interval, so every slot stays within the sound bounds that size the result
    mask and the modulus headroom (:mod:`capc.he.bounds`; tested slot by slot)."""
    w = st.weight.tocsc()
    m = st.shape[0]
    n_cts, lanes = units.shape
    dense = np.zeros((m, n_cts, lanes))
    valid = units >= 0
    cols = w[:, units[valid]].toarray()  # [m, valid]
    dense[:, valid] = cols
    bias = np.zeros((m, lanes))
    bias[:, 0] = st.bias
    return dense, bias


def lane_coefficients(values: np.ndarray, lanes: int) -> np.ndarray:
    """Real coefficients ``c_t`` (t < 2P) of the polynomial in ``Y = X^(N/2P)`` whose CKKS slots are
    the period-``P`` vector ``values[..., l]`` (slot ``s`` holds ``values[s mod P]``).

    Slot ``j`` of SEAL's CKKS encoding is the evaluation at ``zeta^(3^j)``, ``zeta = e^(i pi / N)``;
    for a polynomial in Y that is ``omega^(3^j mod 4P)`` with ``omega = e^(i pi / 2P)``, and its
    conjugate slot is at ``-3^j``.  The odd residues mod 4P are exactly ``+-3^l`` (l < P), so the
    coefficients are the inverse of evaluating at all primitive 4P-th roots."""
    v = np.asarray(values, dtype=np.float64)
    two_p = 2 * lanes
    evals = np.zeros(v.shape[:-1] + (2 * two_p,), dtype=np.complex128)
    for l in range(lanes):
        e = pow(3, l, 2 * two_p)
        evals[..., e] = v[..., l]
        evals[..., (-e) % (2 * two_p)] = v[..., l]
    odd = np.arange(1, 2 * two_p, 2)
    t = np.arange(two_p)
    omega = np.exp(1j * np.pi / two_p)
    basis = omega ** (-np.outer(odd, t))  # [2P (odd e), 2P (t)]
    coeffs = evals[..., odd] @ basis / two_p
    return coeffs.real


@dataclass(frozen=True)
class NttClasses:
    """SEAL's NTT coefficients of one prime grouped by the value ``Y = X^(N/2P)`` takes there."""

    prime: int
    index: list[np.ndarray]   # per class, the NTT coefficient indices
    powers: np.ndarray        # object [classes, 2P]: Y's value at the class to the power t, mod prime


def ntt_classes(y_ntt: np.ndarray, prime: int, lanes: int) -> NttClasses:
    """Classes from ``y_ntt`` (uint64 [N]): the NTT residues of the monomial ``Y`` mod ``prime``."""
    vals, inverse = np.unique(y_ntt, return_inverse=True)
    if len(vals) != 2 * lanes:
        raise HEError(f"X^(N/{2 * lanes}) takes {len(vals)} values in NTT form, expected {2 * lanes}")
    index = [np.nonzero(inverse == c)[0] for c in range(len(vals))]
    powers = np.array([[pow(int(v), t, prime) for t in range(2 * lanes)] for v in vals], dtype=object)
    return NttClasses(prime, index, powers)


def class_values(coeffs: np.ndarray, scale: float, cls: NttClasses) -> np.ndarray:
    """uint64 ``[..., classes]``: the NTT value at each class of the integer polynomial
    ``round(coeffs * scale)`` mod the prime (exact)."""
    from capc.he.raw import addmod, mulmod

    q = cls.prime
    ints = np.round(np.asarray(coeffs, dtype=np.float64) * scale)
    if np.any(np.abs(ints) >= 2.0 ** 62):
        raise HEError("a lane weight times its scale exceeds 2^62")
    lead = ints.shape[:-1]
    red = np.mod(ints.reshape(-1, ints.shape[-1]).astype(np.int64), np.int64(q)).astype(np.uint64)  # [M, 2P]
    out = np.zeros((red.shape[0], len(cls.index)), dtype=np.uint64)
    for c in range(len(cls.index)):
        acc = np.zeros(red.shape[0], dtype=np.uint64)
        for t in range(red.shape[1]):
            acc = addmod(acc, mulmod(np.ascontiguousarray(red[:, t]), int(cls.powers[c, t]), q), q)
        out[:, c] = acc
    return out.reshape(lead + (len(cls.index),))


__all__ = ["MAX_LANES", "lane_count", "lane_rotation_steps", "query_table", "unit_table", "lane_first_stage",
           "lane_weights", "lane_coefficients", "NttClasses", "ntt_classes", "class_values"]
