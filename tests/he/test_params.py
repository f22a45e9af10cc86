"""Parameter validation: the original config files, capc's own files, and the mask constraints."""

from __future__ import annotations

import json

import pytest

from capc.config import config_dir, he_params_from_dict, load_he_params
from capc.he import ParameterError, choose_params, compile_model, recommend_params


@pytest.fixture(scope="module")
def plan(model):
    return compile_model(model)


def test_original_files_load_and_are_refused_with_reasons(plan):
    ten = load_he_params(config_dir() / "10.json")
    with pytest.raises(ParameterError) as err:
        choose_params(plan, ten)
    msg = str(err.value)
    assert "complex_packing" in msg and "too few levels" in msg and "parameters that work" in msg
    for name in ("11.json", "12.json"):
        with pytest.raises(ParameterError, match="depth 5.*3 middle primes"):
            choose_params(plan, load_he_params(config_dir() / name))


def test_recommended_parameters_validate(plan):
    he = recommend_params(plan)
    setup = choose_params(plan, he)
    assert he.poly_modulus_degree == 16384 and not he.complex_packing
    assert setup.mask_headroom_bits >= 0 and setup.hiding_bits == 40


def test_capc_config_files_serve_the_default_models(plan):
    for path in sorted(config_dir().glob("capc-*.json")):
        setup = choose_params(plan, load_he_params(path))
        assert setup.hiding_bits >= 40


def test_headroom_refused_and_precision_refused(plan):
    tight = he_params_from_dict({"scheme_name": "HE_SEAL", "poly_modulus_degree": 16384,
                                 "security_level": 128, "coeff_modulus": [60] + [40] * 5 + [60],
                                 "scale": 2.0 ** 40})
    with pytest.raises(ParameterError, match="headroom"):
        choose_params(plan, tight)
    with pytest.raises(ParameterError, match="float64"):
        choose_params(plan, None, hiding_bits=44, logit_bound=64, frac_bits=8)


def test_bad_arguments(plan):
    with pytest.raises(ParameterError.__mro__[1], match="packing"):
        choose_params(plan, None, packing="diagonal")
    with pytest.raises(ParameterError.__mro__[1], match="logit_bound"):
        choose_params(plan, None, logit_bound=float("nan"))


def test_recommendation_is_json_serialisable(plan):
    json.dumps(recommend_params(plan).to_json_dict())
