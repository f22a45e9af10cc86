"""Masks for the answering party's output: Enc(z) -> Enc(z - r), and what they hide.

Every slot of the returned ciphertext, real and imaginary part, receives an independent mask
``r = k * 2^-G`` with ``k`` uniform in ``[-2^(s+beta+G), 2^(s+beta+G))`` drawn from ``os.urandom``,
where ``s`` is the hiding parameter, ``beta = ceil(log2 B)`` for the logit bound ``B`` and
``G = 52 - s - beta`` grid bits (so ``|k| < 2^52`` and every ``r`` is an exact float64).

Why this shape:

* ``r`` is uniform over a range ``2^(s+1) B`` wide, so for two logits ``|z|, |z'| <= B`` the masked
  values ``z - r`` and ``z' - r`` are within statistical distance ``2B / 2^(s+1) B = 2^-s``.
* The grid ``2^-G`` is as fine as a float64 can carry at that magnitude, so ``z - r`` reveals nothing
  about ``z`` modulo a coarser grid (a mask on multiples of ``2^-f`` would leak ``z mod 2^-f``).
* ``b = round(2^f r)`` is exact because ``G >= f`` (checked), and ``a = round(2^f (z - r + e))`` on the
  querying party; with decryption error ``|e| < 2^-(f+1)`` this gives ``a + b = round(2^f z) +- 1``.
* Masking *all* slots, including the imaginary parts, floods the CKKS decryption error: the
  decrypted polynomial is a bijective image of the masked slot values, and in the slots that carry
  no logit the value is the computation's error ``e`` (|e| << B), hidden far below ``2^-s`` each.
"""

from __future__ import annotations

import math
import os

import numpy as np

from capc.he.errors import HEError

#: k is drawn with this many magnitude bits: |k| < 2^52, exactly representable in float64.
MASK_INT_BITS = 52


def grid_bits(hiding_bits: int, log2_bound: int) -> int:
    """G, the number of fraction bits of the mask grid."""
    return MASK_INT_BITS - hiding_bits - log2_bound


def draw_mask(count: int, hiding_bits: int, log2_bound: int, frac_bits: int) -> np.ndarray:
    """``count`` independent masks ``k 2^-G`` (float64, exact) from the OS's CSPRNG.

    Raises:
        HEError: if the grid would be coarser than the share resolution (G < f).
    """
    g = grid_bits(hiding_bits, log2_bound)
    if g < frac_bits:
        raise HEError(f"mask grid 2^-{g} is coarser than the share resolution 2^-{frac_bits}: "
                      f"hiding_bits + ceil(log2 B) + frac_bits must be <= {MASK_INT_BITS}")
    raw = np.frombuffer(os.urandom(8 * count), dtype=np.uint64)
    k = (raw >> np.uint64(64 - MASK_INT_BITS - 1)).astype(np.int64) - (1 << MASK_INT_BITS)
    return np.ldexp(k.astype(np.float64), -g)


def flood_std(frac_bits: int) -> float:
    """Standard deviation (per real slot coordinate) of the Gaussian flooding noise added to every
    returned ciphertext: ``2^-(f+4)``, one eighth of the share tolerance ``2^-(f+1)`` (with the
    encoder's rounding, a share is off by more than one with probability below 1e-7 per logit even at
    the precision limit), and never finer than the mask grid, which it smooths (:func:`grid_smoothing_bits`):
    ``s + ceil(log2 B) + f <= 48`` gives ``G >= f + 4``."""
    return 2.0 ** -(frac_bits + 4)


def draw_flood(count: int, std: float) -> np.ndarray:
    """``count`` independent N(0, std^2) values from the OS's CSPRNG (Box-Muller on 53-bit uniforms).

    Encoded into a CKKS plaintext, i.i.d. Gaussian slot values become i.i.d. Gaussian coefficients
    (the canonical embedding of a power-of-two cyclotomic is a scaled orthogonal map), so this floods
    the evaluation error of the decrypted polynomial coefficient by coefficient.
    """
    half = (count + 1) // 2
    raw = np.frombuffer(os.urandom(16 * half), dtype=np.uint64).reshape(2, half)
    u1 = ((raw[0] >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0 ** -53  # (0, 1]
    u2 = (raw[1] >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    r = np.sqrt(-2.0 * np.log(u1))
    g = np.concatenate([r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)])[:count]
    return std * g


def flooding_bits(error_rms: float, std: float, coords: int) -> float:
    """Statistical hiding, in bits, of an evaluation-error vector of ``coords`` real slot coordinates
    with root-mean-square ``error_rms`` under i.i.d. Gaussian flooding of standard deviation ``std``:
    the distance between N(e, std^2 I) and N(0, std^2 I) is at most ``||e||_2 / (2 std)``."""
    sd = math.sqrt(coords) * error_rms / (2.0 * std)
    return -math.log2(sd) if sd > 0 else float("inf")


def grid_smoothing_bits(std: float, hiding_bits: int, log2_bound: int, coords: int) -> float:
    """How well the flooding noise hides the mask's grid, in bits.

    The mask lies on the grid ``2^-G``; a querying party that decrypts exactly (it holds the secret
    key) could read ``z mod 2^-G`` in every coordinate if nothing else were added.  Gaussian noise of
    standard deviation ``std`` makes each coordinate modulo the grid within
    ``2 exp(-2 pi^2 std^2 / 2^-2G)`` of uniform (the first Fourier coefficient of the wrapped
    Gaussian dominates); the union over ``coords`` coordinates gives the bound reported here.
    """
    g = 2.0 ** -grid_bits(hiding_bits, log2_bound)
    log2_per = 1.0 - 2.0 * math.pi ** 2 * (std / g) ** 2 / math.log(2.0)
    return -(log2_per + math.log2(coords))


def hiding_report(hiding_bits: int, logit_bound: float, frac_bits: int, secret_coords: int,
                  noise_coords: int, derived_bound: float | None = None, partial_coords: int = 0,
                  partial_bound: float | None = None) -> dict[str, float]:
    """Statistical hiding a masked result achieves.

    ``secret_coords`` slot coordinates carry a logit: with the mask uniform over ``2^(s+1) B`` and
    ``|z| <= D`` each contributes distance ``<= 2^-s max(1, D / B)``, where ``D`` is the sound bound
    ``derived_bound`` over the model's input domain (:mod:`capc.he.bounds`; ``D = B`` when not given,
    i.e. trusting B).  ``partial_coords`` more carry partial sums of logit rows (single packing's last
    map, :func:`capc.he.layout.result_support`), each bounded by ``partial_bound`` ``A``: distance
    ``<= 2^-s max(1, A / B)`` each.  ``noise_coords`` carry only CKKS error, bounded by the tolerated
    ``2^-(f+1)``: each contributes <= 2^-(f+1) / (2^s B).  The total is the union bound over all
    coordinates.
    """
    ratio = 1.0 if derived_bound is None else max(1.0, float(derived_bound) / logit_bound)
    per_logit = 2.0 ** -hiding_bits * ratio
    partial_ratio = ratio if partial_bound is None else max(1.0, float(partial_bound) / logit_bound)
    per_partial = 2.0 ** -hiding_bits * partial_ratio
    noise = 2.0 ** -(frac_bits + 1) / (2.0 ** hiding_bits * logit_bound)
    total = secret_coords * per_logit + partial_coords * per_partial + noise_coords * noise
    report = {"per_logit_bits": -math.log2(per_logit) if per_logit < 1 else 0.0,
              "result_bits": -math.log2(total) if 0 < total < 1 else (float("inf") if total == 0 else 0.0),
              "secret_coords": float(secret_coords), "noise_coords": float(noise_coords),
              "requested_bits": float(hiding_bits), "logit_bound": float(logit_bound)}
    if partial_coords:
        report["partial_coords"] = float(partial_coords)
        report["per_partial_bits"] = -math.log2(per_partial) if per_partial < 1 else 0.0
    if derived_bound is not None:
        report["derived_logit_bound"] = float(derived_bound)
    return report


def draw_share_mask(shape: tuple[int, ...], hiding_bits: int, log2_bound: int, frac_bits: int) -> np.ndarray:
    """Fixed-point masks (uint64 ring elements with ``frac_bits`` fraction bits) for values of
    magnitude at most ``2^log2_bound``: uniform integers in ``[-2^(s+b+f), 2^(s+b+f))`` from the OS's
    CSPRNG, so that ``y - m`` is within statistical distance ``2^-s`` of ``-m`` for every such ``y``.

    The hybrid protocol's answering party puts one on each activation a garbled-circuit layer hands
    the querying party (:meth:`capc.he.ModelEvaluator.activation_mask`).

    Raises:
        HEError: if ``s + b + f`` leaves no room in 62 bits.
    """
    bits = int(hiding_bits) + int(log2_bound) + int(frac_bits)
    if bits > 61:
        raise HEError(f"an activation mask of {bits} bits does not fit the 64-bit ring")
    count = int(np.prod(shape))
    raw = np.frombuffer(os.urandom(8 * count), dtype=np.uint64)
    k = (raw >> np.uint64(64 - bits - 1)).astype(np.int64) - (1 << bits)
    return k.view(np.uint64).reshape(shape)
