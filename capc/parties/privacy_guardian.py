"""The privacy guardian (PG): aggregates vote shares and runs the noisy argmax with the querying party.

* **step 2** — each answering party sends ``VoteShare(m_j)``; the PG sums ``M = 2^g * sum_j m_j``
  (mod 2^64). The shares are uniformly random on their own; the PG never sees a vote.
* **step 3** — on the QP's ``NoisyArgmaxRequest`` the PG waits for the announced number of shares,
  charges the worst case of this query (threshold + GNMax) to the durable ledger *before* anything is
  released (refusing with a clear message when the budget would be exceeded), draws exact discrete
  Gaussian noise ``eta_G ~ N_Z(0, (2^g sigma_G)^2)^C`` and ``eta_T ~ N_Z(0, (2^g sigma_T)^2)``, and
  garbles Confident-GNMax with the QP. It learns only the *answered* bit — a DP output it needs for
  accounting — and settles the ledger with it. For a batch (``NoisyArgmaxBatchRequest``) the charge
  and the settlement of all its queries are one ledger transaction each (:meth:`PrivacyGuardian.step_3_batch`).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np

from capc import fixedpoint
from capc.errors import CapcError
from capc.parties.common import PartyContext
from capc.parties import transport


#: Test hook: a PG whose environment names a query id here exits abruptly after settling that query.
FAULT_EXIT_AFTER_QUERY = "CAPC_FAULT_PG_EXIT_AFTER_QUERY"


def refusal_code(exc: Exception) -> Any:
    """The :class:`~capc.net.messages.ErrorCode` telling the QP why the ledger refused a query."""
    from capc.net.messages import ErrorCode
    from capc.privacy.errors import BudgetExceeded, ReplayedQuery

    if isinstance(exc, BudgetExceeded):
        return ErrorCode.BUDGET_EXHAUSTED
    if isinstance(exc, ReplayedQuery):
        return ErrorCode.REPLAYED
    return ErrorCode.REFUSED


class PrivacyGuardian:
    """One PG process serving the answering parties and the querying parties of a run."""

    def __init__(self, ctx: PartyContext) -> None:
        from capc.privacy.gnmax import ConfidentGNMaxParams, PrivacyGuardianNoise
        from capc.privacy.ledger import LEDGER_FILENAME, BudgetLedger

        self.ctx = ctx
        self.cfg = ctx.cfg
        p = self.cfg.protocol
        # The ledger outlives this process: a restarted PG reopens it and goes on counting. SQLite
        # connections belong to one thread, so each QP session thread opens its own on the same file.
        self._ledger_path = ctx.run_dir / LEDGER_FILENAME
        BudgetLedger(self._ledger_path, budget_eps=p.budget_eps, delta=p.delta).close()
        self._local = threading.local()
        self.params = ConfidentGNMaxParams(p.sigma_gnmax, p.sigma_threshold, p.threshold, p.vote_scale_exp)
        self._noise = PrivacyGuardianNoise(self.params)
        self._noise_lock = threading.Lock()
        self._shares: dict[tuple[str, int], dict[str, np.ndarray]] = {}
        self._cond = threading.Condition()

    # ------------------------------------------------------------------ protocol steps

    def step_2_receive(self, ap: str, msg: Any) -> None:
        """Store one answering party's vote share for (qp, query)."""
        if msg.num_classes != self.cfg.protocol.num_classes:
            raise CapcError(f"{ap} sent {msg.num_classes} vote shares, the run has "
                            f"{self.cfg.protocol.num_classes} classes")
        key = (msg.qp_id, msg.query_id)
        with self._cond:
            shares = self._shares.setdefault(key, {})
            if ap in shares:
                raise CapcError(f"{ap} sent a second vote share for query {msg.query_id} of {msg.qp_id}")
            shares[ap] = fixedpoint.as_ring(msg.share).copy()
            self._cond.notify_all()

    def step_2_aggregate(self, qp: str, query_id: int, n_answering: int) -> np.ndarray:
        """Wait (with the run's deadline) for ``n_answering`` shares and return M = 2^g * sum m_j."""
        key = (qp, query_id)
        deadline = time.monotonic() + self.cfg.protocol.timeout
        with self._cond:
            while len(self._shares.get(key, {})) < n_answering:
                left = deadline - time.monotonic()
                if left <= 0:
                    got = sorted(self._shares.get(key, {}))
                    raise CapcError(f"query {query_id} of {qp}: {len(got)} of {n_answering} vote shares "
                                    f"arrived before the deadline (from: {', '.join(got) or 'none'})")
                self._cond.wait(left)
            shares = self._shares.pop(key)
        if len(shares) != n_answering:
            raise CapcError(f"query {query_id} of {qp}: {len(shares)} vote shares arrived, the QP announced "
                            f"{n_answering}")
        total = np.zeros(self.cfg.protocol.num_classes, dtype=np.uint64)
        for m in shares.values():
            total = fixedpoint.add(total, m)
        with np.errstate(over="ignore"):
            return total * np.uint64(1 << self.cfg.protocol.vote_scale_exp)

    def step_3(self, session: Any, qp: str, query_id: int, M: np.ndarray) -> bool:
        """Garble Confident-GNMax with the QP; returns the answered bit."""
        p = self.cfg.protocol
        with self._noise_lock:  # one secure random source, shared by the QP sessions' threads
            noise = self._noise.draw(p.num_classes)
        with self.ctx.timing.span("3_gc_noisy_argmax", query_id):
            answered = session.noisy_argmax_garbler(M.view(np.int64), np.asarray(noise.eta_G, dtype=np.int64),
                                                    int(noise.eta_T), int(self.params.threshold_units))
        return bool(answered)

    # ------------------------------------------------------------------ serving

    def _serve_ap(self, chan: Any, ap: str) -> None:
        from capc.net.messages import ErrorReply, Shutdown, VoteShare

        try:
            while True:
                msg = chan.recv((VoteShare, Shutdown), timeout=transport.IDLE_TIMEOUT)
                if isinstance(msg, Shutdown):
                    return
                try:
                    self.step_2_receive(ap, msg)
                except CapcError as exc:
                    self.ctx.log.warning("vote share refused: %s", exc)
                    chan.send(ErrorReply(code="refused", message=str(exc)[:4000]))
        finally:
            chan.close()

    def step_3_batch(self, chan: Any, qp: str, msg: Any, session_box: list[Any]) -> None:
        """Batch packing: aggregate the vote shares of every query of the batch, charge as many leading
        queries as the budget allows in one ledger transaction, tell the QP how many, run the circuit
        for each of them, and settle them in one transaction."""
        from capc.gc import GcSession
        from capc.net.messages import BudgetReserved, ErrorCode

        ids = [int(q) for q in msg.query_ids]
        Ms: list[np.ndarray] = []
        reason, code = "", ""
        for qid, n in zip(ids, msg.n_answering):
            try:
                Ms.append(self.step_2_aggregate(qp, qid, int(n)))
            except CapcError as exc:  # this query and the ones after it are refused
                reason, code = str(exc), ErrorCode.REFUSED.value
                break
        res = self.ledger.reserve_many(qp, [str(q) for q in ids[:len(Ms)]], self.params.worst_case_events())
        if res.refusal is not None:
            reason, code = str(res.refusal), refusal_code(res.refusal).value
        if reason:
            self.ctx.log.warning("%s's batch from query %d: %d of %d queries reserved; the rest refused: %s", qp,
                                 ids[0], res.count, len(ids), reason)
        chan.send(BudgetReserved(batch_id=ids[0], reserved=res.count, reason=reason[:4000], code=code))
        if res.count == 0:
            return
        if session_box[0] is None:
            session_box[0] = GcSession(chan.raw_io(), "garbler")
        outcomes = []
        try:
            for qid, M in zip(ids[:res.count], Ms):
                outcomes.append((str(qid), self.step_3(session_box[0], qp, qid, M)))
        finally:
            # what ran is settled; a query whose circuit did not finish stays charged at worst case
            if outcomes:
                self.ledger.settle_many(qp, outcomes)
        spent = self._spent(qp)
        self.ctx.log.info("%s's batch from query %d: %d queries, %d answered; epsilon spent %.4f of %.4f", qp, ids[0],
                          len(outcomes), sum(a for _, a in outcomes), spent, self.cfg.protocol.budget_eps)
        self.ctx.report("progress", event="query", qp=qp, query=ids[res.count - 1], epsilon=spent)
        if os.environ.get(FAULT_EXIT_AFTER_QUERY) in {q for q, _ in outcomes}:
            self.ctx.log.warning("fault injection: exiting after a batch")
            os._exit(3)

    def _serve_qp(self, chan: Any, qp: str) -> None:
        from capc.gc import GcSession
        from capc.net.messages import (ErrorCode, ErrorReply, GcStart, NoisyArgmaxBatchRequest, NoisyArgmaxRequest,
                                       Shutdown, StepDone)
        from capc.privacy.errors import BudgetExceeded, ReplayedQuery

        log = self.ctx.log
        session = None
        try:
            while True:
                msg = chan.recv((NoisyArgmaxRequest, NoisyArgmaxBatchRequest, Shutdown), timeout=transport.IDLE_TIMEOUT)
                if isinstance(msg, Shutdown):
                    return
                if msg.qp_id != qp:
                    chan.send(ErrorReply(code=ErrorCode.REFUSED.value,
                                         message=f"{qp} may not ask on behalf of {msg.qp_id}"))
                    continue
                if isinstance(msg, NoisyArgmaxBatchRequest):
                    box = [session]
                    try:
                        self.step_3_batch(chan, qp, msg, box)
                    finally:
                        session = box[0]
                    continue
                try:
                    M = self.step_2_aggregate(qp, msg.query_id, msg.n_answering)
                    self.ledger.reserve(qp, str(msg.query_id), self.params.worst_case_events())
                except (BudgetExceeded, ReplayedQuery) as exc:
                    log.warning("%s", exc)  # a replay refuses this id only; an exhausted budget all later ones
                    chan.send(ErrorReply(code=refusal_code(exc).value, message=str(exc)[:4000]))
                    continue
                except CapcError as exc:
                    log.warning("query refused: %s", exc)
                    chan.send(ErrorReply(code=ErrorCode.REFUSED.value, message=str(exc)[:4000]))
                    continue
                chan.send(StepDone(query_id=msg.query_id, step="budget_reserved"))
                start = chan.recv((GcStart,), timeout=self.cfg.protocol.timeout)
                if start.program != "noisy_argmax" or start.query_id != msg.query_id:
                    raise CapcError(f"{qp} started {start.program!r} for query {start.query_id}, expected "
                                    f"noisy_argmax for {msg.query_id}")
                if session is None:
                    session = GcSession(chan.raw_io(), "garbler")
                answered = self.step_3(session, qp, msg.query_id, M)
                self.ledger.settle(qp, str(msg.query_id), answered)
                spent = self._spent(qp)
                log.info("query %d of %s: %s; epsilon spent %.4f of %.4f", msg.query_id, qp,
                         "answered" if answered else "not answered (threshold)", spent,
                         self.cfg.protocol.budget_eps)
                self.ctx.report("progress", event="query", qp=qp, query=msg.query_id, epsilon=spent)
                if os.environ.get(FAULT_EXIT_AFTER_QUERY) == str(msg.query_id):
                    # Fault injection for the integration tests: a PG crash between two queries.
                    log.warning("fault injection: exiting after query %d", msg.query_id)
                    os._exit(3)
        finally:
            if session is not None:
                session.close()
            chan.close()

    @property
    def ledger(self) -> Any:
        """This thread's connection to the durable budget ledger."""
        from capc.privacy.ledger import BudgetLedger

        led = getattr(self._local, "ledger", None)
        if led is None:
            p = self.cfg.protocol
            led = self._local.ledger = BudgetLedger(self._ledger_path, budget_eps=p.budget_eps, delta=p.delta)
        return led

    def _spent(self, qp: str) -> float:
        return float(self.ledger.spent_eps(qp))

    def serve(self, stop: threading.Event) -> None:
        """Accept answering and querying parties until ``stop`` is set."""
        p = self.cfg.protocol

        def handle(chan: Any, peer: str) -> None:
            (self._serve_ap if peer.startswith("ap-") else self._serve_qp)(chan, peer)

        transport.serve(self.ctx, ("ap", "qp"), handle, stop,
                        f"budget {p.budget_eps:.3g} at delta {p.delta:.1e} per querying party")
