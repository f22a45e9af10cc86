"""CaPC end to end: real party processes, mutual-TLS sockets on 127.0.0.1, CKKS and garbled circuits.

Nothing is mocked. With sigma_G = sigma_T = 0 and T = 0 the label must equal the plaintext plurality
of the answering parties' own predictions on every query (lowest index wins ties); faults (an AP killed
mid-query, a PG restart, an exhausted budget, replays, malformed input) must give clear errors, keep
the other parties up, never record a label twice and never under-count the privacy ledger.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from capc.privacy.ledger import LEDGER_FILENAME, BudgetLedger, format_budget_table
from capc.privacy.rdp import GNMaxEvent, RdpAccountant

from .protocol_harness import ap_predictions, clear_margin_queries, make_run, plurality, start_with_fault

pytestmark = pytest.mark.timeout(900)


@pytest.mark.parametrize("n_aps, n_queries", [(1, 3), (3, 4), (5, 3)])
def test_noiseless_label_is_the_plaintext_plurality(tmp_path, n_aps, n_queries):
    queries = clear_margin_queries(n_aps, n_queries)
    if n_aps > 1:
        # add a query on which the APs disagree, when the pool has one: it exercises the tie rule
        pool = clear_margin_queries(n_aps, 300)
        preds = ap_predictions(n_aps, pool)
        split = [q for k, q in enumerate(pool) if len(set(preds[:, k])) > 1 and q not in queries]
        queries = queries[: n_queries - 1] + split[:1] if split else queries
    run = make_run(tmp_path, n_aps, queries)
    try:
        run.start_servers()
        assert run.run_qp() == 0, run.log("qp-0").read_text()[-3000:]
        expected = plurality(ap_predictions(n_aps, queries))
        labels = run.labels()
        assert [labels[q] for q in queries] == expected
        # the other parties are still serving after the QP finished
        assert all(p.poll() is None for name, p in run.procs.items() if name != "qp-0")
    finally:
        run.stop_all()
    # a charge per query in the ledger, written before each release
    led = BudgetLedger(run.dir / LEDGER_FILENAME, None, None, create=False)
    assert led.summary("qp-0")[0].queries == len(queries)
    led.close()
    # leaks: the AP and PG logs and files never mention a label or a vote value
    for name in [f"ap-{i}" for i in range(1, n_aps + 1)] + ["pg"]:
        text = run.log(name).read_text().lower()
        assert "label" not in text and "vote:" not in text, name
        timing = run.dir / f"timing-{name}.jsonl"
        if timing.exists():
            assert "label" not in timing.read_text().lower()
    cols = [r[1] for r in sqlite3.connect(run.dir / LEDGER_FILENAME).execute("PRAGMA table_info(charges)")]
    assert not any("label" in c or "vote" in c for c in cols)


@pytest.mark.parametrize("sequential", [True, False], ids=["aps-one-after-the-other", "aps-at-once"])
def test_batch_packing_gives_the_same_labels(tmp_path, sequential):
    """--batch_size > 1: one request per batch for each step (CKKS slots in step 1a), an AP's step 1b
    overlapping the next AP's evaluation when the APs take the batch one after the other."""
    queries = clear_margin_queries(2, 11)
    run = make_run(tmp_path, 2, queries, packing="batch", batch_size=4, sequential_batch_aps=sequential)
    try:
        run.start_servers()
        assert run.run_qp() == 0, run.log("qp-0").read_text()[-3000:]
        labels = run.labels()
        assert [labels[q] for q in queries] == plurality(ap_predictions(2, queries))
        assert "4 queries: step 1a done" in run.log("ap-1").read_text()
        assert "3 queries: step 1a done" in run.log("ap-1").read_text()  # the last, partial batch
        # each AP laid out its weights and started its workers for batches of 4 at set-up
        for ap in ("ap-1", "ap-2"):
            steps = [json.loads(line) for line in (run.dir / f"timing-{ap}.jsonl").read_text().splitlines()]
            prep = [r for r in steps if r["step"] == "setup_prepare"]
            assert len(prep) == 1 and prep[0]["batch"] == 4
            assert steps.index(prep[0]) < min(i for i, r in enumerate(steps) if r["step"] == "1a_he_inference")
    finally:
        run.stop_all()


def test_ap_killed_in_the_argmax_of_a_batch_is_dropped_from_the_batch(tmp_path):
    """Batch packing, an AP dies when step 1b reaches the batch's third query: it never confirmed
    that its vote shares reached the PG, so the whole batch is labelled by the others (the PG and the
    QP agree on who voted), and nothing is labelled twice."""
    queries = clear_margin_queries(3, 6)
    run = make_run(tmp_path, 3, queries, packing="batch", batch_size=6, sequential_batch_aps=True)
    try:
        for p in run.cfg.parties:
            if p.name == "ap-1":
                start_with_fault(run, "ap-1", "ap_exit_at_argmax", queries[2])
            elif p.role != "qp":
                run.start(p.name)
        assert run.run_qp() == 0, run.log("qp-0").read_text()[-3000:]
        assert run.procs["ap-1"].wait(30) == 3
        res = run.results()
        assert "ap-1" in res["dropped_aps"]
        preds = ap_predictions(3, queries)
        labels = run.labels()
        by_id = {q["query_id"]: q for q in res["queries"]}
        for k, q in enumerate(queries):
            voters = preds[1:]
            assert by_id[q]["n_answering"] == len(voters), by_id[q]
            assert labels[q] == plurality(voters[:, k:k + 1])[0]
    finally:
        run.stop_all()


def test_ap_killed_mid_query_is_dropped_and_the_run_goes_on(tmp_path):
    queries = clear_margin_queries(3, 4)
    run = make_run(tmp_path, 3, queries)
    try:
        for p in run.cfg.parties:
            if p.name == "ap-2":
                start_with_fault(run, "ap-2", "ap_exit_at_query", queries[1])
            elif p.role != "qp":
                run.start(p.name)
        assert run.run_qp() == 0, run.log("qp-0").read_text()[-3000:]
        res = run.results()
        assert "ap-2" in res["dropped_aps"]
        assert run.procs["ap-2"].wait(30) == 3
        preds = ap_predictions(3, queries)
        labels = run.labels()
        assert labels[queries[0]] == plurality(preds[:, :1])[0]
        survivors = preds[[0, 2], :]
        for k, q in enumerate(queries[1:], start=1):
            assert labels[q] == plurality(survivors[:, k:k + 1])[0]
        answered = [q for q in res["queries"] if q["answered"]]
        assert len(answered) == len(queries) and {q["n_answering"] for q in answered[1:]} == {2}
        assert run.procs["ap-1"].poll() is None and run.procs["pg"].poll() is None
    finally:
        run.stop_all()


def test_budget_exhausted_refuses_and_never_under_counts(tmp_path):
    acc = RdpAccountant().compose(GNMaxEvent(2.0), 2)
    budget = acc.get_epsilon(1e-5) + 0.01  # room for exactly two answered queries
    queries = clear_margin_queries(1, 4)
    run = make_run(tmp_path, 1, queries, sigma_gnmax=2.0, budget_eps=budget)
    try:
        run.start_servers()
        assert run.run_qp() == 0
        res = run.results()
        assert [q["answered"] for q in res["queries"]] == [True, True, False]
        assert "budget" in res["queries"][2]["error"]
        assert res["queries"][2]["status"] == "refused_budget"
        assert run.procs["pg"].poll() is None
    finally:
        run.stop_all()
    led = BudgetLedger(run.dir / LEDGER_FILENAME, None, None, create=False)
    s = led.summary("qp-0")[0]
    assert s.queries == 2 and s.eps_spent <= budget and s.eps_spent == pytest.approx(acc.get_epsilon(1e-5))
    led.close()
    table = format_budget_table(run.dir)
    assert "qp-0" in table
    out = subprocess.run([sys.executable, "-m", "capc.cli", "budget", str(run.dir)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "qp-0" in out.stdout


def test_budget_exhausted_inside_a_batch(tmp_path):
    """Batch packing: the PG charges the batch's queries in one ledger transaction, as many as the
    budget allows (here two of four); the others are refused with the reason, none is charged.
    The refusal's typed code stops the run: the second batch is never encrypted nor sent to the AP
    (before, the QP matched the text "budget_exhausted", which the batch refusal does not contain,
    and every AP went on evaluating the later batches)."""
    acc = RdpAccountant().compose(GNMaxEvent(2.0), 2)
    budget = acc.get_epsilon(1e-5) + 0.01
    queries = clear_margin_queries(1, 8)
    run = make_run(tmp_path, 1, queries, sigma_gnmax=2.0, budget_eps=budget, packing="batch", batch_size=4)
    try:
        run.start_servers()
        assert run.run_qp() == 0, run.log("qp-0").read_text()[-3000:]
        res = run.results()["queries"]
        assert [q["answered"] for q in res] == [True, True, False, False]  # the second batch never asked
        assert all("budget" in q["error"] and q["status"] == "refused_budget" for q in res[2:])
        assert run.log("ap-1").read_text().count("step 1a done") == 1  # the AP got one batch request
        assert run.procs["pg"].poll() is None
    finally:
        run.stop_all()
    with BudgetLedger(run.dir / LEDGER_FILENAME, None, None, create=False) as led:
        s = led.summary("qp-0")[0]
        assert (s.queries, s.answered) == (2, 2) and s.eps_spent == pytest.approx(acc.get_epsilon(1e-5))
    assert [q for q, label in run.labels().items() if label is not None] == queries[:2]


def test_pg_restart_between_queries_keeps_the_ledger(tmp_path):
    queries = clear_margin_queries(1, 3)
    run = make_run(tmp_path, 1, queries, sigma_gnmax=1.0)
    try:
        run.start("ap-1")
        start_with_fault(run, "pg", "pg_exit_after_query", queries[0])
        qp = run.start("qp-0")
        assert run.procs["pg"].wait(120) == 3  # crashed after settling the first query
        run.start("pg")  # a fresh PG process reopens the same ledger file
        assert qp.wait(300) == 0, run.log("qp-0").read_text()[-3000:]
        res = {q["query_id"]: q for q in run.results()["queries"]}
        # before and after the restart: answered. The query in flight when the PG died may be lost
        # (its vote shares went to the dead process) -- then with a clear error, and never charged.
        assert res[queries[0]]["answered"] and res[queries[-1]]["answered"]
        mid = res[queries[1]]
        assert mid["answered"] or "pg closed the connection" in mid["error"]
        answered = sum(q["answered"] for q in res.values())
    finally:
        run.stop_all()
    led = BudgetLedger(run.dir / LEDGER_FILENAME, None, None, create=False)
    s = led.summary("qp-0")[0]
    assert s.queries == answered
    expected = RdpAccountant().compose(GNMaxEvent(1.0), answered).get_epsilon(1e-5)
    assert s.eps_spent == pytest.approx(expected)
    led.close()


def test_replayed_query_ids_are_refused_everywhere(tmp_path):
    queries = clear_margin_queries(1, 2)
    run = make_run(tmp_path, 1, queries)
    try:
        run.start_servers()
        assert run.run_qp() == 0
        first = run.labels()
        # the same QP again: its label store refuses before anything is sent
        assert run.run_qp() == 0
        assert all("replayed" in q["error"] for q in run.results()["queries"])
        # a QP that lost its store: the AP refuses the replayed ids, the PG would too
        (run.dir / "labels-qp-0.sqlite").unlink()
        for extra in ("-wal", "-shm"):
            (run.dir / f"labels-qp-0.sqlite{extra}").unlink(missing_ok=True)
        assert run.run_qp() == 0
        again = run.results()["queries"]
        assert not any(q["answered"] for q in again)
        assert all(q["status"] == "failed" and "no answering party" in q["error"] for q in again)
        assert "already answered" in run.log("ap-1").read_text()
        assert run.procs["ap-1"].poll() is None and run.procs["pg"].poll() is None
    finally:
        run.stop_all()
    led = BudgetLedger(run.dir / LEDGER_FILENAME, None, None, create=False)
    assert led.summary("qp-0")[0].queries == len(first)  # never charged twice
    led.close()


def test_replay_refused_by_the_pg_is_a_replay_and_the_run_goes_on(tmp_path):
    """A QP that lost its label store asks its old ids again, and the AP (restarted, so it has
    forgotten them) evaluates them: the PG's ledger refuses each one as a replay, with its own code,
    and the QP goes on to the next id. Before, the PG answered "budget_exhausted" and the QP stopped
    after the first replay."""
    queries = clear_margin_queries(1, 2)
    run = make_run(tmp_path, 1, queries)
    try:
        run.start_servers()
        assert run.run_qp() == 0
        assert all(q["answered"] for q in run.results()["queries"])
        for extra in ("", "-wal", "-shm"):
            (run.dir / f"labels-qp-0.sqlite{extra}").unlink(missing_ok=True)
        run.kill("ap-1")
        run.start("ap-1")
        assert run.run_qp() == 0, run.log("qp-0").read_text()[-3000:]
        again = run.results()["queries"]
        assert [q["query_id"] for q in again] == queries  # both asked: the first replay did not stop the run
        assert all(q["status"] == "replayed" and "already used" in q["error"] for q in again), again
        assert run.procs["pg"].poll() is None
    finally:
        run.stop_all()
    with BudgetLedger(run.dir / LEDGER_FILENAME, None, None, create=False) as led:
        assert led.summary("qp-0")[0].queries == len(queries)  # never charged twice


def test_bad_peers_and_bad_messages_leave_the_ap_serving(tmp_path):
    from capc.net.certs import make_run_pki
    from capc.net.channel import connect
    from capc.net.errors import NetError, PeerError
    from capc.net.messages import ModelPlan, PublicContext, QueryRequest, StepDone
    from capc.net.tls import PartyTLS

    queries = clear_margin_queries(1, 1)
    run = make_run(tmp_path, 1, queries)
    ap = run.cfg.party("ap-1")
    try:
        run.start_servers()
        me = PartyTLS.load(run.run_files["qp-0"].parent, "qp-0")  # the QP's own directory
        # 1. a garbage public context and a query before any context: clear refusals
        chan = connect(ap.host, ap.port, me, "ap-1", deadline=120, run_id=run.cfg.run_id)
        chan.recv(ModelPlan, timeout=60)
        chan.send(PublicContext(context_bytes=b"not a SEAL context", params={}))
        with pytest.raises(PeerError, match="refused"):
            chan.recv(StepDone, timeout=60)
        chan.send(QueryRequest(query_ids=[1], ciphertexts=(b"x",), num_classes=10, frac_bits=8))
        with pytest.raises(PeerError, match="before the public context"):
            chan.recv(StepDone, timeout=60)
        chan.close()
        # 2. a real context, then wrong shapes and a corrupt ciphertext: refused, session still usable
        from capc.he import HEError
        from capc.learning.datasets import load_dataset
        from capc.net.messages import QueryResult
        from capc.parties.crypto import RealHE

        chan = connect(ap.host, ap.port, me, "ap-1", deadline=60, run_id=run.cfg.run_id)
        keys = RealHE().keyring(run.cfg).for_plan(chan.recv(ModelPlan, timeout=60).plan_bytes).keys
        chan.send(PublicContext(context_bytes=keys.public_context(), params={}))
        chan.recv(StepDone, timeout=120)
        x = load_dataset("digits").x_query[queries[0]]
        chan.send(QueryRequest(query_ids=[900], ciphertexts=(keys.encrypt(x),), num_classes=7, frac_bits=8))
        with pytest.raises(PeerError, match="7 classes"):
            chan.recv(QueryResult, timeout=60)
        chan.send(QueryRequest(query_ids=[901], ciphertexts=(keys.encrypt(x)[:-100],), num_classes=10, frac_bits=8))
        with pytest.raises(PeerError, match="refused"):
            chan.recv(QueryResult, timeout=60)
        with pytest.raises(HEError, match="NaN"):
            keys.encrypt(np.full_like(x, np.nan))
        chan.send(QueryRequest(query_ids=[902], ciphertexts=(keys.encrypt(x),), num_classes=10, frac_bits=8))
        assert chan.recv(QueryResult, timeout=120).query_ids.tolist() == [902]
        chan.close()
        # 3. a malformed frame: the AP drops that connection only
        chan = connect(ap.host, ap.port, me, "ap-1", deadline=60, run_id=run.cfg.run_id)
        chan.recv(ModelPlan, timeout=60)
        chan.raw_io().sendall(b"JUNK" * 10)
        with pytest.raises(NetError):
            chan.recv(StepDone, timeout=60)
        chan.close()
        # 4. a certificate from another CA is refused
        other = make_run_pki(tmp_path / "other-pki", ["qp-0"])
        stranger = PartyTLS.load(tmp_path / "other-pki", "qp-0")
        with pytest.raises(NetError):
            connect(ap.host, ap.port, stranger, "ap-1", deadline=10, run_id=run.cfg.run_id)
        # 5. the AP still answers a real querying party
        assert run.run_qp() == 0
        assert run.labels()[queries[0]] == plurality(ap_predictions(1, queries))[0]
    finally:
        run.stop_all()
