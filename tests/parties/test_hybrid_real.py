"""The hybrid protocol with the real primitives in one process: CKKS on SEAL and capc's garbled
circuits between the QP and three APs (threads over socketpairs), both packings, config/10.json's
modulus chain. Labels must equal the plaintext plurality vote of the three models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from capc.parties.crypto import GarbledCircuits, Providers, RealHE, _RealModel
from capc.parties.inprocess import InProcessRun
from capc.parties.queries import new_query_key
from capc.parties.runconfig import PartyEntry, ProtocolParams, RunConfig
from test_hybrid_inprocess import C, D, PLANS, plurality

CONFIG_10 = Path(__file__).resolve().parents[2] / "config" / "10.json"


class PlanHE(RealHE):
    """Real CKKS, with each AP's plan given directly instead of compiled from a file."""

    def load_model(self, path: str, cfg: RunConfig) -> _RealModel:
        return _RealModel(PLANS[Path(path).name], cfg)


def make_run(tmp_path: Path, he_params: Path, n_queries: int, **protocol) -> tuple[InProcessRun, np.ndarray]:
    x = np.random.default_rng(11).uniform(0, 1, size=(n_queries, D))
    np.savez(tmp_path / "queries.npz", x=x, y=np.zeros(n_queries, dtype=int))
    parties = [PartyEntry("qp-0")] + [PartyEntry(f"ap-{i}", model=f"model-{i}") for i in range(1, 4)]
    parties.append(PartyEntry("pg"))
    params = dict(num_classes=C, frac_bits=8, hiding_bits=30, vote_scale_exp=4, sigma_gnmax=0.0,
                  sigma_threshold=0.0, threshold=0.0, budget_eps=math.inf, timeout=60.0,
                  he_params=str(he_params))
    params.update(protocol)
    cfg = RunConfig(run_id="hybrid-real", run_dir=str(tmp_path / "run"), pki_dir=str(tmp_path / "pki"),
                    parties=tuple(parties), protocol=ProtocolParams(**params), queries=tuple(range(n_queries)),
                    dataset=None, query_file=str(tmp_path / "queries.npz"), query_key=new_query_key())
    return InProcessRun(cfg, Providers(PlanHE(), GarbledCircuits())), x


def labels_of(run: InProcessRun) -> list[dict]:
    """Run the QP through its queries; the per-query results, with every party's thread error-free."""
    try:
        res = run.run_querying_party()
    finally:
        run.close()
    assert not run.errors
    return res["queries"]


def test_batch_packing_on_config_10(tmp_path: Path) -> None:
    run, x = make_run(tmp_path, CONFIG_10, 6, packing="batch", batch_size=3)
    queries = labels_of(run)
    assert [q["label"] for q in queries] == plurality(x)
    assert all(q["n_answering"] == 3 for q in queries)


def test_single_packing_needs_a_key_switching_prime(tmp_path: Path) -> None:
    he = json.loads(CONFIG_10.read_text())
    he["coeff_modulus"] = [47, 24, 24, 24, 47]  # a special prime as large as the largest data prime
    path = tmp_path / "n8192-special47.json"
    path.write_text(json.dumps(he))
    run, x = make_run(tmp_path, path, 3, frac_bits=3)  # scale 2^24 with rotations holds f <= 4
    assert [q["label"] for q in labels_of(run)] == plurality(x)
