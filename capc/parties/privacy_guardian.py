"""The privacy guardian (PG): aggregates vote shares and runs the noisy argmax with the querying party.

* **step 2** — each answering party sends ``VoteShare(m_j)`` for B queries; the PG sums ``M = 2^g * sum_j m_j``
  (mod 2^64). The shares are uniformly random on their own; the PG never sees a vote.
* **step 3** — on the QP's ``NoisyArgmaxRequest`` the PG waits for the announced number of shares,
  charges the worst case of each query (threshold + GNMax) to the durable ledger *before* anything is
  released (refusing with a clear message when the budget would be exceeded), draws exact discrete
  Gaussian noise ``eta_G ~ N_Z(0, (2^g sigma_G)^2)^C`` and ``eta_T ~ N_Z(0, (2^g sigma_T)^2)``, and
  garbles Confident-GNMax with the QP. It learns only the *answered* bit — a DP output it needs for
  accounting — and settles the ledger with it. The charge and the settlement of a request's B queries
  are one ledger transaction each.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import numpy as np

from capc import fixedpoint
from capc.errors import CapcError
from capc.net.channel import Channel
from capc.net.messages import BudgetReserved, ErrorCode, ErrorReply, NoisyArgmaxRequest, Shutdown, VoteShare
from capc.parties import transport
from capc.parties.common import PartyContext
from capc.parties.transport import Link

if TYPE_CHECKING:
    from capc.privacy.ledger import BudgetLedger


def refusal_code(exc: Exception) -> ErrorCode:
    """The :class:`~capc.net.messages.ErrorCode` telling the QP why the ledger refused a query."""
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
        # queries refused for missing shares: their late shares are dropped, not kept forever (query
        # ids are never reused, so nothing can aggregate them any more)
        self._refused: set[tuple[str, int]] = set()
        self._cond = threading.Condition()

    # ------------------------------------------------------------------ protocol steps

    def step_2(self, ap: str, msg: VoteShare) -> None:
        """Store one answering party's vote shares, one row per query of ``msg.qp_id``."""
        if msg.num_classes != self.cfg.protocol.num_classes:
            raise CapcError(f"{ap} sent {msg.num_classes} vote shares per query, the run has "
                            f"{self.cfg.protocol.num_classes} classes")
        with self._cond:
            for qid, row in zip(msg.query_ids.tolist(), msg.shares):
                if (msg.qp_id, qid) in self._refused:
                    self.ctx.log.info("%s: dropped a late vote share for refused query %d of %s", ap, qid,
                                      msg.qp_id)
                    continue
                shares = self._shares.setdefault((msg.qp_id, qid), {})
                if ap in shares:
                    raise CapcError(f"{ap} sent a second vote share for query {qid} of {msg.qp_id}")
                shares[ap] = fixedpoint.as_ring(row).copy()
            self._cond.notify_all()

    def _aggregate(self, qp: str, query_id: int, n_answering: int, deadline: float) -> np.ndarray:
        """Wait (until ``deadline``, monotonic) for ``n_answering`` shares and return M = 2^g * sum m_j."""
        key = (qp, query_id)
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

    def step_3(self, link: Link, msg: NoisyArgmaxRequest) -> list[tuple[str, bool]]:
        """Aggregate the vote shares of every query, charge as many leading queries as the budget
        allows in one ledger transaction, tell the QP how many, garble Confident-GNMax for each with
        it, and settle them in one transaction. Returns the (query id, answered) settled."""
        qp = link.name
        p = self.cfg.protocol
        ids = msg.query_ids.tolist()
        Ms: list[np.ndarray] = []
        reason, code = "", ""
        deadline = time.monotonic() + p.timeout  # one deadline for the request's shares, not one per query
        for qid, n in zip(ids, msg.n_answering.tolist()):
            try:
                Ms.append(self._aggregate(qp, qid, n, deadline))
            except CapcError as exc:  # this query and the ones after it are refused
                reason, code = str(exc), ErrorCode.REFUSED.value
                with self._cond:
                    for later in ids[len(Ms):]:
                        self._shares.pop((qp, later), None)
                        self._refused.add((qp, later))
                break
        res = self.ledger.reserve_many(qp, [str(q) for q in ids[:len(Ms)]], self.params.worst_case_events())
        if res.refusal is not None:
            reason, code = str(res.refusal), refusal_code(res.refusal).value
        if reason:
            self.ctx.log.warning("%s: %d of %d queries reserved; the rest refused: %s", qp, res.count, len(ids),
                                 reason)
        link.send(BudgetReserved(reserved=res.count, reason=reason[:4000], code=code))
        outcomes: list[tuple[str, bool]] = []
        try:
            for qid, M in zip(ids[:res.count], Ms):
                with self._noise_lock:  # one secure random source, shared by the QP sessions' threads
                    noise = self._noise.draw(p.num_classes)
                with self.ctx.timing.span("3_gc_noisy_argmax", qid):
                    answered = link.gc().noisy_argmax_garbler(M.view(np.int64), np.asarray(noise.eta_G, dtype=np.int64),
                                                              int(noise.eta_T), int(self.params.threshold_units))
                outcomes.append((str(qid), bool(answered)))
        finally:
            # what ran is settled; a query whose circuit did not finish stays charged at worst case
            if outcomes:
                self.ledger.settle_many(qp, outcomes)
        if res.count:
            spent = self._spent(qp)
            self.ctx.log.info("%s: %d queries, %d answered; epsilon spent %.4f of %.4f", qp, len(outcomes),
                              sum(a for _, a in outcomes), spent, p.budget_eps)
            self.ctx.report("progress", event="query", qp=qp, query=ids[res.count - 1], epsilon=spent)
        return outcomes

    # ------------------------------------------------------------------ serving

    def serve_ap(self, chan: Channel, ap: str) -> None:
        """Receive one answering party's vote shares until it shuts down."""
        try:
            while True:
                msg = chan.recv((VoteShare, Shutdown), timeout=transport.IDLE_TIMEOUT)
                if isinstance(msg, Shutdown):
                    return
                try:
                    self.step_2(ap, msg)
                except CapcError as exc:
                    self.ctx.log.warning("vote share refused: %s", exc)
                    chan.send(ErrorReply(code=ErrorCode.REFUSED.value, message=str(exc)[:4000]))
        finally:
            chan.close()

    def serve_qp(self, chan: Channel, qp: str) -> None:
        """Answer one querying party's noisy-argmax requests until it shuts down."""
        link = Link(qp, chan, self.ctx.providers.mpc, "garbler", self.cfg.protocol.timeout)
        try:
            while True:
                msg = chan.recv((NoisyArgmaxRequest, Shutdown), timeout=transport.IDLE_TIMEOUT)
                if isinstance(msg, Shutdown):
                    return
                if msg.qp_id != qp:
                    chan.send(ErrorReply(code=ErrorCode.REFUSED.value,
                                         message=f"{qp} may not ask on behalf of {msg.qp_id}"))
                    continue
                self.step_3(link, msg)
        finally:
            if link.session is not None:
                link.session.close()
            chan.close()

    def handle(self, chan: Channel, peer: str) -> None:
        """Serve a connected answering or querying party."""
        (self.serve_ap if peer.startswith("ap-") else self.serve_qp)(chan, peer)

    @property
    def ledger(self) -> BudgetLedger:
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

        transport.serve(self.ctx, ("ap", "qp"), self.handle, stop,
                        f"budget {p.budget_eps:.3g} at delta {p.delta:.1e} per querying party")
