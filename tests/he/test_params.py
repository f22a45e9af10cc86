"""Parameter validation: the original config files, capc's own files, and the mask constraints."""

from __future__ import annotations

import json

import numpy as np

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


def test_proposed_parameters_for_10_json_keep_shares_within_one(plan):
    """Regression: the proposal for config/10.json kept its scale 2^24, whose CKKS error moved shares
    by 2-3; a too-small scale is now refused by name and the proposal keeps the shares within +-1."""
    import ast

    from capc import fixedpoint
    from capc.config import he_params_from_dict
    from capc.he import ModelEvaluator, PublicPlan, QueryKeys

    with pytest.raises(ParameterError) as err:
        choose_params(plan, load_he_params(config_dir() / "10.json"))
    assert "too noisy: scale 2^24" in str(err.value)
    proposal = ast.literal_eval(str(err.value).split("parameters that work: ", 1)[1])
    he = he_params_from_dict(proposal)
    assert he.log2_scale >= 31
    pub = PublicPlan.from_bytes(plan.public_plan.to_bytes())
    keys = QueryKeys(pub, choose_params(pub, he), packing="single")
    ev = ModelEvaluator(plan, keys.public_context())
    for x in np.random.default_rng(7).uniform(0, 1, (40, 8, 8, 1)):
        blob, b = ev.evaluate_masked(keys.encrypt(x), 3)
        total = fixedpoint.to_signed(fixedpoint.reconstruct(fixedpoint.encode(keys.decrypt_logits(blob), 3), b))
        assert np.abs(total - fixedpoint.to_signed(fixedpoint.encode(plan.forward(x), 3))).max() <= 1


@pytest.mark.slow
def test_proposal_for_10_json_on_200_default_model_queries():
    """The issue's check at full size: the parameters proposed for config/10.json keep the shares of the
    default digits model within +-1 on 200 single-packing queries (3 fraction bits)."""
    import ast

    from capc import fixedpoint
    from capc.config import he_params_from_dict
    from capc.he import ModelEvaluator, PublicPlan, QueryKeys
    from capc.learning.datasets import load_dataset

    plan = compile_model(str(config_dir().parent / "models" / "digits" / "party-1.keras"))
    with pytest.raises(ParameterError) as err:
        choose_params(plan, load_he_params(config_dir() / "10.json"))
    he = he_params_from_dict(ast.literal_eval(str(err.value).split("parameters that work: ", 1)[1]))
    pub = PublicPlan.from_bytes(plan.public_plan.to_bytes())
    keys = QueryKeys(pub, choose_params(pub, he), packing="single")
    ev = ModelEvaluator(plan, keys.public_context())
    worst = 0
    for x in load_dataset("digits").x_query[:200]:
        blob, b = ev.evaluate_masked(keys.encrypt(x), 3)
        total = fixedpoint.to_signed(fixedpoint.reconstruct(fixedpoint.encode(keys.decrypt_logits(blob), 3), b))
        worst = max(worst, int(np.abs(total - fixedpoint.to_signed(fixedpoint.encode(plan.forward(x), 3))).max()))
    assert worst <= 1
