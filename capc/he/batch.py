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


def default_workers() -> int:
    """Default worker-process count: ``min(2, os.cpu_count())``."""
    return max(1, min(2, os.cpu_count() or 1))


class _SealSide:
    """SEAL objects for rescale / square / relinearise (one per process)."""

    def __init__(self, parms: bytes, relin: bytes, security_level: int) -> None:
        self.scratch = _Scratch()
        p = self.scratch.load(seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS), parms)
        self.ctx = make_context(p, security_level)
        self.relin = self.scratch.load(seal.RelinKeys(), relin, self.ctx)
        self.ev = seal.Evaluator(self.ctx)
        self.pids = []
        cd = self.ctx.first_context_data()
        while cd is not None:
            self.pids.append(cd.parms_id())
            cd = cd.next_context_data()

    def finish_block(self, y: np.ndarray, out: np.ndarray, level: int, scale_in: float, drops: int,
                     square: bool, delta: float) -> float:
        """Finish an affine stage on each ``y[j]`` (size 2 or 3, at ``level``, scale ``scale_in``):
        rescale ``drops`` times, relinearising a size-3 input after the first rescale (relinearisation
        is linear, so one per affine output replaces one per square), set the scale to ``delta``, and
        square without relinearising when ``square``; write the residues to ``out[j]`` and return the
        output scale."""
        scale = 0.0
        for j in range(y.shape[0]):
            ct = self.finish(y[j], level, scale_in, drops, delta)
            if square:
                self.ev.square_inplace(ct)
            out[j] = raw.residues(ct)
            scale = ct.scale
        return scale

    def finish(self, y: np.ndarray, level: int, scale_in: float, drops: int, delta: float) -> seal.Ciphertext:
        """One affine output ``y`` ([size, L, N] residues) rescaled ``drops`` times and relinearised,
        at scale ``delta``."""
        ct = raw.new_ciphertext(self.ctx, self.pids[level], y, scale_in)
        for d in range(drops):
            self.ev.rescale_to_next_inplace(ct)
            if d == 0 and ct.size() > 2:
                self.ev.relinearize_inplace(ct, self.relin)
        ct.scale = delta  # removes float drift only: the true scale is Delta up to rounding
        return ct

    def close(self) -> None:
        self.scratch.close()


_WORKER: _SealSide | None = None


def _worker_init(parms: bytes, relin: bytes, security_level: int) -> None:
    global _WORKER
    exit_with_parent()
    _WORKER = _SealSide(parms, relin, security_level)


def _worker_finish(in_name: str, out_name: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                   lo: int, hi: int, level: int, scale_in: float, drops: int, square: bool,
                   delta: float) -> float:
    assert _WORKER is not None
    shm_in, shm_out = SharedMemory(in_name), SharedMemory(out_name)
    try:
        y = np.ndarray(in_shape, dtype=np.uint64, buffer=shm_in.buf)
        out = np.ndarray(out_shape, dtype=np.uint64, buffer=shm_out.buf)
        scale = _WORKER.finish_block(y[lo:hi], out[lo:hi], level, scale_in, drops, square, delta)
        del y, out
        return scale
    finally:
        shm_in.close()
        shm_out.close()


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


class BatchEngine:
    """Batch-packing evaluator of a plan (see module docstring).

    Args:
        plan: the compiled plan; ``schedule``: (input level, input scale) per stage and
        ``w_scales``: the weight scale per affine stage, both from the evaluator's set-up.
        ctx, parms, relin, security_level: the public context (objects and serialised bytes).
        delta: the encoding scale; ``workers``: processes for the SEAL steps and threads for the affine
        products (1 = in-process, single-threaded).
    """

    def __init__(self, plan: Any, schedule: list[tuple[int, float]], w_scales: dict[int, float],
                 ctx: seal.SEALContext, parms: bytes, relin: bytes, security_level: int, delta: float,
                 workers: int) -> None:
        self.plan = plan
        self.delta = delta
        self.workers = int(workers)
        self._init_args = (parms, relin, security_level)
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
        self._local: _SealSide | None = None
        self._pool: ProcessPoolExecutor | None = None

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

    def _square(self, y: np.ndarray, y_shm: SharedMemory | None, lin: _Linear,
                shms: list[SharedMemory]) -> tuple[np.ndarray, SharedMemory | None]:
        """Finish affine stage ``lin`` on ``y`` and square each output (size 3, not relinearised)."""
        m, _, lvl, big_n = y.shape
        out, out_shm = self._alloc((m, 3, lvl - lin.drops, big_n), shms)
        if out_shm is None or y_shm is None:
            self._side().finish_block(y, out, lin.level, lin.scale, lin.drops, True, self.delta)
            return out, out_shm
        bounds = np.linspace(0, m, self.workers + 1).astype(int)
        pool = self._get_pool()
        futs = [pool.submit(_worker_finish, y_shm.name, out_shm.name, y.shape, out.shape, int(lo), int(hi),
                            lin.level, lin.scale, lin.drops, True, self.delta)
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

    def run(self, x: np.ndarray) -> list[seal.Ciphertext]:
        """Evaluate the plan on query residues ``x`` [n, 2, L0, N]; returns the C output ciphertexts
        (rescaled, relinearised, at scale Delta, before masking)."""
        return self.run_owned([x])

    def run_owned(self, box: list[np.ndarray]) -> list[seal.Ciphertext]:
        """:meth:`run` on the array taken out of ``box`` (a one-element list), so that the query's
        residues can be freed as soon as the first affine stage has read them."""
        stages = self.plan.stages
        shms: list[SharedMemory] = []
        cur = box.pop()
        cur_shm: SharedMemory | None = None
        try:
            idx = 0
            while idx < len(stages):
                lin = self.linear.get(idx)
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
                    return [side.finish(y[j], lin.level, lin.scale, lin.drops, self.delta) for j in range(lin.m)]
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
