"""The hybrid evaluation (CKKS segments + garbled-circuit ReLU / max-pool layers) against TensorFlow,
on frozen GraphDefs of the original demo's three layouts (input ``input``, output ``output/BiasAdd``):

* every logit within the sound worst-case bound :func:`capc.he.hybrid.logit_error_bound` and within
  the stated tolerance ``TOLERANCE`` (2^-f = 1/256 shares; measured errors are below 0.01);
* the argmax equal to TensorFlow's on every query whose top-2 margin exceeds twice the tolerance
  (random-weight models put a few queries closer than that; those are counted, not compared);
* batch packing on the original ``config/10.json`` (its 30-bit special prime rules out rotations, and
  batch packing needs none), single packing on capc's recommended parameters.

The default run uses a few queries per case; ``-m slow`` runs 100 per layout and packing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from capc.config import load_he_params
from capc.he.hybrid import HybridPlan, logit_error_bound
from capc.he.params import ckks_error
from .hybrid_harness import HybridPair
from .test_compiler_hybrid import _inputs, demo_plans, run_graph  # noqa: F401 (demo_plans: a fixture)

CONFIG_10 = Path(__file__).resolve().parents[2] / "config" / "10.json"
FRAC_BITS = 8
#: stated tolerance on |HE+GC logit - TensorFlow logit| at FRAC_BITS = 8 for these layouts (measured:
#: below 0.01 with batch packing on config/10.json, below 0.01 with single packing at scale 2^40)
TOLERANCE = 0.025


def check(demo_plans, layout: str, packing: str, n: int, every_query: bool = False) -> None:
    gd, plan = demo_plans[layout]
    he = load_he_params(str(CONFIG_10)) if packing == "batch" and layout != "cryptonets" else None
    x = _inputs(n, seed=11).astype(np.float64)
    ref = run_graph(gd, x.astype(np.float32)).astype(np.float64)
    pair = HybridPair(plan, he, packing, FRAC_BITS)
    try:
        got = pair.logits(x)
    finally:
        pair.close()
    err = np.abs(got - ref)
    if isinstance(plan, HybridPlan):
        bound = logit_error_bound(plan, FRAC_BITS, ckks_error(np.log2(pair.keys.setup.he_params.scale), packing))
        assert err.max() <= bound, (err.max(), bound)
    assert err.max() <= TOLERANCE, err.max()
    top2 = np.sort(ref, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * TOLERANCE
    assert clear.sum() >= (0.8 if n >= 50 else 0.5) * n  # the comparison below covers most queries
    assert np.array_equal(got[clear].argmax(axis=1), ref[clear].argmax(axis=1))
    if every_query:  # the seeded queries' smallest margin is well above the observed error
        assert np.array_equal(got.argmax(axis=1), ref.argmax(axis=1)), (err.max(), np.min(top2[:, 1] - top2[:, 0]))


@pytest.mark.parametrize("layout,packing,n", [("cryptonets-relu", "batch", 8), ("mlp", "batch", 6),
                                              ("cryptonets-relu", "single", 2), ("mlp", "single", 2)])
def test_hybrid_logits_match_tensorflow(demo_plans, layout, packing, n):
    check(demo_plans, layout, packing, n)


@pytest.mark.slow
@pytest.mark.parametrize("packing", ["batch", "single"])
@pytest.mark.parametrize("layout", ["cryptonets", "cryptonets-relu", "mlp"])
def test_hundred_queries_match_tensorflow(demo_plans, layout, packing):
    check(demo_plans, layout, packing, 100, every_query=True)


def test_config_10_refuses_single_packing_naming_batch(demo_plans):
    from capc.he import ParameterError, choose_params

    with pytest.raises(ParameterError, match="key switching would be unsound.*batch packing"):
        choose_params(demo_plans["cryptonets-relu"][1].public_plan, load_he_params(str(CONFIG_10)),
                      packing="single", frac_bits=3, hiding_bits=30)


def test_config_10_serves_the_relu_layouts_in_batch_packing(demo_plans):
    from capc.he import choose_params

    for layout in ("cryptonets-relu", "mlp"):
        setup = choose_params(demo_plans[layout][1].public_plan, load_he_params(str(CONFIG_10)),
                              packing="batch", frac_bits=FRAC_BITS, hiding_bits=30)
        assert setup.depth == 1  # each segment is one affine map: the chain's 3 levels are plenty


def test_config_10_refuses_the_square_model_naming_why(demo_plans):
    from capc.he import ParameterError, choose_params

    with pytest.raises(ParameterError) as info:
        choose_params(demo_plans["cryptonets"][1].public_plan, load_he_params(str(CONFIG_10)),
                      packing="batch", frac_bits=3, hiding_bits=30)
    text = str(info.value)
    assert "complex_packing" in text and "too few levels" in text and "parameters that work" in text
