"""Slot layouts: where each value lives in which ciphertext, for both packings.

Single-query packing (one query, many slots), S = N/2 slots:

* **First affine map, "gather" mode.**  The querying party knows the first layer's sparsity pattern
  (public plan) and sends ``T`` ciphertexts of blocks of ``P`` slots: slot ``s`` of block ``k`` holds,
  for output row ``rows[s]``, the input that row reads as its ``k``-th non-zero.  The answering party
  multiplies each ciphertext by a plaintext of weights and sums; ``log2(S/P)`` rotate-and-add steps
  fold the blocks together, leaving the output ``P``-periodic with row ``rows[s mod P]`` in slot ``s``.
  This is the im2col idea (proto "v7") for any sparse first layer.  ``P`` is the output's padded size
  with ``rows`` the identity, or -- when the next affine map shrinks -- a larger power of two whose
  arrangement ``rows`` lets that map use ``P`` times fewer diagonals (below).  When a square follows,
  the query may also be *complex*: every slot carries one block in its real and another in its
  imaginary part (half the ciphertexts), the weights are ``(w_re - i w_im) / 2``, and after the folds
  ``z + conj(z)`` keeps ``2 Re z``, the sum over both blocks (one conjugation).  :func:`single_layout`
  picks ``P`` and the packing by an operation count.
* **Other affine maps** use the diagonal method of Halevi and Shoup (CRYPTO 2014) with baby-step /
  giant-step (Halevi-Shoup 2018) on an input that repeats every ``P_in`` slots, slot ``s`` holding
  input ``in_rows[s mod P_in]`` (by default ``P_in = n'`` and the identity):
  ``z = sum_k D_k * rot(x, k)`` with ``D_k[s] = W[s mod m', in_rows[(s + k) mod P_in]]``.  A map that
  does not shrink (``m' >= n'``) uses ``n'`` diagonals.  A shrinking one (``m' < n'``) uses
  ``K = n' m' / P_in`` diagonals and folds ``z + rot(z, m') + ...`` up to ``P_in / 2``, which leaves
  the result ``m'``-periodic; this covers every weight exactly once when slot ``m' a + b`` holds input
  ``(b mod K) + K a`` (:func:`spread_rows`): for output ``i`` the slots ``i + m' a`` and shifts
  ``k < K`` read every input once.  *Complex baby steps* (a hidden map with enough diagonals): with
  ``y = x + u * rot(x, 1)``, ``u`` the slot vector of the monomial ``X^(N/2)`` (``+-i``, exact, no
  level), ``rot(y, 2b)`` carries shifts ``2b`` and ``2b + 1`` at once, and the real part of
  ``(D_2b - conj(u) D_2b+1) / 2 * rot(y, 2b)`` is half their two products: half the baby rotations and
  products, and one conjugation at the end (``z + conj(z)``).
* **The last affine map** writes its diagonals into the first ``P_in`` slots only (rows ``>= C``
  zero): after the same folds slots ``0..C-1`` hold the logits, and the other slots the result can
  reach hold partial sums of logit rows (:func:`result_support`), masked like the logits and counted
  in the hiding report; a map that does not shrink leaves nothing outside slots ``0..C-1``.

Batch packing: one ciphertext per input feature, query ``q`` in slot ``q``; no rotations at all --
or, when the first map is a convolution and the batch leaves room, ``P`` lanes per query
(:mod:`capc.he.lanes`): query ``q`` in slots ``q P .. q P + P - 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from capc.he.errors import ParameterError
from capc.he.plan import LinearStage, PublicPlan

#: Above this many query ciphertexts the first layer switches from gather to diagonal mode.
MAX_GATHER_CIPHERTEXTS = 16


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (>= 1)."""
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def monomial_slots(slots: int) -> np.ndarray:
    """complex [slots]: the slot values of the monomial ``X^(N/2)`` under SEAL's CKKS encoding (slot
    ``j`` is the evaluation at ``zeta^(3^j)``, so ``+i`` for even ``j`` and ``-i`` for odd ``j``).
    A plaintext of it at scale 1 multiplies a ciphertext exactly, without a level."""
    return np.where(np.arange(slots) % 2 == 0, 1j, -1j)


@dataclass(frozen=True)
class DiagSpec:
    """Diagonal-method layout of one affine stage."""

    stage: int          # index into the plan's stages
    m: int              # true output size
    n: int              # true input size
    m_pad: int          # output period m'
    n_pad: int          # input period n'
    num_diags: int      # number of generalised diagonals
    baby: int           # baby-step count g (shifts per giant step)
    fold_steps: tuple[int, ...]
    final: bool         # last stage: diagonals in the first period only, rows >= m zero
    in_period: int = 0  # P_in: the input repeats every P_in slots (0: n_pad)
    in_rows: np.ndarray | None = None  # [P_in] input index in slot s mod P_in (-1: none; None: s mod n_pad)
    complex_baby: bool = False  # baby steps on y = x + u rot(x, 1), two shifts a rotation; ends with a conjugation

    @property
    def period(self) -> int:
        """Slots per period of the diagonals (the input's for a shrinking map, else the output's)."""
        return max(self.m_pad, self.in_period or self.n_pad)

    @property
    def giants(self) -> int:
        return -(-self.num_diags // self.baby)

    @property
    def baby_shifts(self) -> list[int]:
        """The rotations of the baby-step input (of x, or of y for complex baby steps)."""
        return list(range(0, self.baby, 2)) if self.complex_baby else list(range(self.baby))

    @property
    def rotation_steps(self) -> set[int]:
        steps = set(self.baby_shifts) | {self.baby * j for j in range(1, self.giants)} | set(self.fold_steps)
        if self.complex_baby:
            steps.add(1)
        steps.discard(0)
        return steps

    @property
    def key_switches(self) -> int:
        """Rotations and conjugations the stage costs."""
        baby = len(self.baby_shifts) - 1 + (2 if self.complex_baby else 0)  # + rot(x, 1) and the conjugation
        return baby + self.giants - 1 + len(self.fold_steps)


@dataclass(frozen=True)
class GatherSpec:
    """Gather-mode layout of the first affine stage: blocks of ``period`` slots, slot ``s`` of a block
    computing output row ``rows[s]``; with ``complex``, each ciphertext carries blocks in the real and
    the imaginary parts of its slots."""

    m: int
    period: int
    rows: np.ndarray     # [period] output row per slot of a block, -1 = none
    blocks_per_ct: int   # blocks along the slots of one ciphertext (S / period)
    num_cts: int
    table: np.ndarray    # [num_cts * parts * blocks_per_ct, period] column index, -1 = zero
    fold_steps: tuple[int, ...]
    complex: bool = False

    @property
    def parts(self) -> int:
        """Real numbers per slot the query uses (2 for a complex query)."""
        return 2 if self.complex else 1


@dataclass(frozen=True)
class SingleLayout:
    """Full single-query layout: first-layer mode, per-stage specs, rotations, query size."""

    slots: int
    gather: GatherSpec | None
    diags: dict[int, DiagSpec]
    rotation_steps: list[int]
    query_cts: int
    input_period: int    # n' of the first stage in diagonal mode (0 in gather mode)
    conjugate: bool = False  # some stage conjugates: the context needs the conjugation key


@dataclass(frozen=True)
class BatchLayout:
    """Batch layout: up to ``batch_size`` queries per ciphertext, ``lanes`` slots per query.

    With one lane, one ciphertext per input feature (query ``q`` in slot ``q``) and one result
    ciphertext per output.  With ``P > 1`` lanes (:mod:`capc.he.lanes`), ``query_table[ct, l]`` is the
    input feature in lane ``l`` of query ciphertext ``ct`` and ``result_units[ct, l]`` the output in
    lane ``l`` of result ciphertext ``ct`` (-1: none); slot ``q P + l`` is query ``q``'s lane ``l``.
    """

    slots: int
    batch_size: int
    query_cts: int
    rotation_steps: list[int]
    lanes: int = 1
    query_table: np.ndarray | None = None
    result_units: np.ndarray | None = None
    output_size: int = 0
    conjugate: bool = False  # the lane-summed stage's outputs are finished in pairs (conjugation key)


#: Relative costs for choosing layouts, in key switches (a rotation or conjugation at the level where
#: the second map runs; measured on SEAL at N = 16384): a plaintext product with its sum, and one query
#: ciphertext (the querying party's encryption and serialisation, the answering party's load and
#: product).
_COST_PRODUCT = 0.08
_COST_QUERY_CT = 1.5


def _baby_choice(num: int, complex_ok: bool) -> tuple[int, bool]:
    """(g, complex baby steps) with the fewest key switches, then the fewest products, for ``num``
    diagonals; g a power of two (layers then share rotation keys)."""
    best: tuple[float, int, bool] | None = None
    g = 1
    while g <= max(1, next_pow2(num)):
        for cplx in ((False, True) if complex_ok and g >= 4 else (False,)):
            babies = (g // 2 - 1 + 2) if cplx else g - 1
            cost = babies + (-(-num // g) - 1) + _COST_PRODUCT * (num / 2 if cplx else num)
            if best is None or cost < best[0] - 1e-9:
                best = (cost, g, cplx)
        g *= 2
    assert best is not None
    return best[1], best[2]


def _diag_spec(stage: int, m: int, n: int, slots: int, final: bool, in_period: int = 0,
               in_rows: np.ndarray | None = None) -> DiagSpec:
    m_pad, n_pad = next_pow2(m), next_pow2(n)
    if max(m_pad, n_pad) > slots:
        raise ParameterError(
            f"stage {stage} ({n} -> {m}) needs {max(m_pad, n_pad)} slots in single-query packing "
            f"but the ring gives {slots} (N = {2 * slots}); use a larger poly_modulus_degree")
    p_in = in_period or n_pad
    if m_pad >= n_pad:
        if p_in != n_pad:
            raise ParameterError(f"stage {stage}: a spread input layout needs a shrinking map")
        num = n_pad
        folds: tuple[int, ...] = ()
    else:
        num = n_pad * m_pad // p_in
        folds = tuple(m_pad << j for j in range(int(math.log2(p_in // m_pad))))
    # the last map's imaginary parts would reach the querying party: its baby steps stay real
    g, cplx = _baby_choice(num, complex_ok=not final)
    return DiagSpec(stage, m, n, m_pad, n_pad, num, g, folds, final,
                    p_in if in_rows is not None else 0, in_rows, cplx)


def spread_rows(n_pad: int, m_pad: int, period: int, n: int) -> np.ndarray:
    """int64 [period]: the input index slot ``s`` must hold so that a shrinking map ``n' -> m'`` on
    an input repeating every ``period`` slots needs only ``K = n' m' / period`` diagonals: slot
    ``m' a + b`` holds ``(b mod K) + K a`` (-1 beyond the ``n`` real inputs).  For every output ``i``
    and shift ``k < K`` the slots ``i + m' a`` then read each input exactly once."""
    k = n_pad * m_pad // period
    s = np.arange(period)
    rows = (s % m_pad) % k + k * (s // m_pad)
    return np.where(rows < n, rows, -1).astype(np.int64)


def result_support(spec: DiagSpec, slots: int) -> np.ndarray:
    """bool [slots]: the slots the last map's result can carry anything but CKKS error in (its
    diagonals' rows ``< m`` in the first period, spread by the folds).  Slots ``0..m-1`` hold the
    outputs; any other slot in the support holds a partial sum of an output row."""
    sup = np.zeros(slots, dtype=bool)
    s = np.arange(spec.period)
    sup[:spec.period] = (s % spec.m_pad) < spec.m
    for step in spec.fold_steps:
        sup |= np.roll(sup, -step)
    return sup


def _gather_table(p: PublicPlan, rows: np.ndarray, k_max: int, blocks: int) -> np.ndarray:
    """[blocks, period] column of block ``k``'s slot ``s``: row ``rows[s]``'s ``k``-th non-zero."""
    table = np.full((blocks, rows.size), -1, dtype=np.int64)
    indptr, indices = p.first_indptr, p.first_indices
    counts = np.diff(indptr)
    valid = rows >= 0
    r = np.where(valid, rows, 0)
    for k in range(k_max):
        ok = valid & (counts[r] > k)
        table[k, ok] = indices[indptr[r[ok]] + k]
    return table


def _gather_choice(m0: int, k_max: int, slots: int, nxt: tuple[int, int] | None,
                   square_next: bool) -> tuple[int, bool] | None:
    """(period, complex query) of the gather with the lowest operation count of the first two maps
    (folds, conjugations, rotations, products, query ciphertexts) within
    :data:`MAX_GATHER_CIPHERTEXTS`; None if even the smallest query is larger.  A complex query needs a
    square next (the conjugation keeps the real part before it).  The period grows past the padded
    output size only when the next map shrinks."""
    m0_pad = next_pow2(m0)
    spread = nxt is not None and next_pow2(nxt[0]) < next_pow2(nxt[1])
    best: tuple[float, int, bool] | None = None
    p = m0_pad
    while p <= slots and (p == m0_pad or (spread and p <= next_pow2(nxt[0]) * next_pow2(nxt[1]))):
        for cplx in ((False, True) if square_next else (False,)):
            parts = 2 if cplx else 1
            cts = -(-k_max // (parts * (slots // p)))
            if cts > MAX_GATHER_CIPHERTEXTS:
                continue
            cost = int(math.log2(slots // p)) + (1 if cplx else 0) + _COST_PRODUCT * cts + _COST_QUERY_CT * cts
            if nxt is not None:
                in_p = p if spread else 0
                spec = _diag_spec(-1, nxt[0], nxt[1], slots, False, in_p, np.zeros(max(in_p, 1), np.int64))
                cost += spec.key_switches + _COST_PRODUCT * spec.num_diags / (2 if spec.complex_baby else 1)
            if best is None or cost < best[0] - 1e-9:
                best = (cost, p, cplx)
        if not spread:
            break
        p *= 2
    return None if best is None else (best[1], best[2])


def single_layout(p: PublicPlan, slots: int, hidden: bool = False) -> SingleLayout:
    """Compute the single-query layout of ``p`` for ``slots`` CKKS slots.

    ``hidden``: ``p`` is a hybrid plan's segment before the last, whose outputs are pre-activations
    masked in every slot, not logits: its last stage may then leave copies of its outputs in other
    slots (a periodic result, found in slots ``0..m-1``), which allows the gather mode for a one-stage
    segment and ``m'`` instead of ``n'`` diagonals for a shrinking last stage.

    Raises:
        ParameterError: if a layer does not fit the slots.
    """
    stages = p.stage_shapes
    last = len(stages) - 1
    m0 = stages[0][1]
    counts = np.diff(p.first_indptr)
    k_max = int(counts.max()) if counts.size else 0
    m0_pad = next_pow2(m0)
    gather = None
    if (last > 0 or hidden) and m0_pad <= slots and k_max > 0:
        # the map after the first one (past its square) on the gather's output
        nxt = next(((m, n) for kind, m, n in stages[1:] if kind == "linear"), None)
        square_next = last > 0 and stages[1][0] == "square"
        choice = _gather_choice(m0, k_max, slots, nxt if last > 0 else None, square_next)
        if choice is not None:
            period, cplx = choice
            if period == m0_pad:
                rows = np.where(np.arange(period) < m0, np.arange(period), -1).astype(np.int64)
            else:
                assert nxt is not None
                rows = spread_rows(next_pow2(nxt[1]), next_pow2(nxt[0]), period, m0)
            bpc = slots // period
            parts = 2 if cplx else 1
            num_cts = -(-k_max // (parts * bpc))
            folds = tuple(period << j for j in range(int(math.log2(bpc))))
            gather = GatherSpec(m0, period, rows, bpc, num_cts,
                                _gather_table(p, rows, k_max, num_cts * parts * bpc), folds, cplx)
    diags: dict[int, DiagSpec] = {}
    first_diag = True
    for idx, (kind, m, n) in enumerate(stages):
        if kind != "linear" or (idx == 0 and gather is not None):
            continue
        spread = gather is not None and first_diag and gather.period != next_pow2(gather.m)
        diags[idx] = _diag_spec(idx, m, n, slots, idx == last and not hidden,
                                gather.period if spread else 0, gather.rows if spread else None)
        first_diag = False
    steps: set[int] = set()
    if gather is not None:
        steps.update(gather.fold_steps)
    for d in diags.values():
        steps.update(d.rotation_steps)
    steps.discard(0)
    conjugate = (gather is not None and gather.complex) or any(d.complex_baby for d in diags.values())
    query_cts = gather.num_cts if gather is not None else 1
    return SingleLayout(slots, gather, diags, sorted(steps), query_cts,
                        0 if gather is not None else diags[0].n_pad, conjugate)


def gather_vectors(stage: LinearStage, g: GatherSpec, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """The first map's weight vectors in gather mode, ``[num_cts, slots]`` (slot ``s`` of block ``k``:
    row ``rows[s]``'s ``k``-th non-zero weight, matching the query's :func:`query_vectors`; complex
    ``(w_re - i w_im) / 2`` for a complex query), and its bias vector ``[slots]`` laid out like the
    folded output."""
    w = stage.weight
    counts = np.diff(w.indptr)
    valid = g.rows >= 0
    rows = np.where(valid, g.rows, 0)
    vals = np.zeros((g.num_cts * g.parts * g.blocks_per_ct, g.period))
    for k in range(int(counts.max())):
        ok = valid & (counts[rows] > k)
        vals[k, ok] = w.data[w.indptr[rows[ok]] + k]
    bias = np.tile(np.where(valid, stage.bias[rows], 0.0), slots // g.period)
    if g.complex:
        parts = vals.reshape(g.num_cts, 2, slots)
        return (parts[:, 0] - 1j * parts[:, 1]) / 2.0, bias
    return vals.reshape(g.num_cts, slots), bias


def diagonal_vectors(stage: LinearStage, spec: DiagSpec, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """The generalised diagonals ``D_k`` ``[num_diags, slots]`` of an affine map (see the module
    docstring), and its bias vector ``[slots]``: in slots ``0..m-1`` for the last map, else repeating
    every ``m'`` slots like its output."""
    wp = np.zeros((spec.m_pad, spec.n_pad + 1))  # the extra zero column serves input index -1
    wp[: stage.shape[0], : stage.shape[1]] = stage.weight.toarray()
    period = spec.period
    s = np.arange(period)
    k = np.arange(spec.num_diags)[:, None]
    if spec.in_rows is None:
        cols = (s[None, :] + k) % spec.n_pad
    else:
        cols = spec.in_rows[(s[None, :] + k) % spec.in_period]
    d = wp[s % spec.m_pad, cols]
    bias = np.zeros(slots)
    if spec.final:
        d[:, (s % spec.m_pad) >= spec.m] = 0.0
        diags = np.zeros((spec.num_diags, slots))
        diags[:, :period] = d
        bias[: spec.m] = stage.bias
        return diags, bias
    b = np.zeros(spec.m_pad)
    b[: spec.m] = stage.bias
    return np.tile(d, (1, slots // period)), np.tile(b, slots // spec.m_pad)


def baby_giant_vectors(diags: np.ndarray, spec: DiagSpec) -> dict[tuple[int, int], np.ndarray]:
    """The plaintexts of the baby-step / giant-step evaluation ``z = sum_j rot(sum_b P[j, b] *
    rot(src, b), j g)``, keyed ``(j, b)`` with ``b`` a baby shift of :attr:`DiagSpec.baby_shifts`
    (``src`` is ``x``, or ``y = x + u rot(x, 1)`` for complex baby steps; all-zero ones left out).
    Each is pre-rotated by ``-j g`` so that the giant rotation lines it up; ``g`` is even for complex
    baby steps, so the rotations leave ``u`` unchanged."""
    out: dict[tuple[int, int], np.ndarray] = {}
    g = spec.baby
    u = monomial_slots(diags.shape[1]) if spec.complex_baby else None
    for j in range(spec.giants):
        for b in spec.baby_shifts:
            k = j * g + b
            if k >= spec.num_diags:
                continue
            vec = np.roll(diags[k], j * g)
            if u is not None:
                # Re((d + conj(u) d') / 2 * (x + u x')) = (d x + d' x') / 2 because u is +-i and
                # u conj(u) = 1 (even rotations keep u); the conjugation at the end doubles it
                nxt = np.roll(diags[k + 1], j * g) if k + 1 < spec.num_diags else np.zeros(diags.shape[1])
                vec = (vec + np.conj(u) * nxt) / 2.0
            if np.any(vec):
                out[(j, b)] = vec
    return out


def batch_rotation_steps(p: PublicPlan, slots: int) -> list[int]:
    """Rotation steps batch packing may need for any batch size (the lane sum's)."""
    from capc.he.lanes import lane_rotation_steps

    return [s for s in lane_rotation_steps(p) if s < slots]


def batch_layout(p: PublicPlan, slots: int, batch: int | None = None) -> BatchLayout:
    """Batch layout for ``batch`` queries (None: the one-lane layout for up to ``slots``)."""
    from capc.he import lanes as ln

    steps = batch_rotation_steps(p, slots)
    # a lane-summed stage followed by a square finishes its outputs two at a time (capc.he.batch)
    conj = bool(steps) and len(p.stage_shapes) > 3
    out = p.stage_shapes[-1][1]
    lanes = 1 if batch is None else ln.lane_count(p, int(batch), slots)
    if lanes == 1:
        return BatchLayout(slots, slots, p.input_size, steps, 1, None, None, out, conj)
    g = p.first_conv
    assert g is not None
    table = ln.query_table(g, lanes)
    if len(p.stage_shapes) == 1:
        units = ln.unit_table(g, lanes)
    else:
        units = np.full((out, lanes), -1, dtype=np.int64)
        units[:, 0] = np.arange(out)
    return BatchLayout(slots, slots // lanes, table.shape[0], steps, lanes, table, units, out, conj)


def result_values(layout: BatchLayout, vecs: list[np.ndarray] | np.ndarray, batch: int) -> np.ndarray:
    """The outputs ``[batch, output_size]`` held by decoded result slot vectors (one per result
    ciphertext), read back through the layout."""
    if layout.lanes == 1:
        return np.stack([np.asarray(v)[:batch] for v in vecs], axis=1)
    units = layout.result_units
    assert units is not None
    if len(vecs) != units.shape[0]:
        raise ParameterError(f"{len(vecs)} result vectors for a layout of {units.shape[0]}")
    out = np.zeros((batch, layout.output_size), dtype=np.asarray(vecs[0]).dtype)
    p = layout.lanes
    for j, v in enumerate(vecs):
        lanes = np.asarray(v)[:batch * p].reshape(batch, p)
        ok = units[j] >= 0
        out[:, units[j][ok]] = lanes[:, ok]
    return out


def query_vectors(layout: SingleLayout | BatchLayout, values: np.ndarray) -> np.ndarray:
    """The slot vectors of a query: ``[query_cts, slots]`` for one input vector (single packing),
    ``[input_size, B]`` for ``[B, input_size]`` inputs (batch packing, query ``q`` in slot ``q``).

    The querying party encrypts these vectors; in the hybrid protocol the answering party lays its
    own mask out the same way to remove it from a re-encrypted activation (the layout is linear)."""
    if isinstance(layout, BatchLayout):
        vals = np.asarray(values, dtype=np.float64)
        if layout.lanes == 1:
            return np.ascontiguousarray(vals.T)
        assert layout.query_table is not None
        ext = np.concatenate([vals, np.zeros((vals.shape[0], 1))], axis=1)  # column -1 reads 0
        gathered = ext[:, layout.query_table]  # [B, cts, lanes]
        return np.ascontiguousarray(gathered.transpose(1, 0, 2).reshape(layout.query_cts, -1))
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if layout.gather is not None:
        g = layout.gather
        vals = np.where(g.table >= 0, v[np.maximum(g.table, 0)], 0.0)
        if g.complex:  # blocks in the real parts, then as many in the imaginary parts, per ciphertext
            parts = vals.reshape(g.num_cts, 2, layout.slots)
            return parts[:, 0] + 1j * parts[:, 1]
        return vals.reshape(g.num_cts, layout.slots)
    per = layout.input_period
    return np.tile(np.pad(v, (0, per - v.size)), layout.slots // per)[None, :]
