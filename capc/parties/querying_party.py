"""The querying party (QP): owns the CKKS secret key, asks for labels and keeps them.

Per query (DESIGN §4), with the answering parties working in parallel:

* **step 1a** — send ``Enc(x)`` to every AP; decrypt each ``Enc(z_j - r_j)`` into the fixed-point
  share ``a_j = round(2^f (z_j - r_j))``.
* **step 1b** — evaluate each AP's garbled argmax circuit on ``a_j``; receive ``w_j = onehot(k_j) - m_j``
  (a uniformly random vector on its own: the QP learns no individual vote).
* **step 2** — ``W = 2^g * sum_j w_j`` (the APs send their ``m_j`` to the PG).
* **step 3** — ask the PG for the noisy argmax; after the PG has charged its ledger, evaluate the
  Confident-GNMax circuit on ``W``: learn whether the query was answered and, if so, the label.
* **step 4** — record (query id, label) in the durable :class:`~capc.parties.label_store.LabelStore`.

With batch packing (:meth:`QueryingParty.run_batch`) step 1a covers a whole batch, step 1b runs per
query for each AP as soon as that AP has answered, and step 3 is one request to the PG for the batch.

An AP that fails during a query is dropped from that query (and from the run) with a clear log line;
the query goes on with the others. A query id is never asked twice.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from capc import fixedpoint
from capc.errors import CapcError
from capc.parties import transport
from capc.parties.common import PartyContext
from capc.parties.label_store import LabelStore


@dataclass
class _ApLink:
    name: str
    chan: Any
    keys: Any = None  # the QP's CKKS keys for this AP's model layout
    session: Any = None
    alive: bool = True
    failure: str = ""


def _outcome(answered: Any, label: Any) -> tuple[bool, int | None]:
    """(answered, label) from the noisy-argmax circuit; no label unless answered."""
    return bool(answered), (int(label) if answered and label is not None else None)


@dataclass
class QueryOutcome:
    """What the QP learned about one query."""

    query_id: int
    answered: bool
    label: int | None
    true_label: int | None
    n_answering: int
    seconds: dict[str, float] = field(default_factory=dict)
    error: str = ""
    #: why the query was not asked or not answered, an ErrorCode value ("" if it ran): the run
    #: stops on "budget_exhausted" and goes on after "replayed" or "refused"
    code: str = ""


class QueryingParty:
    """One QP process: channels to every AP and to the PG, the secret key, the label store."""

    def __init__(self, ctx: PartyContext) -> None:
        from capc.parties.models import KeyRing

        self.ctx = ctx
        self.cfg = ctx.cfg
        self.p = ctx.cfg.protocol
        self.keyring = KeyRing(self.cfg)
        self.store = LabelStore(ctx.run_dir / f"labels-{ctx.name}.sqlite", ctx.name)
        #: opaque query id -> the query pool item it names (recorded in the store, never sent)
        self.item_of: dict[int, int] = {}
        self.aps: list[_ApLink] = []
        self.pg: Any = None
        self.pg_session: Any = None
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.cfg.answering_parties)))

    # ------------------------------------------------------------------ setup

    def connect(self) -> None:
        """Open a mutual-TLS channel to every AP, receive its public model plan (layout only, no
        weights), and send it the public CKKS context for that layout (no secret key)."""
        from capc.net.messages import ModelPlan, PublicContext, StepDone

        def open_link(ap: str) -> tuple[str, Any, bytes] | None:
            try:
                chan = transport.connect_to(self.ctx, ap)
                offer = transport.expect(chan, ModelPlan, self.p.timeout, f"{ap}'s public model plan")
            except CapcError as exc:
                self.ctx.log.warning("answering party %s is unreachable and is left out: %s", ap, exc)
                self.ctx.report("progress", event="ap_failed", party=ap, reason=str(exc)[:300])
                return None
            return ap, chan, offer.plan_bytes

        opened = [o for o in self._pool.map(open_link, [a.name for a in self.cfg.answering_parties]) if o]
        if not opened:
            raise CapcError("no answering party could be reached")
        with self.ctx.timing.span("setup_keygen"):
            keys = [self.keyring.for_plan(plan_bytes) for _, _, plan_bytes in opened]
        for k in self.keyring.all():
            self.ctx.log.info("CKKS keys: public context %.1f MB (relinearisation + %d Galois keys; no secret key)",
                              k.sizes["public_context"] / 1e6, k.sizes["galois_key_count"])

        def send_context(item: tuple[tuple[str, Any, bytes], Any]) -> _ApLink:
            (ap, chan, _), k = item
            chan.send(PublicContext(context_bytes=k.public_context(),
                                    params={"packing": k.packing, "key_id": k.key_id}))
            transport.expect(chan, StepDone, self.p.timeout, f"{ap} accepting the public context")
            return _ApLink(ap, chan, keys=k)

        self.aps = list(self._pool.map(send_context, zip(opened, keys)))
        self._connect_pg()

    def _connect_pg(self) -> None:
        if self.pg is not None:
            try:
                self.pg.close()
            except Exception:
                pass
        if self.pg_session is not None:
            self.pg_session.close()
        self.pg = transport.connect_to(self.ctx, "pg")
        self.pg_session = None

    # ------------------------------------------------------------------ protocol steps

    def step_1a(self, query_id: int, x: np.ndarray) -> dict[str, np.ndarray]:
        """Send Enc(x) to every live AP; return each AP's decrypted, fixed-point share a_j."""
        from capc.net.messages import QueryRequest, QueryResult

        requests: dict[int, Any] = {}
        with self.ctx.timing.span("1a_encrypt", query_id):
            for link in self.aps:
                if link.alive and id(link.keys) not in requests:
                    requests[id(link.keys)] = QueryRequest(
                        query_id=query_id, ciphertexts=(link.keys.encrypt(x),),
                        num_classes=self.p.num_classes, frac_bits=self.p.frac_bits)

        def one(link: _ApLink) -> np.ndarray:
            link.chan.send(requests[id(link.keys)])
            res = transport.expect(link.chan, QueryResult, self.p.timeout, f"{link.name}'s encrypted logits")
            if res.query_id != query_id:
                raise CapcError(f"{link.name} answered query {res.query_id}, expected {query_id}")
            if len(res.ciphertexts) != 1:
                raise CapcError(f"{link.name} returned {len(res.ciphertexts)} result ciphertexts, expected 1")
            masked = link.keys.decrypt_logits(res.ciphertexts[0])
            masked = np.asarray(masked, dtype=np.float64).reshape(-1)
            if masked.shape != (self.p.num_classes,):
                raise CapcError(f"{link.name} returned {masked.shape[0]} logits, expected {self.p.num_classes}")
            return fixedpoint.encode(masked, self.p.frac_bits)

        return self._on_live_aps(one, "1a")

    def step_1a_batch(self, query_ids: list[int], xs: np.ndarray,
                      after: Callable[[str, np.ndarray], None] | None = None) -> dict[str, np.ndarray]:
        """Batch packing: send every query in the slots of one Enc(X) to every live AP; return each
        AP's fixed-point shares a_j as uint64[B, C] (row k belongs to ``query_ids[k]``).

        ``after(ap, shares)`` is called as soon as an AP's shares are known, so that its step 1b can
        run while the next AP evaluates the batch (APs one after the other)."""
        from capc.net.messages import BatchQueryRequest, QueryResult

        batch_id = query_ids[0]
        ids = np.array(query_ids, dtype=np.uint64)
        requests: dict[int, Any] = {}
        with self.ctx.timing.span("1a_encrypt_batch", batch_id, batch=len(query_ids)):
            for link in self.aps:
                if link.alive and id(link.keys) not in requests:
                    requests[id(link.keys)] = BatchQueryRequest(
                        batch_id=batch_id, batch_size=len(query_ids), query_ids=ids,
                        ciphertexts=(link.keys.encrypt(xs),), num_classes=self.p.num_classes,
                        frac_bits=self.p.frac_bits)

        def one(link: _ApLink) -> np.ndarray:
            link.chan.send(requests[id(link.keys)])
            res = transport.expect(link.chan, QueryResult, self.p.timeout, f"{link.name}'s encrypted batch")
            if res.query_id != batch_id or len(res.ciphertexts) != 1:
                raise CapcError(f"{link.name} answered batch {res.query_id} with {len(res.ciphertexts)} "
                                f"blobs, expected batch {batch_id} with 1")
            masked = np.asarray(link.keys.decrypt_logits(res.ciphertexts[0]), dtype=np.float64)
            if masked.ndim != 2 or masked.shape[1] != self.p.num_classes or masked.shape[0] < len(query_ids):
                raise CapcError(f"{link.name} returned logits of shape {masked.shape}")
            return fixedpoint.encode(masked[: len(query_ids)], self.p.frac_bits)

        if self.p.sequential_batch_aps:
            out: dict[str, np.ndarray] = {}
            for link in [l for l in self.aps if l.alive]:
                got = self._on_live_aps(one, "1a", only={link.name})
                out.update(got)
                if after is not None and link.name in got:
                    after(link.name, got[link.name])
            return out
        out = self._on_live_aps(one, "1a")
        if after is not None:
            for name, shares in out.items():
                after(name, shares)
        return out

    def step_1b(self, query_id: int, shares: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Evaluate each AP's argmax circuit on a_j; return the QP's vote shares w_j."""
        from capc.gc import GcSession
        from capc.net.messages import GcStart, StepDone

        def one(link: _ApLink) -> np.ndarray:
            link.chan.send(GcStart(query_id=query_id, program="argmax_share", num_classes=self.p.num_classes))
            transport.expect(link.chan, StepDone, self.p.timeout, f"{link.name} starting the argmax circuit")
            if link.session is None:
                link.session = GcSession(link.chan.raw_io(), "evaluator")
            w = link.session.argmax_share_evaluator(shares[link.name].view(np.int64))
            return fixedpoint.as_ring(np.asarray(w, dtype=np.int64))

        return self._on_live_aps(one, "1b", only=set(shares))

    def step_1b_batch(self, ap: str, query_ids: list[int], shares: np.ndarray) -> np.ndarray:
        """Batch packing: evaluate one AP's argmax circuit for every query of a batch (in order);
        returns the QP's vote shares w_j as uint64[k, C] for the first k queries. k < B only if the AP
        failed (it is then dropped): the queries it completed keep its vote."""
        from capc.gc import GcSession
        from capc.net.messages import GcStart, StepDone

        w = np.empty((len(query_ids), self.p.num_classes), dtype=np.uint64)
        done = [0]

        def one(link: _ApLink) -> None:
            for k, qid in enumerate(query_ids):
                link.chan.send(GcStart(query_id=qid, program="argmax_share", num_classes=self.p.num_classes))
                transport.expect(link.chan, StepDone, self.p.timeout, f"{link.name} starting the argmax circuit")
                if link.session is None:
                    link.session = GcSession(link.chan.raw_io(), "evaluator")
                w[k] = fixedpoint.as_ring(np.asarray(
                    link.session.argmax_share_evaluator(shares[k].view(np.int64)), dtype=np.int64))
                done[0] = k + 1

        self._on_live_aps(one, "1b", only={ap})
        return w[:done[0]]

    def step_2(self, w: dict[str, np.ndarray]) -> np.ndarray:
        """W = 2^g * sum_j w_j (mod 2^64)."""
        total = np.zeros(self.p.num_classes, dtype=np.uint64)
        for share in w.values():
            total = fixedpoint.add(total, share)
        with np.errstate(over="ignore"):
            return total * np.uint64(1 << self.p.vote_scale_exp)

    def _send_to_pg(self, msg: Any) -> None:
        """Send to the PG, reconnecting once: the PG may have restarted between queries."""
        try:
            self.pg.send(msg)
        except (OSError, CapcError):
            self.ctx.log.info("reconnecting to the privacy guardian")
            self._connect_pg()
            self.pg.send(msg)

    def step_3(self, query_id: int, W: np.ndarray, n_answering: int) -> tuple[bool, int | None]:
        """Ask the PG for Confident-GNMax over the aggregated shares; returns (answered, label)."""
        from capc.gc import GcSession
        from capc.net.messages import GcStart, NoisyArgmaxRequest, StepDone

        req = NoisyArgmaxRequest(qp_id=self.ctx.name, query_id=query_id, n_answering=n_answering,
                                 num_classes=self.p.num_classes)
        self._send_to_pg(req)
        transport.expect(self.pg, StepDone, self.p.timeout, "the privacy guardian's budget check")
        self.pg.send(GcStart(query_id=query_id, program="noisy_argmax", num_classes=self.p.num_classes))
        if self.pg_session is None:
            self.pg_session = GcSession(self.pg.raw_io(), "evaluator")
        return _outcome(*self.pg_session.noisy_argmax_evaluator(W.view(np.int64)))

    def step_3_batch(self, query_ids: list[int], Ws: list[np.ndarray], n_answering: list[int]
                     ) -> tuple[list[tuple[bool, int | None]], str, str]:
        """Batch packing: one request for Confident-GNMax over every query of a batch (in order). The
        PG charges as many leading queries as the budget allows in one ledger transaction; returns
        (answered, label) for each of those, and the PG's reason and ErrorCode value for refusing the
        rest ("", "" if none)."""
        from capc.gc import GcSession
        from capc.net.messages import BudgetReserved, NoisyArgmaxBatchRequest

        req = NoisyArgmaxBatchRequest(qp_id=self.ctx.name, batch_size=len(query_ids),
                                      query_ids=np.array(query_ids, dtype=np.uint64),
                                      n_answering=np.array(n_answering, dtype=np.uint64),
                                      num_classes=self.p.num_classes)
        self._send_to_pg(req)
        reply = transport.expect(self.pg, BudgetReserved, self.p.timeout, "the privacy guardian's budget check")
        if reply.batch_id != query_ids[0] or reply.reserved > len(query_ids):
            raise CapcError(f"the privacy guardian reserved {reply.reserved} queries of batch {reply.batch_id}, "
                            f"expected at most {len(query_ids)} of batch {query_ids[0]}")
        out: list[tuple[bool, int | None]] = []
        if reply.reserved and self.pg_session is None:
            self.pg_session = GcSession(self.pg.raw_io(), "evaluator")
        for W in Ws[:reply.reserved]:
            try:
                out.append(_outcome(*self.pg_session.noisy_argmax_evaluator(W.view(np.int64))))
            except CapcError as exc:  # the labels obtained so far are kept
                return out, f"the noisy-argmax circuit with the privacy guardian failed: {exc}", "refused"
        return out, reply.reason, reply.code

    def step_4(self, query_id: int, answered: bool, label: int | None) -> None:
        """Record the outcome durably."""
        self.store.complete(query_id, answered, label)

    # ------------------------------------------------------------------ one query

    def run_query(self, query_id: int, x: np.ndarray, true_label: int | None = None) -> QueryOutcome:
        """Steps 1a-4 for one query. Refuses a query id used before."""
        from capc.parties.label_store import ReplayedQueryId

        try:
            self.store.begin(query_id, true_label, self.item_of.get(query_id))
        except ReplayedQueryId as exc:
            self.ctx.log.warning("query %d refused: %s", query_id, exc)
            return QueryOutcome(query_id, False, None, true_label, 0, {}, error=f"replayed: {exc}",
                                code="replayed")
        t = time.perf_counter()
        try:
            a = self.step_1a(query_id, x)
            if not a:
                raise CapcError(f"query {query_id}: no answering party completed step 1a")
        except CapcError as exc:
            self.store.fail(query_id, str(exc))
            self.ctx.log.warning("query %d: %s", query_id, exc)
            return QueryOutcome(query_id, False, None, true_label, 0, {}, error=str(exc))
        secs = {"1a": time.perf_counter() - t}
        t = time.perf_counter()
        w = self.step_1b(query_id, a)
        secs["1b"] = time.perf_counter() - t
        return self._finish_query(query_id, true_label, w, secs)

    def run_batch(self, items: list[tuple[int, np.ndarray, int | None]]) -> list[QueryOutcome]:
        """Batch packing: step 1a once for all ``(query_id, x, true_label)`` items, step 1b per query
        for each AP as soon as that AP's step 1a is done (with APs one after the other, this overlaps the
        next AP's evaluation), then step 3 for the whole batch in one request to the PG (one ledger
        transaction) and step 4 per query. Replayed ids are refused individually; the rest go on."""
        from capc.parties.label_store import ReplayedQueryId

        outcomes: dict[int, QueryOutcome] = {}
        claimed = []
        for qid, x, y in items:
            try:
                self.store.begin(qid, y, self.item_of.get(qid))
                claimed.append((qid, x, y))
            except ReplayedQueryId as exc:
                outcomes[qid] = QueryOutcome(qid, False, None, y, 0, {}, error=f"replayed: {exc}", code="replayed")
        if claimed:
            ids = [q for q, _, _ in claimed]
            t = time.perf_counter()
            # step 1b of each AP starts as soon as its step 1a is done, while later APs evaluate
            gc_pool = ThreadPoolExecutor(max_workers=max(1, len(self.aps)))
            w_futs: dict[str, Any] = {}
            try:
                try:
                    a = self.step_1a_batch(ids, np.stack([x for _, x, _ in claimed]),
                                           after=lambda ap, sh: w_futs.__setitem__(
                                               ap, gc_pool.submit(self.step_1b_batch, ap, ids, sh)))
                    if not a:
                        raise CapcError(f"batch {ids[0]}: no answering party completed step 1a")
                except CapcError as exc:
                    for qid, _, y in claimed:
                        self.store.fail(qid, str(exc))
                        outcomes[qid] = QueryOutcome(qid, False, None, y, 0, {}, error=str(exc))
                    claimed = []
                t1a = time.perf_counter() - t
                w_all = {ap: f.result() for ap, f in w_futs.items()}
            finally:
                gc_pool.shutdown(wait=True)
            t1b = time.perf_counter() - t - t1a
            per_query = {"1a": t1a / len(ids), "1b": t1b / len(ids)}
            ready = []  # (query id, true label, vote shares) of the queries at least one AP voted on
            for k, (qid, _, y) in enumerate(claimed):
                w = {ap: rows[k] for ap, rows in w_all.items() if k < len(rows)}
                if w:
                    ready.append((qid, y, w))
                else:
                    outcomes[qid] = self._fail(qid, y, f"query {qid}: no answering party completed step 1b", per_query)
            if ready:
                outcomes.update(self._finish_batch(ready, per_query))
        return [outcomes[qid] for qid, _, _ in items]

    def _finish_batch(self, ready: list[tuple[int, int | None, dict[str, np.ndarray]]],
                      secs: dict[str, float]) -> dict[int, QueryOutcome]:
        """Steps 2-4 for the queries of a batch: one step-3 request to the PG for all of them."""
        ids = [qid for qid, _, _ in ready]
        t = time.perf_counter()
        try:
            results, reason, code = self.step_3_batch(ids, [self.step_2(w) for _, _, w in ready],
                                                      [len(w) for _, _, w in ready])
        except CapcError as exc:
            results, reason, code = [], str(exc), getattr(exc, "code", "refused")
        secs = {**secs, "2+3": (time.perf_counter() - t) / len(ids)}
        out = {}
        for k, (qid, y, w) in enumerate(ready):
            if k >= len(results):
                # a replay is the first refused id's own fault; the ones after it are merely refused
                this = "refused" if code == "replayed" and k > len(results) else code or "refused"
                out[qid] = self._fail(qid, y, f"query {qid}: refused by the privacy guardian: {reason}", secs,
                                      code=this)
                continue
            answered, label = results[k]
            self.step_4(qid, answered, label)
            for step, sec in secs.items():
                self.ctx.timing.record(step, sec, qid)
            out[qid] = QueryOutcome(qid, answered, label, y, len(w), secs)
        self.ctx.log.info("batch of %d queries: %d answered, %d not answered (threshold), %d refused",
                          len(ids), sum(1 for a, _ in results if a), sum(1 for a, _ in results if not a),
                          len(ids) - len(results))
        return out

    def _fail(self, query_id: int, true_label: int | None, reason: str, secs: dict[str, float],
              code: str = "refused") -> QueryOutcome:
        self.store.fail(query_id, reason)
        self.ctx.log.warning("%s", reason)
        return QueryOutcome(query_id, False, None, true_label, 0, dict(secs), error=reason, code=code)

    def _finish_query(self, query_id: int, true_label: int | None, w: dict[str, np.ndarray],
                      secs: dict[str, float]) -> QueryOutcome:
        """Steps 2-4 for one query whose step-1b vote shares ``w`` are known."""
        secs = dict(secs)
        try:
            if not w:
                raise CapcError(f"query {query_id}: no answering party completed step 1b")
            t = time.perf_counter()
            answered, label = self.step_3(query_id, self.step_2(w), len(w))
            secs["2+3"] = time.perf_counter() - t
        except CapcError as exc:
            self.store.fail(query_id, str(exc))
            self.ctx.log.warning("query %d: %s", query_id, exc)
            return QueryOutcome(query_id, False, None, true_label, 0, secs, error=str(exc),
                                code=getattr(exc, "code", "refused"))
        self.step_4(query_id, answered, label)
        for step, sec in secs.items():
            self.ctx.timing.record(step, sec, query_id)
        self.ctx.log.info("query %d: %s (%d answering parties)", query_id,
                          "label obtained" if answered else "not answered (threshold)", len(w))
        return QueryOutcome(query_id, answered, label, true_label, len(w), secs)

    def _on_live_aps(self, fn: Any, step: str, only: set[str] | None = None) -> dict[str, Any]:
        links = [l for l in self.aps if l.alive and (only is None or l.name in only)]
        futures = {l.name: (l, self._pool.submit(fn, l)) for l in links}
        out: dict[str, Any] = {}
        for name, (link, fut) in futures.items():
            try:
                out[name] = fut.result()
            except Exception as exc:
                reason = str(exc) or type(exc).__name__
                if isinstance(exc, transport.PeerRefused):
                    self.ctx.log.warning("step %s: %s refused: %s", step, name, reason)
                else:
                    link.alive = False
                    link.failure = reason
                    self.ctx.log.warning("step %s: answering party %s failed and is dropped: %s", step, name, reason)
                    self.ctx.report("progress", event="ap_failed", party=name, reason=reason[:300])
        return out

    def close(self) -> None:
        for link in self.aps:
            if link.session is not None:
                link.session.close()
            transport.shutdown(link.chan, "querying party finished")
        if self.pg_session is not None:
            self.pg_session.close()
        if self.pg is not None:
            transport.shutdown(self.pg, "querying party finished")
        self._pool.shutdown(wait=False)
        self.keyring.close()
        self.store.close()
