"""Fast batch-packing evaluation: affine stages as exact RNS matrix products, squares in SEAL.

In batch packing every activation is one ciphertext (query ``q`` in slot ``q``), so an affine stage
``y_i = sum_j W_ij x_j + b_i`` is, per RNS prime ``p`` and per NTT coefficient, the integer product
``Y = W_int X mod p`` (a plaintext scalar multiplies every residue by ``W_int mod p``; a constant
plaintext is the same value in every NTT slot).  :class:`BatchEngine` therefore

1. reads all query ciphertexts as residue arrays ``[n, 2, L, N]`` (from the residue planes of
   :mod:`capc.he.residue_wire`, or from SEAL objects through :mod:`capc.he.raw`),
2. computes each affine stage with float64 BLAS on limbs (:func:`capc.he.raw.matmul_mod`, the limbs
   split and recombined by the compiled kernels of ``capc.he._rns``), with the
   weights quantised to ``WEIGHT_BITS`` significant bits times a power of two (relative weight error
   <= 2^-WEIGHT_BITS of the layer's largest weight) and the bias added at the product scale; the
   product runs in column blocks of ``CHUNK`` NTT slots (cache-sized) on two threads,
3. hands the ciphertexts to SEAL only for what needs key material or the NTT, split over ``workers``
   processes (SEAL's bindings hold the GIL) that exchange residues through shared memory: rescale and
   square each affine output, *without* relinearising or rescaling the square.  Relinearisation is
   linear and rescaling commutes with sums up to rounding, so the next affine stage runs on the size-3 squares one level up (at scale
   Delta^2) and only its outputs are relinearised and rescaled twice: 100 relinearisations instead of
   980 for CryptoNets, and no key-switching noise multiplied by the weights,
4. finishes the last stage in SEAL and returns ordinary SEAL ciphertexts for masking.

Scales follow :mod:`capc.he.evaluator`: the weights of a stage are encoded at ``q Delta / s_in``, so
after the rescale each affine stage is back at ``Delta``; after a square that was not rescaled the
same weight scale ``q_a q_b / Delta`` times ``s_in = Delta^2`` gives ``q_a q_b Delta``, which the two
rescales bring back to ``Delta`` at the level the evaluator's schedule expects.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np
import scipy.sparse as sp
import tenseal.sealapi as seal

from capc.he import raw
from capc.he.errors import HEError
from capc.he.plan import LinearStage, SquareStage
from capc.he.seal import _Scratch, make_context
from capc.he.worker_guard import exit_with_parent

#: Significant bits kept per quantised weight (see module docstring).
WEIGHT_BITS = 22

#: NTT slots per column block of an affine stage (a block's limbs and product fit in L2 cache).
CHUNK = 1024

#: Limb width of the full-residue lane weights (:class:`_LaneLinear`).
LANE_LIMB_BITS = 20


def default_workers() -> int:
    """Default worker-process count: ``min(2, os.cpu_count())``."""
    return max(1, min(2, os.cpu_count() or 1))


class _SealSide:
    """SEAL objects for rescale / square / relinearise (one per process)."""

    def __init__(self, parms: bytes, relin: bytes, security_level: int, galois: bytes = b"") -> None:
        self.scratch = _Scratch()
        p = self.scratch.load(seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS), parms)
        self.ctx = make_context(p, security_level)
        self.relin = self.scratch.load(seal.RelinKeys(), relin, self.ctx)
        self.galois = self.scratch.load(seal.GaloisKeys(), galois, self.ctx) if galois else None
        self.ev = seal.Evaluator(self.ctx)
        self._consts: dict[tuple[Any, float], seal.Plaintext] = {}
        self.pids = []
        cd = self.ctx.first_context_data()
        while cd is not None:
            self.pids.append(cd.parms_id())
            cd = cd.next_context_data()

    def finish_block(self, y: np.ndarray, out: np.ndarray, lo: int, hi: int, level: int, scale_in: float,
                     drops: int, square: bool, delta: float, lanesum: int = 1, paired: bool = False) -> float:
        """Finish an affine stage on the work units ``lo .. hi`` of its outputs ``y`` (each size 2 or
        3, at ``level``, scale ``scale_in``): rescale ``drops`` times, relinearising a size-3 input after
        the first rescale (relinearisation is linear, so one per affine output replaces one per square;
        before the last rescale, which divides its noise by a prime), set the scale to ``delta``, sum
        ``lanesum`` lanes into lane 0 (:mod:`capc.he.lanes`), and square without relinearising when
        ``square``; write the residues to ``out`` and return the output scale.  A unit is one output, or with ``paired`` (a lane-summed
        stage, see :func:`pair_units`) two outputs finished as one complex ciphertext."""
        scale = 0.0
        units = pair_units(y.shape[0]) if paired else [(j, -1) for j in range(y.shape[0])]
        for a, b in units[lo:hi]:
            if b < 0:
                ct = self.finish(y[a], level, scale_in, drops, delta, lanesum)
                if paired:  # doubled like the pairs' outputs (the next stage takes 1/4 after the square)
                    self.ev.add_inplace(ct, ct)
                cts = [(a, ct)]
            else:
                cts = list(zip((a, b), self.finish_pair(y[a], y[b], level, scale_in, drops, delta, lanesum)))
            for j, ct in cts:
                if square:
                    self.ev.square_inplace(ct)
                out[j] = raw.residues(ct)
                scale = ct.scale
        return scale

    def _i_sqrt2(self, ct: seal.Ciphertext, sign: float) -> seal.Plaintext:
        """``sign * i sqrt 2`` in every slot at ``ct``'s level: the polynomial ``sign (X^(N/4) +
        X^(3N/4))``, exact at scale 1 (no level, no rounding)."""
        key = (tuple(ct.parms_id()), sign)
        if key not in self._consts:
            pt = seal.Plaintext()
            slots = ct.poly_modulus_degree() // 2
            seal.CKKSEncoder(self.ctx).encode([sign * 1j * math.sqrt(2.0)] * slots, ct.parms_id(), 1.0, pt)
            self._consts[key] = pt
        return self._consts[key]

    def finish_pair(self, ya: np.ndarray, yb: np.ndarray, level: int, scale_in: float, drops: int,
                    delta: float, lanesum: int) -> tuple[seal.Ciphertext, seal.Ciphertext]:
        """Two outputs through one finish: ``z = y_a + c y_b`` with ``c = i sqrt 2`` (exact, see
        :meth:`_i_sqrt2`), one rescale chain, one relinearisation and one lane sum, then one
        conjugation splits it: ``z + conj(z) = 2 S(y_a)`` and ``(z - conj(z)) (-c) = 4 S(y_b)`` for the
        lane sum S.  The stage's weights carry 1/2 for ``y_b`` (:func:`pair_scales`), so both come out
        as twice the lane sums -- three fewer key switches per pair than two finishes."""
        if self.galois is None:
            raise HEError("the paired lane sum needs Galois keys the public context does not carry")
        z = raw.new_ciphertext(self.ctx, self.pids[level], ya, scale_in)
        zb = raw.new_ciphertext(self.ctx, self.pids[level], yb, scale_in)
        self.ev.multiply_plain_inplace(zb, self._i_sqrt2(zb, 1.0))
        self.ev.add_inplace(z, zb)
        del zb
        z = self._finish_ct(z, drops, delta, lanesum)
        conj = seal.Ciphertext()
        self.ev.complex_conjugate(z, self.galois, conj)
        real = seal.Ciphertext()
        self.ev.add(z, conj, real)
        self.ev.sub_inplace(z, conj)
        self.ev.multiply_plain_inplace(z, self._i_sqrt2(z, -1.0))
        return real, z

    def finish(self, y: np.ndarray, level: int, scale_in: float, drops: int, delta: float,
               lanesum: int = 1) -> seal.Ciphertext:
        """One affine output ``y`` ([size, L, N] residues) rescaled ``drops`` times and relinearised,
        at scale ``delta``, its ``lanesum`` lanes summed into lane 0 (rotations by 1, 2, 4, ..: slot
        ``q P`` then holds query ``q``'s sum; the rotations run after the rescales, at fewer primes)."""
        return self._finish_ct(raw.new_ciphertext(self.ctx, self.pids[level], y, scale_in), drops, delta, lanesum)

    def _finish_ct(self, ct: seal.Ciphertext, drops: int, delta: float, lanesum: int) -> seal.Ciphertext:
        for d in range(drops):
            self.ev.rescale_to_next_inplace(ct)
            if d == 0 and ct.size() > 2:
                # before the last rescale, which divides the key switch's noise by a prime
                self.ev.relinearize_inplace(ct, self.relin)
        ct.scale = delta  # removes float drift only: the true scale is Delta up to rounding
        step = 1
        while step < lanesum:
            if self.galois is None:
                raise HEError("the lane sum needs Galois keys the public context does not carry")
            rot = seal.Ciphertext()
            self.ev.rotate_vector(ct, step, self.galois, rot)
            self.ev.add_inplace(ct, rot)
            step *= 2
        return ct

    def close(self) -> None:
        self.scratch.close()


_WORKER: _SealSide | None = None


def _worker_init(parms: bytes, relin: bytes, security_level: int, galois: bytes) -> None:
    global _WORKER
    exit_with_parent()
    _WORKER = _SealSide(parms, relin, security_level, galois)


def _worker_ready() -> bool:
    return _WORKER is not None


def _worker_finish(in_name: str, out_name: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                   lo: int, hi: int, level: int, scale_in: float, drops: int, square: bool,
                   delta: float, lanesum: int, paired: bool) -> float:
    assert _WORKER is not None
    shm_in, shm_out = SharedMemory(in_name), SharedMemory(out_name)
    try:
        y = np.ndarray(in_shape, dtype=np.uint64, buffer=shm_in.buf)
        out = np.ndarray(out_shape, dtype=np.uint64, buffer=shm_out.buf)
        scale = _WORKER.finish_block(y, out, lo, hi, level, scale_in, drops, square, delta, lanesum, paired)
        del y, out
        return scale
    finally:
        shm_in.close()
        shm_out.close()


def pair_units(m: int) -> list[tuple[int, int]]:
    """The work units of a paired finish of ``m`` outputs: ``(j, j + m // 2)`` for ``j < m // 2``,
    and ``(m - 1, -1)`` (alone) when ``m`` is odd."""
    h = m // 2
    return [(j, j + h) for j in range(h)] + ([(m - 1, -1)] if m % 2 else [])


def pair_scales(m: int) -> np.ndarray:
    """float64 [m]: the factor on each output's weights and bias for :meth:`_SealSide.finish_pair`:
    1/2 for the second of a pair, 1 otherwise, so that the finish returns twice every lane sum (the
    next stage, after the square, takes 1/4 on all its weights: a uniform factor keeps the relative
    precision of its quantised weights); an unpaired output is doubled in the finish too."""
    f = np.ones(m)
    h = m // 2
    f[h:2 * h] = 0.5
    return f


class _Linear:
    """A quantised affine stage at one level: ``Y = 2^t Wh X + B`` mod each prime."""

    def __init__(self, st: LinearStage, primes: list[int], w_scale: float, s_in: float) -> None:
        w = st.weight.tocsr().astype(np.float64) * w_scale
        top = float(abs(w).max()) if w.nnz else 0.0
        if top == 0.0:
            raise HEError("an affine stage has an all-zero weight matrix")
        self.level, self.drops = 0, 1  # set by BatchEngine: input level, rescales after
        self.shift = max(0, math.ceil(math.log2(top)) - WEIGHT_BITS)
        wh = w.copy()
        wh.data = np.round(wh.data / 2.0 ** self.shift)
        # A row whose weights all round to zero (a unit an L2 penalty shrank to ~1e-8) would give an
        # output ciphertext with c1 = 0, which SEAL refuses to use ("transparent"): keep its largest
        # weight at one quantum, within the stated 2^-WEIGHT_BITS weight error.
        for i in range(wh.shape[0]):
            lo, hi = wh.indptr[i], wh.indptr[i + 1]
            if hi > lo and not np.any(wh.data[lo:hi]):
                j = lo + int(np.argmax(np.abs(w.data[lo:hi])))
                wh.data[j] = 1.0 if w.data[j] > 0 else -1.0
        wh.eliminate_zeros()
        self.w: sp.csr_matrix | np.ndarray = wh.toarray() if wh.nnz > 0.1 * np.prod(wh.shape) else wh
        self.bits = raw.limb_bits(wh)
        self.primes = primes
        self.m = st.shape[0]
        bias = [int(round(float(b) * s_in * w_scale)) for b in st.bias]
        self.bias = [np.array([b % q for b in bias], dtype=np.uint64) for q in primes]
        self.scale = s_in * w_scale

    def apply(self, x: np.ndarray, out: np.ndarray, threads: int = 1) -> None:
        """``x`` [n, size, L, N] residues -> ``out`` [m, size, L, N].

        The work is split into column blocks of ``CHUNK`` NTT slots per (prime, polynomial) so that the
        limbs, the product and the reduction of a block stay in cache; blocks run on ``threads``
        threads (NumPy and SciPy's sparse product release the GIL).
        """
        n, size, _, big_n = x.shape
        tasks = [(i, c, lo) for i in range(len(self.primes)) for c in range(size)
                 for lo in range(0, big_n, CHUNK)]

        def block(task: tuple[int, int, int]) -> None:
            i, c, lo = task
            q = self.primes[i]
            xi = np.ascontiguousarray(x[:, c, i, lo:lo + CHUNK])
            out[:, c, i, lo:lo + CHUNK] = raw.matmul_mod(self.w, xi, q, self.bits, 1 << self.shift,
                                                         self.bias[i] if c == 0 else None)

        if threads <= 1:
            for t in tasks:
                block(t)
            return
        with ThreadPoolExecutor(threads) as ex:
            for f in [ex.submit(block, t) for t in tasks]:
                f.result()


def _sub(sel: Any, lo: int, width: int) -> Any:
    """Columns ``lo .. lo + width`` of a slice or index array."""
    if isinstance(sel, slice):
        return slice(sel.start + lo, min(sel.stop, sel.start + lo + width))
    return sel[lo:lo + width]


class _LaneLinear:
    """A position-mixing affine stage on lane-packed inputs (:mod:`capc.he.lanes`): per class of NTT
    coefficients, an exact product with full-residue weights, split into :data:`LANE_LIMB_BITS`-bit
    limbs so that each limb product is a float64 BLAS product with exact sums; its outputs are summed
    over ``lanes`` lanes when finished (``lanesum``)."""

    def __init__(self, st: LinearStage, units: np.ndarray, lanes: int, classes: list[Any], w_scale: float,
                 s_in: float, paired: bool = False) -> None:
        from capc.he import lanes as ln

        dense, bias = ln.lane_weights(st, units)
        if not np.any(dense):
            raise HEError("an affine stage has an all-zero weight matrix")
        #: outputs finished two at a time (:meth:`_SealSide.finish_pair`), their weights scaled for it
        self.paired = paired and st.shape[0] > 1
        if self.paired:
            f = pair_scales(st.shape[0])
            dense, bias = dense * f[:, None, None], bias * f[:, None]
        coeffs = ln.lane_coefficients(dense, lanes)  # [m, n, 2P]
        bias_c = ln.lane_coefficients(bias, lanes)    # [m, 2P]
        self.level, self.drops, self.lanesum = 0, 1, lanes
        self.m = st.shape[0]
        self.primes = [c.prime for c in classes]
        self.classes = classes
        self.scale = s_in * w_scale
        # per prime and class: the weights' float64 limbs [A, m, n] and the x limb width they allow
        self.limbs: list[list[tuple[np.ndarray, int]]] = []
        self.bias: list[np.ndarray] = []  # per prime: uint64 [m, classes]
        mask = np.uint64((1 << LANE_LIMB_BITS) - 1)
        for cls in classes:
            q = cls.prime
            vals = ln.class_values(coeffs, w_scale, cls)  # [m, n, classes]
            count = -(-q.bit_length() // LANE_LIMB_BITS)
            per_class = []
            for c in range(len(cls.index)):
                w = vals[:, :, c]
                limbs = np.stack([((w >> np.uint64(a * LANE_LIMB_BITS)) & mask).astype(np.float64)
                                  for a in range(count)])
                per_class.append((limbs, min(raw.limb_bits(limb) for limb in limbs)))
            self.limbs.append(per_class)
            b = np.zeros((self.m, len(cls.index)), dtype=np.uint64)
            ints = [[int(round(float(v) * self.scale)) for v in row] for row in bias_c]
            for c in range(len(cls.index)):
                pw = [int(v) for v in cls.powers[c]]
                for i in range(self.m):
                    b[i, c] = sum(a * p for a, p in zip(ints[i], pw)) % q
            self.bias.append(b)

    def apply(self, x: np.ndarray, out: np.ndarray, threads: int = 1) -> None:
        """``x`` [n, size, L, N] residues -> ``out`` [m, size, L, N] (before the lane sum)."""
        _, size, _, _ = x.shape
        tasks = [(i, c) for i in range(len(self.primes)) for c in range(size)]

        def block(task: tuple[int, int]) -> None:
            i, c = task
            q = self.primes[i]
            for k, idx in enumerate(self.classes[i].index):
                # SEAL's NTT order makes each class a contiguous range (bit-reversed roots)
                sel: Any = slice(int(idx[0]), int(idx[-1]) + 1) if idx[-1] - idx[0] + 1 == idx.size else idx
                limbs, bits = self.limbs[i][k]
                bias = self.bias[i][:, k] if c == 0 else None
                xk = np.ascontiguousarray(x[:, c, i, sel])
                for lo in range(0, xk.shape[1], CHUNK):
                    out[:, c, i, _sub(sel, lo, CHUNK)] = raw.matmul_mod_limbs(
                        limbs, np.ascontiguousarray(xk[:, lo:lo + CHUNK]), q, bits, LANE_LIMB_BITS, bias)

        if threads <= 1:
            for t in tasks:
                block(t)
            return
        with ThreadPoolExecutor(threads) as ex:
            for f in [ex.submit(block, t) for t in tasks]:
                f.result()


class BatchEngine:
    """Batch-packing evaluator of a plan (see module docstring).

    Args:
        plan: the compiled plan; ``schedule``: (input level, input scale) per stage and
        ``w_scales``: the weight scale per affine stage, both from the evaluator's set-up.
        ctx, parms, relin, security_level: the public context (objects and serialised bytes).
        delta: the encoding scale; ``workers``: processes for the SEAL steps and threads for the affine
        products (1 = in-process, single-threaded); ``galois``: the serialised Galois keys (lane sums)
        and ``conjugate``: whether they include the conjugation (paired finishes).
    """

    def __init__(self, plan: Any, schedule: list[tuple[int, float]], w_scales: dict[int, float],
                 ctx: seal.SEALContext, parms: bytes, relin: bytes, security_level: int, delta: float,
                 workers: int, galois: bytes = b"", conjugate: bool = False) -> None:
        self.plan = plan
        #: the Galois keys include the conjugation: lane-summed outputs are finished in pairs
        self.conjugate = bool(conjugate) and bool(galois)
        self.delta = delta
        self.workers = int(workers)
        self._init_args = (parms, relin, security_level, galois)
        self._w_scales = w_scales
        self._lane_stages: dict[int, dict[int, Any]] = {}
        self.ctx = ctx
        self.primes: list[list[int]] = []
        self.pids = []
        cd = ctx.first_context_data()
        while cd is not None:
            self.primes.append([m.value() for m in cd.parms().coeff_modulus()])
            self.pids.append(cd.parms_id())
            cd = cd.next_context_data()
        self.schedule = schedule
        self.linear: dict[int, _Linear] = {}
        for idx, st in enumerate(plan.stages):
            if not isinstance(st, LinearStage):
                continue
            level, s_in = schedule[idx]
            if idx > 0 and isinstance(plan.stages[idx - 1], SquareStage):
                # the square before this stage is neither relinearised nor rescaled: this stage runs one
                # level up on size-3 inputs at scale Delta^2 and rescales twice (w_scale = q_a q_b / Delta
                # is the same, so the output is again at Delta, at the same level as before)
                level, s_in, drops = schedule[idx - 1][0], delta * delta, 2
            else:
                drops = 1
            lin = _Linear(st, self.primes[level], w_scales[idx], s_in)
            lin.level, lin.drops = level, drops
            self.linear[idx] = lin
        self._in_scale = {idx: (delta * delta if idx > 0 and isinstance(plan.stages[idx - 1], SquareStage)
                                else schedule[idx][1]) for idx in self.linear}
        self._local: _SealSide | None = None
        self._pool: ProcessPoolExecutor | None = None

    def _stages_for(self, lanes: int) -> dict[int, Any]:
        """The affine stages for ``lanes`` lanes: the first on lane-packed ciphertexts, the next one
        lane-weighted with its lane sum, the rest as for one lane (built once per lane count)."""
        if lanes == 1:
            return self.linear
        if lanes not in self._lane_stages:
            from capc.he import lanes as ln

            geom = self.plan.public_plan.first_conv
            if geom is None:
                raise HEError("this plan has no first convolution to lay lanes over")
            first = self.plan.stages[0]
            lin0 = _Linear(ln.lane_first_stage(first, geom, lanes), self.primes[self.linear[0].level],
                           self._w_scales[0], self._in_scale[0])
            lin0.level, lin0.drops = self.linear[0].level, self.linear[0].drops
            stages: dict[int, Any] = dict(self.linear)
            stages[0] = lin0
            if len(self.plan.stages) > 2:
                old = self.linear[2]
                # with a square and another affine stage after it, the outputs are finished in pairs
                # when the context carries the conjugation key
                lin2 = _LaneLinear(self.plan.stages[2], ln.unit_table(geom, lanes), lanes,
                                   self._ntt_classes(old.level, lanes), self._w_scales[2], self._in_scale[2],
                                   paired=self.conjugate and len(self.plan.stages) > 4)
                lin2.level, lin2.drops = old.level, old.drops
                stages[2] = lin2
                if lin2.paired:  # its outputs come out doubled, their squares four times too large
                    nxt = self.plan.stages[4]
                    lin4 = _Linear(LinearStage(nxt.weight * 0.25, nxt.bias), self.primes[self.linear[4].level],
                                   self._w_scales[4], self._in_scale[4])
                    lin4.level, lin4.drops = self.linear[4].level, self.linear[4].drops
                    stages[4] = lin4
            self._lane_stages[lanes] = stages
        return self._lane_stages[lanes]

    def _ntt_classes(self, level: int, lanes: int) -> list[Any]:
        """Per prime of ``level``, the NTT classes of ``Y = X^(N/2P)`` (from SEAL's own NTT)."""
        from capc.he import lanes as ln

        big_n = self.ctx.first_context_data().parms().poly_modulus_degree()
        primes = self.primes[level]
        vals = np.zeros((2, len(primes), big_n), dtype=np.uint64)
        vals[:, :, big_n // (2 * lanes)] = 1
        ct = raw.new_ciphertext(self.ctx, self.pids[level], vals, 1.0)
        raw.set_ntt_form(ct, False)
        seal.Evaluator(self.ctx).transform_to_ntt_inplace(ct)
        y = raw.residues(ct)[0].copy()
        return [ln.ntt_classes(y[i], q, lanes) for i, q in enumerate(primes)]

    # ----------------------------------------------------------------- lifecycle
    def _side(self) -> _SealSide:
        if self._local is None:
            self._local = _SealSide(*self._init_args)
        return self._local

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                             initializer=_worker_init, initargs=self._init_args)
        return self._pool

    def prepare(self, lanes: int) -> None:
        """Do now what the first batch laid out with ``lanes`` lanes would otherwise wait for: build
        its affine stages (the lane-weighted one's per-class weights) and start the worker processes,
        returning once each has loaded the keys."""
        self._stages_for(lanes)
        if self.workers > 1:
            pool = self._get_pool()
            for f in [pool.submit(_worker_ready) for _ in range(self.workers)]:
                f.result()

    def close(self) -> None:
        """Stop the worker processes (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._local is not None:
            self._local.close()
            self._local = None

    # ----------------------------------------------------------------- evaluation
    def _alloc(self, shape: tuple[int, ...], shms: list[SharedMemory]) -> tuple[np.ndarray, SharedMemory | None]:
        """An uninitialised uint64 array, in shared memory when the work is split over processes."""
        if self.workers <= 1:
            return np.empty(shape, dtype=np.uint64), None
        shm = SharedMemory(create=True, size=max(1, int(np.prod(shape)) * 8))
        shms.append(shm)
        return np.ndarray(shape, dtype=np.uint64, buffer=shm.buf), shm

    @staticmethod
    def _release(shm: SharedMemory | None, shms: list[SharedMemory]) -> None:
        if shm is not None:
            shms.remove(shm)
            try:
                shm.close()
            except BufferError:  # a view is still referenced (error path): the mapping goes with it
                pass
            shm.unlink()

    def _square(self, y: np.ndarray, y_shm: SharedMemory | None, lin: Any,
                shms: list[SharedMemory]) -> tuple[np.ndarray, SharedMemory | None]:
        """Finish affine stage ``lin`` on ``y`` and square each output (size 3, not relinearised); a
        lane-summed stage finishes its outputs in pairs (:meth:`_SealSide.finish_pair`)."""
        m, _, lvl, big_n = y.shape
        lanesum = getattr(lin, "lanesum", 1)
        paired = bool(getattr(lin, "paired", False))
        units = len(pair_units(m)) if paired else m
        out, out_shm = self._alloc((m, 3, lvl - lin.drops, big_n), shms)
        if out_shm is None or y_shm is None:
            self._side().finish_block(y, out, 0, units, lin.level, lin.scale, lin.drops, True, self.delta,
                                      lanesum, paired)
            return out, out_shm
        bounds = np.linspace(0, units, self.workers + 1).astype(int)
        pool = self._get_pool()
        futs = [pool.submit(_worker_finish, y_shm.name, out_shm.name, y.shape, out.shape, int(lo), int(hi),
                            lin.level, lin.scale, lin.drops, True, self.delta, lanesum, paired)
                for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
        try:
            for f in futs:
                f.result()
        except BaseException:
            # a dead or interrupted worker leaves the pool unusable: start a fresh one next time
            pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            raise
        return out, out_shm

    def run(self, x: np.ndarray, lanes: int = 1) -> list[seal.Ciphertext]:
        """Evaluate the plan on query residues ``x`` [n, 2, L0, N] laid out with ``lanes`` lanes;
        returns the output ciphertexts (rescaled, relinearised, at scale Delta, before masking)."""
        return self.run_owned([x], lanes)

    def run_owned(self, box: list[np.ndarray], lanes: int = 1) -> list[seal.Ciphertext]:
        """:meth:`run` on the array taken out of ``box`` (a one-element list), so that the query's
        residues can be freed as soon as the first affine stage has read them."""
        stages = self.plan.stages
        linear = self._stages_for(lanes)
        shms: list[SharedMemory] = []
        cur = box.pop()
        cur_shm: SharedMemory | None = None
        try:
            idx = 0
            while idx < len(stages):
                lin = linear.get(idx)
                if lin is None:
                    raise HEError("batch engine expects alternating affine and square stages")
                square = idx + 1 < len(stages) and isinstance(stages[idx + 1], SquareStage)
                if not square:
                    if idx + 1 != len(stages):
                        raise HEError("batch engine expects alternating affine and square stages")
                    y = np.empty((lin.m, *cur.shape[1:]), dtype=np.uint64)
                    lin.apply(cur, y, self.workers)
                    del cur
                    self._release(cur_shm, shms)
                    side = self._side()
                    lanesum = getattr(lin, "lanesum", 1)
                    return [side.finish(y[j], lin.level, lin.scale, lin.drops, self.delta, lanesum)
                            for j in range(y.shape[0])]
                y, y_shm = self._alloc((lin.m, *cur.shape[1:]), shms)
                lin.apply(cur, y, self.workers)
                del cur
                self._release(cur_shm, shms)
                cur, cur_shm = self._square(y, y_shm, lin, shms)
                del y
                self._release(y_shm, shms)
                idx += 2
            raise HEError("the plan has no final affine stage")
        finally:
            for shm in list(shms):
                self._release(shm, shms)
