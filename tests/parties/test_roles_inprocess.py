"""The protocol's rules, with the querying party, the answering parties and the privacy guardian in
one process: the real role code over in-memory channels, with the plaintext providers."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest

from capc.net.errors import ChannelClosed
from capc.net.messages import GcStart, NoisyArgmaxRequest, QueryRequest, VoteShare
from capc.parties.inprocess import InProcessRun
from capc.parties.plaintext import plaintext_providers
from capc.parties.queries import new_query_key, wire_query_ids
from capc.parties.runconfig import PartyEntry, ProtocolParams, RunConfig
from capc.privacy.gnmax import ConfidentGNMaxParams
from capc.privacy.rdp import RdpAccountant

C = 4  # classes
D = 6  # input values per query
RNG = np.random.default_rng(7)
WEIGHTS = {f"model-{j}": RNG.normal(size=(D, C)) for j in range(1, 6)}


def forward_for(path: str):
    w = WEIGHTS[Path(path).name]
    return (lambda x: logits(np.asarray(x, dtype=np.float64).reshape(len(x), D), w)), (D,), C


def logits(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (x - 0.5) @ w  # centred, so that the models disagree on some queries


def plurality(x: np.ndarray, models: list[str]) -> list[int]:
    votes = np.zeros((len(x), C), dtype=int)
    for m in models:
        votes[np.arange(len(x)), np.argmax(logits(x, WEIGHTS[m]), axis=1)] += 1
    return np.argmax(votes, axis=1).tolist()  # lowest index wins ties, as in the circuit


def make_run(tmp_path: Path, n_aps: int = 3, n_queries: int = 6, seed: int = 0, **protocol
             ) -> tuple[InProcessRun, np.ndarray]:
    x = np.random.default_rng(seed).uniform(0, 1, size=(n_queries, D))
    np.savez(tmp_path / "queries.npz", x=x, y=np.zeros(n_queries, dtype=int))
    parties = [PartyEntry("qp-0")] + [PartyEntry(f"ap-{i}", model=f"model-{i}") for i in range(1, n_aps + 1)]
    parties.append(PartyEntry("pg"))
    params = dict(num_classes=C, frac_bits=8, vote_scale_exp=4, sigma_gnmax=0.0, sigma_threshold=0.0,
                  threshold=0.0, budget_eps=math.inf, timeout=10.0, plaintext=True)
    params.update(protocol)
    cfg = RunConfig(run_id="inproc", run_dir=str(tmp_path / "run"), pki_dir=str(tmp_path / "pki"),
                    parties=tuple(parties), protocol=ProtocolParams(**params), queries=tuple(range(n_queries)),
                    dataset=None, query_file=str(tmp_path / "queries.npz"), query_key=new_query_key())
    return InProcessRun(cfg, plaintext_providers(forward_for)), x


def record(obj, name: str, log: list):
    """Wrap ``obj.name`` so that every call's first message-like argument is logged."""
    original = getattr(obj, name)

    def wrapper(*args, **kw):
        log.append(args)
        return original(*args, **kw)

    setattr(obj, name, wrapper)


def ap_requests(run: InProcessRun) -> list[tuple[str, list[int]]]:
    """(AP, query ids) of every QueryRequest the APs evaluate, in order."""
    seen: list[tuple[str, list[int]]] = []
    lock = threading.Lock()
    for name, ap in run.aps.items():
        original = ap.step_1a

        def step_1a(evaluator, qp, req, pending=None, _orig=original, _name=name):
            with lock:
                seen.append((_name, req.query_ids.tolist()))
            return _orig(evaluator, qp, req, pending)

        ap.step_1a = step_1a
    return seen


#: noise under which every query is answered (threshold 0, tiny threshold noise) and so charged
#: the worst case: the budget then pays for an exact number of queries
NOISE = dict(sigma_gnmax=2.0, sigma_threshold=0.2, threshold=0.0)


def budget_for(k: int, delta: float = 1e-5) -> float:
    """A budget that pays for k answered queries and not k + 1."""
    params = ConfidentGNMaxParams(NOISE["sigma_gnmax"], NOISE["sigma_threshold"], NOISE["threshold"], 4)
    acc, eps = RdpAccountant(), []
    for _ in range(k + 1):
        acc.compose_all(params.worst_case_events())
        eps.append(acc.get_epsilon(delta))
    return (eps[-2] + eps[-1]) / 2


@pytest.mark.parametrize("batch_size", [1, 4])
def test_labels_are_the_plurality_vote_in_both_modes(tmp_path: Path, batch_size: int) -> None:
    run, x = make_run(tmp_path, n_aps=3, n_queries=7, batch_size=batch_size,
                      packing="batch" if batch_size > 1 else "single")
    res = run.run_querying_party()
    got = [q["label"] for q in res["queries"]]
    assert got == plurality(x, ["model-1", "model-2", "model-3"])
    assert all(q["status"] == "answered" and q["n_answering"] == 3 for q in res["queries"])
    # one request per batch: ceil(7 / B) QueryRequests per AP
    ledger_rows = len(res["queries"])
    assert ledger_rows == 7


@pytest.mark.parametrize("batch_size", [1, 3])
def test_budget_stop_sends_nothing_to_any_ap_afterwards(tmp_path: Path, batch_size: int) -> None:
    # room for 4 queries: with B = 3 the budget runs out inside batch 2 of 3; with B = 1 at query 5
    run, _ = make_run(tmp_path, n_queries=9, batch_size=batch_size,
                      packing="batch" if batch_size > 1 else "single", budget_eps=budget_for(4), **NOISE)
    seen = ap_requests(run)
    res = run.run_querying_party()
    statuses = [q["status"] for q in res["queries"]]
    assert statuses[:4] == ["answered"] * 4 and statuses[4] == "refused_budget"
    stop_batch = 4 // batch_size
    # the run stopped at the refusing batch: no QueryRequest to any AP for a later batch
    asked = sorted({tuple(ids) for _, ids in seen})
    assert len(asked) == stop_batch + 1
    assert len(res["queries"]) == (stop_batch + 1) * batch_size
    assert all(s == "refused_budget" for s in statuses[statuses.index("refused_budget"):])


def test_budget_exhausted_in_batch_one_of_three(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path, n_queries=9, batch_size=3, packing="batch", budget_eps=budget_for(1), **NOISE)
    seen = ap_requests(run)
    res = run.run_querying_party()
    statuses = [q["status"] for q in res["queries"]]
    assert statuses == ["answered", "refused_budget", "refused_budget"]
    assert {tuple(ids) for _, ids in seen} == {tuple(wire_query_ids(run.cfg)[:3])}


def test_replayed_ids_are_refused_by_the_qp_and_by_the_pg(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path, n_queries=3)
    first = run.run_querying_party()
    assert [q["status"] for q in first["queries"]] == ["answered"] * 3
    # the same QP asks again: its own label store refuses every id, nothing is sent
    seen = ap_requests(run)
    again = run.run_querying_party()
    assert [q["status"] for q in again["queries"]] == ["replayed"] * 3 and seen == []
    # a QP that lost its label store replays to fresh APs: the PG's ledger refuses the ids
    (Path(run.cfg.run_dir) / "labels-qp-0.sqlite").unlink()
    fresh = InProcessRun(run.cfg, run.providers)
    replay = fresh.run_querying_party()
    assert [q["status"] for q in replay["queries"]] == ["replayed"] * 3
    # and the APs of the first run refuse replayed ids themselves
    (Path(run.cfg.run_dir) / "labels-qp-0.sqlite").unlink()
    third = run.run_querying_party()
    assert [q["status"] for q in third["queries"]] == ["failed"] * 3


def test_an_ap_that_fails_is_dropped_and_the_others_go_on(tmp_path: Path) -> None:
    run, x = make_run(tmp_path, n_aps=3, n_queries=4)
    ap = run.aps["ap-2"]
    original = ap.step_1b
    calls = []

    def dies_on_second(link, pending):
        calls.append(1)
        if len(calls) == 2:
            link.chan.close()
            raise ChannelClosed("ap-2 crashed")
        return original(link, pending)

    ap.step_1b = dies_on_second
    res = run.run_querying_party()
    qs = res["queries"]
    assert [q["n_answering"] for q in qs] == [3, 2, 2, 2]
    assert qs[0]["label"] == plurality(x[:1], ["model-1", "model-2", "model-3"])[0]
    assert [q["label"] for q in qs[1:]] == plurality(x[1:], ["model-1", "model-3"])
    assert "ap-2" in res["dropped_aps"]


def test_an_unreachable_ap_is_left_out(tmp_path: Path) -> None:
    run, x = make_run(tmp_path, n_aps=3, n_queries=3)
    run.down.add("ap-1")
    res = run.run_querying_party()
    assert [q["label"] for q in res["queries"]] == plurality(x, ["model-2", "model-3"])


def test_pg_refuses_when_vote_shares_are_missing(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path, n_aps=2, n_queries=2, timeout=1.0)
    ap = run.aps["ap-1"]
    ap.step_2 = lambda qp, ids, m: None  # claims to have sent its shares, sends nothing
    res = run.run_querying_party()
    assert [q["status"] for q in res["queries"]] == ["refused", "refused"]
    assert "vote shares arrived before the deadline" in res["queries"][0]["error"]
    # regression: the shares ap-2 sent for the refused queries were kept forever; now they are dropped,
    # and so is a share that arrives late for a refused query
    assert run.pg._shares == {}
    ids = [q["wire_id"] for q in res["queries"]]
    late = VoteShare(qp_id="qp-0", query_ids=ids[:1], num_classes=C, shares=np.zeros((1, C), dtype=np.uint64))
    run.pg.step_2("ap-1", late)
    assert run.pg._shares == {}


def test_the_label_reaches_only_the_qp(tmp_path: Path) -> None:
    """Everything the APs and the PG receive, as messages and as 2PC bytes: no label among it; the
    PG's 2PC input from the QP is the answered bit alone."""
    run, x = make_run(tmp_path, n_aps=3, n_queries=12, threshold=1.5)  # split votes are declined
    received: dict[str, list] = {}
    for name, party in [*run.aps.items(), ("pg", run.pg)]:
        log = received.setdefault(name, [])
        handler = party.serve_connection if name != "pg" else party.handle

        def wrap(chan, peer, _h=handler, _log=log):
            orig_recv, orig_raw = chan.recv, chan.raw_io

            def recv(*a, **k):
                m = orig_recv(*a, **k)
                _log.append(m)
                return m

            def raw_io(*a, **k):
                io = orig_raw(*a, **k)
                inner = io.recv_exact

                def recv_exact(n):
                    data = inner(n)
                    _log.append(data)
                    return data

                io.recv_exact = recv_exact
                return io

            chan.recv, chan.raw_io = recv, raw_io
            return _h(chan, peer)

        if name == "pg":
            party.handle = wrap
        else:
            party.serve_connection = wrap
    res = run.run_querying_party()
    answered = [q["answered"] for q in res["queries"]]
    assert any(answered) and not all(answered)
    kinds = {type(m).__name__ for ms in received.values() for m in ms if not isinstance(m, bytes)}
    assert kinds <= {"PublicContext", "QueryRequest", "GcStart", "VoteShare", "NoisyArgmaxRequest", "Shutdown"}
    pg_bytes = [m for m in received["pg"] if isinstance(m, bytes)]
    assert pg_bytes == [bytes([a]) for a in answered]  # the answered bits, nothing else
    assert all(not any(isinstance(m, bytes) for m in received[ap]) for ap in run.aps)
