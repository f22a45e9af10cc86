"""The querying party (QP): owns the CKKS secret key, asks for labels and keeps them.

A query is a batch of one: :meth:`QueryingParty.ask` takes B queries (B = 1 with single
packing unless a batch size is set) through the paper's steps, with the answering parties working in
parallel (docs/design.md §4.4):

* **step 1a** — send the encrypted queries to an AP; decrypt its ``Enc(z_j - r_j)`` into the
  fixed-point shares ``a_j = round(2^f (z_j - r_j))`` (uint64[B, C]).
* **step 1b** — evaluate that AP's garbled argmax circuit on each row of ``a_j``; receive
  ``w_j = onehot(k_j) - m_j`` (uniformly random on its own: the QP learns no individual vote). The AP
  confirms that its ``m_j`` reached the PG (step 2) before its vote is counted.
* **step 2** — ``W = 2^g * sum_j w_j``.
* **step 3** — one request to the PG for the B queries; the PG charges as many as the budget allows
  (one ledger transaction) and runs Confident-GNMax for each with the QP, which learns whether each
  was answered and, if so, its label.
* **step 4** — record (query id, label) durably in the :class:`~capc.parties.label_store.LabelStore`.

Each AP's steps 1a and 1b run in their own thread, so one AP's circuits overlap the next AP's
evaluation. An AP that fails is dropped from the run with a clear log line; the batch goes on with
the others. A query id is never asked twice.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable

import numpy as np

from capc import fixedpoint
from capc.errors import CapcError
from capc.he.hybrid import evaluate_layer, segment_width
from capc.net.messages import (BudgetReserved, ErrorCode, GcStart, ModelPlan, NoisyArgmaxRequest,
                               PublicContext, QueryRequest, QueryResult, StepDone)
from capc.parties import spool, transport
from capc.parties.common import PartyContext
from capc.parties.crypto import QueryCipher
from capc.parties.label_store import LabelStore, ReplayedQueryId
from capc.parties.transport import Link, PeerRefused


class Status(str, Enum):
    """What became of one query (the results file records the value)."""

    ANSWERED = "answered"  # the noisy plurality passed the threshold: the QP holds a label
    DECLINED = "declined"  # not answered: the noisy plurality fell below the threshold
    BUDGET = "refused_budget"  # the PG refused: the QP's privacy budget cannot pay for it (the run stops)
    REPLAYED = "replayed"  # the id was asked before; it is not asked again
    REFUSED = "refused"  # the PG refused this query for another reason (e.g. missing vote shares)
    FAILED = "failed"  # no answering party completed it, or the circuit with the PG failed

    @classmethod
    def of_code(cls, code: str) -> Status:
        """The status of a PG refusal with :class:`~capc.net.messages.ErrorCode` value ``code``."""
        return {ErrorCode.BUDGET_EXHAUSTED.value: cls.BUDGET, ErrorCode.REPLAYED.value: cls.REPLAYED}.get(
            code, cls.REFUSED)


@dataclass
class QueryOutcome:
    """What the QP learned about one query."""

    query_id: int
    status: Status
    label: int | None
    true_label: int | None
    n_answering: int
    seconds: dict[str, float] = field(default_factory=dict)
    error: str = ""  # why, when not answered for a reason other than the threshold

    @property
    def answered(self) -> bool:
        return self.status is Status.ANSWERED


class QueryingParty:
    """One QP: channels to every AP and to the PG, the secret keys, the label store."""

    def __init__(self, ctx: PartyContext) -> None:
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.p = ctx.cfg.protocol
        self.keyring = ctx.providers.he.keyring(self.cfg)
        self.store = LabelStore(ctx.run_dir / f"labels-{ctx.name}.sqlite", ctx.name)
        #: opaque query id -> the query pool item it names (recorded in the store, never sent)
        self.item_of: dict[int, int] = {}
        self.aps: list[Link] = []
        self.keys: dict[str, QueryCipher] = {}  # AP name -> the key set of its model layout
        self.pg: Link | None = None
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.cfg.answering_parties)))
        # with every AP on this machine, one batch evaluation at a time (each uses all cores)
        self._step_1a_lock = threading.Lock() if self.p.sequential_batch_aps else None
        #: APs that proved they read this host's files: batch queries go to them through the spool
        self._spool_dirs: dict[str, Path] = {}
        self._spool = spool.QuerySpool()

    def _link(self, name: str) -> Link:
        return Link(name, self.ctx.connect(name), self.ctx.providers.mpc, "evaluator", self.p.timeout)

    # ------------------------------------------------------------------ setup

    def connect(self) -> None:
        """Open a channel to every AP, receive its public model plan (layout only, no weights), send
        it the public context for that layout (no secret key), and connect to the PG."""

        def open_link(ap: str) -> tuple[Link, bytes] | None:
            try:
                link = self._link(ap)
                mp = link.expect(ModelPlan, f"{ap}'s public model plan")
                if spool.shares_spool(mp.spool_dir, ap, mp.spool_token):
                    self._spool_dirs[ap] = Path(mp.spool_dir)
                return link, mp.plan_bytes
            except CapcError as exc:
                self.ctx.log.warning("answering party %s is unreachable and is left out: %s", ap, exc)
                self.ctx.report("progress", event="ap_failed", party=ap, reason=str(exc)[:300])
                return None

        opened = [o for o in self._pool.map(open_link, [a.name for a in self.cfg.answering_parties]) if o]
        if not opened:
            raise CapcError("no answering party could be reached")
        with self.ctx.timing.span("setup_keygen"):
            for link, plan in opened:
                self.keys[link.name] = self.keyring.for_plan(plan)
        for k in self.keyring.all():
            sizes = getattr(k, "sizes", {})
            self.ctx.log.info("keys: public context %.1f MB (%d Galois keys; no secret key)",
                              sizes.get("public_context", 0) / 1e6, sizes.get("galois_key_count", 0))

        def send_context(link: Link) -> Link:
            keys = self.keys[link.name]
            link.send(PublicContext(context_bytes=keys.public_context(),
                                    params={"packing": self.p.packing, "key_id": keys.key_id}))
            link.expect(StepDone, f"{link.name} accepting the public context")
            return link

        self.aps = list(self._pool.map(send_context, [link for link, _ in opened]))
        self._connect_pg()

    def _connect_pg(self) -> None:
        if self.pg is not None:
            try:
                self.pg.close("reconnecting")
            except Exception:
                pass
        self.pg = self._link("pg")

    # ------------------------------------------------------------------ protocol steps

    def step_1a(self, link: Link, ids: list[int], blobs: tuple[bytes, ...]) -> np.ndarray:
        """Send the encrypted queries to one AP; return its decrypted shares a_j (uint64[B, C]).

        With a ReLU / max-pool model the AP answers one CKKS segment at a time: each hidden
        segment's masked pre-activations are decrypted into shares, a garbled-circuit layer
        (:meth:`step_1a_gc_layer`) turns them into the layer's outputs under the AP's mask, and
        those are encrypted afresh as the next segment's input."""
        cipher = self.keys[link.name]
        layers = cipher.gc_layers
        for k in range(len(layers) + 1):
            directory = self._spool_dirs.get(link.name)
            if directory is not None and len(blobs) == 1 and len(blobs[0]) >= spool.SPOOL_MIN_BYTES:
                # one copy on this host for every AP that shares it, instead of one TLS transfer each
                req = QueryRequest(query_ids=ids, ciphertexts=(), num_classes=self.p.num_classes,
                                   frac_bits=self.p.frac_bits, segment=k,
                                   spool=self._spool.put(directory, blobs[0]))
            else:
                req = QueryRequest(query_ids=ids, ciphertexts=blobs, num_classes=self.p.num_classes,
                                   frac_bits=self.p.frac_bits, segment=k)
            link.send(req)
            what = f"{link.name}'s encrypted logits" if k == len(layers) else \
                f"{link.name}'s masked pre-activations of segment {k}"
            res = link.expect(QueryResult, what)
            if res.query_ids.tolist() != ids or res.segment != k:
                raise CapcError(f"{link.name} answered queries {res.query_ids.tolist()[:4]}... segment "
                                f"{res.segment}, expected {ids[:4]}... segment {k}")
            a = cipher.decrypt_shares(res.ciphertexts, len(ids), self.p.frac_bits)
            width = segment_width(layers, k, self.p.num_classes)
            if a.shape != (len(ids), width):
                raise CapcError(f"{link.name} returned shares of shape {a.shape}, expected "
                                f"({len(ids)}, {width})")
            if k == len(layers):
                return a
            y = self.step_1a_gc_layer(link, ids, k, a)
            blobs = cipher.encrypt(fixedpoint.decode(y, self.p.frac_bits), segment=k + 1)
        raise AssertionError("unreachable")

    def step_1a_gc_layer(self, link: Link, ids: list[int], k: int, a: np.ndarray) -> np.ndarray:
        """The GC layer after segment k with one AP, for all of the batch's activations in one run:
        from the shares a (uint64[B, n]) return the QP's share y - m (uint64[B, n_out]) of the layer's
        outputs; the AP holds m."""
        layer = self.keys[link.name].gc_layers[k]
        link.send(GcStart(query_ids=ids, program=layer.kind + "_share", num_classes=self.p.num_classes,
                          options={"segment": k}))
        link.expect(StepDone, f"{link.name} starting the {layer.kind} layer after segment {k}")
        return evaluate_layer(link.gc(), layer, a)

    def step_1b(self, link: Link, ids: list[int], a: np.ndarray) -> np.ndarray:
        """Evaluate one AP's argmax circuit for each query; return the QP's vote shares w_j
        (uint64[B, C]) once the AP confirms its own shares reached the PG."""
        link.send(GcStart(query_ids=ids, program="argmax_share", num_classes=self.p.num_classes))
        link.expect(StepDone, f"{link.name} starting the argmax circuits")
        session = link.gc()
        w = np.stack([fixedpoint.as_ring(np.asarray(session.argmax_share_evaluator(row.view(np.int64)),
                                                    dtype=np.int64)) for row in a])
        link.expect(StepDone, f"{link.name} sending its vote shares to the privacy guardian")
        return w

    def step_2(self, w: dict[str, np.ndarray]) -> np.ndarray:
        """W = 2^g * sum_j w_j (mod 2^64), row by row."""
        total = None
        for share in w.values():
            total = share.copy() if total is None else fixedpoint.add(total, share)
        with np.errstate(over="ignore"):
            return total * np.uint64(1 << self.p.vote_scale_exp)

    def step_3(self, ids: list[int], W: np.ndarray, n_answering: int
               ) -> tuple[list[tuple[bool, int | None]], str, str]:
        """Ask the PG for Confident-GNMax over every query. Returns (answered, label) for each query
        the PG charged (the leading ones), and the PG's reason and ErrorCode value for refusing the
        rest ("", "" if none)."""
        req = NoisyArgmaxRequest(qp_id=self.ctx.name, query_ids=ids, n_answering=[n_answering] * len(ids),
                                 num_classes=self.p.num_classes)
        try:
            self.pg.send(req)
        except (OSError, CapcError):  # the PG may have restarted between batches: reconnect once
            self.ctx.log.info("reconnecting to the privacy guardian")
            self._connect_pg()
            self.pg.send(req)
        # the PG first waits up to one timeout for the APs' vote shares: give it that and one more
        reply = transport.expect(self.pg.chan, BudgetReserved, 2 * self.p.timeout, "the privacy guardian's budget check")
        if reply.reserved > len(ids):
            raise CapcError(f"the privacy guardian reserved {reply.reserved} of {len(ids)} queries")
        out: list[tuple[bool, int | None]] = []
        for row in W[:reply.reserved]:
            try:
                answered, label = self.pg.gc().noisy_argmax_evaluator(row.view(np.int64))
            except CapcError as exc:  # the labels obtained so far are kept
                return out, f"the noisy-argmax circuit with the privacy guardian failed: {exc}", ""
            out.append((bool(answered), int(label) if answered and label is not None else None))
        return out, reply.reason, reply.code

    def step_4(self, query_id: int, answered: bool, label: int | None) -> None:
        """Record the outcome durably."""
        self.store.complete(query_id, answered, label)

    # ------------------------------------------------------------------ a batch

    def _votes(self, link: Link, ids: list[int], blobs: tuple[bytes, ...]) -> np.ndarray:
        """Steps 1a and 1b with one AP (their times go to the timing file, per AP)."""
        t = time.perf_counter()
        if self._step_1a_lock is not None:
            with self._step_1a_lock:
                a = self.step_1a(link, ids, blobs)
        else:
            a = self.step_1a(link, ids, blobs)
        t1 = time.perf_counter()
        w = self.step_1b(link, ids, a)
        self.ctx.timing.record("1a", t1 - t, ids[0], ap=link.name, batch=len(ids))
        self.ctx.timing.record("1b", time.perf_counter() - t1, ids[0], ap=link.name, batch=len(ids))
        return w

    def ask(self, items: list[tuple[int, np.ndarray, int | None]]) -> list[QueryOutcome]:
        """Steps 1a-4 for ``(query_id, x, true_label)`` items. Replayed ids are refused one by one;
        the rest go on as one batch."""
        outcomes: dict[int, QueryOutcome] = {}
        claimed = []
        for qid, x, y in items:
            try:
                self.store.begin(qid, y, self.item_of.get(qid))
                claimed.append((qid, x, y))
            except ReplayedQueryId as exc:
                self.ctx.log.warning("query %d refused: %s", qid, exc)
                outcomes[qid] = QueryOutcome(qid, Status.REPLAYED, None, y, 0, error=f"replayed: {exc}")
        if claimed:
            outcomes.update(self._run_claimed(claimed))
        return [outcomes[qid] for qid, _, _ in items]

    def _run_claimed(self, claimed: list[tuple[int, np.ndarray, int | None]]) -> dict[int, QueryOutcome]:
        ids = [q for q, _, _ in claimed]
        labels = {q: y for q, _, y in claimed}
        t = time.perf_counter()
        live = [link for link in self.aps if link.alive]
        try:
            xs = np.stack([x for _, x, _ in claimed])
            blobs: dict[int, tuple[bytes, ...]] = {}
            for link in live:  # APs with the same model layout share one encryption
                k = self.keys[link.name]
                if id(k) not in blobs:
                    blobs[id(k)] = k.encrypt(xs)
        except CapcError as exc:
            return self._fail_all(ids, labels, Status.FAILED, f"encrypting the queries failed: {exc}", {})
        self.ctx.timing.record("1a_encrypt", time.perf_counter() - t, ids[0], batch=len(ids))
        try:
            w = self._on_aps(live, lambda link: self._votes(link, ids, blobs[id(self.keys[link.name])]))
        finally:
            self._spool.clear()  # every AP has answered (or failed): its spooled copy is no longer needed
        per_query = {"1a+1b": (time.perf_counter() - t) / len(ids)}
        if not w:
            return self._fail_all(ids, labels, Status.FAILED,
                                  "no answering party completed steps 1a and 1b", per_query)
        t = time.perf_counter()
        try:
            results, reason, code = self.step_3(ids, self.step_2(w), len(w))
        except CapcError as exc:
            results, reason, code = [], str(exc), getattr(exc, "code", "")
        per_query["2+3"] = (time.perf_counter() - t) / len(ids)
        out: dict[int, QueryOutcome] = {}
        for k, qid in enumerate(ids):
            if k < len(results):
                answered, label = results[k]
                self.step_4(qid, answered, label)
                for step, sec in per_query.items():
                    self.ctx.timing.record(step, sec, qid)
                out[qid] = QueryOutcome(qid, Status.ANSWERED if answered else Status.DECLINED, label,
                                        labels[qid], len(w), dict(per_query))
            else:
                status = Status.of_code(code) if code else Status.FAILED
                # a replay is the first refused id's own fault; the ones after it are merely refused
                if status is Status.REPLAYED and k > len(results):
                    status = Status.REFUSED
                out.update(self._fail_all([qid], labels, status,
                                          f"query {qid}: not answered by the privacy guardian: {reason}", per_query))
        self.ctx.log.info("%d queries: %d answered, %d not answered (threshold), %d refused (%d answering parties)",
                          len(ids), sum(1 for a, _ in results if a), sum(1 for a, _ in results if not a),
                          len(ids) - len(results), len(w))
        return out

    def _fail_all(self, ids: list[int], labels: dict[int, int | None], status: Status, reason: str,
                  secs: dict[str, float]) -> dict[int, QueryOutcome]:
        for qid in ids:
            self.store.fail(qid, reason)
        self.ctx.log.warning("%s", reason)
        return {qid: QueryOutcome(qid, status, None, labels[qid], 0, dict(secs), error=reason) for qid in ids}

    def _on_aps(self, links: list[Link], fn: Callable[[Link], np.ndarray]) -> dict[str, np.ndarray]:
        """Run ``fn`` for each AP in parallel; an AP that fails is dropped, one that refuses is not."""
        futures = {link.name: (link, self._pool.submit(fn, link)) for link in links}
        out: dict[str, np.ndarray] = {}
        for name, (link, fut) in futures.items():
            try:
                out[name] = fut.result()
            except Exception as exc:
                reason = str(exc) or type(exc).__name__
                if isinstance(exc, PeerRefused):
                    self.ctx.log.warning("%s refused: %s", name, reason)
                else:
                    link.drop(reason)
                    self.ctx.log.warning("answering party %s failed and is dropped: %s", name, reason)
                    self.ctx.report("progress", event="ap_failed", party=name, reason=reason[:300])
        return out

    def close(self) -> None:
        for link in self.aps:
            try:
                link.close("querying party finished")
            except Exception:
                pass
        if self.pg is not None:
            try:
                self.pg.close("querying party finished")
            except Exception:
                pass
        self._pool.shutdown(wait=False)
        self.keyring.close()
        self.store.close()
