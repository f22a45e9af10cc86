"""The querying party's durable store of the labels it obtained (step 4), keyed by query id.

The query id is the opaque id the QP sends (:func:`capc.parties.queries.wire_query_id`); ``item``
records which item of the QP's own query pool it names, for the researcher.

A query id is claimed (``begin``) before any message about it leaves the QP and completed
(``complete``) when the privacy guardian's answer arrives; both are committed SQLite transactions
with ``synchronous=FULL``. A claimed id can never be claimed again — not even after a crash between
the two — so the same query is never asked (and never charged to the privacy budget) twice, and a
label once recorded is never lost or overwritten.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from capc.errors import CapcError


class ReplayedQueryId(CapcError):
    """The query id was already used by this querying party."""


@dataclass(frozen=True)
class LabelRecord:
    """One row of the store."""

    query_id: int
    status: str  # "pending" (asked, no answer recorded), "answered", "refused" (not answered)
    label: int | None
    true_label: int | None
    detail: str
    item: int | None = None  # the query pool item (the QP's own knowledge; never sent)


class LabelStore:
    """SQLite-backed, crash-safe label store of one querying party."""

    def __init__(self, path: str | Path, qp_id: str) -> None:
        self.path = Path(path)
        self.qp_id = qp_id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS labels (qp_id TEXT NOT NULL, query_id INTEGER NOT NULL, "
            "status TEXT NOT NULL, label INTEGER, true_label INTEGER, detail TEXT NOT NULL DEFAULT '', "
            "created REAL NOT NULL, completed REAL, item INTEGER, PRIMARY KEY (qp_id, query_id))")

    def begin(self, query_id: int, true_label: int | None = None, item: int | None = None) -> None:
        """Claim ``query_id`` (naming pool item ``item``); raises :class:`ReplayedQueryId` if it was
        ever claimed before."""
        try:
            self._db.execute("INSERT INTO labels (qp_id, query_id, status, true_label, created, item) "
                             "VALUES (?, ?, 'pending', ?, ?, ?)", (self.qp_id, int(query_id),
                                                                    true_label, time.time(),
                                                                    None if item is None else int(item)))
        except sqlite3.IntegrityError:
            prev = self.get(query_id)
            raise ReplayedQueryId(
                f"query id {query_id} was already used by {self.qp_id} (status: {prev.status if prev else '?'}); "
                "a query is never asked twice") from None

    def complete(self, query_id: int, answered: bool, label: int | None, detail: str = "") -> None:
        """Record the outcome of a pending query (only once)."""
        cur = self._db.execute(
            "UPDATE labels SET status = ?, label = ?, detail = ?, completed = ? "
            "WHERE qp_id = ? AND query_id = ? AND status = 'pending'",
            ("answered" if answered else "refused", label if answered else None, detail, time.time(),
             self.qp_id, int(query_id)))
        if cur.rowcount != 1:
            raise CapcError(f"query id {query_id} of {self.qp_id} is not pending; its outcome is already recorded")

    def fail(self, query_id: int, detail: str) -> None:
        """Note why a pending query got no answer (it stays claimed)."""
        self._db.execute("UPDATE labels SET detail = ? WHERE qp_id = ? AND query_id = ? AND status = 'pending'",
                         (detail[:2000], self.qp_id, int(query_id)))

    def get(self, query_id: int) -> LabelRecord | None:
        row = self._db.execute("SELECT query_id, status, label, true_label, detail, item FROM labels "
                               "WHERE qp_id = ? AND query_id = ?", (self.qp_id, int(query_id))).fetchone()
        return LabelRecord(*row) if row else None

    def records(self) -> list[LabelRecord]:
        rows = self._db.execute("SELECT query_id, status, label, true_label, detail, item FROM labels "
                                "WHERE qp_id = ? ORDER BY created", (self.qp_id,)).fetchall()
        return [LabelRecord(*r) for r in rows]

    def close(self) -> None:
        self._db.close()
