"""capc.config: the original parameter files load; every kind of bad file is rejected by field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capc.config import HE_STANDARD_MAX_BITS, HEParams, config_dir, he_params_from_dict, load_he_params
from capc.errors import ConfigError

ORIGINAL = {
    "10.json": dict(poly_modulus_degree=8192, coeff_modulus=(47, 24, 24, 24, 30), scale=2.0**24,
                    complex_packing=True, scale_derived=False),
    "11.json": dict(poly_modulus_degree=16384, coeff_modulus=(47, 24, 24, 24, 30), scale=2.0**24,
                    complex_packing=False, scale_derived=True),
    "12.json": dict(poly_modulus_degree=32768, coeff_modulus=(47, 24, 24, 24, 30), scale=2.0**24,
                    complex_packing=False, scale_derived=True),
}


@pytest.mark.parametrize("name", sorted(ORIGINAL))
def test_original_files_load_with_their_values(name: str) -> None:
    params = load_he_params(config_dir() / name)
    assert params.scheme_name == "HE_SEAL"
    assert params.security_level == 128
    for key, value in ORIGINAL[name].items():
        assert getattr(params, key) == value, key
    assert params.total_modulus_bits == 149
    assert params.multiplicative_depth == 3


def test_original_file_fields_are_exactly_the_originals() -> None:
    raw = json.loads((config_dir() / "10.json").read_text())
    assert raw == {"scheme_name": "HE_SEAL", "poly_modulus_degree": 8192, "security_level": 128,
                   "coeff_modulus": [47, 24, 24, 24, 30], "scale": 16777216, "complex_packing": True}
    raw11 = json.loads((config_dir() / "11.json").read_text())
    assert "scale" not in raw11 and raw11["complex_packing"] is False


def test_every_shipped_file_is_valid() -> None:
    files = sorted(config_dir().glob("*.json"))
    assert len(files) >= 3
    for f in files:
        assert isinstance(load_he_params(f), HEParams)


def base(**changes):
    d = {"scheme_name": "HE_SEAL", "poly_modulus_degree": 8192, "security_level": 128,
         "coeff_modulus": [47, 24, 24, 24, 30], "scale": 16777216, "complex_packing": True}
    d.update(changes)
    return {k: v for k, v in d.items() if v is not ...}


@pytest.mark.parametrize("changes, fieldname, words", [
    (dict(scheme_name="BFV"), "scheme_name", "unknown scheme"),
    (dict(scheme_name=3), "scheme_name", "unknown scheme"),
    (dict(poly_modulus_degree=8000), "poly_modulus_degree", "power of two"),
    (dict(poly_modulus_degree=0), "poly_modulus_degree", "power of two"),
    (dict(poly_modulus_degree=True), "poly_modulus_degree", "power of two"),
    (dict(poly_modulus_degree=65536), "poly_modulus_degree", "outside"),
    (dict(coeff_modulus=[60, 60, 60, 40]), "coeff_modulus", "exceeds the 128-bit security limit of 218"),
    (dict(poly_modulus_degree=2048, coeff_modulus=[30, 30], scale=2**20), "coeff_modulus", "limit of 54"),
    (dict(coeff_modulus=[]), "coeff_modulus", "non-empty"),
    (dict(coeff_modulus=[47, 61, 30]), "coeff_modulus", "entry 1"),
    (dict(coeff_modulus="47,24"), "coeff_modulus", "non-empty list"),
    (dict(security_level=100), "security_level", "not one of"),
    (dict(scale=2**40), "scale", "cannot be rescaled"),
    (dict(scale=2**50), "scale", "first prime"),
    (dict(scale=0.5), "scale", "greater than 1"),
    (dict(scale=float("nan")), "scale", "finite"),
    (dict(scale=..., coeff_modulus=[47, 24, 30, 30]), "scale", "cannot be derived"),
    (dict(complex_packing="yes"), "complex_packing", "true or false"),
    (dict(scheme_name=...), "scheme_name", "missing"),
    (dict(coeff_modulus=...), "coeff_modulus", "missing"),
    (dict(poly_modulus_degree=...), "poly_modulus_degree", "missing"),
    (dict(security_level=...), "security_level", "missing"),
    (dict(polymodulus_degree=8192), "polymodulus_degree", "unknown field"),
])
def test_rejections_name_the_field(changes, fieldname, words) -> None:
    with pytest.raises(ConfigError) as err:
        he_params_from_dict(base(**changes), source="t.json")
    msg = str(err.value)
    assert f"field '{fieldname}'" in msg and "t.json" in msg
    assert words in msg


def test_security_limit_is_inclusive() -> None:
    limit = HE_STANDARD_MAX_BITS[128][8192]
    p = he_params_from_dict(base(coeff_modulus=[60, 40, 40, 40, 38], scale=2**40))
    assert p.total_modulus_bits == limit


def test_defaults_and_derived_scale() -> None:
    p = he_params_from_dict(base(scale=..., complex_packing=...))
    assert p.scale == 2.0**24 and p.scale_derived and p.complex_packing is False
    single = he_params_from_dict(base(poly_modulus_degree=2048, coeff_modulus=[54], scale=...))
    assert single.multiplicative_depth == 0 and single.scale == 2.0**27


def test_roundtrip_json_dict() -> None:
    p = load_he_params(config_dir() / "10.json")
    assert he_params_from_dict(p.to_json_dict()) == p


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_he_params(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(ConfigError, match=r"bad.json: not valid JSON \(line 1"):
        load_he_params(bad)
    arr = tmp_path / "arr.json"
    arr.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        load_he_params(arr)
