"""The answering party (AP): evaluates its own model on the querying party's encrypted queries.

Per request of B queries, over the channel the QP opened (docs/design.md §4.4):

* **step 1a** — ``QueryRequest(Enc(x))`` arrives; the AP evaluates its model under CKKS and replies
  ``QueryResult(Enc(z - r))`` with a fresh mask ``r`` (cryptographic randomness, range 2^s times the
  logit bound); it keeps only its fixed-point shares ``b = round(2^f r)`` (uint64[B, C]).
  A model with ReLU / max-pool layers (:mod:`capc.he.hybrid`) answers segment by segment: the
  result of a hidden segment is its masked pre-activations; ``GcStart("relu_share" |
  "maxpool_share")`` runs the layer on the shares and hands the QP ``y - m`` under a fresh mask m
  (:meth:`AnsweringParty.step_1a_gc_layer`); the QP's next ``QueryRequest(segment=k+1)`` carries
  ``Enc(y - m)``, from which the AP removes m homomorphically before evaluating segment k+1.
* **step 1b** — ``GcStart("argmax_share")``: for each query the AP garbles argmax(a + b) with a fresh
  uniform ``m in Z_2^64^C`` so that the QP learns ``onehot(k) - m`` and the AP learns nothing.
* **step 2** — the AP sends ``VoteShare(m)`` for the B queries to the privacy guardian, tells the QP
  so (``StepDone("vote_shares_sent")``), and forgets ``b`` and ``m``.

The AP never sees the query, the logits in the clear, or the vote; it refuses a query id it has
already answered for the same QP.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from dataclasses import dataclass

import numpy as np

from capc import fixedpoint
from capc.errors import CapcError
from capc.he.hybrid import garble_layer, segment_width
from capc.net.channel import Channel
from capc.net.messages import (ErrorCode, ErrorReply, GcStart, ModelPlan, PublicContext, QueryRequest,
                               QueryResult, Shutdown, StepDone, VoteShare)
from capc.parties import spool, transport
from capc.parties.common import PartyContext
from capc.parties.crypto import MaskedEvaluator
from capc.parties.transport import Link


@dataclass
class _Pending:
    b: np.ndarray  # the AP's shares of the masked outputs of `segment` (uint64[B, n]), row k for ids[k]
    ids: list[int]
    started: float
    segment: int = 0  # the CKKS segment b belongs to (the last one holds the logits)
    mask: np.ndarray | None = None  # this AP's mask on the GC layer's outputs, until the next segment


class Refusal(CapcError):
    """A request the AP refuses (the session goes on); ``code`` is its ErrorCode value."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.REFUSED) -> None:
        super().__init__(message)
        self.code = code


class AnsweringParty:
    """One AP: serves querying parties and sends vote shares to the privacy guardian."""

    def __init__(self, ctx: PartyContext) -> None:
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.me = ctx.cfg.party(ctx.name)
        if not self.me.model:
            raise CapcError(f"{ctx.name}: no model file in the run file")
        self.model = ctx.providers.he.load_model(self.me.model, self.cfg)
        self._pg: Channel | None = None
        self._pg_lock = threading.Lock()
        self._seen: dict[str, set[int]] = {}
        self._seen_lock = threading.Lock()
        self._spool: tuple[str, str] | None = None

    # ------------------------------------------------------------------ protocol steps

    def step_1a(self, evaluator: MaskedEvaluator, qp: str, req: QueryRequest,
                pending: _Pending | None = None) -> tuple[QueryResult, _Pending]:
        """Evaluate the model (segment ``req.segment`` of a hybrid model, after removing this AP's
        mask from the re-encrypted activations) on the encrypted queries and mask the results."""
        p = self.cfg.protocol
        ids = req.query_ids.tolist()
        k = req.segment
        last = len(self.model.gc_layers)
        if req.num_classes != p.num_classes:
            raise Refusal(f"queries {ids[0]}..: the request has {req.num_classes} classes, the run has "
                          f"{p.num_classes}")
        if req.frac_bits != p.frac_bits:
            raise Refusal(f"queries {ids[0]}..: the request has {req.frac_bits} fraction bits, the run has "
                          f"{p.frac_bits}")
        if k > last:
            raise Refusal(f"queries {ids[0]}..: segment {k} of a model with {last + 1}")
        unmask = None
        if k == 0:
            self._claim(qp, ids)
        elif pending is None or pending.ids != ids or pending.segment != k - 1 or pending.mask is None:
            raise Refusal(f"queries {ids[0]}..: segment {k} does not follow the GC layer of these queries")
        else:
            unmask = pending.mask
        blobs = req.ciphertexts
        if req.spool:
            spool_dir, _ = self._spool_announcement()
            try:
                blobs = (spool.read_spooled(Path(spool_dir), req.spool),) if spool_dir else ()
            except spool.SpoolError as exc:
                raise Refusal(f"queries {ids[0]}..: {exc}") from None
            if not blobs:
                raise Refusal(f"queries {ids[0]}..: spooled, but this party announced no spool directory")
        with self.ctx.timing.span("1a_he_inference", ids[0], batch=len(ids), segment=k):
            result, b = evaluator.evaluate_masked(blobs, len(ids), p.frac_bits, unmask)
        width = segment_width(self.model.gc_layers, k, p.num_classes)
        if b.shape != (len(ids), width):
            raise Refusal(f"the model of {self.ctx.name} produced shares of shape {b.shape}, expected "
                          f"({len(ids)}, {width})")
        self.ctx.timing.record("1a_hiding_bits", 0.0, ids[0], hiding_bits=evaluator.last_hiding, segment=k,
                               result_bytes=sum(len(c) for c in result), request_bytes=sum(len(c) for c in blobs),
                               spooled=bool(req.spool))
        started = time.time() if pending is None or k == 0 else pending.started
        return (QueryResult(query_ids=req.query_ids, ciphertexts=result, segment=k),
                _Pending(b, ids, started, k))

    def step_1a_gc_layer(self, link: Link, evaluator: MaskedEvaluator, pending: _Pending) -> None:
        """The GC layer after segment ``pending.segment``: garble ReLU / window max of a + b for all
        of the batch's activations at once, handing the QP ``y - m`` under a fresh mask m, which this
        AP keeps (``pending.mask``) to remove from the next segment's input."""
        layer = self.model.gc_layers[pending.segment]
        m = evaluator.activation_mask(pending.segment, len(pending.ids), self.cfg.protocol.frac_bits)
        session = link.gc()
        sent, received = getattr(session, "bytes_sent", 0), getattr(session, "bytes_received", 0)
        t0 = time.perf_counter()
        garble_layer(session, layer, pending.b, m)
        self.ctx.timing.record("1a_gc_layer", time.perf_counter() - t0, pending.ids[0], batch=len(pending.ids),
                               segment=pending.segment, values=int(pending.b.size),
                               gc_bytes=getattr(session, "bytes_sent", 0) - sent
                               + getattr(session, "bytes_received", 0) - received)
        pending.b = np.empty((0, 0), dtype=np.uint64)  # the pre-activation shares are spent
        pending.mask = m

    def step_1b(self, link: Link, pending: _Pending) -> np.ndarray:
        """Garble argmax(a + b) for each query; the QP gets onehot - m. Returns this AP's vote shares m."""
        m = fixedpoint.random_ring(pending.b.shape)
        session = link.gc()
        with self.ctx.timing.span("1b_gc_argmax", pending.ids[0], batch=len(pending.ids)):
            for b_row, m_row in zip(pending.b, m):
                session.argmax_share_garbler(b_row.view(np.int64), m_row.view(np.int64))
        return m

    def step_2(self, qp: str, ids: list[int], m: np.ndarray) -> None:
        """Send the vote shares m to the privacy guardian (reconnecting once: it may have restarted)."""
        msg = VoteShare(qp_id=qp, query_ids=ids, num_classes=self.cfg.protocol.num_classes, shares=m)
        with self.ctx.timing.span("2_vote_share", ids[0], batch=len(ids)), self._pg_lock:
            for attempt in (1, 2):
                if self._pg is None:
                    self._pg = self.ctx.connect("pg")
                try:
                    self._pg.send(msg)
                    return
                except (OSError, CapcError) as exc:
                    self.ctx.log.warning("sending the vote shares to the PG failed (%s)%s", exc,
                                         "; reconnecting" if attempt == 1 else "")
                    transport.shutdown(self._pg, "reconnecting")
                    self._pg = None
                    if attempt == 2:
                        raise

    # ------------------------------------------------------------------ serving

    def _claim(self, qp: str, ids: list[int]) -> None:
        with self._seen_lock:
            seen = self._seen.setdefault(qp, set())
            again = [q for q in ids if q in seen]
            if again:
                raise Refusal(f"query id {again[0]} from {qp} was already answered; a replayed query is "
                              "refused", ErrorCode.REPLAYED)
            seen.update(ids)

    def _spool_announcement(self) -> tuple[str, str]:
        """This AP's spool directory and token (:mod:`capc.parties.spool`), made once; ("", "") when
        the run directory cannot hold one (the QP then sends every query inline)."""
        with self._seen_lock:
            if self._spool is None:
                directory = (self.ctx.run_dir / "spool").resolve()
                try:
                    self._spool = (str(directory), spool.announce(directory, self.ctx.name))
                except OSError as exc:
                    self.ctx.log.info("no spool directory (%s): queries arrive inline", exc)
                    self._spool = ("", "")
            return self._spool

    def serve_connection(self, chan: Channel, qp: str) -> None:
        """Handle one querying party's channel until it shuts down or fails."""
        log = self.ctx.log
        link = Link(qp, chan, self.ctx.providers.mpc, "garbler", self.cfg.protocol.timeout)
        evaluator: MaskedEvaluator | None = None
        pending: _Pending | None = None
        try:
            # The QP needs the layout (not the weights) to make keys with exactly the rotations it uses.
            spool_dir, token = self._spool_announcement()
            chan.send(ModelPlan(plan_bytes=self.model.public_plan(), spool_dir=spool_dir, spool_token=token))
            while True:
                msg = chan.recv((PublicContext, QueryRequest, GcStart, Shutdown), timeout=transport.IDLE_TIMEOUT)
                if isinstance(msg, Shutdown):
                    log.info("%s closed its session (%s)", qp, msg.reason or "done")
                    return
                try:
                    if isinstance(msg, PublicContext):
                        evaluator = self.model.evaluator(msg.context_bytes)
                        if self.cfg.protocol.packing == "batch":
                            # set-up work the first batch would otherwise wait for
                            with self.ctx.timing.span("setup_prepare", 0, batch=self.cfg.protocol.batch_size):
                                evaluator.prepare(self.cfg.protocol.batch_size)
                        chan.send(StepDone(query_id=0, step="public_context"))
                        log.info("received the public context of %s (%d bytes, no secret key)",
                                 qp, len(msg.context_bytes))
                    elif isinstance(msg, QueryRequest):
                        if evaluator is None:
                            raise Refusal("queries before the public context")
                        reply, pending = self.step_1a(evaluator, qp, msg, pending if msg.segment else None)
                        chan.send(reply)
                        log.info("%d queries: step 1a done%s (encrypted inference, masked)", len(pending.ids),
                                 f" for segment {msg.segment}" if self.model.gc_layers else "")
                    elif msg.program in ("relu_share", "maxpool_share"):
                        k = msg.options.get("segment")
                        if (evaluator is None or pending is None or msg.query_ids.tolist() != pending.ids
                                or k != pending.segment or k >= len(self.model.gc_layers)
                                or pending.mask is not None
                                or self.model.gc_layers[k].kind + "_share" != msg.program):
                            raise Refusal(f"unexpected 2PC start {msg.program!r} (segment {k}) for queries "
                                          f"{msg.query_ids.tolist()[:4]}")
                        chan.send(StepDone(query_id=pending.ids[0], step="gc_ready"))
                        self.step_1a_gc_layer(link, evaluator, pending)
                    else:
                        if (msg.program != "argmax_share" or pending is None or msg.query_ids.tolist() != pending.ids
                                or pending.segment != len(self.model.gc_layers)):
                            raise Refusal(f"unexpected 2PC start {msg.program!r} for queries "
                                          f"{msg.query_ids.tolist()[:4]}")
                        chan.send(StepDone(query_id=pending.ids[0], step="gc_ready"))
                        batch, pending = pending, None
                        m = self.step_1b(link, batch)
                        self.step_2(qp, batch.ids, m)
                        del m, batch
                        chan.send(StepDone(query_id=msg.query_ids.tolist()[0], step="vote_shares_sent"))
                        log.info("%d queries: steps 1b and 2 done (vote shares sent to the PG)", len(msg.query_ids))
                except CapcError as exc:
                    code = exc.code if isinstance(exc, Refusal) else ErrorCode.REFUSED
                    log.warning("refused: %s", exc)
                    chan.send(ErrorReply(code=code.value, message=str(exc)[:4000]))
                    self.ctx.report("progress", event="refused", detail=str(exc)[:500])
        finally:
            if link.session is not None:
                link.session.close()
            chan.close()

    def serve(self, stop: threading.Event) -> None:
        """Accept querying parties until ``stop`` is set."""
        try:
            transport.serve(self.ctx, ("qp",), self.serve_connection, stop, f"model {self.me.model}")
        finally:
            self.close()

    def close(self) -> None:
        """Close the channel to the privacy guardian (idempotent)."""
        with self._pg_lock:
            if self._pg is not None:
                transport.shutdown(self._pg, "answering party stopping")
                self._pg = None
