"""Regression: a unit whose weights an L2 penalty shrank to ~1e-9 (the shipped ReLU digits models have
such units) encodes to zero at scale 2^24; its output ciphertext then had c1 = 0 and SEAL refused the
evaluation ("result ciphertext is transparent"). Every path must now evaluate it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from capc.config import load_he_params
from capc.he import ModelEvaluator, QueryKeys, choose_params
from capc.he.plan import Plan, RawLinear, normalise

CONFIG_10 = Path(__file__).resolve().parents[2] / "config" / "10.json"


def _plan() -> Plan:
    rng = np.random.default_rng(2)
    w = rng.normal(0, 0.3, (6, 16))
    w[2] = rng.normal(0, 1e-9, 16)  # a dead unit
    return Plan(normalise([RawLinear(sp.csr_matrix(w), rng.normal(0, 0.1, 6), "d")], 16), (16,), [])


@pytest.mark.parametrize("packing,fast", [("batch", True), ("batch", False), ("single", True)])
def test_dead_unit_evaluates(packing: str, fast: bool) -> None:
    plan = _plan()
    he = load_he_params(str(CONFIG_10)) if packing == "batch" else None
    keys = QueryKeys(plan.public_plan, choose_params(plan.public_plan, he, packing=packing, frac_bits=3),
                     packing=packing)
    ev = ModelEvaluator(plan, keys.public_context(), fast_batch=fast)
    x = np.random.default_rng(3).uniform(0, 1, (3, 16))
    if packing == "batch":
        got = keys.decrypt_logits(ev.evaluate(keys.encrypt(x)))
    else:
        got = np.stack([keys.decrypt_logits(ev.evaluate(keys.encrypt(v))) for v in x])
    ev.close()
    assert np.abs(got - plan.forward(x)).max() < 2e-3
