"""The answering party (AP): evaluates its own model on the querying party's encrypted query.

Per query, over the mutual-TLS channel the QP opened:

* **step 1a** — ``QueryRequest(Enc(x))`` arrives; the AP evaluates its model under CKKS and replies
  ``QueryResult(Enc(z - r))`` with a fresh mask ``r`` (cryptographic randomness, range 2^s times the
  logit bound); it keeps only its fixed-point share ``b = round(2^f r)``.
* **step 1b** — ``GcStart("argmax_share")``: the AP garbles argmax(a + b) with a fresh uniform
  ``m in Z_2^64^C`` so that the QP learns ``onehot(k) - m`` and the AP learns nothing.
* **step 2** — the AP sends ``VoteShare(m)`` to the privacy guardian, then forgets ``b`` and ``m``.

The AP never sees the query, the logits in the clear, or the vote; it refuses a query id it has
already answered for the same QP.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from capc import fixedpoint
from capc.errors import CapcError
from capc.parties.common import PartyContext
from capc.parties import transport


#: Test hook: an AP whose environment names a query id here exits abruptly when that query arrives
#: (single packing), or when a batch holding it arrives (batch packing).
FAULT_EXIT_AT_QUERY = "CAPC_FAULT_AP_EXIT_AT_QUERY"
#: Test hook: an AP whose environment names a query id here exits when that query's step 1b starts.
FAULT_EXIT_AT_ARGMAX = "CAPC_FAULT_AP_EXIT_AT_ARGMAX"


@dataclass
class _PendingQuery:
    b: np.ndarray  # the AP's share of the masked logits (uint64[C])
    started: float


class AnsweringParty:
    """One AP process: a listener for querying parties and a channel to the privacy guardian."""

    def __init__(self, ctx: PartyContext) -> None:
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.me = ctx.cfg.party(ctx.name)
        if not self.me.model:
            raise CapcError(f"{ctx.name}: no model file in the run file")
        from capc.parties.models import load_plan

        self.plan = load_plan(self.me.model, self.cfg)
        self._pg: Any = None
        self._pg_lock = threading.Lock()
        self._seen: dict[str, set[int]] = {}
        self._seen_lock = threading.Lock()

    # ------------------------------------------------------------------ protocol steps

    def step_1a(self, evaluator: Any, qp: str, req: Any) -> tuple[Any, _PendingQuery]:
        """Evaluate the model on Enc(x) and mask the result: returns (QueryResult, pending share)."""
        from capc.net.messages import QueryResult

        p = self.cfg.protocol
        if req.num_classes != p.num_classes:
            raise CapcError(f"query {req.query_id}: {qp} asked for {req.num_classes} classes, "
                            f"the run has {p.num_classes}")
        if req.frac_bits != p.frac_bits:
            raise CapcError(f"query {req.query_id}: frac_bits {req.frac_bits} differs from the run's {p.frac_bits}")
        self._claim(qp, req.query_id)
        if os.environ.get(FAULT_EXIT_AT_QUERY) == str(req.query_id):
            # Fault injection for the integration tests: die in the middle of a query.
            self.ctx.log.warning("fault injection: exiting during query %d", req.query_id)
            os._exit(3)
        with self.ctx.timing.span("1a_he_inference", req.query_id):
            if len(req.ciphertexts) != 1:
                raise CapcError(f"query {req.query_id}: expected one query blob, got {len(req.ciphertexts)}")
            result, b = evaluator.evaluate_masked(req.ciphertexts[0], p.frac_bits)
        b = fixedpoint.as_ring(np.asarray(b)).reshape(-1)
        if b.shape != (p.num_classes,):
            raise CapcError(f"model of {self.ctx.name} produced {b.shape[0]} logits, the run has "
                            f"{p.num_classes} classes")
        self.ctx.timing.record("1a_hiding_bits", 0.0, req.query_id,
                               hiding_bits=getattr(evaluator, "last_hiding", None))
        return QueryResult(query_id=req.query_id, ciphertexts=(result,)), _PendingQuery(b, time.time())

    def step_1a_batch(self, evaluator: Any, qp: str, req: Any) -> tuple[Any, dict[int, _PendingQuery]]:
        """Batch packing: evaluate the model on every query in the slots of Enc(X) at once."""
        from capc.net.messages import QueryResult

        p = self.cfg.protocol
        if req.num_classes != p.num_classes or req.frac_bits != p.frac_bits:
            raise CapcError(f"batch {req.batch_id}: classes/frac_bits ({req.num_classes}, {req.frac_bits}) "
                            f"differ from the run's ({p.num_classes}, {p.frac_bits})")
        if len(req.ciphertexts) != 1:
            raise CapcError(f"batch {req.batch_id}: expected one batch blob, got {len(req.ciphertexts)}")
        ids = [int(q) for q in req.query_ids]
        for qid in ids:
            self._claim(qp, qid)
        if os.environ.get(FAULT_EXIT_AT_QUERY) in {str(q) for q in ids}:
            self.ctx.log.warning("fault injection: exiting during batch %d", req.batch_id)
            os._exit(3)
        with self.ctx.timing.span("1a_he_inference_batch", req.batch_id, batch=len(ids)):
            result, b = evaluator.evaluate_masked(req.ciphertexts[0], p.frac_bits)
        b = fixedpoint.as_ring(np.asarray(b))
        if b.ndim != 2 or b.shape[1] != p.num_classes or b.shape[0] < len(ids):
            raise CapcError(f"batch {req.batch_id}: the model produced shares of shape {b.shape}, expected "
                            f"({len(ids)}, {p.num_classes})")
        self.ctx.timing.record("1a_hiding_bits", 0.0, req.batch_id,
                               hiding_bits=getattr(evaluator, "last_hiding", None))
        now = time.time()
        pending = {qid: _PendingQuery(b[k].copy(), now) for k, qid in enumerate(ids)}
        return QueryResult(query_id=req.batch_id, ciphertexts=(result,)), pending

    def step_1b(self, session: Any, query_id: int, pending: _PendingQuery) -> np.ndarray:
        """Garble argmax(a + b); the QP gets onehot - m. Returns this AP's vote share m."""
        m = fixedpoint.random_ring(self.cfg.protocol.num_classes)
        if os.environ.get(FAULT_EXIT_AT_ARGMAX) == str(query_id):
            self.ctx.log.warning("fault injection: exiting during step 1b of query %d", query_id)
            os._exit(3)
        with self.ctx.timing.span("1b_gc_argmax", query_id):
            session.argmax_share_garbler(pending.b.view(np.int64), m.view(np.int64))
        return m

    def step_2(self, qp: str, query_id: int, m: np.ndarray) -> None:
        """Send the vote share m to the privacy guardian."""
        from capc.net.messages import VoteShare

        msg = VoteShare(qp_id=qp, query_id=query_id, num_classes=self.cfg.protocol.num_classes,
                        share=fixedpoint.as_ring(m))
        with self.ctx.timing.span("2_vote_share", query_id):
            with self._pg_lock:
                for attempt in (1, 2):
                    if self._pg is None:
                        self._pg = transport.connect_to(self.ctx, "pg")
                    try:
                        self._pg.send(msg)
                        return
                    except (OSError, CapcError) as exc:
                        # The PG may have restarted between queries: reconnect once, then give up.
                        self.ctx.log.warning("sending the vote share to the PG failed (%s)%s", exc,
                                             "; reconnecting" if attempt == 1 else "")
                        transport.shutdown(self._pg, "reconnecting")
                        self._pg = None
                        if attempt == 2:
                            raise

    # ------------------------------------------------------------------ serving

    def _claim(self, qp: str, query_id: int) -> None:
        with self._seen_lock:
            seen = self._seen.setdefault(qp, set())
            if query_id in seen:
                raise CapcError(f"query id {query_id} from {qp} was already answered; a replayed query "
                                "is refused")
            seen.add(query_id)

    def serve_connection(self, chan: Any, qp: str) -> None:
        """Handle one querying party's channel until it shuts down or fails."""
        from capc.gc import GcSession
        from capc.he import ModelEvaluator
        from capc.net.messages import (BatchQueryRequest, ErrorReply, GcStart, ModelPlan, PublicContext,
                                       QueryRequest, Shutdown, StepDone)

        log = self.ctx.log
        timeout = self.cfg.protocol.timeout
        evaluator = None
        session = None
        pending: dict[int, _PendingQuery] = {}
        try:
            # The QP needs the layout (not the weights) to make keys with exactly the rotations it uses.
            chan.send(ModelPlan(plan_bytes=self.plan.public_plan.to_bytes()))
            while True:
                msg = chan.recv((PublicContext, QueryRequest, BatchQueryRequest, GcStart, Shutdown),
                                timeout=transport.IDLE_TIMEOUT)
                if isinstance(msg, Shutdown):
                    log.info("%s closed its session (%s)", qp, msg.reason or "done")
                    return
                try:
                    if isinstance(msg, PublicContext):
                        p = self.cfg.protocol
                        evaluator = ModelEvaluator(self.plan, msg.context_bytes, hiding_bits=p.hiding_bits,
                                                   logit_bound=p.logit_bound)
                        chan.send(StepDone(query_id=0, step="public_context"))
                        log.info("received the public CKKS context of %s (%d bytes, no secret key)",
                                 qp, len(msg.context_bytes))
                    elif isinstance(msg, QueryRequest):
                        if evaluator is None:
                            raise CapcError("query before the public context")
                        reply, pend = self.step_1a(evaluator, qp, msg)
                        pending[msg.query_id] = pend
                        chan.send(reply)
                        log.info("query %d: step 1a done (encrypted inference, masked)", msg.query_id)
                    elif isinstance(msg, BatchQueryRequest):
                        if evaluator is None:
                            raise CapcError("batch before the public context")
                        reply, pend_batch = self.step_1a_batch(evaluator, qp, msg)
                        pending.update(pend_batch)
                        chan.send(reply)
                        log.info("batch of %d queries: step 1a done (encrypted inference, masked)",
                                 len(pend_batch))
                    elif isinstance(msg, GcStart):
                        if msg.program != "argmax_share" or msg.query_id not in pending:
                            raise CapcError(f"unexpected 2PC start {msg.program!r} for query {msg.query_id}")
                        chan.send(StepDone(query_id=msg.query_id, step="gc_ready"))
                        if session is None:
                            session = GcSession(chan.raw_io(), "garbler")
                        pend = pending.pop(msg.query_id)
                        m = self.step_1b(session, msg.query_id, pend)
                        self.step_2(qp, msg.query_id, m)
                        del m, pend
                        if len(pending) < 2:  # one line per query would flood the log in batch mode
                            log.info("query %d: steps 1b and 2 done (vote share sent to the PG)", msg.query_id)
                except CapcError as exc:
                    log.warning("query refused: %s", exc)
                    chan.send(ErrorReply(code="refused", message=str(exc)[:4000]))
                    self.ctx.report("progress", event="refused", detail=str(exc)[:500])
        finally:
            if session is not None:
                session.close()
            chan.close()

    def serve(self, stop: threading.Event) -> None:
        """Accept querying parties until ``stop`` is set."""
        try:
            transport.serve(self.ctx, ("qp",), self.serve_connection, stop, f"model {self.me.model}")
        finally:
            with self._pg_lock:
                if self._pg is not None:
                    transport.shutdown(self._pg, "answering party stopping")
