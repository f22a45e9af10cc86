"""capc.fixedpoint: rounding (not truncation), signed decoding, sharing, overflow at the edges."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capc import fixedpoint as fp
from capc.errors import FixedPointOverflow

F_BITS = st.integers(min_value=0, max_value=40)
U64 = st.integers(min_value=0, max_value=2**64 - 1)


def exact_round(x: float, f: int) -> int:
    """Reference: round half away from zero on the exact rational value of x * 2^f."""
    y = Fraction(x) * (2**f)
    r = math.floor(abs(y) + Fraction(1, 2))
    return r if y >= 0 else -r


@settings(max_examples=400)
@given(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False), F_BITS)
def test_encode_rounds_exactly(x: float, f: int) -> None:
    expected = exact_round(x, f)
    if not fp.SIGNED_MIN <= expected <= fp.SIGNED_MAX:
        with pytest.raises(FixedPointOverflow):
            fp.encode(x, f)
        return
    got = int(fp.to_signed(fp.encode(x, f)))
    assert got == expected


@pytest.mark.parametrize("x, f, expected", [
    (0.5, 0, 1), (-0.5, 0, -1), (1.5, 0, 2), (2.5, 0, 3), (-2.5, 0, -3),
    (0.49999999999999994, 0, 0), (0.125, 2, 1), (-0.125, 2, -1), (0.124, 2, 0),
    (1.999, 0, 2), (-1.999, 0, -2), (1.0 / 3, 3, 3), (-0.0, 5, 0),
])
def test_ties_and_truncation_cases(x: float, f: int, expected: int) -> None:
    assert int(fp.to_signed(fp.encode(x, f))) == expected


def test_large_floats_are_not_misrounded() -> None:
    # floor(|y| + 0.5) would turn 2^53 - 1 into 2^53.
    y = float(2**53 - 1)
    assert int(fp.to_signed(fp.encode(y, 0))) == 2**53 - 1
    assert int(fp.to_signed(fp.encode(2.0**62 + 2.0**10, 0))) == 2**62 + 2**10


def test_signed_64_bit_boundaries() -> None:
    assert int(fp.to_signed(fp.encode(-(2.0**63), 0))) == -(2**63)
    with pytest.raises(FixedPointOverflow, match="does not fit"):
        fp.encode(2.0**63, 0)
    with pytest.raises(FixedPointOverflow):
        fp.encode(-(2.0**63) - 4096.0, 0)
    largest_float_below = np.nextafter(2.0**63, 0)
    assert int(fp.to_signed(fp.encode(largest_float_below, 0))) == int(largest_float_below)
    # integers are exact at the very edge
    assert int(fp.to_signed(fp.encode(np.array([2**63 - 1], dtype=object), 0))[0]) == 2**63 - 1
    assert int(fp.to_signed(fp.encode(np.int64(-(2**62)), 1))) == -(2**63)
    with pytest.raises(FixedPointOverflow):
        fp.encode(np.int64(2**62), 1)
    with pytest.raises(FixedPointOverflow, match="index \\(1,\\)"):
        fp.encode([1.0, 2.0**60], 8)


def test_non_finite_and_bad_arguments() -> None:
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="non-finite"):
            fp.encode([0.0, bad], 3)
    with pytest.raises(ValueError, match="frac_bits"):
        fp.encode(1.0, -1)
    with pytest.raises(ValueError, match="frac_bits"):
        fp.encode(1.0, 63)
    with pytest.raises(TypeError):
        fp.encode(1.0, 2.5)
    with pytest.raises(TypeError):
        fp.encode(["a"], 2)


@given(st.integers(min_value=fp.SIGNED_MIN, max_value=fp.SIGNED_MAX))
def test_signed_views_roundtrip(v: int) -> None:
    ring = fp.from_signed(np.array([v], dtype=np.int64))
    assert int(ring[0]) == v % 2**64
    assert int(fp.to_signed(ring)[0]) == v


@settings(max_examples=300)
@given(st.floats(min_value=-2.0**30, max_value=2.0**30, allow_nan=False), st.integers(0, 30))
def test_decode_inverts_encode_within_half_unit(x: float, f: int) -> None:
    back = float(fp.decode(fp.encode(x, f), f))
    assert abs(back - x) <= 2.0 ** (-f - 1) + 1e-300


@given(st.lists(U64, min_size=1, max_size=20))
def test_share_reconstruct(values: list[int]) -> None:
    secret = np.array(values, dtype=np.uint64)
    a, b = fp.share(secret)
    assert a.dtype == np.uint64 and b.dtype == np.uint64
    assert np.array_equal(fp.reconstruct(a, b), secret)
    # the modular sum of the Python integers agrees
    assert [(int(x) + int(y)) % 2**64 for x, y in zip(a, b)] == values


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=10), F_BITS)
def test_shares_of_encoded_reals_decode_back(xs: list[float], f: int) -> None:
    enc = fp.encode(xs, min(f, 30))
    a, b = fp.share(enc)
    assert np.array_equal(fp.decode(fp.reconstruct(a, b), min(f, 30)), fp.decode(enc, min(f, 30)))


def test_shares_wrap_modulo_2_64() -> None:
    a = np.array([2**64 - 1, 2**63], dtype=np.uint64)
    b = np.array([2, 2**63], dtype=np.uint64)
    assert fp.reconstruct(a, b).tolist() == [1, 0]
    assert fp.sub(np.array([0], dtype=np.uint64), np.array([1], dtype=np.uint64)).tolist() == [2**64 - 1]


def test_random_ring_is_uniform_looking() -> None:
    r = fp.random_ring((4, 4096))
    assert r.shape == (4, 4096) and r.dtype == np.uint64
    bits = np.unpackbits(r.view(np.uint8))
    # 131072 fair bits: a 6-sigma band around one half
    assert abs(bits.mean() - 0.5) < 6 * 0.5 / math.sqrt(bits.size)
    assert len(np.unique(r)) == r.size
    assert fp.random_ring(3).shape == (3,)


def test_as_ring_accepts_signed_and_python_ints() -> None:
    assert fp.as_ring(np.array([-1], dtype=np.int64)).tolist() == [2**64 - 1]
    assert fp.as_ring([-(2**63), 5]).tolist() == [2**63, 5]
    with pytest.raises(TypeError):
        fp.as_ring(np.array([1.5]))
