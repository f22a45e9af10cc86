"""The privacy guardian's durable budget ledger: one SQLite file, one row per query, per querying party.

Protocol (docs/design.md §6.4):

1. Before step 3 releases anything, :meth:`BudgetLedger.reserve` writes the query's *worst-case*
   charge (threshold check + GNMax) in one transaction. If that charge would take the querying
   party's epsilon past the budget it raises :class:`BudgetExceeded` and writes nothing; a query id
   the party already used raises :class:`ReplayedQuery`.
2. After step 3, :meth:`BudgetLedger.settle` records the outcome. A declined query keeps only its
   threshold events; an answered one keeps everything.
3. A crash between the two leaves the row ``reserved`` at the worst case, so the ledger can
   over-count but never under-count.

Spent epsilon is recomputed from the stored events (RDP summed per order over a fixed grid, then the
improved conversion of :mod:`capc.privacy.rdp`), never from a cached float, so reopening the file
after a restart gives exactly the same numbers. Durability: WAL journal with ``synchronous=FULL``;
every charge is one ``BEGIN IMMEDIATE`` transaction, so concurrent processes serialise on SQLite's
write lock and no charge is lost or double-spent.

``format_budget_table(run_dir_or_file)`` and :func:`main` back the ``capc budget RUN_DIR`` command; a
run directory holds the ledger as :data:`LEDGER_FILENAME`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Iterable, Sequence

import numpy as np

from capc.privacy.errors import BudgetExceeded, LedgerError, PrivacyError, PrivacyParameterError, ReplayedQuery
from capc.privacy.rdp import (
    PrivacyEvent,
    RdpAccountant,
    ThresholdEvent,
    event_from_dict,
    validate_delta,
    validate_orders,
)

__all__ = ["BudgetLedger", "QpSummary", "LEDGER_FILENAME", "format_budget_table", "main"]

#: The ledger's file name inside a run directory.
LEDGER_FILENAME = "privacy_ledger.sqlite"
_FORMAT = "capc-budget-ledger/1"
_BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS charges (
    qp_id          TEXT NOT NULL,
    query_id       TEXT NOT NULL,
    worst_events   TEXT NOT NULL,  -- JSON list of events charged at reserve()
    charged_events TEXT NOT NULL,  -- JSON list of events charged now
    state          TEXT NOT NULL CHECK (state IN ('reserved', 'answered', 'declined')),
    reserved_at    REAL NOT NULL,
    settled_at     REAL,
    PRIMARY KEY (qp_id, query_id)
);
"""


@dataclass(frozen=True)
class Reservation:
    """What :meth:`BudgetLedger.reserve_many` charged: the first ``count`` queries, leaving
    ``eps_spent`` spent; ``refusal`` says why the next query was not charged (None: all were)."""

    count: int
    eps_spent: float
    refusal: PrivacyError | None


@dataclass(frozen=True)
class QpSummary:
    """What one querying party has spent: query counts by state and epsilon at the ledger's delta."""

    qp_id: str
    queries: int
    answered: int
    declined: int
    unsettled: int
    eps_spent: float
    delta: float
    budget_eps: float

    @property
    def eps_remaining(self) -> float:
        """budget - spent (may be 0, never negative)."""
        return max(0.0, self.budget_eps - self.eps_spent)


def _events_json(events: Iterable[PrivacyEvent]) -> str:
    # Canonical text so identical charges group together in SQL and sum in a stable order.
    return json.dumps([e.to_dict() for e in events], sort_keys=True, separators=(",", ":"))


def _check_id(value: object, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 256 or any(ord(c) < 32 for c in value):
        raise PrivacyParameterError(f"{name} must be a non-empty printable string of at most 256 characters, got {value!r}")
    return value


class BudgetLedger:
    """A durable per-querying-party (epsilon, delta) budget over a fixed grid of RDP orders.

    ``budget_eps``, ``delta`` and ``orders`` are stored in the file when it is created. Reopening
    with ``None`` uses the stored values; passing different values is refused with
    :class:`LedgerError` (so a restart cannot silently change the budget).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        budget_eps: float | None,
        delta: float | None,
        orders: Sequence[float] | None = None,
        *,
        create: bool = True,
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise LedgerError(f"no budget ledger at {self.path}")
            if budget_eps is None or delta is None:
                raise LedgerError(f"{self.path} does not exist: budget_eps and delta are required to create it")
        existed = self.path.exists() and self.path.stat().st_size > 0
        if budget_eps is not None:
            try:
                b = float(budget_eps)
            except (TypeError, ValueError):
                raise PrivacyParameterError(f"budget_eps must be a number, got {budget_eps!r}") from None
            if math.isnan(b) or b < 0:
                raise PrivacyParameterError(f"budget_eps must be >= 0 (inf allowed), got {budget_eps!r}")
            budget_eps = b
        if delta is not None:
            delta = validate_delta(delta)
        given_orders = None if orders is None else validate_orders(orders)
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=_BUSY_TIMEOUT_S, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._begin()
            if existed and not self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
            ).fetchone():
                raise LedgerError(f"{self.path} is an SQLite file but not a capc budget ledger; refusing to modify it")
            for stmt in _SCHEMA.strip().split(";"):
                if stmt.strip():
                    self._conn.execute(stmt)
            meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                if budget_eps is None or delta is None:
                    raise LedgerError(f"{self.path} is a new ledger: budget_eps and delta are required")
                stored_orders = given_orders if given_orders is not None else validate_orders(None)
                rows = [
                    ("format", _FORMAT),
                    ("budget_eps", repr(budget_eps)),
                    ("delta", repr(delta)),
                    ("orders", json.dumps([float(o) for o in stored_orders])),
                    ("created_at", repr(time.time())),
                ]
                self._conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", rows)
                meta = dict(rows)
            self._conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self._rollback_quietly()
            self.close()
            raise LedgerError(f"cannot open budget ledger {self.path}: {exc}") from None
        except Exception:
            self._rollback_quietly()
            self.close()
            raise
        if meta.get("format") != _FORMAT:
            self.close()
            raise LedgerError(f"{self.path} is not a capc budget ledger (format {meta.get('format')!r})")
        self.budget_eps = float(meta["budget_eps"])
        self.delta = float(meta["delta"])
        self.orders = validate_orders(json.loads(meta["orders"]))
        mismatch = None
        if budget_eps is not None and budget_eps != self.budget_eps:
            mismatch = f"{self.path} was created with budget_eps={self.budget_eps!r}, not {budget_eps!r}"
        elif delta is not None and delta != self.delta:
            mismatch = f"{self.path} was created with delta={self.delta!r}, not {delta!r}"
        elif given_orders is not None and not np.array_equal(given_orders, self.orders):
            mismatch = f"{self.path} was created with a different grid of RDP orders"
        if mismatch:
            self.close()
            raise LedgerError(mismatch)

    # -- transactions ---------------------------------------------------------------------------
    def _begin(self) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise LedgerError(f"budget ledger {self.path} is locked or unwritable ({exc})") from None

    @contextlib.contextmanager
    def _write_transaction(self, what: str) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` ... ``COMMIT``; any error rolls back and nothing is written."""
        self._begin()
        try:
            yield
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback_quietly()
            raise LedgerError(f"budget ledger {self.path}: {what} failed ({exc})") from None
        except BaseException:
            self._rollback_quietly()
            raise

    def _rollback_quietly(self) -> None:
        try:
            if getattr(self, "_conn", None) is not None and self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def close(self) -> None:
        """Close the database connection."""
        if getattr(self, "_conn", None) is not None:
            self._conn.close()
            self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> "BudgetLedger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- accounting -----------------------------------------------------------------------------
    def _accountant(self, qp_id: str, extra: Sequence[PrivacyEvent] = ()) -> RdpAccountant:
        acc = RdpAccountant(self.orders)
        rows = self._conn.execute(
            "SELECT charged_events, COUNT(*) FROM charges WHERE qp_id = ? GROUP BY charged_events ORDER BY charged_events",
            (qp_id,),
        ).fetchall()
        for text, count in rows:
            for item in json.loads(text):
                acc.compose(event_from_dict(item), count)
        acc.compose_all(extra)
        return acc

    def spent_eps(self, qp_id: str) -> float:
        """Epsilon (at the ledger's delta) charged so far to ``qp_id``, unsettled queries at worst case."""
        _check_id(qp_id, "qp_id")
        return self._accountant(qp_id).get_epsilon(self.delta)

    def reserve(self, qp_id: str, query_id: str, events_worst_case: Sequence[PrivacyEvent]) -> float:
        """Charge the worst case of one query before its result is released; return the new spent eps.

        Raises :class:`ReplayedQuery` if ``query_id`` was already used by ``qp_id`` and
        :class:`BudgetExceeded` if the charge would exceed the budget; in both cases nothing is written.
        """
        res = self.reserve_many(qp_id, [query_id], events_worst_case)
        if res.refusal is not None:
            raise res.refusal
        return res.eps_spent

    def reserve_many(self, qp_id: str, query_ids: Sequence[str],
                     events_worst_case: Sequence[PrivacyEvent]) -> "Reservation":
        """Charge the worst case of each query of a batch, in order and in one transaction, until a
        query id was used before (:class:`ReplayedQuery`) or a charge would exceed the budget
        (:class:`BudgetExceeded`); that query and the ones after it are not charged.

        Returns a :class:`Reservation`: how many leading queries were charged, the spent epsilon
        after them, and the refusal of the first query left out (None if all were charged).
        """
        _check_id(qp_id, "qp_id")
        ids = [_check_id(q, "query_id") for q in query_ids]
        events = tuple(events_worst_case)
        if not all(isinstance(e, PrivacyEvent) for e in events):
            raise PrivacyParameterError("events_worst_case must be a sequence of PrivacyEvent objects")
        text = _events_json(events)
        refusal: PrivacyError | None = None
        rows = []
        with self._write_transaction("reserve"):
            acc = self._accountant(qp_id)
            spent = acc.get_epsilon(self.delta)
            seen: set[str] = set()
            for qid in ids:
                if qid in seen or self._conn.execute(
                    "SELECT 1 FROM charges WHERE qp_id = ? AND query_id = ?", (qp_id, qid)
                ).fetchone():
                    refusal = ReplayedQuery(f"query id {qid!r} was already used by querying party {qp_id!r}; refused")
                    break
                after = acc.compose_all(events).get_epsilon(self.delta)
                if after > self.budget_eps:
                    refusal = BudgetExceeded(qp_id, spent, after, self.budget_eps, self.delta)
                    break
                seen.add(qid)
                rows.append((qp_id, qid, text, text, time.time()))
                spent = after
            self._conn.executemany(
                "INSERT INTO charges (qp_id, query_id, worst_events, charged_events, state, reserved_at)"
                " VALUES (?, ?, ?, ?, 'reserved', ?)",
                rows,
            )
        return Reservation(len(rows), spent, refusal)

    def settle(self, qp_id: str, query_id: str, answered: bool) -> float:
        """Record the outcome of a reserved query; return the new spent eps.

        Not answered: the charge drops to the threshold events only. Answered: the worst case stays.
        Settling twice with the same outcome is a no-op; with a different outcome, or for a query that
        was never reserved, :class:`LedgerError` is raised.
        """
        return self.settle_many(qp_id, [(query_id, answered)])

    def settle_many(self, qp_id: str, outcomes: Sequence[tuple[str, bool]]) -> float:
        """:meth:`settle` for several ``(query_id, answered)`` in one transaction (all or nothing);
        returns the new spent eps."""
        _check_id(qp_id, "qp_id")
        items = []
        for query_id, answered in outcomes:
            _check_id(query_id, "query_id")
            if not isinstance(answered, (bool, np.bool_)):
                raise PrivacyParameterError(f"answered must be a bool, got {answered!r}")
            items.append((query_id, bool(answered)))
        with self._write_transaction("settle"):
            for query_id, answered in items:
                state = "answered" if answered else "declined"
                row = self._conn.execute(
                    "SELECT worst_events, state FROM charges WHERE qp_id = ? AND query_id = ?", (qp_id, query_id)
                ).fetchone()
                if row is None:
                    raise LedgerError(f"settle(): querying party {qp_id!r} has no reserved query {query_id!r}")
                worst_text, old_state = row
                if old_state != "reserved" and old_state != state:
                    raise LedgerError(f"query {query_id!r} of {qp_id!r} was already settled as {old_state}, "
                                      f"not {state}")
                if old_state == "reserved":
                    worst = [event_from_dict(d) for d in json.loads(worst_text)]
                    kept = worst if answered else [e for e in worst if isinstance(e, ThresholdEvent)]
                    self._conn.execute(
                        "UPDATE charges SET charged_events = ?, state = ?, settled_at = ? WHERE qp_id = ? AND query_id = ?",
                        (_events_json(kept), state, time.time(), qp_id, query_id),
                    )
            after = self._accountant(qp_id).get_epsilon(self.delta)
        return after

    def summary(self, qp_id: str | None = None) -> list[QpSummary]:
        """Per querying party (all of them, sorted, or just ``qp_id``): counts and spent epsilon."""
        if qp_id is not None:
            _check_id(qp_id, "qp_id")
        self._conn.execute("BEGIN")  # one read snapshot, so counts and epsilon agree
        try:
            return self._summary_locked(qp_id)
        finally:
            self._conn.execute("COMMIT")

    def _summary_locked(self, qp_id: str | None) -> list[QpSummary]:
        if qp_id is not None:
            ids = [qp_id]
        else:
            ids = [r[0] for r in self._conn.execute("SELECT DISTINCT qp_id FROM charges ORDER BY qp_id")]
        out = []
        for q in ids:
            counts = dict(self._conn.execute("SELECT state, COUNT(*) FROM charges WHERE qp_id = ? GROUP BY state", (q,)))
            answered, declined, unsettled = counts.get("answered", 0), counts.get("declined", 0), counts.get("reserved", 0)
            out.append(
                QpSummary(
                    qp_id=q,
                    queries=answered + declined + unsettled,
                    answered=answered,
                    declined=declined,
                    unsettled=unsettled,
                    eps_spent=self._accountant(q).get_epsilon(self.delta),
                    delta=self.delta,
                    budget_eps=self.budget_eps,
                )
            )
        return out


def _resolve_ledger_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / LEDGER_FILENAME
    if not p.is_file():
        raise LedgerError(f"no budget ledger found at {p}")
    return p


def format_budget_table(path: str | os.PathLike[str]) -> str:
    """A text table of every querying party's spending, from a run directory or a ledger file."""
    with BudgetLedger(_resolve_ledger_path(path), None, None, create=False) as ledger:
        rows = ledger.summary()
        header = ("querying party", "queries", "answered", "declined", "unsettled", "eps spent", "eps budget")
        body = [
            (s.qp_id, str(s.queries), str(s.answered), str(s.declined), str(s.unsettled), f"{s.eps_spent:.4f}", f"{s.budget_eps:.4g}")
            for s in rows
        ]
        widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
        lines = [f"privacy budget ledger {ledger.path} (delta = {ledger.delta:.3g}, improved RDP conversion)"]
        lines.append("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
        lines.append("  ".join("-" * w for w in widths))
        for r in body:
            lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if not body:
            lines.append("(no queries charged)")
        return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``capc budget RUN_DIR``: print the budget table; exit status 1 with a one-line error otherwise."""
    parser = argparse.ArgumentParser(prog="capc budget", description="Show the privacy budget spent per querying party.")
    parser.add_argument("run_dir", help=f"a run directory (holding {LEDGER_FILENAME}) or a ledger file")
    args = parser.parse_args(argv)
    try:
        print(format_budget_table(args.run_dir))
    except LedgerError as exc:
        print(f"capc budget: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
