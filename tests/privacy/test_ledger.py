"""Tests of capc.privacy.ledger: reserve-before-release, settle, restart, crash, exhaustion, replay,
concurrency between two real processes, the summary table and bad input."""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from capc.privacy.errors import BudgetExceeded, LedgerError, PrivacyParameterError, ReplayedQuery
from capc.privacy.gnmax import ConfidentGNMaxParams
from capc.privacy.ledger import LEDGER_FILENAME, BudgetLedger, format_budget_table, main
from capc.privacy.rdp import DEFAULT_ORDERS, GNMaxEvent, RdpAccountant

DELTA = 1e-5
PARAMS = ConfidentGNMaxParams(sigma_G=7, sigma_T=30, threshold=50, vote_scale_bits=8)
WORST = PARAMS.worst_case_events()
REPO_ROOT = Path(__file__).resolve().parents[2]


def _eps(answered: int, declined: int, unsettled: int = 0) -> float:
    acc = RdpAccountant()
    for _ in range(answered + unsettled):
        acc.compose_all(WORST)
    for _ in range(declined):
        acc.compose_all(PARAMS.threshold_events())
    return acc.get_epsilon(DELTA)


def _rows(path: Path) -> int:
    with sqlite3.connect(path) as c:
        return c.execute("SELECT COUNT(*) FROM charges").fetchone()[0]


def test_reserve_settle_and_counts(tmp_path):
    with BudgetLedger(tmp_path / "l.sqlite", 10.0, DELTA) as led:
        e1 = led.reserve("qp0", "q1", WORST)
        assert e1 == pytest.approx(_eps(0, 0, 1))
        assert led.settle("qp0", "q1", answered=False) == pytest.approx(_eps(0, 1))
        led.reserve("qp0", "q2", WORST)
        led.settle("qp0", "q2", answered=True)
        led.reserve("qp0", "q3", WORST)  # left unsettled
        s = led.summary("qp0")[0]
        assert (s.queries, s.answered, s.declined, s.unsettled) == (3, 1, 1, 1)
        assert s.eps_spent == pytest.approx(_eps(1, 1, 1))
        assert s.budget_eps == 10.0 and s.delta == DELTA and s.eps_remaining == pytest.approx(10.0 - s.eps_spent)
        assert led.summary("nobody")[0].queries == 0 and led.summary("nobody")[0].eps_spent == 0.0


def test_durability_pragmas(tmp_path):
    with BudgetLedger(tmp_path / "l.sqlite", 1.0, DELTA) as led:
        assert led._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert led._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_restart_restores_exactly_and_crash_counts_worst_case(tmp_path):
    path = tmp_path / "l.sqlite"
    led = BudgetLedger(path, 50.0, DELTA)
    for i in range(5):
        led.reserve("qp", f"a{i}", WORST)
        led.settle("qp", f"a{i}", answered=i % 2 == 0)
    led.reserve("qp", "crashed", WORST)  # the process "dies" before settle
    before = led.spent_eps("qp")
    led.close()
    reopened = BudgetLedger(path, None, None)
    assert reopened.spent_eps("qp") == before  # bit-for-bit, recomputed from the stored events
    assert before == pytest.approx(_eps(3, 2, 1))
    assert before > _eps(3, 3)  # the unsettled query counts at its worst case
    assert reopened.budget_eps == 50.0 and reopened.delta == DELTA
    reopened.close()


def test_budget_exhaustion_refuses_and_writes_nothing(tmp_path):
    path = tmp_path / "l.sqlite"
    budget = (_eps(0, 0, 1) + _eps(0, 0, 2)) / 2  # room for one worst case, not two
    with BudgetLedger(path, budget, DELTA) as led:
        led.reserve("qp7", "first", WORST)
        spent = led.spent_eps("qp7")
        with pytest.raises(BudgetExceeded) as err:
            led.reserve("qp7", "second", WORST)
        msg = str(err.value)
        assert "qp7" in msg and "budget" in msg and f"{budget:.6g}" in msg and f"{spent:.6g}" in msg
        assert err.value.query_eps == pytest.approx(_eps(0, 0, 2)) and err.value.query_eps > err.value.budget_eps
        assert led.spent_eps("qp7") == spent and _rows(path) == 1
        # Another querying party has its own budget.
        led.reserve("qp8", "first", WORST)
        # Settling "first" as declined lowers its charge to the threshold check, which frees room.
        assert _eps(0, 1, 1) <= budget
        led.settle("qp7", "first", answered=False)
        led.reserve("qp7", "second", WORST)
        with pytest.raises(BudgetExceeded):
            led.reserve("qp7", "third", WORST)
    assert _rows(path) == 3


def test_replayed_query_refused(tmp_path):
    with BudgetLedger(tmp_path / "l.sqlite", 100.0, DELTA) as led:
        led.reserve("qp", "same", WORST)
        spent = led.spent_eps("qp")
        with pytest.raises(ReplayedQuery, match="same"):
            led.reserve("qp", "same", WORST)
        led.settle("qp", "same", True)
        with pytest.raises(ReplayedQuery):
            led.reserve("qp", "same", WORST)
        assert led.spent_eps("qp") == spent
        led.reserve("other-qp", "same", WORST)  # ids are per querying party


def test_reserve_many_charges_a_prefix_in_one_transaction(tmp_path):
    """A batch charges exactly what the same queries one by one would, stops at the first query the
    budget cannot take (or a reused id), and settle_many matches settle."""
    path = tmp_path / "l.sqlite"
    budget = (_eps(0, 0, 3) + _eps(0, 0, 4)) / 2  # room for three worst cases, not four
    with BudgetLedger(path, budget, DELTA) as led:
        res = led.reserve_many("qp", ["a", "b", "c", "d", "e"], WORST)
        assert res.count == 3 and res.eps_spent == pytest.approx(_eps(0, 0, 3))
        assert isinstance(res.refusal, BudgetExceeded) and res.refusal.query_eps == pytest.approx(_eps(0, 0, 4))
        assert _rows(path) == 3 and led.spent_eps("qp") == pytest.approx(_eps(0, 0, 3))
        assert led.settle_many("qp", [("a", True), ("b", False), ("c", False)]) == pytest.approx(_eps(1, 2))
        res = led.reserve_many("qp", ["d", "b", "e"], WORST)  # "b" was used: stops there
        assert res.count == 1 and isinstance(res.refusal, ReplayedQuery) and "'b'" in str(res.refusal)
        res = led.reserve_many("qp", ["x", "x"], WORST)  # a repeat inside the batch
        assert isinstance(res.refusal, (ReplayedQuery, BudgetExceeded)) and res.count <= 1
    with BudgetLedger(tmp_path / "one.sqlite", budget, DELTA) as one:
        for q in "abc":
            one.reserve("qp", q, WORST)
        one.settle("qp", "a", True)
        one.settle("qp", "b", False)
        one.settle("qp", "c", False)
        with BudgetLedger(path, None, None) as led:
            res = led.reserve_many("qp2", ["a", "b", "c"], WORST)
            led.settle_many("qp2", [("a", True), ("b", False), ("c", False)])
            assert led.spent_eps("qp2") == pytest.approx(one.spent_eps("qp"))


def test_settle_many_is_all_or_nothing(tmp_path):
    path = tmp_path / "l.sqlite"
    with BudgetLedger(path, 100.0, DELTA) as led:
        assert led.reserve_many("qp", ["a", "b"], WORST).count == 2
        with pytest.raises(LedgerError, match="no reserved query 'zz'"):
            led.settle_many("qp", [("a", False), ("zz", True)])
        assert led.summary("qp")[0].unsettled == 2  # "a" was not settled either
        with pytest.raises(PrivacyParameterError):
            led.settle_many("qp", [("a", "yes")])


def test_settle_errors(tmp_path):
    with BudgetLedger(tmp_path / "l.sqlite", 100.0, DELTA) as led:
        with pytest.raises(LedgerError, match="no reserved query"):
            led.settle("qp", "ghost", True)
        led.reserve("qp", "q", WORST)
        led.settle("qp", "q", False)
        assert led.settle("qp", "q", False) == pytest.approx(_eps(0, 1))  # idempotent
        with pytest.raises(LedgerError, match="already settled"):
            led.settle("qp", "q", True)
        with pytest.raises(PrivacyParameterError):
            led.settle("qp", "q", "yes")  # type: ignore[arg-type]


def test_plain_gnmax_charges(tmp_path):
    plain = ConfidentGNMaxParams(5, 0, 0)
    with BudgetLedger(tmp_path / "l.sqlite", 100.0, DELTA) as led:
        led.reserve("qp", "q", plain.worst_case_events())
        assert led.settle("qp", "q", False) == 0.0  # declined plain GNMax (impossible, but consistent)
        led.reserve("qp", "r", plain.worst_case_events())
        led.settle("qp", "r", True)
        assert led.spent_eps("qp") == RdpAccountant().compose(GNMaxEvent(5)).get_epsilon(DELTA)


def test_open_errors(tmp_path):
    path = tmp_path / "l.sqlite"
    with pytest.raises(LedgerError, match="required"):
        BudgetLedger(path, None, None)
    assert not path.exists()
    BudgetLedger(path, 2.0, DELTA, orders=[2, 4, 8]).close()
    with pytest.raises(LedgerError, match="budget_eps"):
        BudgetLedger(path, 3.0, DELTA)
    with pytest.raises(LedgerError, match="delta"):
        BudgetLedger(path, 2.0, 1e-6)
    with pytest.raises(LedgerError, match="orders"):
        BudgetLedger(path, 2.0, DELTA, orders=DEFAULT_ORDERS)  # differs from the stored grid
    with BudgetLedger(path, 2.0, DELTA, orders=[2, 4, 8]) as led:
        assert list(led.orders) == [2.0, 4.0, 8.0]
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError):
        BudgetLedger(junk, 1.0, DELTA)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as c:
        c.execute("CREATE TABLE other (x INTEGER)")
    c.close()
    with pytest.raises(LedgerError, match="not a capc budget ledger"):
        BudgetLedger(foreign, 1.0, DELTA)
    with sqlite3.connect(foreign) as c:
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    c.close()
    assert tables == {"other"}  # left untouched
    with pytest.raises(LedgerError, match="no budget ledger"):
        BudgetLedger(tmp_path / "missing.sqlite", None, None, create=False)
    for bad in (dict(budget_eps=-1.0, delta=DELTA), dict(budget_eps=1.0, delta=0.0), dict(budget_eps=float("nan"), delta=DELTA), dict(budget_eps="lots", delta=DELTA)):
        with pytest.raises(PrivacyParameterError):
            BudgetLedger(tmp_path / "x.sqlite", **bad)


def test_bad_ids_and_events(tmp_path):
    with BudgetLedger(tmp_path / "l.sqlite", 10.0, DELTA) as led:
        for qp, q in (("", "q"), ("qp", ""), (None, "q"), ("qp", "a\nb"), ("qp", "x" * 300)):
            with pytest.raises(PrivacyParameterError):
                led.reserve(qp, q, WORST)  # type: ignore[arg-type]
        with pytest.raises(PrivacyParameterError):
            led.reserve("qp", "q", [("gnmax", 1.0)])  # type: ignore[list-item]
        assert led.summary() == []


def test_budget_table_and_main(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    with BudgetLedger(run / LEDGER_FILENAME, 5.0, DELTA) as led:
        led.reserve("alice", "1", WORST)
        led.settle("alice", "1", True)
        led.reserve("bob", "1", WORST)
    table = format_budget_table(run)
    assert table == format_budget_table(run / LEDGER_FILENAME)
    lines = table.splitlines()
    assert "delta = 1e-05" in lines[0]
    assert lines[1].split()[:2] == ["querying", "party"]
    alice = next(line for line in lines if line.startswith("alice")).split()
    assert alice[1:5] == ["1", "1", "0", "0"] and float(alice[5]) == pytest.approx(_eps(1, 0), abs=1e-4)
    bob = next(line for line in lines if line.startswith("bob")).split()
    assert bob[1:5] == ["1", "0", "0", "1"]
    assert main([str(run)]) == 0
    assert "alice" in capsys.readouterr().out
    assert main([str(tmp_path / "nowhere")]) == 1
    assert "no budget ledger" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    BudgetLedger(empty / LEDGER_FILENAME, 1.0, DELTA).close()
    assert "(no queries charged)" in format_budget_table(empty)


_WORKER = textwrap.dedent(
    """
    import sys
    from capc.privacy.errors import BudgetExceeded
    from capc.privacy.gnmax import ConfidentGNMaxParams
    from capc.privacy.ledger import BudgetLedger
    path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    worst = ConfidentGNMaxParams(7, 30, 50).worst_case_events()
    led = BudgetLedger(path, None, None, create=False)
    ok = refused = 0
    for i in range(n):
        try:
            led.reserve("shared-qp", f"{tag}-{i}", worst)
        except BudgetExceeded:
            refused += 1
            continue
        led.settle("shared-qp", f"{tag}-{i}", answered=True)
        ok += 1
    print(ok, refused)
    """
)


def _run_two_workers(path: Path, n: int) -> list[tuple[int, int]]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(path), tag, str(n)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for tag in ("A", "B")
    ]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        ok, refused = map(int, stdout.split())
        out.append((ok, refused))
    return out


def test_two_processes_lose_no_charge(tmp_path):
    path = tmp_path / "l.sqlite"
    BudgetLedger(path, math.inf, DELTA).close()
    results = _run_two_workers(path, 40)
    assert results == [(40, 0), (40, 0)]
    with BudgetLedger(path, None, None) as led:
        s = led.summary("shared-qp")[0]
        assert (s.queries, s.answered) == (80, 80)
        assert s.eps_spent == pytest.approx(_eps(80, 0))


def test_two_processes_never_overspend(tmp_path):
    path = tmp_path / "l.sqlite"
    budget = (_eps(25, 0) + _eps(26, 0)) / 2  # room for exactly 25 answered queries
    BudgetLedger(path, budget, DELTA).close()
    results = _run_two_workers(path, 20)
    assert sum(ok for ok, _ in results) == 25 and sum(r for _, r in results) == 15
    with BudgetLedger(path, None, None) as led:
        assert led.summary("shared-qp")[0].queries == 25
        assert led.spent_eps("shared-qp") <= budget
