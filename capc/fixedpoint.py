"""The ring Z_2^64 read as signed integers: fixed-point encoding and additive secret sharing.

CaPC moves real-valued logits into a garbled circuit as additive shares over Z_2^64. A real ``x`` is
encoded at scale ``2^f`` as ``round(x * 2^f)`` (round half away from zero — the original truncated,
which biased every share by up to one unit), stored as the two's-complement ``uint64`` of that integer.
A value whose encoding falls outside ``[-2^63, 2^63 - 1]`` raises :class:`FixedPointOverflow`; nothing
ever wraps silently during encoding. Arithmetic on shares, by contrast, is deliberately modular:
``reconstruct(a, b) = a + b mod 2^64``.

All functions accept scalars or array-likes and return ``numpy`` arrays (``uint64`` ring elements,
``int64`` signed views, ``float64`` decodings). Randomness for shares comes from the operating system
(:func:`os.urandom`), never from a seeded generator.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from capc.errors import FixedPointOverflow
from capc.protocol_params import FRAC_BITS

RING_BITS = 64
MODULUS = 1 << RING_BITS
SIGNED_MIN = -(1 << (RING_BITS - 1))
SIGNED_MAX = (1 << (RING_BITS - 1)) - 1
#: Largest fraction-bit count accepted: the protocol's declared limit (:data:`capc.protocol_params.FRAC_BITS`).
MAX_FRAC_BITS = int(FRAC_BITS.hi)


def _check_frac_bits(frac_bits: int) -> int:
    if isinstance(frac_bits, bool) or not isinstance(frac_bits, (int, np.integer)):
        raise TypeError(f"frac_bits must be an integer, got {type(frac_bits).__name__}")
    problem = FRAC_BITS.problem(int(frac_bits))
    if problem is not None:
        raise ValueError(f"frac_bits {problem}")
    return int(frac_bits)


def _round_half_away(y: NDArray[np.float64]) -> NDArray[np.float64]:
    """Round to the nearest integer, ties away from zero, exactly for every finite float64.

    ``floor(|y| + 0.5)`` is not exact above 2^52 (the addition itself rounds), so the fraction is
    split off with ``trunc`` (exact) and compared instead.
    """
    whole = np.trunc(y)
    frac = y - whole  # exact: both are floats of the same binade or smaller
    return whole + np.where(np.abs(frac) >= 0.5, np.sign(y), 0.0)


def encode(x: ArrayLike, frac_bits: int) -> NDArray[np.uint64]:
    """Encode reals as ring elements: ``round(x * 2^frac_bits)`` in two's complement.

    Integer inputs are scaled exactly (no float conversion). Floats are rounded half away from zero.

    Raises:
        ValueError: if an input is NaN or infinite.
        FixedPointOverflow: if an encoded value lies outside the signed 64-bit range.
    """
    f = _check_frac_bits(frac_bits)
    arr = np.asarray(x)
    if arr.dtype == object or np.issubdtype(arr.dtype, np.integer):
        return _encode_integers(arr, f)
    if np.issubdtype(arr.dtype, np.bool_):
        return _encode_integers(arr.astype(np.int64), f)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"cannot encode values of dtype {arr.dtype}")
    y = arr.astype(np.float64)
    if not np.all(np.isfinite(y)):
        bad = np.argwhere(~np.isfinite(y))[0]
        raise ValueError(f"cannot encode non-finite value {y[tuple(bad)]!r} at index {tuple(int(i) for i in bad)}")
    r = _round_half_away(np.ldexp(y, f))
    # 2^63 is exactly representable; 2^63 - 1 is not, so "< 2^63" is the exact upper test.
    over = (r < float(SIGNED_MIN)) | (r >= float(SIGNED_MAX) + 1.0)
    if np.any(over):
        idx = tuple(int(i) for i in np.argwhere(over)[0])
        raise FixedPointOverflow(
            f"value {y[idx]!r} at index {idx} does not fit the signed 64-bit ring at scale 2^{f} "
            f"(|x| must be below 2^{RING_BITS - 1 - f})")
    return r.astype(np.int64).view(np.uint64)


def _encode_integers(arr: NDArray[Any], f: int) -> NDArray[np.uint64]:
    flat = [int(v) for v in arr.reshape(-1)]
    out = np.empty(len(flat), dtype=np.uint64)
    for i, v in enumerate(flat):
        s = v << f
        if not SIGNED_MIN <= s <= SIGNED_MAX:
            idx = np.unravel_index(i, arr.shape) if arr.shape else ()
            raise FixedPointOverflow(
                f"value {v} at index {tuple(int(j) for j in idx)} does not fit the signed 64-bit ring "
                f"at scale 2^{f}")
        out[i] = s % MODULUS
    return out.reshape(arr.shape)


def to_signed(v: ArrayLike) -> NDArray[np.int64]:
    """Reinterpret ring elements (``uint64``) as signed 64-bit integers."""
    return as_ring(v).view(np.int64)


def from_signed(v: ArrayLike) -> NDArray[np.uint64]:
    """Reinterpret signed 64-bit integers as ring elements (two's complement)."""
    arr = np.asarray(v)
    if arr.dtype != np.int64:
        if arr.dtype == object or np.issubdtype(arr.dtype, np.integer):
            vals = [int(t) for t in arr.reshape(-1)]
            for t in vals:
                if not SIGNED_MIN <= t <= SIGNED_MAX:
                    raise FixedPointOverflow(f"{t} does not fit a signed 64-bit integer")
            arr = np.array(vals, dtype=np.int64).reshape(arr.shape)
        else:
            raise TypeError(f"from_signed expects integers, got dtype {arr.dtype}")
    return arr.view(np.uint64)


def as_ring(v: ArrayLike) -> NDArray[np.uint64]:
    """Return ``v`` as a ``uint64`` array of ring elements, accepting ``uint64`` or ``int64`` input."""
    arr = np.asarray(v)
    if arr.dtype == np.uint64:
        return arr
    if arr.dtype == np.int64:
        return arr.view(np.uint64)
    if arr.dtype == object or np.issubdtype(arr.dtype, np.integer):
        return np.array([int(t) % MODULUS for t in arr.reshape(-1)], dtype=np.uint64).reshape(arr.shape)
    raise TypeError(f"ring elements must be integers, got dtype {arr.dtype}")


def decode(v: ArrayLike, frac_bits: int) -> NDArray[np.float64]:
    """Decode ring elements to reals: the signed value divided by ``2^frac_bits``."""
    f = _check_frac_bits(frac_bits)
    return np.ldexp(to_signed(v).astype(np.float64), -f)


def random_ring(shape: int | tuple[int, ...]) -> NDArray[np.uint64]:
    """Uniform ring elements from the operating system's CSPRNG."""
    shp = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    n = int(np.prod(shp, dtype=np.int64)) if shp else 1
    return np.frombuffer(os.urandom(8 * n), dtype=np.uint64).copy().reshape(shp)


def add(a: ArrayLike, b: ArrayLike) -> NDArray[np.uint64]:
    """``a + b mod 2^64``."""
    with np.errstate(over="ignore"):
        return as_ring(a) + as_ring(b)


def sub(a: ArrayLike, b: ArrayLike) -> NDArray[np.uint64]:
    """``a - b mod 2^64``."""
    with np.errstate(over="ignore"):
        return as_ring(a) - as_ring(b)


def share(secret: ArrayLike) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    """Split ring elements into two additive shares ``(a, b)`` with ``a`` uniform and ``a + b = secret``."""
    s = as_ring(secret)
    a = random_ring(s.shape)
    return a, sub(s, a)


def reconstruct(a: ArrayLike, b: ArrayLike) -> NDArray[np.uint64]:
    """Recombine two additive shares: ``a + b mod 2^64``."""
    return add(a, b)
