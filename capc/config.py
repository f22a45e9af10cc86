"""Validated configuration: CKKS parameter files (``config/*.json``).

The original CaPC demo passed he-transformer JSON files such as ``config/10.json``::

    {"scheme_name": "HE_SEAL", "poly_modulus_degree": 8192, "security_level": 128,
     "coeff_modulus": [47, 24, 24, 24, 30], "scale": 16777216, "complex_packing": true}

:func:`load_he_params` reads exactly those fields into a frozen :class:`HEParams` and rejects a file
that SEAL would refuse or that could not work, with a :class:`~capc.errors.ConfigError` naming the file
and the field:

* ``scheme_name`` must name SEAL's CKKS (``HE_SEAL``, as he-transformer spelled it, or ``CKKS``);
* ``poly_modulus_degree`` must be a power of two that the HE security standard tabulates;
* the total ``coeff_modulus`` bit count must not exceed the Homomorphic Encryption Standard's bound
  for that degree and ``security_level`` (Albrecht et al., "Homomorphic Encryption Security
  Standard", 2018, Table 1, ternary secrets — the same table SEAL enforces);
* each prime is 2..60 bits (SEAL's limit);
* ``scale`` must be rescalable: with ``L`` middle primes every multiplication is followed by a rescale
  by one middle prime ``p_i``, which keeps the scale stable only if ``log2(scale)`` is within
  :data:`SCALE_SLACK_BITS` of ``log2(p_i)``; and a value at that scale must fit below the first prime.
  When ``scale`` is omitted (as in ``11.json``) it is derived from the middle primes, which must then
  all have the same size.

Which parameters can serve a particular model (levels, slots, mask headroom) is decided by
:mod:`capc.he`, which reads these objects.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from capc.errors import ConfigError

#: Largest total coeff-modulus bit count per ring degree for each security level (HE Standard, Table 1,
#: uniform ternary secret; identical to SEAL's ``util/hestdparms.h``).
HE_STANDARD_MAX_BITS: dict[int, dict[int, int]] = {
    128: {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881},
    192: {1024: 19, 2048: 37, 4096: 75, 8192: 152, 16384: 305, 32768: 611},
    256: {1024: 14, 2048: 29, 4096: 58, 8192: 118, 16384: 237, 32768: 476},
}

#: Scheme names accepted for SEAL's CKKS ("HE_SEAL" is he-transformer's backend name).
CKKS_SCHEME_NAMES = ("HE_SEAL", "CKKS")

#: How far (in bits) the scale may sit from a middle prime and still be rescaled stably.
SCALE_SLACK_BITS = 2.0

#: SEAL accepts primes of at most this many bits.
SEAL_MAX_PRIME_BITS = 60

_REQUIRED = ("scheme_name", "poly_modulus_degree", "security_level", "coeff_modulus")
_OPTIONAL = ("scale", "complex_packing")
#: Free-text fields capc's own parameter files may carry; they do not affect the cryptography.
_DESCRIPTIVE = ("description", "comment")


@dataclass(frozen=True)
class HEParams:
    """CKKS parameters as read from a he-transformer style JSON file (immutable, validated).

    Attributes:
        scheme_name: ``"HE_SEAL"`` or ``"CKKS"``.
        poly_modulus_degree: ring degree N; N/2 complex slots.
        security_level: bits of security the modulus size is checked against (128, 192 or 256).
        coeff_modulus: bit sizes of the RNS primes; the first bounds the final-level plaintext, the
            middle ones are consumed by one rescale each, the last is SEAL's special key-switching prime.
        scale: CKKS encoding scale Delta (derived from the middle primes when the file omits it).
        scale_derived: True when ``scale`` was not in the file.
        complex_packing: he-transformer's flag for packing two reals per complex slot.
        description: optional free text from capc's own files.
        source: the file the parameters came from, if any.
    """

    scheme_name: str
    poly_modulus_degree: int
    security_level: int
    coeff_modulus: tuple[int, ...]
    scale: float
    complex_packing: bool = False
    scale_derived: bool = False
    description: str = ""
    source: str | None = field(default=None, compare=False)

    @property
    def total_modulus_bits(self) -> int:
        """Sum of all prime sizes, the quantity the security standard bounds."""
        return sum(self.coeff_modulus)

    @property
    def slots(self) -> int:
        """Number of CKKS slots (N/2)."""
        return self.poly_modulus_degree // 2

    @property
    def multiplicative_depth(self) -> int:
        """Rescales available: the primes between the first and the special prime."""
        return max(len(self.coeff_modulus) - 2, 0)

    @property
    def log2_scale(self) -> float:
        """log2 of the encoding scale."""
        return math.log2(self.scale)

    @property
    def final_headroom_bits(self) -> float:
        """Bits of signed magnitude left for a value at the last level: log2(q0) - log2(scale) - 1."""
        return self.coeff_modulus[0] - self.log2_scale - 1

    def to_json_dict(self) -> dict[str, Any]:
        """The he-transformer style dictionary (only the fields that were or could be in a file)."""
        out: dict[str, Any] = {
            "scheme_name": self.scheme_name,
            "poly_modulus_degree": self.poly_modulus_degree,
            "security_level": self.security_level,
            "coeff_modulus": list(self.coeff_modulus),
        }
        if not self.scale_derived:
            out["scale"] = self.scale
        out["complex_packing"] = self.complex_packing
        if self.description:
            out["description"] = self.description
        return out


def _err(where: str, fieldname: str, msg: str) -> ConfigError:
    return ConfigError(f"{where}: field '{fieldname}': {msg}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def he_params_from_dict(data: Mapping[str, Any], source: str | None = None) -> HEParams:
    """Validate a he-transformer style parameter mapping and return :class:`HEParams`.

    Raises:
        ConfigError: naming the offending field (unknown scheme, non-power-of-two degree, modulus
            above the security limit, a scale that cannot be rescaled, a missing or unknown field).
    """
    where = source or "HE parameters"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL) - set(_DESCRIPTIVE))
    if unknown:
        raise _err(where, unknown[0], f"unknown field (known fields: {', '.join(_REQUIRED + _OPTIONAL)})")
    for name in _REQUIRED:
        if name not in data:
            raise _err(where, name, "missing (it has no default)")

    scheme = data["scheme_name"]
    if not isinstance(scheme, str) or scheme.upper() not in CKKS_SCHEME_NAMES:
        raise _err(where, "scheme_name", f"unknown scheme {scheme!r}; capc supports SEAL CKKS "
                   f"({' or '.join(CKKS_SCHEME_NAMES)})")

    n = data["poly_modulus_degree"]
    if not _is_int(n) or n <= 0 or n & (n - 1):
        raise _err(where, "poly_modulus_degree", f"{n!r} is not a power of two")

    level = data["security_level"]
    if not _is_int(level) or level not in HE_STANDARD_MAX_BITS:
        raise _err(where, "security_level", f"{level!r} is not one of {sorted(HE_STANDARD_MAX_BITS)}")
    table = HE_STANDARD_MAX_BITS[level]
    if n not in table:
        raise _err(where, "poly_modulus_degree", f"{n} is outside the security standard's table "
                   f"({min(table)}..{max(table)})")

    moduli = data["coeff_modulus"]
    if not isinstance(moduli, (list, tuple)) or not moduli:
        raise _err(where, "coeff_modulus", "must be a non-empty list of prime bit sizes")
    for i, bits in enumerate(moduli):
        if not _is_int(bits) or not 2 <= bits <= SEAL_MAX_PRIME_BITS:
            raise _err(where, "coeff_modulus", f"entry {i} = {bits!r} is not an integer bit size in "
                       f"2..{SEAL_MAX_PRIME_BITS}")
    total = sum(moduli)
    if total > table[n]:
        raise _err(where, "coeff_modulus", f"total {total} bits exceeds the {level}-bit security limit "
                   f"of {table[n]} bits for poly_modulus_degree {n}")

    middle = list(moduli[1:-1])
    scale_derived = "scale" not in data or data["scale"] is None
    if scale_derived:
        if middle:
            if len(set(middle)) != 1:
                raise _err(where, "scale", f"missing, and it cannot be derived because the middle primes "
                           f"{middle} differ in size; give the scale explicitly")
            scale = float(2 ** middle[0])
        else:
            # One prime (plus at most the special prime): no rescale happens, use half the first prime.
            scale = float(2 ** max(moduli[0] // 2, 1))
    else:
        raw = data["scale"]
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw) or raw <= 1:
            raise _err(where, "scale", f"{raw!r} is not a finite number greater than 1")
        scale = float(raw)
    log_scale = math.log2(scale)
    if log_scale >= moduli[0]:
        raise _err(where, "scale", f"2^{log_scale:g} does not fit below the first prime (2^{moduli[0]}): "
                   "a result at the last level could not be decrypted")
    for i, bits in enumerate(middle, start=1):
        if abs(log_scale - bits) > SCALE_SLACK_BITS:
            raise _err(where, "scale", f"2^{log_scale:g} cannot be rescaled by coeff_modulus[{i}] = "
                       f"{bits} bits (scale and rescaling primes must agree within "
                       f"{SCALE_SLACK_BITS:g} bits, or the scale drifts at every multiplication)")

    packing = data.get("complex_packing", False)
    if not isinstance(packing, bool):
        raise _err(where, "complex_packing", f"{packing!r} is not true or false")
    description = data.get("description", data.get("comment", ""))
    if not isinstance(description, str):
        raise _err(where, "description", "must be a string")

    return HEParams(
        scheme_name=scheme.upper(),
        poly_modulus_degree=n,
        security_level=level,
        coeff_modulus=tuple(moduli),
        scale=scale,
        complex_packing=packing,
        scale_derived=scale_derived,
        description=description,
        source=source,
    )


def load_he_params(path: str | Path) -> HEParams:
    """Read and validate a CKKS parameter file.

    Raises:
        ConfigError: when the file is missing, is not JSON, or fails validation (the message names
            the file and the field).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: HE parameter file not found") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read HE parameter file: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    return he_params_from_dict(data, source=str(p))


def config_dir() -> Path:
    """The directory holding the shipped parameter files (``config/`` next to the package)."""
    return Path(__file__).resolve().parent.parent / "config"
