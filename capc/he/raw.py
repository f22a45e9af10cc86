"""Zero-copy access to the RNS residues of SEAL ciphertexts, and exact modular arithmetic on them.

TenSEAL's ``sealapi`` exposes ``Ciphertext.data(i)`` only as the *first value* of polynomial ``i``
and ``dyn_array().at(k)`` one value at a time.  Batch evaluation needs whole ciphertexts as arrays,
so :func:`residues` maps the ciphertext's coefficient buffer into a NumPy ``uint64`` array of shape
``[size, L, N]`` (polynomial, RNS prime, NTT slot) without copying.  It relies on the memory layout
of pybind11 instances (object pointer after the Python object header) and of
``seal::Ciphertext`` 4.x (``parms_id``, ``is_ntt_form``, ``size``, ``N``, ``L``, ``scale``,
``correction_factor``, then a ``DynArray`` whose data pointer follows its pool, capacity and size).
Every access re-validates that layout against the public accessors (sizes, scale, first values of
each polynomial, a sampled coefficient); :func:`supported` probes it once, and callers fall back to
SEAL's own operations when it fails, so an unexpected build can never be written through.

Arithmetic: a plaintext-scalar product of a ciphertext in NTT form multiplies every residue by the
integer constant modulo its prime, so an affine layer over many ciphertexts is an integer matrix
product per prime.  :func:`matmul_mod` computes it exactly with float64 BLAS by splitting residues
into ``b``-bit limbs so that every partial sum stays below 2^53 (the float64 mantissa).
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import numpy as np
import scipy.sparse as sp
import tenseal.sealapi as seal

try:  # compiled limb kernels (setup.py builds them); the NumPy path below gives the same results
    from capc.he import _rns
except ImportError:  # pragma: no cover - exercised by forcing the fallback in the tests
    _rns = None

_EMPTY = np.empty(0, dtype=np.uint64)

# Byte offsets inside seal::Ciphertext (SEAL 4.x, 64-bit): see module docstring.
_OFF_NTT, _OFF_SIZE, _OFF_N, _OFF_L, _OFF_SCALE, _OFF_DYN_SIZE, _OFF_DATA = 32, 40, 48, 56, 64, 104, 112
_PYOBJ_HEAD = 16  # ob_refcnt + ob_type; pybind11's simple layout stores the value pointer next


class RawLayoutError(RuntimeError):
    """The ciphertext memory layout is not the one this module was written for."""


def _u64(addr: int) -> int:
    return ctypes.c_uint64.from_address(addr).value


def _object_address(ct: seal.Ciphertext) -> int:
    if type(ct) is not seal.Ciphertext:
        raise RawLayoutError(f"expected a seal Ciphertext, got {type(ct).__name__}")
    return _u64(id(ct) + _PYOBJ_HEAD)


def residues(ct: seal.Ciphertext) -> np.ndarray:
    """A writable zero-copy view ``[size, L, N]`` (uint64) of ``ct``'s coefficients.

    The view is valid only while ``ct`` lives and is not resized.

    Raises:
        RawLayoutError: if the object's memory does not match SEAL's public accessors.
    """
    p = _object_address(ct)
    size, n, lvl = ct.size(), ct.poly_modulus_degree(), ct.coeff_modulus_size()
    count = size * n * lvl
    if p == 0 or (_u64(p + _OFF_SIZE), _u64(p + _OFF_N), _u64(p + _OFF_L), _u64(p + _OFF_DYN_SIZE)) != \
            (size, n, lvl, count) or count == 0:
        raise RawLayoutError("ciphertext header fields do not match the expected layout")
    if ctypes.c_double.from_address(p + _OFF_SCALE).value != ct.scale or \
            ctypes.c_uint8.from_address(p + _OFF_NTT).value != int(ct.is_ntt_form()):
        raise RawLayoutError("ciphertext scale / NTT flag do not match the expected layout")
    data = _u64(p + _OFF_DATA)
    if data == 0:
        raise RawLayoutError("ciphertext has no data buffer")
    arr = np.ctypeslib.as_array((ctypes.c_uint64 * count).from_address(data)).reshape(size, lvl, n)
    dyn = ct.dyn_array()
    k = count // 2 + 7 if count > 16 else 0
    if any(int(arr[i, 0, 0]) != ct.data(i) for i in range(size)) or int(arr.reshape(-1)[k]) != dyn.at(k):
        raise RawLayoutError("ciphertext data pointer does not match the expected layout")
    return arr


def set_ntt_form(ct: seal.Ciphertext, value: bool) -> None:
    """Set the ``is_ntt_form`` flag (not writable through the bindings) after validating the layout."""
    residues(ct)
    ctypes.c_uint8.from_address(_object_address(ct) + _OFF_NTT).value = 1 if value else 0
    if ct.is_ntt_form() != value:
        raise RawLayoutError("could not set the NTT flag")


def new_ciphertext(ctx: seal.SEALContext, parms_id: Any, values: np.ndarray, scale: float) -> seal.Ciphertext:
    """A SEAL ciphertext in NTT form at ``parms_id`` holding ``values`` ([size, L, N] residues)."""
    ct = seal.Ciphertext(ctx, parms_id, int(values.shape[0]))
    ct.resize(ctx, parms_id, int(values.shape[0]))
    ct.scale = float(scale)
    set_ntt_form(ct, True)
    residues(ct)[...] = values
    return ct


@functools.lru_cache(maxsize=1)
def supported() -> bool:
    """True if :func:`residues` works with this TenSEAL build (probed once on a small context)."""
    try:
        parms = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
        parms.set_poly_modulus_degree(1024)
        parms.set_coeff_modulus(seal.CoeffModulus.Create(1024, [25, 20]))
        ctx = seal.SEALContext(parms, False, seal.SEC_LEVEL_TYPE.NONE)
        pid = ctx.first_parms_id()
        vals = np.arange(2 * 1 * 1024, dtype=np.uint64).reshape(2, 1, 1024) + np.uint64(3)
        ct = new_ciphertext(ctx, pid, vals, 2.0 ** 10)
        da = ct.dyn_array()
        return ct.is_ntt_form() and ct.data(1) == 1027 and da.at(1500) == 1503 and ct.scale == 2.0 ** 10
    except (RawLayoutError, RuntimeError, ValueError, TypeError, AttributeError):
        return False


# ---------------------------------------------------------------------- exact modular arithmetic
def mulmod_small(a: np.ndarray, c: int, q: int) -> np.ndarray:
    """``a * c mod q`` for uint64 ``0 <= a < q < 2^62`` and ``0 <= c < 2^31``.

    The quotient is estimated in float64 (error < 1 since ``a c / q < 2^31``); the remainder is then
    exact in wrapping 64-bit arithmetic and corrected by at most one ``q``.
    """
    if not 0 <= c < 2 ** 31:
        raise ValueError("mulmod_small needs 0 <= c < 2^31")
    qt = np.floor(a.astype(np.float64) * (c / q)).astype(np.uint64)
    with np.errstate(over="ignore"):
        r = (a * np.uint64(c) - qt * np.uint64(q)).view(np.int64)
    r = np.where(r < 0, r + q, r)
    r = np.where(r >= q, r - q, r)
    return r.view(np.uint64)


def mulmod(a: np.ndarray, c: int, q: int) -> np.ndarray:
    """``a * c mod q`` for any integer ``c`` (Horner over 30-bit chunks of ``c mod q``)."""
    c %= q
    chunks = []
    while True:
        chunks.append(c & ((1 << 30) - 1))
        c >>= 30
        if not c:
            break
    acc = mulmod_small(a, chunks[-1], q)
    for ch in reversed(chunks[:-1]):
        acc = addmod(mulmod_small(acc, 1 << 30, q), mulmod_small(a, ch, q), q)
    return acc


def addmod(a: np.ndarray, b: np.ndarray, q: int) -> np.ndarray:
    """``(a + b) mod q`` for uint64 ``a, b < q < 2^63``."""
    s = a + b
    return np.where(s >= np.uint64(q), s - np.uint64(q), s)


def limb_bits(weights: sp.csr_matrix | np.ndarray) -> int:
    """Largest limb width ``b`` with ``max_row sum |w| * (2^b - 1) < 2^53`` (exact float64 sums)."""
    a = abs(weights)
    row = float(np.asarray(a.sum(axis=1)).max()) if a.shape[0] else 0.0
    return int(max(1, min(30, np.floor(52 - np.log2(max(row, 1.0))))))


def matmul_mod(w: sp.csr_matrix | np.ndarray, x: np.ndarray, q: int, bits: int, factor: int = 1,
               bias: np.ndarray | None = None) -> np.ndarray:
    """Exact ``((w @ x) * factor + bias) mod q`` for integer-valued float64 ``w`` [m, n], uint64
    ``x`` [n, k] < q, an integer ``factor`` and uint64 ``bias`` [m] (added to every column).

    ``x`` is split into ``bits``-bit limbs (``bits`` from :func:`limb_bits`), each limb product is
    one float64 BLAS (or sparse) product whose sums are exact, and the limbs are recombined mod q:
    by the compiled kernels of ``capc.he._rns`` when they are built, else in NumPy.
    """
    nlimbs = -(-int(q).bit_length() // bits)
    k = x.shape[1]
    factor = int(factor) % q
    if _rns is not None and q < 2 ** 62:
        limbs = _rns.split_limbs(np.ascontiguousarray(x, dtype=np.uint64), bits, nlimbs)
        prod = np.ascontiguousarray(w @ limbs)
        del limbs
        b = _EMPTY if bias is None else np.ascontiguousarray(bias, dtype=np.uint64)
        return _rns.combine_limbs(prod, nlimbs, bits, int(q), factor, b)
    mask = np.uint64((1 << bits) - 1)
    limbs = np.empty((x.shape[0], nlimbs * k), dtype=np.float64)
    for j in range(nlimbs):
        limbs[:, j * k:(j + 1) * k] = (x >> np.uint64(j * bits)) & mask
    prod = w @ limbs
    acc = None
    for j in reversed(range(nlimbs)):
        # |prod| < 2^53, so the int64 conversion is exact; reduce mod q in integers (q may exceed 2^53)
        part = np.mod(prod[:, j * k:(j + 1) * k].astype(np.int64), np.int64(q)).astype(np.uint64)
        acc = part if acc is None else addmod(mulmod_small(acc, 1 << bits, q), part, q)
    assert acc is not None
    if factor != 1:
        acc = mulmod(acc, factor, q)
    if bias is not None:
        acc = addmod(acc, np.asarray(bias, dtype=np.uint64)[:, None] % np.uint64(q), q)
    return acc


def matmul_mod_limbs(w_limbs: np.ndarray, x: np.ndarray, q: int, bits: int, limb_shift: int,
                     bias: np.ndarray | None = None) -> np.ndarray:
    """Exact ``(sum_a 2^(a limb_shift) w_limbs[a]) @ x + bias mod q`` for a full-residue weight
    matrix given as float64 limbs ``w_limbs`` [A, m, n] (each ``< 2^limb_shift``), uint64 ``x``
    [n, k] < q and ``bits``-bit limbs of x (:func:`limb_bits` of the limbs).  ``x`` is split once and
    all weight limbs go through one BLAS product."""
    a_count, m, n = w_limbs.shape
    if _rns is None or q >= 2 ** 62:
        acc = None
        for a in range(a_count):
            part = matmul_mod(w_limbs[a], x, q, bits, 1 << (a * limb_shift), bias if a == 0 else None)
            acc = part if acc is None else addmod(acc, part, q)
        assert acc is not None
        return acc
    nlimbs = -(-int(q).bit_length() // bits)
    limbs = _rns.split_limbs(np.ascontiguousarray(x, dtype=np.uint64), bits, nlimbs)
    prod = np.ascontiguousarray(w_limbs.reshape(a_count * m, n) @ limbs)
    del limbs
    acc = None
    for a in range(a_count):
        b = _EMPTY if bias is None or a else np.ascontiguousarray(bias, dtype=np.uint64)
        part = _rns.combine_limbs(np.ascontiguousarray(prod[a * m:(a + 1) * m]), nlimbs, bits, int(q),
                                  (1 << (a * limb_shift)) % q, b)
        acc = part if acc is None else addmod(acc, part, q)
    assert acc is not None
    return acc
