"""Wire encoding of batch queries as packed RNS residues (no SEAL serialisation).

A batch query is ``n`` ciphertexts (one per input value) at the top level.  SEAL's own serialisation
compresses each one with zstd and, for seeded symmetric ciphertexts, re-expands the seed on load:
about 5 ms to save and 4 ms to load per ciphertext at N = 16384, i.e. 4 s on each side of a
784-ciphertext query, single-threaded.  The batch engine needs the residues as one NumPy array
anyway, so a batch query is sent as the residues themselves, packed per RNS prime into *planes*:

* plane ``lo``: the low 32 bits of every residue, ``uint32 [n, 2, N]``;
* plane ``hi``: the remaining ``bits(q_i) - 32`` bits, the narrowest of ``uint8/uint16/uint32``
  (absent for primes of at most 32 bits).

A 40-bit prime takes 5 bytes per residue and a 60-bit prime 8, instead of 8 each; packing and
unpacking are whole-array NumPy operations.  Unpacking checks every residue against its prime (what
SEAL's ``load`` checks), so no out-of-range value ever reaches the exact modular arithmetic of
:mod:`capc.he.raw`.  The encoding carries the same information as SEAL's (the full ciphertext, no
seed), so it reveals nothing more about the query.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np

from capc.he.errors import HEError

#: Section tag of one residue plane in a framed query (see :func:`capc.he.seal.frame`).
PLANE_TAG = b"X"

#: Header value of ``"encoding"`` for a residue-encoded query.
ENCODING = "ntt-residues-v1"


def high_dtype(q: int) -> np.dtype | None:
    """The plane type holding the bits of residues mod ``q`` above the low 32 (None if q < 2^32)."""
    extra = int(q - 1).bit_length() - 32
    if extra <= 0:
        return None
    for dt in (np.uint8, np.uint16, np.uint32):
        if extra <= 8 * np.dtype(dt).itemsize:
            return np.dtype(dt)
    raise HEError(f"RNS prime {q} has more than 64 bits")


def plane_layout(primes: Sequence[int], count: int, n: int) -> tuple[list[tuple[int, np.dtype]], int]:
    """(byte offset, dtype) of every plane, prime by prime (``lo`` then ``hi``), when all planes of a
    ``count``-ciphertext query share one buffer; and the buffer's total size in bytes."""
    out, off = [], 0
    for q in primes:
        for dt in (np.dtype(np.uint32), high_dtype(int(q))):
            if dt is not None:
                out.append((off, dt))
                off += int(count) * 2 * int(n) * dt.itemsize
    return out, off


class ResiduePacker:
    """Collects ``count`` ciphertexts' residues ``[2, L, N]`` into the planes of one query.

    With ``buffer`` (e.g. shared memory of :func:`plane_layout`'s size) the planes are views into it,
    so that several processes can fill disjoint ciphertexts of the same query.
    """

    def __init__(self, primes: Sequence[int], count: int, n: int, buffer: Any = None) -> None:
        self.primes = [int(q) for q in primes]
        self.count, self.n = int(count), int(n)
        shape = (self.count, 2, self.n)
        layout, total = plane_layout(self.primes, self.count, self.n)
        if buffer is None:
            buffer = np.empty(total, dtype=np.uint8)
        if memoryview(buffer).nbytes < total:
            raise HEError(f"residue plane buffer has {memoryview(buffer).nbytes} bytes, needs {total}")
        planes = iter(np.ndarray(shape, dtype=dt, buffer=buffer, offset=off) for off, dt in layout)
        self.lo: list[np.ndarray] = []
        self.hi: list[np.ndarray | None] = []
        for q in self.primes:
            self.lo.append(next(planes))
            self.hi.append(None if high_dtype(q) is None else next(planes))

    def put(self, j: int, residues: np.ndarray) -> None:
        """Store ciphertext ``j`` (residues ``[2, L, N]`` uint64, e.g. :func:`capc.he.raw.residues`)."""
        if residues.shape != (2, len(self.primes), self.n):
            raise HEError(f"ciphertext residues have shape {residues.shape}, expected "
                          f"{(2, len(self.primes), self.n)}")
        for i in range(len(self.primes)):
            r = residues[:, i, :]
            self.lo[i][j] = r  # unsigned narrowing keeps the low 32 bits
            hi = self.hi[i]
            if hi is not None:
                hi[j] = r >> np.uint64(32)

    def sections(self) -> list[tuple[bytes, memoryview]]:
        """The planes as framed sections, prime by prime (``lo`` then ``hi``), without copying."""
        out = []
        for lo, hi in zip(self.lo, self.hi):
            out.append((PLANE_TAG, memoryview(lo).cast("B")))
            if hi is not None:
                out.append((PLANE_TAG, memoryview(hi).cast("B")))
        return out


def plane_count(primes: Sequence[int]) -> int:
    """Number of sections a residue-encoded query over ``primes`` has."""
    return sum(1 + (high_dtype(q) is not None) for q in primes)


def unpack(sections: Sequence[tuple[bytes, bytes | memoryview]], primes: Sequence[int], count: int, n: int,
           out: np.ndarray | None = None) -> np.ndarray:
    """Residues ``uint64 [count, 2, L, N]`` from the planes of a residue-encoded query.

    Args:
        sections: the query's framed sections, all tagged :data:`PLANE_TAG`.
        primes: the RNS primes of the top level; ``count``: ciphertexts; ``n``: the ring degree.
        out: an array of that shape to fill (e.g. in shared memory); allocated when None.

    Raises:
        HEError: if a section is missing, mistagged or of the wrong size, or a residue is not below
            its prime (a corrupt or hostile query).
    """
    primes = [int(q) for q in primes]
    if len(sections) != plane_count(primes):
        raise HEError(f"the residue-encoded query has {len(sections)} planes; these parameters need "
                      f"{plane_count(primes)}")
    if any(tag != PLANE_TAG for tag, _ in sections):
        raise HEError("the residue-encoded query contains a section that is not a residue plane")
    shape = (count, 2, n)
    x = np.empty((count, 2, len(primes), n), dtype=np.uint64) if out is None else out
    if x.shape != (count, 2, len(primes), n) or x.dtype != np.uint64:
        raise HEError(f"output array has shape {x.shape}, expected {(count, 2, len(primes), n)}")
    jobs, k = [], 0
    for i, q in enumerate(primes):
        lo = _plane(sections[k][1], np.dtype(np.uint32), shape, i, "low")
        k += 1
        dt = high_dtype(q)
        hi = None
        if dt is not None:
            hi = _plane(sections[k][1], dt, shape, i, "high")
            k += 1
        jobs.append((i, q, lo, hi))

    def fill(job: tuple[int, int, np.ndarray, np.ndarray | None]) -> bool:
        i, q, lo, hi = job
        dst = x[:, :, i, :]
        dst[...] = lo
        if hi is not None:
            dst |= hi.astype(np.uint64) << np.uint64(32)
        return bool((dst < np.uint64(q)).all())

    # NumPy releases the GIL in these whole-array operations: one thread per core over the primes
    with ThreadPoolExecutor(max(1, min(len(jobs), os.cpu_count() or 1, 4))) as pool:
        ok = list(pool.map(fill, jobs))
    for i, good in enumerate(ok):
        if not good:
            raise HEError(f"the query holds residues that are not below RNS prime {i} ({primes[i]}); refused")
    return x


def _plane(data: bytes | memoryview, dt: np.dtype, shape: tuple[int, int, int], i: int, what: str) -> np.ndarray:
    want = int(np.prod(shape)) * dt.itemsize
    if len(data) != want:
        raise HEError(f"the {what} residue plane of RNS prime {i} has {len(data)} bytes, expected {want}")
    return np.frombuffer(data, dtype=dt).reshape(shape)
