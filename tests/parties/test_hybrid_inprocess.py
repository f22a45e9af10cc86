"""The hybrid (ReLU / max-pool) protocol's message flow in one process, with the plaintext providers:
segment by segment, a GC layer between segments, the AP's activation mask removed by the AP."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from capc.he.hybrid import RawMaxPool, RawRelu, build_plan
from capc.he.plan import RawLinear
from capc.net.messages import QueryRequest
from capc.parties.inprocess import InProcessRun
from capc.parties.plaintext import plaintext_providers
from capc.parties.queries import new_query_key
from capc.parties.runconfig import PartyEntry, ProtocolParams, RunConfig

C, D = 4, 12


def _plan(seed: int):
    rng = np.random.default_rng(seed)
    w1 = sp.csr_matrix(rng.normal(0, 0.6, (8, D)))
    w2 = sp.csr_matrix(rng.normal(0, 0.6, (6, 4)))
    w3 = sp.csr_matrix(rng.normal(0, 0.6, (C, 6)))
    windows = np.arange(8).reshape(4, 2)  # max over pairs
    return build_plan([RawLinear(w1, rng.normal(0, 0.1, 8), "d1"), RawRelu("r1"), RawMaxPool(windows, "p1"),
                       RawLinear(w2, rng.normal(0, 0.1, 6), "d2"), RawRelu("r2"),
                       RawLinear(w3, rng.normal(0, 0.1, C), "d3")], (D,), ["d1", "r1", "p1", "d2", "r2", "d3"])


PLANS = {f"model-{j}": _plan(j) for j in range(1, 4)}


def make_run(tmp_path: Path, n_queries: int, **protocol) -> tuple[InProcessRun, np.ndarray]:
    x = np.random.default_rng(3).uniform(0, 1, size=(n_queries, D))
    np.savez(tmp_path / "queries.npz", x=x, y=np.zeros(n_queries, dtype=int))
    parties = [PartyEntry("qp-0")] + [PartyEntry(f"ap-{i}", model=f"model-{i}") for i in range(1, 4)]
    parties.append(PartyEntry("pg"))
    params = dict(num_classes=C, frac_bits=12, vote_scale_exp=4, sigma_gnmax=0.0, sigma_threshold=0.0,
                  threshold=0.0, budget_eps=math.inf, timeout=10.0, plaintext=True)
    params.update(protocol)
    cfg = RunConfig(run_id="hybrid", run_dir=str(tmp_path / "run"), pki_dir=str(tmp_path / "pki"),
                    parties=tuple(parties), protocol=ProtocolParams(**params), queries=tuple(range(n_queries)),
                    dataset=None, query_file=str(tmp_path / "queries.npz"), query_key=new_query_key())
    return InProcessRun(cfg, plaintext_providers(lambda path: PLANS[Path(path).name])), x


def plurality(x: np.ndarray) -> list[int]:
    votes = np.zeros((len(x), C), dtype=int)
    for plan in PLANS.values():
        votes[np.arange(len(x)), np.argmax(plan.forward(x), axis=1)] += 1
    return np.argmax(votes, axis=1).tolist()


def test_plan_has_two_gc_layers() -> None:
    plan = PLANS["model-1"]
    assert [g.kind for g in plan.gc_layers] == ["maxpool", "relu"] and plan.gc_layers[0].relu


@pytest.mark.parametrize("batch_size", [1, 3])
def test_hybrid_labels_are_the_plurality_vote(tmp_path: Path, batch_size: int) -> None:
    run, x = make_run(tmp_path, 5, batch_size=batch_size, packing="batch" if batch_size > 1 else "single")
    seen: list[tuple[str, str, int]] = []
    lock = threading.Lock()
    for name, ap in run.aps.items():
        orig_1a, orig_gc = ap.step_1a, ap.step_1a_gc_layer

        def step_1a(evaluator, qp, req, pending=None, _o=orig_1a, _n=name):
            with lock:
                seen.append((_n, "1a", req.segment))
            return _o(evaluator, qp, req, pending)

        def gc_layer(link, evaluator, pending, _o=orig_gc, _n=name):
            with lock:
                seen.append((_n, "gc", pending.segment))
            return _o(link, evaluator, pending)

        ap.step_1a, ap.step_1a_gc_layer = step_1a, gc_layer
    res = run.run_querying_party()
    run.close()
    assert [q["label"] for q in res["queries"]] == plurality(x)
    batches = math.ceil(5 / batch_size)
    for ap in run.aps:
        steps = [(s, k) for n, s, k in seen if n == ap]
        assert steps == [("1a", 0), ("gc", 0), ("1a", 1), ("gc", 1), ("1a", 2)] * batches


def test_ap_refuses_a_segment_out_of_order(tmp_path: Path) -> None:
    """A later segment without the GC layer before it (so without the AP's mask) is refused."""
    run, _ = make_run(tmp_path, 1)
    ap = run.aps["ap-1"]
    from capc.parties.answering_party import Refusal

    ev = ap.model.evaluator(b"plain-key")
    req = QueryRequest(query_ids=[5], ciphertexts=(bytes([1]) + b"\0" * 32,), num_classes=C, frac_bits=12,
                       segment=1)
    with pytest.raises(Refusal, match="does not follow the GC layer"):
        ap.step_1a(ev, "qp-0", req, None)
    run.close()
