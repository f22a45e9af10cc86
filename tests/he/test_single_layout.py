"""Single-query packing's layout algebra, checked in plaintext: a slot simulator applies exactly the
operations the answering party applies to ciphertexts (products with the layout's weight vectors,
rotations, folds, squares) and must reproduce the plan's outputs; the slots outside the declared
result support must stay empty, and every partial sum inside it within the sound bound."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from capc.he import layout as L
from capc.he.bounds import PIXELS, partial_sum_bound
from capc.he.plan import LinearStage, Plan, SquareStage


def _rot(v: np.ndarray, step: int) -> np.ndarray:
    """CKKS left rotation by ``step`` slots."""
    return np.roll(v, -step)


def simulate(plan: Plan, lay: L.SingleLayout, x: np.ndarray) -> np.ndarray:
    """The result slot vector of single packing on plaintext (complex) slots, no encryption: the
    answering party's operations in its order -- products, baby and giant rotations, folds,
    conjugations, squares."""
    slots = lay.slots
    cts = L.query_vectors(lay, x)
    cur = None
    for idx, st in enumerate(plan.stages):
        if isinstance(st, SquareStage):
            assert np.abs(cur.imag).max() <= 1e-9 * max(1.0, np.abs(cur.real).max()), \
                "a square would mix a complex slot's two parts"
            cur = cur * cur
            continue
        if idx == 0 and lay.gather is not None:
            vecs, bias = L.gather_vectors(st, lay.gather, slots)
            acc = (vecs * cts).sum(axis=0)
            folds, conj = lay.gather.fold_steps, lay.gather.complex
        else:
            spec = lay.diags[idx]
            diags, bias = L.diagonal_vectors(st, spec, slots)
            src = cts[0] if cur is None else cur
            if spec.complex_baby:
                src = src + L.monomial_slots(slots) * _rot(src, 1)
            babies = {b: _rot(src, b) for b in spec.baby_shifts}
            acc = np.zeros(slots, dtype=complex)
            for (j, b), vec in L.baby_giant_vectors(diags, spec).items():
                acc += _rot(vec * babies[b], j * spec.baby)
            folds, conj = spec.fold_steps, spec.complex_baby
        for step in folds:
            acc = acc + _rot(acc, step)
        if conj:
            acc = acc + np.conj(acc)
        cur = acc + bias
    return cur


def random_plan(rng: np.random.Generator, sizes: list[int], first_nnz: int) -> Plan:
    """A plan ``affine (sparse, first_nnz per row) -> square -> affine -> ...`` with random weights."""
    stages: list = []
    n = sizes[0]
    for i, m in enumerate(sizes[1:]):
        if i == 0:
            cols = np.stack([rng.choice(n, first_nnz, replace=False) for _ in range(m)])
            w = sp.csr_matrix((rng.normal(size=m * first_nnz), cols.reshape(-1),
                               np.arange(0, m * first_nnz + 1, first_nnz)), shape=(m, n))
        else:
            w = sp.csr_matrix(rng.normal(size=(m, n)) / np.sqrt(n))
        stages.append(LinearStage(w, rng.normal(size=m) * 0.1))
        if i < len(sizes) - 2:
            stages.append(SquareStage(m))
        n = m
    return Plan(stages, (sizes[0],), [])


def _check(plan: Plan, lay: L.SingleLayout, rng: np.random.Generator) -> None:
    x = rng.uniform(0, 1, plan.input_size)
    out = simulate(plan, lay, x)
    c = plan.num_classes
    np.testing.assert_allclose(out[:c], plan.forward(x), rtol=1e-9, atol=1e-9)
    assert np.abs(out.imag).max() <= 1e-9 * np.abs(out.real).max()  # the last map stays real
    out = out.real
    spec = lay.diags[len(plan.stages) - 1]
    support = L.result_support(spec, lay.slots)
    assert not np.any(out[~support]), "a slot outside the declared support carries a value"
    bias = np.zeros(lay.slots)
    bias[:c] = plan.stages[-1].bias
    partial = np.abs(out - bias)[support]
    assert partial.max() <= partial_sum_bound(plan, PIXELS)


@pytest.mark.parametrize("n_pad, m_pad", [(1024, 128), (128, 16), (64, 64), (256, 8), (32, 16)])
def test_spread_rows_cover_every_input_once_per_output(n_pad: int, m_pad: int) -> None:
    period = n_pad
    while period <= n_pad * m_pad and period <= 8192:
        rows = L.spread_rows(n_pad, m_pad, period, n_pad)
        k = n_pad * m_pad // period
        for i in range(m_pad):
            seen = [rows[(i + m_pad * a + s) % period] for a in range(period // m_pad) for s in range(k)]
            assert sorted(seen) == list(range(n_pad)), (period, i)
        period *= 2


def test_cryptonets_layout_spreads_the_first_map() -> None:
    """The 28x28 CryptoNets plan: the first map's output is spread over a period larger than its
    1,024 padded rows, so the 980 -> 100 map needs fewer than its 128 diagonals; the last map uses 16
    diagonals and folds instead of 128 diagonals; and the layout is exact."""
    import keras

    from capc.he import compile_model
    from capc.he.layers import Square

    keras.utils.set_random_seed(0)
    plan = compile_model(keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Conv2D(5, 5, strides=2, padding="same"), Square(),
        keras.layers.Flatten(), keras.layers.Dense(100), Square(), keras.layers.Dense(10)]))
    lay = L.single_layout(plan.public_plan, 8192)
    assert lay.gather is not None and lay.gather.period > 1024
    assert lay.query_cts <= L.MAX_GATHER_CIPHERTEXTS
    mid, last = lay.diags[2], lay.diags[4]
    assert mid.num_diags == 1024 * 128 // lay.gather.period
    assert (last.num_diags, last.fold_steps) == (16, (16, 32, 64))
    _check(plan, lay, np.random.default_rng(0))


@pytest.mark.parametrize("sizes, nnz, slots", [
    ([64, 100, 40, 10], 9, 1024),
    ([64, 60, 50, 10], 9, 512),     # a period the ring only just holds
    ([50, 30, 80, 5], 4, 1024),     # an expanding middle map: no spreading
    ([64, 100, 10], 9, 1024),       # the spread map is the last one
    ([30, 16, 16, 16, 3], 5, 256),
    ([100, 200, 64, 10], 25, 1024),  # many diagonals in the middle map: complex baby steps
])
def test_random_plans_are_exact_for_every_gather_choice(sizes, nnz, slots, monkeypatch) -> None:
    """Every admissible gather period, real or complex (forced), gives the plan's outputs, with nothing
    outside the declared support and partial sums within their bound."""
    rng = np.random.default_rng(sum(sizes))
    plan = random_plan(rng, sizes, nnz)
    base = L.next_pow2(sizes[1])
    periods = [base << j for j in range(int(np.log2(slots // base)) + 1)]
    seen = set()
    for period in periods:
        for cplx in (False, True):
            def forced(m0, k, s, nxt, square_next, p=period, c=cplx):
                spread_ok = nxt is not None and L.next_pow2(nxt[0]) < L.next_pow2(nxt[1]) \
                    and p <= L.next_pow2(nxt[0]) * L.next_pow2(nxt[1])
                return (p if spread_ok else L.next_pow2(m0), c and square_next)
            monkeypatch.setattr(L, "_gather_choice", forced)
            lay = L.single_layout(plan.public_plan, slots)
            if lay.gather is None or lay.query_cts > 64:
                continue
            seen.add((lay.gather.period, lay.gather.complex))
            _check(plan, lay, rng)
    assert any(c for _, c in seen) and any(not c for _, c in seen)
    monkeypatch.undo()
    _check(plan, L.single_layout(plan.public_plan, slots), rng)  # the layout chosen by operation count


def test_complex_baby_steps_halve_the_baby_rotations() -> None:
    """A hidden map with many diagonals takes complex baby steps: rotations of y = x + u rot(x, 1) by
    even shifts, one conjugation, and the layout stays exact."""
    rng = np.random.default_rng(11)
    plan = random_plan(rng, [256, 256, 128, 10], 3)
    lay = L.single_layout(plan.public_plan, 2048)
    mid = lay.diags[2]
    assert mid.complex_baby and lay.conjugate and 1 in lay.rotation_steps
    assert all(b % 2 == 0 for b in mid.baby_shifts) and len(mid.baby_shifts) == mid.baby // 2
    assert not lay.diags[4].complex_baby  # the last map's imaginary parts would reach the querying party
    _check(plan, lay, rng)


def test_diagonal_mode_and_hidden_segments_are_unchanged_in_kind() -> None:
    """A dense first map (no gather) and a hidden segment's periodic result keep their layouts: a
    hidden last map folds to an m'-periodic result that holds every output in slots 0..m-1."""
    rng = np.random.default_rng(3)
    stages = [LinearStage(sp.csr_matrix(rng.normal(size=(40, 1200)) / 35), rng.normal(size=40)), SquareStage(40),
              LinearStage(sp.csr_matrix(rng.normal(size=(10, 40))), rng.normal(size=10))]
    plan = Plan(stages, (1200,), [])  # 1,200 non-zeros a row: too many query ciphertexts to gather
    lay = L.single_layout(plan.public_plan, 2048)
    assert lay.gather is None
    _check(plan, lay, rng)
    hidden = L.single_layout(plan.public_plan, 2048, hidden=True)
    out = simulate(plan, hidden, rng.uniform(0, 1, 1200)).real
    assert hidden.diags[2].fold_steps and not hidden.diags[2].final
    m_pad = hidden.diags[2].m_pad
    np.testing.assert_allclose(out.reshape(-1, m_pad), np.broadcast_to(out[:m_pad], (2048 // m_pad, m_pad)))


def test_gather_choice_is_deterministic_and_bounded() -> None:
    for m0, k_max, slots, nxt, sq in itertools.product([100, 980, 2000], [9, 25, 49], [4096, 8192, 16384],
                                                        [None, (100, 980), (10, 100), (2000, 980)],
                                                        [False, True]):
        got = L._gather_choice(m0, k_max, slots, nxt, sq)
        assert got == L._gather_choice(m0, k_max, slots, nxt, sq)
        if got is None:
            continue
        p, cplx = got
        assert p >= L.next_pow2(m0) and slots % p == 0
        assert not cplx or sq
        assert -(-k_max // ((2 if cplx else 1) * (slots // p))) <= L.MAX_GATHER_CIPHERTEXTS
