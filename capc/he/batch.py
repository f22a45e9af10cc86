"""Fast batch-packing evaluation: affine stages as exact RNS matrix products, squares in SEAL.

In batch packing every activation is one ciphertext (query ``q`` in slot ``q``), so an affine stage
``y_i = sum_j W_ij x_j + b_i`` is, per RNS prime ``p`` and per NTT coefficient, the integer product
``Y = W_int X mod p`` (a plaintext scalar multiplies every residue by ``W_int mod p``; a constant
plaintext is the same value in every NTT slot).  :class:`BatchEngine` therefore

1. reads all query ciphertexts as residue arrays ``[n, 2, L, N]`` (:mod:`capc.he.raw`),
2. computes each affine stage with float64 BLAS on limbs (:func:`capc.he.raw.matmul_mod`), with the
   weights quantised to ``WEIGHT_BITS`` significant bits times a power of two (relative weight error
   <= 2^-WEIGHT_BITS of the layer's largest weight) and the bias added at the product scale,
3. hands the ciphertexts to SEAL only for what needs key material or the NTT: rescale, square,
   relinearise, rescale — split over ``workers`` processes (SEAL's bindings hold the GIL) that
   exchange residues through shared memory,
4. rescales the last stage in SEAL and returns ordinary SEAL ciphertexts for masking.

Scales follow :mod:`capc.he.evaluator`: the weights of a stage are encoded at ``q Delta / s_in``, so
after the rescale each affine stage is back at ``Delta``.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
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

#: Significant bits kept per quantised weight (see module docstring).
WEIGHT_BITS = 22


def default_workers() -> int:
    """Default worker-process count: ``min(2, os.cpu_count())``."""
    return max(1, min(2, os.cpu_count() or 1))


class _SealSide:
    """SEAL objects for the square stages (one per process)."""

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

    def square_block(self, y: np.ndarray, out: np.ndarray, level: int, scale_in: float,
                     delta: float) -> float:
        """For each ``y[j]`` (at ``level``, scale ``scale_in``): rescale, square, relinearise,
        rescale; write the residues to ``out[j]`` and return the output scale."""
        scale = 0.0
        for j in range(y.shape[0]):
            ct = raw.new_ciphertext(self.ctx, self.pids[level], y[j], scale_in)
            self.ev.rescale_to_next_inplace(ct)
            ct.scale = delta  # removes float drift only: the true scale is Delta up to rounding
            self.ev.square_inplace(ct)
            self.ev.relinearize_inplace(ct, self.relin)
            self.ev.rescale_to_next_inplace(ct)
            out[j] = raw.residues(ct)
            scale = ct.scale
        return scale

    def close(self) -> None:
        self.scratch.close()


_WORKER: _SealSide | None = None


def _worker_init(parms: bytes, relin: bytes, security_level: int) -> None:
    global _WORKER
    _WORKER = _SealSide(parms, relin, security_level)


def _worker_square(in_name: str, out_name: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                   lo: int, hi: int, level: int, scale_in: float, delta: float) -> float:
    assert _WORKER is not None
    shm_in, shm_out = SharedMemory(in_name), SharedMemory(out_name)
    try:
        y = np.ndarray(in_shape, dtype=np.uint64, buffer=shm_in.buf)
        out = np.ndarray(out_shape, dtype=np.uint64, buffer=shm_out.buf)
        scale = _WORKER.square_block(y[lo:hi], out[lo:hi], level, scale_in, delta)
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
        self.shift = max(0, math.ceil(math.log2(top)) - WEIGHT_BITS)
        wh = w.copy()
        wh.data = np.round(wh.data / 2.0 ** self.shift)
        wh.eliminate_zeros()
        self.w: sp.csr_matrix | np.ndarray = wh.toarray() if wh.nnz > 0.1 * np.prod(wh.shape) else wh
        self.bits = raw.limb_bits(wh)
        self.primes = primes
        self.m = st.shape[0]
        bias = [int(round(float(b) * s_in * w_scale)) for b in st.bias]
        self.bias = [np.array([b % q for b in bias], dtype=np.uint64) for q in primes]
        self.scale = s_in * w_scale

    def apply(self, x: np.ndarray, out: np.ndarray) -> None:
        """``x`` [n, 2, L, N] residues -> ``out`` [m, 2, L, N]."""
        n, size, _, big_n = x.shape
        for i, q in enumerate(self.primes):
            xi = np.ascontiguousarray(x[:, :, i, :]).reshape(n, size * big_n)
            r = raw.mulmod(raw.matmul_mod(self.w, xi, q, self.bits), 1 << self.shift, q)
            r[:, :big_n] = raw.addmod(r[:, :big_n], self.bias[i][:, None], q)
            out[:, :, i, :] = r.reshape(self.m, size, big_n)


class BatchEngine:
    """Batch-packing evaluator of a plan (see module docstring).

    Args:
        plan: the compiled plan; ``schedule``: (input level, input scale) per stage and
        ``w_scales``: the weight scale per affine stage, both from the evaluator's set-up.
        ctx, parms, relin, security_level: the public context (objects and serialised bytes).
        delta: the encoding scale; ``workers``: processes for the square stages (1 = in-process).
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
        self.linear = {idx: _Linear(st, self.primes[schedule[idx][0]], w_scales[idx], schedule[idx][1])
                       for idx, st in enumerate(plan.stages) if isinstance(st, LinearStage)}
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
    def _squares(self, y: np.ndarray, level: int, scale_in: float, shms: list[SharedMemory]) -> tuple[np.ndarray, float]:
        m, size, lvl, big_n = y.shape
        out_shape = (m, size, lvl - 2, big_n)
        if self.workers <= 1:
            out = np.empty(out_shape, dtype=np.uint64)
            return out, self._side().square_block(y, out, level, scale_in, self.delta)
        shm_in = self._shared(y.nbytes, shms)
        yin = np.ndarray(y.shape, dtype=np.uint64, buffer=shm_in.buf)
        yin[...] = y
        shm_out = self._shared(int(np.prod(out_shape)) * 8, shms)
        out = np.ndarray(out_shape, dtype=np.uint64, buffer=shm_out.buf)
        bounds = np.linspace(0, m, self.workers + 1).astype(int)
        pool = self._get_pool()
        futs = [pool.submit(_worker_square, shm_in.name, shm_out.name, y.shape, out_shape, int(lo), int(hi),
                            level, scale_in, self.delta) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
        try:
            scales = [f.result() for f in futs]
        except BaseException:
            # a dead or interrupted worker leaves the pool unusable: start a fresh one next time
            pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            raise
        del yin
        return np.array(out), scales[0]

    @staticmethod
    def _shared(nbytes: int, shms: list[SharedMemory]) -> SharedMemory:
        shm = SharedMemory(create=True, size=max(1, nbytes))
        shms.append(shm)
        return shm

    def run(self, x: np.ndarray) -> list[seal.Ciphertext]:
        """Evaluate the plan on query residues ``x`` [n, 2, L0, N]; returns the C output ciphertexts
        (rescaled, at scale Delta, before masking)."""
        stages = self.plan.stages
        shms: list[SharedMemory] = []
        try:
            idx = 0
            while idx < len(stages):
                level, s_in = self.schedule[idx]
                lin = self.linear[idx]
                y = np.empty((lin.m, *x.shape[1:]), dtype=np.uint64)
                lin.apply(x, y)
                del x
                if idx + 1 < len(stages) and isinstance(stages[idx + 1], SquareStage):
                    x, _ = self._squares(y, level, lin.scale, shms)
                    for shm in shms:
                        shm.close()
                        shm.unlink()
                    shms.clear()
                    idx += 2
                    continue
                if idx + 1 != len(stages):
                    raise HEError("batch engine expects alternating affine and square stages")
                side = self._side()
                outs = []
                for j in range(lin.m):
                    ct = raw.new_ciphertext(self.ctx, self.pids[level], y[j], lin.scale)
                    side.ev.rescale_to_next_inplace(ct)
                    ct.scale = self.delta
                    outs.append(ct)
                return outs
            raise HEError("the plan has no final affine stage")
        finally:
            for shm in shms:
                shm.close()
                shm.unlink()
