"""The answering party's side: evaluate a plan on an encrypted query and mask the logits.

Single packing follows :mod:`capc.he.layout` (gather / BSGS diagonal transforms); batch packing
runs on :class:`capc.he.batch.BatchEngine` (affine stages as exact RNS matrix products, squares in
SEAL over worker processes), or, when ``fast_batch=False`` or the TenSEAL build is not recognised by
:mod:`capc.he.raw`, computes every neuron as a sum of constant multiples of ciphertexts with one
(lazy) rescale.
Scale management: weights of an affine stage are encoded at ``q * Delta / s_in`` (``q`` the prime
the following rescale drops, ``s_in`` the input scale), so every affine stage returns exactly to the
scale ``Delta``; a square leaves ``Delta^2 / q``, which the next affine stage absorbs.
"""

from __future__ import annotations

import math
import resource
from typing import Any

import numpy as np
import tenseal.sealapi as seal

from capc import fixedpoint
from capc.he import raw, residue_wire
from capc.he.batch import BatchEngine, default_workers
from capc.he.bounds import partial_sum_bound, segment_bounds
from capc.he.errors import HEError
from capc.he.layout import (DiagSpec, baby_giant_vectors, batch_layout, diagonal_vectors, gather_vectors,
                            monomial_slots, result_support, single_layout)
from capc.he.mask import (draw_flood, draw_mask, draw_share_mask, flood_std, grid_smoothing_bits,
                          hiding_report)
from capc.he.params import (DEFAULT_HIDING_BITS, DEFAULT_LOGIT_BOUND, MIN_HIDING_BITS, mask_sizing,
                            needed_output_bits)
from capc.he.hybrid import HybridPlan, segments_of
from capc.he.layout import query_vectors, result_values
from capc.he.plan import LinearStage, Plan, SquareStage
from capc.he.seal import (CONTEXT_MAGIC, QUERY_MAGIC, RESULT_MAGIC, _Scratch, frame, make_context,
                          unframe)


class _Segment:
    """One CKKS segment of the plan: its layout, pre-encoded weights, level schedule and batch engine."""

    def __init__(self, plan: Plan, layout: Any, bound: float) -> None:
        self.plan = plan
        self.layout = layout
        #: sound bound on this segment's outputs over the model's input domain (mask sizing)
        self.bound = bound
        self.single: list[dict[str, Any]] = []
        self.schedule: list[tuple[int, float]] = []  # (input level, input scale) per stage
        self.engine: BatchEngine | None = None
        self.batch_layouts: dict[int, Any] = {}  # batch size -> layout (lanes)
        #: single packing's last map: result slots holding partial sums of logit rows, and their bound
        self.partial_coords = 0
        self.partial_bound: float | None = None


class ModelEvaluator:
    """Evaluates ``plan`` on queries encrypted under ``public_context`` (which has no secret key).

    A :class:`~capc.he.hybrid.HybridPlan` is evaluated one segment per call: the query's header
    names the segment, and the activations entering segment ``k > 0`` arrive masked with the mask
    this party drew in the garbled-circuit layer before (``unmask`` of :meth:`evaluate_masked`).

    Args:
        plan: the answering party's compiled :class:`~capc.he.plan.Plan` or
            :class:`~capc.he.hybrid.HybridPlan` (with weights).
        public_context: bytes from :meth:`capc.he.keys.QueryKeys.public_context`.
        hiding_bits: s, statistical hiding per logit for :meth:`evaluate_masked` (default 40).
        logit_bound: B, the assumed bound on |logit| (default 16).
        workers: processes for batch-packing evaluation (default ``min(2, os.cpu_count())``; 1 =
            in-process).  The pool starts at the first batch query and lives until :meth:`close`
            (also called by ``with ModelEvaluator(...) as ev:`` and at garbage collection).
        fast_batch: evaluate batch packing with exact RNS matrix products (:mod:`capc.he.batch`);
            False, or a TenSEAL build whose ciphertext memory layout is not recognised, uses one SEAL
            call per multiply-accumulate instead.

    Raises:
        HEError: for a malformed or non-CKKS context, a context made for another plan, missing Galois
            keys, or parameters without the levels/headroom this plan and mask need.
    """

    def __init__(self, plan: Plan, public_context: bytes, *, hiding_bits: int = DEFAULT_HIDING_BITS,
                 logit_bound: float = DEFAULT_LOGIT_BOUND, workers: int | None = None,
                 fast_batch: bool = True) -> None:
        self._segs: list[_Segment] = []
        if not isinstance(plan, (Plan, HybridPlan)):
            raise HEError(f"ModelEvaluator needs the full Plan (with weights), got {type(plan).__name__}")
        self.plan = plan
        self.hiding_bits = int(hiding_bits)
        self.logit_bound = float(logit_bound)
        self.log2_bound = max(0, math.ceil(math.log2(self.logit_bound)))
        bounds = segment_bounds(plan)
        #: sound |logit| bound over the declared input domain: what the hiding report is honest about
        self.derived_bound = bounds[-1]
        #: the AP refuses to mask with fewer hiding bits than this
        self.min_hiding_bits = MIN_HIDING_BITS
        header, sections = unframe(public_context, CONTEXT_MAGIC, "public context")
        tags = [t for t, _ in sections]
        if tags.count(b"P") != 1 or tags.count(b"R") != 1 or any(t not in (b"P", b"K", b"R", b"G") for t in tags):
            raise HEError(f"public context has unexpected sections {tags}")
        if tags.count(b"K") != 1:
            raise HEError("public context has no public key: this party re-randomises every result it "
                          "returns and cannot answer without one (is the querying party's capc older?)")
        if header.get("plan") != plan.fingerprint:
            raise HEError("the public context was made for a different model layout (plan fingerprint "
                          "mismatch); the querying party must use this party's public plan")
        self.packing = header.get("packing")
        if self.packing not in ("single", "batch"):
            raise HEError(f"public context names unknown packing {self.packing!r}")
        self.key_id = header.get("key_id")
        self._scratch = _Scratch()
        data = {tag: bytes(view) for tag, view in sections}
        parms = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
        try:
            self._scratch.load(parms, data[b"P"])
        except (RuntimeError, ValueError) as exc:
            raise HEError(f"public context: unreadable encryption parameters ({exc})") from None
        try:
            self.ctx = make_context(parms, int(header.get("security_level", 128)))
            self.relin = self._scratch.load(seal.RelinKeys(), data[b"R"], self.ctx)
            self._rerandomiser = seal.Encryptor(self.ctx, self._scratch.load(seal.PublicKey(), data[b"K"], self.ctx))
            self.galois = (self._scratch.load(seal.GaloisKeys(), data[b"G"], self.ctx)
                           if b"G" in data else None)
        except (RuntimeError, ValueError) as exc:
            raise HEError(f"public context: keys do not load ({exc})") from None
        self.N = parms.poly_modulus_degree()
        self.slots = self.N // 2
        self.scale = float(header.get("scale", 0.0))
        if not 2.0 ** 10 < self.scale < 2.0 ** 60:
            raise HEError(f"public context has an unusable scale {self.scale!r}")
        self.levels = []
        cd = self.ctx.first_context_data()
        while cd is not None:
            mods = cd.parms().coeff_modulus()
            self.levels.append((cd.parms_id(), mods[-1].value(), sum(m.bit_count() for m in mods)))
            cd = cd.next_context_data()
        if len(self.levels) - 1 < plan.depth:
            raise HEError(f"the context has {len(self.levels) - 1} levels but the model needs {plan.depth}")
        segs = segments_of(plan)
        self._segs = [_Segment(seg, single_layout(seg.public_plan, self.slots, hidden=k < len(segs) - 1)
                               if self.packing == "single" else batch_layout(seg.public_plan, self.slots), bound)
                      for k, (seg, bound) in enumerate(zip(segs, bounds))]
        last_seg = self._segs[-1]
        if self.packing == "single":
            spec = last_seg.layout.diags.get(len(last_seg.plan.stages) - 1)
            if spec is not None and spec.final and spec.fold_steps:
                last_seg.partial_coords = int(result_support(spec, self.slots).sum()) - spec.m
                last_seg.partial_bound = partial_sum_bound(plan)
        steps = {r for seg in self._segs for r in seg.layout.rotation_steps}
        missing = steps - set(header.get("rotation_steps", []))
        if missing or (steps and self.galois is None):
            raise HEError(f"public context lacks Galois keys for rotations {sorted(missing)[:8]}")
        if any(getattr(seg.layout, "conjugate", False) for seg in self._segs) and not header.get("conjugate"):
            raise HEError("public context lacks the conjugation key this plan's layout uses")
        self.encoder = seal.CKKSEncoder(self.ctx)
        self.ev = seal.Evaluator(self.ctx)
        for seg in self._segs:
            self._prepare(seg)
        if workers is None:
            workers = default_workers()
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise HEError(f"workers must be a positive integer, got {workers!r}")
        self.workers = workers
        if self.packing == "batch" and fast_batch and raw.supported():
            for seg in self._segs:
                w_scales = {i: p["w_scale"] for i, p in enumerate(seg.single) if "w_scale" in p}
                seg.engine = BatchEngine(seg.plan, seg.schedule, w_scales, self.ctx, data[b"P"], data[b"R"],
                                         int(header.get("security_level", 128)), self.scale, workers,
                                         data.get(b"G", b""), bool(header.get("conjugate")))

    @property
    def segments(self) -> int:
        """Number of CKKS segments (1 for a plain plan)."""
        return len(self._segs)

    def prepare(self, batch_size: int) -> None:
        """Get ready for batches of ``batch_size`` queries now (set-up) rather than at the first one:
        the layouts, the batch engine's stages for that many lanes and its worker processes.  A batch
        of another size still works (its stages are built when it arrives).  Nothing to do for single
        packing, whose weights are encoded at construction."""
        if self.packing != "batch":
            return
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 0 < batch_size <= self.slots:
            raise HEError(f"batch_size must be in 1..{self.slots}, got {batch_size!r}")
        for seg in self._segs:
            lanes = self._layout(seg, {"batch": batch_size}).lanes
            if seg.engine is not None:
                seg.engine.prepare(lanes)

    def close(self) -> None:
        """Stop the batch worker processes, if any (idempotent; the evaluator can still be used and
        restarts them on demand)."""
        for seg in getattr(self, "_segs", []):
            if seg.engine is not None:
                seg.engine.close()

    def __enter__(self) -> "ModelEvaluator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    # ------------------------------------------------------------------ preparation
    def _encode(self, values: np.ndarray | float, level: int, scale: float) -> seal.Plaintext:
        pt = seal.Plaintext()
        v = values.tolist() if isinstance(values, np.ndarray) else float(values)
        self.encoder.encode(v, self.levels[level][0], scale, pt)
        return pt

    def _prepare(self, seg: _Segment) -> None:
        """Pre-encode a segment's single-query weight plaintexts at their levels (server set-up, done
        once); every segment starts at the top level, on a fresh ciphertext."""
        level, scale = 0, self.scale
        for idx, st in enumerate(seg.plan.stages):
            seg.schedule.append((level, scale))
            q = self.levels[level][1]
            if isinstance(st, SquareStage):
                scale = scale * scale / q
                level += 1
                seg.single.append({})
                continue
            w_scale = q * self.scale / scale
            prep: dict[str, Any] = {"w_scale": w_scale}
            if self.packing == "single":
                prep.update(self._prepare_linear(seg.layout, idx, st, level, w_scale))
            seg.single.append(prep)
            level += 1
            scale = self.scale

    def _prepare_linear(self, lay: Any, idx: int, st: LinearStage, level: int, w_scale: float) -> dict[str, Any]:
        if idx == 0 and lay.gather is not None:
            vecs, bias = gather_vectors(st, lay.gather, self.slots)
            return {"gather": [self._encode(v, level, w_scale) for v in vecs],
                    "bias": self._encode(bias, level + 1, self.scale), "folds": lay.gather.fold_steps,
                    "conj": lay.gather.complex}
        spec = lay.diags[idx]
        diags, bias = diagonal_vectors(st, spec, self.slots)
        pts: dict[tuple[int, int], seal.Plaintext] = {}
        for key, vec in baby_giant_vectors(diags, spec).items():
            if not np.any(np.abs(vec) * w_scale >= 0.5):
                continue  # nothing survives encoding: multiplying by it would give a transparent result
            pts[key] = self._encode(vec, level, w_scale)
        prep = {"pts": pts, "spec": spec, "bias": self._encode(bias, level + 1, self.scale),
                "folds": spec.fold_steps, "conj": spec.complex_baby}
        if spec.complex_baby:  # X^(N/2) at scale 1: an exact slot-wise product by +-i, no level
            prep["mono"] = self._encode(monomial_slots(self.slots), level, 1.0)
        return prep

    # ------------------------------------------------------------------ query I/O
    def _read_query(self, blob: bytes) -> tuple[dict[str, Any], list[tuple[bytes, Any]], _Segment]:
        """Unframe a query and check its header against this context and plan."""
        header, sections = unframe(blob, QUERY_MAGIC, "query")
        k = header.get("segment", 0)
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(self._segs):
            raise HEError(f"the query names segment {k!r}; this plan has {len(self._segs)}")
        seg = self._segs[k]
        if header.get("key_id") != self.key_id:
            raise HEError("the query was encrypted under a different key than this public context")
        if header.get("plan") != self.plan.fingerprint or header.get("packing") != self.packing:
            raise HEError("the query was laid out for a different plan or packing")
        if self.packing == "batch" and not 0 < int(header.get("batch", 0)) <= self.slots:
            raise HEError(f"batch size {header.get('batch')} is outside 1..{self.slots}")
        encoding = header.get("encoding", "seal")
        if encoding not in ("seal", residue_wire.ENCODING):
            raise HEError(f"the query uses an unknown encoding {encoding!r}")
        layout = self._layout(seg, header)
        lanes = header.get("lanes", 1)
        if self.packing == "batch" and lanes != layout.lanes:
            raise HEError(f"the query is laid out with {lanes!r} lanes; this plan gives {layout.lanes} "
                          f"for a batch of {header.get('batch')}")
        want = layout.query_cts
        if encoding == "seal" and (len(sections) != want or any(t != b"C" for t, _ in sections)):
            raise HEError(f"the query has {len(sections)} ciphertexts; this plan expects {want}")
        return header, sections, seg

    def _layout(self, seg: _Segment, header: dict[str, Any]) -> Any:
        """The layout of this request: the segment's, or for batch packing the one for its batch
        size (lanes, :mod:`capc.he.lanes`)."""
        if self.packing == "single":
            return seg.layout
        b = int(header.get("batch", 0))
        if b not in seg.batch_layouts:
            seg.batch_layouts[b] = batch_layout(seg.plan.public_plan, self.slots, b)
        return seg.batch_layouts[b]

    def _query_residues(self, header: dict[str, Any], sections: list[tuple[bytes, Any]], seg: _Segment) -> np.ndarray:
        """The query's ciphertexts as residues ``[n, 2, L, N]`` (validated)."""
        n = self._layout(seg, header).query_cts
        primes = [m.value() for m in self.ctx.first_context_data().parms().coeff_modulus()]
        if header.get("encoding", "seal") == residue_wire.ENCODING:
            return residue_wire.unpack(sections, primes, n, self.N)
        x = np.empty((n, 2, len(primes), self.N), dtype=np.uint64)
        for j, (_, data) in enumerate(sections):
            x[j] = raw.residues(self._load_ciphertext(data))
        return x

    def _query_ciphertexts(self, header: dict[str, Any], sections: list[tuple[bytes, Any]],
                           seg: _Segment) -> list[seal.Ciphertext]:
        """The query's ciphertexts as SEAL objects (validated)."""
        if header.get("encoding", "seal") == "seal":
            return [self._load_ciphertext(data) for _, data in sections]
        x = self._query_residues(header, sections, seg)
        top = self.levels[0][0]
        try:
            return [raw.new_ciphertext(self.ctx, top, x[j], self.scale) for j in range(x.shape[0])]
        except raw.RawLayoutError as exc:
            raise HEError(f"this TenSEAL build cannot read residue-encoded queries ({exc})") from None

    def _load_ciphertext(self, data: Any) -> seal.Ciphertext:
        ct = seal.Ciphertext()
        try:
            self._scratch.load(ct, data, self.ctx)
        except (RuntimeError, ValueError) as exc:
            raise HEError(f"query ciphertext does not load under this context: {exc}") from None
        if ct.parms_id() != self.levels[0][0] or ct.size() != 2 or abs(ct.scale / self.scale - 1) > 1e-9:
            raise HEError("query ciphertext has the wrong level, size or scale")
        return ct

    def _result(self, cts: list[seal.Ciphertext], header: dict[str, Any], masked: bool) -> bytes:
        out = {"kind": "result", "packing": self.packing, "key_id": self.key_id,
               "batch": header.get("batch", 0), "masked": masked, "segment": header.get("segment", 0)}
        return frame(RESULT_MAGIC, out, [(b"C", self._scratch.dump(ct)) for ct in cts])

    # ------------------------------------------------------------------ evaluation
    def _rot(self, ct: seal.Ciphertext, step: int) -> seal.Ciphertext:
        out = seal.Ciphertext()
        self.ev.rotate_vector(ct, step, self.galois, out)
        return out

    def _mul(self, ct: seal.Ciphertext, pt: seal.Plaintext) -> seal.Ciphertext:
        out = seal.Ciphertext()
        self.ev.multiply_plain(ct, pt, out)
        return out

    def _finish_linear(self, acc: seal.Ciphertext, prep: dict[str, Any]) -> seal.Ciphertext:
        self.ev.rescale_to_next_inplace(acc)
        acc.scale = self.scale  # removes float drift only: the true scale is Delta up to rounding
        for step in prep["folds"]:
            self.ev.add_inplace(acc, self._rot(acc, step))
        if prep["conj"]:  # z + conj(z) = 2 Re z: the products' imaginary parts cancel
            conj = seal.Ciphertext()
            self.ev.complex_conjugate(acc, self.galois, conj)
            self.ev.add_inplace(acc, conj)
        self.ev.add_plain_inplace(acc, prep["bias"])
        return acc

    def _linear_single(self, x: seal.Ciphertext, prep: dict[str, Any]) -> seal.Ciphertext:
        spec: DiagSpec = prep["spec"]
        pts: dict[tuple[int, int], seal.Plaintext] = prep["pts"]
        src = x
        if spec.complex_baby:  # y = x + u rot(x, 1): each rotation of y carries two shifts of x
            src = self._rot(x, 1)
            self.ev.multiply_plain_inplace(src, prep["mono"])
            self.ev.add_inplace(src, x)
        babies = {b: (src if b == 0 else self._rot(src, b)) for b in sorted({b for _, b in pts})}
        acc = None
        for j in range(spec.giants):
            inner = None
            for b in spec.baby_shifts:
                pt = pts.get((j, b))
                if pt is None:
                    continue
                t = self._mul(babies[b], pt)
                if inner is None:
                    inner = t
                else:
                    self.ev.add_inplace(inner, t)
            if inner is None:
                continue
            if j:
                self.ev.rotate_vector_inplace(inner, j * spec.baby, self.galois)
            if acc is None:
                acc = inner
            else:
                self.ev.add_inplace(acc, inner)
        if acc is None:
            raise HEError("an affine stage has an all-zero weight matrix")
        return self._finish_linear(acc, prep)

    def _square(self, x: seal.Ciphertext) -> seal.Ciphertext:
        self.ev.square_inplace(x)
        self.ev.relinearize_inplace(x, self.relin)
        self.ev.rescale_to_next_inplace(x)
        return x

    def _run_single(self, cts: list[seal.Ciphertext], seg: _Segment) -> list[seal.Ciphertext]:
        x = None
        for idx, st in enumerate(seg.plan.stages):
            prep = seg.single[idx]
            if isinstance(st, SquareStage):
                x = self._square(x)
            elif "gather" in prep:
                acc = None
                for ct, pt in zip(cts, prep["gather"]):
                    t = self._mul(ct, pt)
                    if acc is None:
                        acc = t
                    else:
                        self.ev.add_inplace(acc, t)
                x = self._finish_linear(acc, prep)
            else:
                x = self._linear_single(cts[0] if x is None else x, prep)
        return [x]

    def _run_batch(self, cts: list[seal.Ciphertext], seg: _Segment, lanes: int = 1) -> list[seal.Ciphertext]:
        """Batch packing with SEAL calls only (a TenSEAL build :mod:`capc.he.raw` does not
        recognise): one plaintext product per weight; with ``lanes > 1`` the first stage runs on the
        lane-packed query and the second multiplies by per-lane weight vectors, then sums the lanes."""
        from capc.he import lanes as ln

        xs = cts
        geom = seg.plan.public_plan.first_conv
        for idx, st in enumerate(seg.plan.stages):
            level, _ = seg.schedule[idx]
            if isinstance(st, SquareStage):
                xs = [self._square(x) for x in xs]
                continue
            w_scale = seg.single[idx]["w_scale"]
            pid = self.levels[level][0]
            if lanes > 1 and idx == 0:
                assert geom is not None
                st = ln.lane_first_stage(st, geom, lanes)
            elif lanes > 1 and idx == 2:
                assert geom is not None
                xs = self._lane_stage_seal(xs, st, ln.unit_table(geom, lanes), lanes, pid, level, w_scale)
                continue
            w = st.weight
            out = []
            pt = seal.Plaintext()
            for i in range(w.shape[0]):
                lo, hi = w.indptr[i], w.indptr[i + 1]
                if lo == hi:
                    raise HEError(f"stage {idx} row {i} has no weights; batch packing needs at least one")
                acc = None
                row = w.data[lo:hi]
                keep = np.abs(row) * w_scale >= 0.5  # a weight that encodes to 0 contributes nothing,
                keep[int(np.argmax(np.abs(row)))] = True  # but the row needs one product (not transparent)
                for j, wij in zip(w.indices[lo:hi][keep], row[keep]):
                    wij = np.sign(wij) * max(abs(float(wij)), 1.0 / w_scale)
                    self.encoder.encode(float(wij), pid, w_scale, pt)
                    t = self._mul(xs[j], pt)
                    if acc is None:
                        acc = t
                    else:
                        self.ev.add_inplace(acc, t)
                self.ev.rescale_to_next_inplace(acc)
                acc.scale = self.scale
                self.encoder.encode(float(st.bias[i]), self.levels[level + 1][0], self.scale, pt)
                self.ev.add_plain_inplace(acc, pt)
                out.append(acc)
            xs = out
        return xs

    def _lane_stage_seal(self, xs: list[seal.Ciphertext], st: LinearStage, units: np.ndarray, lanes: int,
                         pid: Any, level: int, w_scale: float) -> list[seal.Ciphertext]:
        """A position-mixing stage on lane-packed inputs with SEAL calls: per-lane weight vectors
        (``W[i, units[j, l]]`` in slot ``q P + l``), the bias in lane 0, then the lane sum."""
        from capc.he import lanes as ln

        dense, bias = ln.lane_weights(st, units)
        out = []
        pt = seal.Plaintext()
        reps = self.slots // lanes
        for i in range(dense.shape[0]):
            acc = None
            for j in range(dense.shape[1]):
                if not np.any(dense[i, j]):
                    continue
                self.encoder.encode(np.tile(dense[i, j], reps).tolist(), pid, w_scale, pt)
                t = self._mul(xs[j], pt)
                if acc is None:
                    acc = t
                else:
                    self.ev.add_inplace(acc, t)
            if acc is None:
                raise HEError(f"output {i} of a lane-weighted stage has no weights")
            self.ev.rescale_to_next_inplace(acc)
            acc.scale = self.scale
            self.encoder.encode(np.tile(bias[i], reps).tolist(), self.levels[level + 1][0], self.scale, pt)
            self.ev.add_plain_inplace(acc, pt)
            step = 1
            while step < lanes:
                self.ev.add_inplace(acc, self._rot(acc, step))
                step *= 2
            out.append(acc)
        return out

    def _unmask(self, cts: list[seal.Ciphertext], seg: _Segment, unmask: np.ndarray | None,
                header: dict[str, Any], frac_bits: int) -> list[seal.Ciphertext]:
        """Add back this party's mask ``m`` (fixed point, [B, n] or [n]) to the re-encrypted
        activations ``Enc(y - m)`` entering a later segment, laid out as the querying party laid
        out the query, so that they hold ``Enc(y)``."""
        first = seg is self._segs[0]
        if first:
            if unmask is not None:
                raise HEError("the model input carries no mask of this party; unmask must be None")
            return cts
        if unmask is None:
            raise HEError("the activations entering a later segment arrive masked: unmask is required")
        n = seg.plan.input_size
        m = fixedpoint.decode(fixedpoint.as_ring(np.asarray(unmask)), frac_bits)
        if self.packing == "single":
            if m.size != n:
                raise HEError(f"the mask has {m.size} values; segment input has {n}")
            vecs = query_vectors(seg.layout, m.reshape(n))
        else:
            batch = int(header.get("batch", -1))
            if m.size != batch * n:
                raise HEError(f"the mask has shape {np.shape(unmask)}; expected [{batch}, {n}]")
            vecs = query_vectors(self._layout(seg, header), m.reshape(batch, n))
        if len(vecs) != len(cts):
            raise HEError(f"the mask lays out into {len(vecs)} vectors for {len(cts)} ciphertexts")
        pt = seal.Plaintext()
        for ct, vec in zip(cts, vecs):
            self.encoder.encode(vec.tolist(), ct.parms_id(), ct.scale, pt)
            self.ev.add_plain_inplace(ct, pt)
        return cts

    def _run_fast_batch(self, header: dict[str, Any], sections: list[tuple[bytes, Any]], seg: _Segment,
                        unmask: np.ndarray | None, frac_bits: int) -> list[seal.Ciphertext]:
        assert seg.engine is not None
        if unmask is None and seg is self._segs[0]:
            box = [self._query_residues(header, sections, seg)]  # the engine frees it after the first stage
        else:
            cts = self._unmask(self._query_ciphertexts(header, sections, seg), seg, unmask, header, frac_bits)
            box = [np.stack([raw.residues(ct) for ct in cts])]
            del cts
        del sections
        try:
            return seg.engine.run_owned(box, self._layout(seg, header).lanes)
        except raw.RawLayoutError as exc:
            raise HEError(f"batch evaluation failed: {exc}") from None

    def _run(self, header: dict[str, Any], sections: list[tuple[bytes, Any]], seg: _Segment,
             unmask: np.ndarray | None = None, frac_bits: int = 0) -> list[seal.Ciphertext]:
        """Evaluate the read query's segment (after removing this party's mask from its input)."""
        try:
            if seg.engine is not None:
                return self._run_fast_batch(header, sections, seg, unmask, frac_bits)
            cts = self._unmask(self._query_ciphertexts(header, sections, seg), seg, unmask, header, frac_bits)
            return self._run_single(cts, seg) if self.packing == "single" else \
                self._run_batch(cts, seg, self._layout(seg, header).lanes)
        except (RuntimeError, ValueError) as exc:
            raise HEError(f"SEAL refused the evaluation: {exc}") from None

    def evaluate(self, query: bytes, unmask: np.ndarray | None = None, frac_bits: int = 0) -> bytes:
        """Enc(z), unmasked (for tests and benchmarks; the protocol uses :meth:`evaluate_masked`)."""
        header, sections, seg = self._read_query(query)
        return self._result(self._run(header, sections, seg, unmask, frac_bits), header, masked=False)

    def evaluate_masked(self, query: bytes, frac_bits: int, unmask: np.ndarray | None = None
                        ) -> tuple[bytes, np.ndarray]:
        """Enc(z - r) and the answering party's share ``b = capc.fixedpoint.encode(r, frac_bits)``
        (uint64 [C] for single packing, [B, C] for batch), z being the outputs of the query's
        segment.  See :mod:`capc.he.mask`.  For segment ``k > 0`` of a hybrid plan, ``unmask`` is the
        mask this party put on the activations in the garbled-circuit layer before (fixed point with
        ``frac_bits``, [n] or [B, n]).

        Raises:
            HEError: if frac_bits, the hiding bits and the logit bound exceed the decoding precision
                or the output level lacks headroom for the mask.
        """
        if isinstance(frac_bits, bool) or not isinstance(frac_bits, (int, np.integer)) or frac_bits < 0:
            raise HEError(f"frac_bits must be a non-negative integer, got {frac_bits!r}")
        f = int(frac_bits)
        header, sections, seg = self._read_query(query)
        last = seg is self._segs[-1]
        # the mask is sized by a bound that holds (for the logits the larger of the declared B and
        # the sound bound derived from this plan over the input domain; for a hidden layer's
        # pre-activations the derived bound); s is lowered to fit the decoding precision
        s_bits, log2_bound, bound = mask_sizing(self.logit_bound if last else 0.0, seg.bound, f,
                                                requested=self.hiding_bits, minimum=self.min_hiding_bits)
        need = needed_output_bits(math.log2(self.scale), s_bits, log2_bound)
        out_bits = self.levels[seg.plan.depth][2]
        if out_bits < need:
            raise HEError(f"the parameters keep {out_bits} modulus bits at the output "
                          f"level but the mask needs {need} (scale + {s_bits} hiding bits + "
                          f"value bound 2^{log2_bound}); refusing to return a weakly masked result")
        res = self._run(header, sections, seg, unmask, f)
        del sections
        c = seg.plan.num_classes
        shares = []
        std = flood_std(f)
        for ct in res:
            re = draw_mask(self.slots, s_bits, log2_bound, f)
            im = draw_mask(self.slots, s_bits, log2_bound, f)
            pt = seal.Plaintext()
            self.encoder.encode((re + 1j * im).tolist(), ct.parms_id(), ct.scale, pt)
            self.ev.sub_plain_inplace(ct, pt)
            shares.append(re)
            self._rerandomise(ct, std)
        self.last_flood_std = std
        if self.packing == "single":
            b = fixedpoint.encode(shares[0][:c], f)
            # a hidden segment's layout may leave copies of its outputs in every slot: count them all
            secret = c if last else self.slots
        else:
            batch = int(header["batch"])
            b = fixedpoint.encode(result_values(self._layout(seg, header), shares, batch), f)
            secret = self.slots * len(res)  # every real slot of every result (lanes: partial sums too)
        partial = seg.partial_coords if self.packing == "single" and last else 0
        self.last_hiding = hiding_report(s_bits, bound, f, secret,
                                         2 * self.slots * len(res) - secret - partial, seg.bound,
                                         partial, seg.partial_bound)
        self.last_hiding["flood_std"] = std
        self.last_hiding["grid_smoothing_bits"] = grid_smoothing_bits(std, s_bits, log2_bound,
                                                                      2 * self.slots * len(res))
        return self._result(res, header, masked=True), b

    def activation_mask(self, segment: int, count: int, frac_bits: int) -> np.ndarray:
        """A fresh mask m (uint64[count, n], fixed point with ``frac_bits``) for the outputs of the
        garbled-circuit layer after ``segment`` of a hybrid plan: the circuit hands the querying
        party ``y - m``, which it re-encrypts for the next segment, and :meth:`evaluate_masked`
        removes m again (``unmask``).  ``|y|`` is at most the sound bound on the segment's outputs
        (ReLU and max do not enlarge it), so ``y - m`` hides y to ``2^-s``, with s the hiding bits
        that fit the float64 precision of the querying party's re-encoding (as for the logits)."""
        gcs = getattr(self.plan, "gc_layers", ())
        if isinstance(segment, bool) or not isinstance(segment, int) or not 0 <= segment < len(gcs):
            raise HEError(f"there is no garbled-circuit layer after segment {segment!r}")
        s_bits, log2_bound, _ = mask_sizing(0.0, self._segs[segment].bound, int(frac_bits),
                                            requested=self.hiding_bits, minimum=self.min_hiding_bits)
        from capc.he.hybrid import GC_IN_BITS, GC_OUT_BITS

        if log2_bound + int(frac_bits) > GC_IN_BITS - 3 or s_bits + log2_bound + int(frac_bits) > GC_OUT_BITS - 2:
            raise HEError(f"segment {segment}'s values (2^{log2_bound} at {frac_bits} fraction bits, mask "
                          f"2^{s_bits} times that) do not fit the circuits' {GC_IN_BITS}/{GC_OUT_BITS}-bit registers")
        return draw_share_mask((int(count), gcs[segment].size_out), s_bits, log2_bound, int(frac_bits))

    def _rerandomise(self, ct: seal.Ciphertext, std: float) -> None:
        """Circuit privacy: flood the evaluation error and replace the ciphertext's randomness.

        The Gaussian flooding noise is encoded on its own (encoded together with the mask it would be
        rounded away at the mask's magnitude).  The fresh public-key encryption of zero makes c1 a new
        RLWE sample, so the returned (c0, c1) is determined by the decrypted polynomial and fresh
        randomness only -- not by the query's randomness, the keys and this party's weights.
        """
        noise = draw_flood(2 * self.slots, std)
        pt = seal.Plaintext()
        self.encoder.encode((noise[:self.slots] + 1j * noise[self.slots:]).tolist(), ct.parms_id(), ct.scale, pt)
        self.ev.add_plain_inplace(ct, pt)
        zero = seal.Ciphertext()
        self._rerandomiser.encrypt_zero(ct.parms_id(), zero)
        zero.scale = ct.scale  # an encryption of zero: its scale is a label, not a value
        self.ev.add_inplace(ct, zero)

    @staticmethod
    def peak_memory_mb() -> float:
        """Peak resident memory of this process in MB (for benchmarks)."""
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
