"""Slot layouts: where each value lives in which ciphertext, for both packings.

Single-query packing (one query, many slots), S = N/2 slots:

* **First affine map, "gather" mode.**  The querying party knows the first layer's sparsity pattern
  (public plan) and sends ``T`` ciphertexts whose slots hold, for output row ``i`` (padded to
  ``m' = 2^ceil(log2 m)``) and non-zero ``k`` of that row, the input value ``x[col_k(i)]``: block ``k``
  occupies slots ``[j m', (j+1) m')`` of ciphertext ``k // (S/m')``.  The answering party multiplies
  each ciphertext by a plaintext of weights and sums; ``log2(S/m')`` rotate-and-add steps fold the
  blocks together.  This is the im2col idea (proto "v7") for any sparse first layer.
* **Other affine maps** use the diagonal method of Halevi and Shoup (CRYPTO 2014) with baby-step /
  giant-step (Halevi–Shoup 2018): the input of width ``n'`` is ``n'``-periodic in all slots;
  ``z = sum_k D_k * rot(x, k)`` with ``D_k[s] = W[s mod m', (s + k) mod n']`` uses ``min(m', n')``
  diagonals; when ``m' < n'`` a fold ``z + rot(z, m') + ...`` makes the result ``m'``-periodic.
* **The last affine map** uses ``n'`` diagonals, no fold, and zero rows beyond ``C``: only slots
  ``0..C-1`` carry logits, so no copy of them lands elsewhere in the ciphertext.

Batch packing: one ciphertext per input feature, query ``q`` in slot ``q``; no rotations at all --
or, when the first map is a convolution and the batch leaves room, ``P`` lanes per query
(:mod:`capc.he.lanes`): query ``q`` in slots ``q P .. q P + P - 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from capc.he.errors import ParameterError
from capc.he.plan import PublicPlan

#: Above this many query ciphertexts the first layer switches from gather to diagonal mode.
MAX_GATHER_CIPHERTEXTS = 16


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (>= 1)."""
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


@dataclass(frozen=True)
class DiagSpec:
    """Diagonal-method layout of one affine stage."""

    stage: int          # index into the plan's stages
    m: int              # true output size
    n: int              # true input size
    m_pad: int          # output period m'
    n_pad: int          # input period n'
    num_diags: int      # number of generalised diagonals
    baby: int           # baby-step count g
    fold_steps: tuple[int, ...]
    final: bool         # last stage: rows >= m are zero and no fold

    @property
    def giants(self) -> int:
        return -(-self.num_diags // self.baby)


@dataclass(frozen=True)
class GatherSpec:
    """Gather-mode layout of the first affine stage."""

    m: int
    m_pad: int
    blocks_per_ct: int
    num_cts: int
    table: np.ndarray    # [num_cts * blocks_per_ct, m_pad] column index, -1 = zero
    fold_steps: tuple[int, ...]


@dataclass(frozen=True)
class SingleLayout:
    """Full single-query layout: first-layer mode, per-stage specs, rotations, query size."""

    slots: int
    gather: GatherSpec | None
    diags: dict[int, DiagSpec]
    rotation_steps: list[int]
    query_cts: int
    input_period: int    # n' of the first stage in diagonal mode (0 in gather mode)


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


def _baby_steps(num_diags: int) -> int:
    # g ~ sqrt(D) minimises (g - 1) + (D / g - 1) rotations; powers of two let layers share keys.
    return next_pow2(int(math.isqrt(max(num_diags - 1, 0))) + 1) if num_diags > 1 else 1


def _diag_spec(stage: int, m: int, n: int, slots: int, final: bool) -> DiagSpec:
    m_pad, n_pad = next_pow2(m), next_pow2(n)
    if max(m_pad, n_pad) > slots:
        raise ParameterError(
            f"stage {stage} ({n} -> {m}) needs {max(m_pad, n_pad)} slots in single-query packing "
            f"but the ring gives {slots} (N = {2 * slots}); use a larger poly_modulus_degree")
    if final or m_pad >= n_pad:
        num = n_pad
        folds: tuple[int, ...] = ()
    else:
        num = m_pad
        folds = tuple(m_pad << j for j in range(int(math.log2(n_pad // m_pad))))
    g = min(_baby_steps(num), num)
    return DiagSpec(stage, m, n, m_pad, n_pad, num, g, folds, final)


def _gather_table(p: PublicPlan, m: int, m_pad: int, k_max: int, rows_total: int) -> np.ndarray:
    table = np.full((rows_total, m_pad), -1, dtype=np.int64)
    indptr, indices = p.first_indptr, p.first_indices
    counts = np.diff(indptr)
    for k in range(k_max):
        rows = np.nonzero(counts > k)[0]
        table[k, rows] = indices[indptr[rows] + k]
    return table


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
        bpc = slots // m0_pad
        num_cts = -(-k_max // bpc)
        if num_cts <= MAX_GATHER_CIPHERTEXTS:
            folds = tuple(m0_pad << j for j in range(int(math.log2(bpc))))
            gather = GatherSpec(m0, m0_pad, bpc, num_cts,
                                _gather_table(p, m0, m0_pad, k_max, num_cts * bpc), folds)
    diags: dict[int, DiagSpec] = {}
    for idx, (kind, m, n) in enumerate(stages):
        if kind != "linear" or (idx == 0 and gather is not None):
            continue
        diags[idx] = _diag_spec(idx, m, n, slots, idx == last and not hidden)
    steps: set[int] = set()
    if gather is not None:
        steps.update(gather.fold_steps)
    for d in diags.values():
        steps.update(range(1, d.baby))
        steps.update(d.baby * j for j in range(1, d.giants))
        steps.update(d.fold_steps)
    steps.discard(0)
    query_cts = gather.num_cts if gather is not None else 1
    return SingleLayout(slots, gather, diags, sorted(steps), query_cts,
                        0 if gather is not None else diags[0].n_pad)


def batch_rotation_steps(p: PublicPlan, slots: int) -> list[int]:
    """Rotation steps batch packing may need for any batch size (the lane sum's)."""
    from capc.he.lanes import lane_rotation_steps

    return [s for s in lane_rotation_steps(p) if s < slots]


def batch_layout(p: PublicPlan, slots: int, batch: int | None = None) -> BatchLayout:
    """Batch layout for ``batch`` queries (None: the one-lane layout for up to ``slots``)."""
    from capc.he import lanes as ln

    steps = batch_rotation_steps(p, slots)
    out = p.stage_shapes[-1][1]
    lanes = 1 if batch is None else ln.lane_count(p, int(batch), slots)
    if lanes == 1:
        return BatchLayout(slots, slots, p.input_size, steps, 1, None, None, out)
    g = p.first_conv
    assert g is not None
    table = ln.query_table(g, lanes)
    if len(p.stage_shapes) == 1:
        units = ln.unit_table(g, lanes)
    else:
        units = np.full((out, lanes), -1, dtype=np.int64)
        units[:, 0] = np.arange(out)
    return BatchLayout(slots, slots // lanes, table.shape[0], steps, lanes, table, units, out)


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
        tab = layout.gather.table
        vals = np.where(tab >= 0, v[np.maximum(tab, 0)], 0.0)
        return vals.reshape(layout.gather.num_cts, layout.slots)
    per = layout.input_period
    return np.tile(np.pad(v, (0, per - v.size)), layout.slots // per)[None, :]
