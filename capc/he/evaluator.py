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
from capc.he.bounds import derive_logit_bound
from capc.he.errors import HEError
from capc.he.layout import DiagSpec, batch_layout, single_layout
from capc.he.mask import draw_flood, draw_mask, flood_std, grid_smoothing_bits, hiding_report
from capc.he.params import (DEFAULT_HIDING_BITS, DEFAULT_LOGIT_BOUND, MIN_HIDING_BITS, mask_sizing,
                            needed_output_bits)
from capc.he.plan import LinearStage, Plan, SquareStage
from capc.he.seal import (CONTEXT_MAGIC, QUERY_MAGIC, RESULT_MAGIC, _Scratch, frame, make_context,
                          unframe)


def _diagonals(w: np.ndarray, spec: DiagSpec, slots: int) -> np.ndarray:
    """Generalised diagonals ``D_k[s]`` (rows k < num_diags) over all slots, see layout docstring."""
    wp = np.zeros((spec.m_pad, spec.n_pad))
    wp[: w.shape[0], : w.shape[1]] = w
    period = max(spec.m_pad, spec.n_pad)
    s = np.arange(period)
    k = np.arange(spec.num_diags)[:, None]
    d = wp[s % spec.m_pad, (s[None, :] + k) % spec.n_pad]
    if spec.final:
        d[:, s >= spec.m] = 0.0
        out = np.zeros((spec.num_diags, slots))
        out[:, :period] = d
        return out
    return np.tile(d, (1, slots // period))


class ModelEvaluator:
    """Evaluates ``plan`` on queries encrypted under ``public_context`` (which has no secret key).

    Args:
        plan: the answering party's compiled :class:`~capc.he.plan.Plan` (with weights).
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
        self._engine: BatchEngine | None = None
        if not isinstance(plan, Plan):
            raise HEError(f"ModelEvaluator needs the full Plan (with weights), got {type(plan).__name__}")
        self.plan = plan
        self.hiding_bits = int(hiding_bits)
        self.logit_bound = float(logit_bound)
        self.log2_bound = max(0, math.ceil(math.log2(self.logit_bound)))
        #: sound |logit| bound over the declared input domain: what the hiding report is honest about
        self.derived_bound = derive_logit_bound(plan)
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
        if self.packing == "single":
            self.layout: Any = single_layout(plan.public_plan, self.slots)
        else:
            self.layout = batch_layout(plan.public_plan, self.slots)
        missing = set(self.layout.rotation_steps) - set(header.get("rotation_steps", []))
        if missing or (self.layout.rotation_steps and self.galois is None):
            raise HEError(f"public context lacks Galois keys for rotations {sorted(missing)[:8]}")
        self.encoder = seal.CKKSEncoder(self.ctx)
        self.ev = seal.Evaluator(self.ctx)
        self.output_level = plan.depth
        self.output_modulus_bits = self.levels[self.output_level][2]
        self._prepare()
        if workers is None:
            workers = default_workers()
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise HEError(f"workers must be a positive integer, got {workers!r}")
        self.workers = workers
        if self.packing == "batch" and fast_batch and raw.supported():
            w_scales = {i: p["w_scale"] for i, p in enumerate(self._single) if "w_scale" in p}
            self._engine = BatchEngine(plan, self._schedule, w_scales, self.ctx, data[b"P"], data[b"R"],
                                       int(header.get("security_level", 128)), self.scale, workers)

    def close(self) -> None:
        """Stop the batch worker processes, if any (idempotent; the evaluator can still be used and
        restarts them on demand)."""
        if self._engine is not None:
            self._engine.close()

    def __enter__(self) -> "ModelEvaluator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.close()

    # ------------------------------------------------------------------ preparation
    def _encode(self, values: np.ndarray | float, level: int, scale: float) -> seal.Plaintext:
        pt = seal.Plaintext()
        v = values.tolist() if isinstance(values, np.ndarray) else float(values)
        self.encoder.encode(v, self.levels[level][0], scale, pt)
        return pt

    def _prepare(self) -> None:
        """Pre-encode the single-query weight plaintexts at their levels (server set-up, done once)."""
        self._single: list[dict[str, Any]] = []
        level, scale = 0, self.scale
        self._schedule: list[tuple[int, float]] = []  # (input level, input scale) per stage
        for idx, st in enumerate(self.plan.stages):
            self._schedule.append((level, scale))
            q = self.levels[level][1]
            if isinstance(st, SquareStage):
                scale = scale * scale / q
                level += 1
                self._single.append({})
                continue
            w_scale = q * self.scale / scale
            prep: dict[str, Any] = {"w_scale": w_scale}
            if self.packing == "single":
                prep.update(self._prepare_linear(idx, st, level, w_scale))
            self._single.append(prep)
            level += 1
            scale = self.scale

    def _prepare_linear(self, idx: int, st: LinearStage, level: int, w_scale: float) -> dict[str, Any]:
        lay = self.layout
        m = st.shape[0]
        if idx == 0 and lay.gather is not None:
            g = lay.gather
            w = st.weight
            counts = np.diff(w.indptr)
            vals = np.zeros((g.num_cts * g.blocks_per_ct, g.m_pad))
            for k in range(int(counts.max())):
                rows = np.nonzero(counts > k)[0]
                vals[k, rows] = w.data[w.indptr[rows] + k]
            vecs = vals.reshape(g.num_cts, self.slots)
            pts = [self._encode(v, level, w_scale) for v in vecs]
            bias = np.zeros(g.m_pad)
            bias[:m] = st.bias
            return {"gather": pts, "bias": self._encode(np.tile(bias, self.slots // g.m_pad),
                                                         level + 1, self.scale), "folds": g.fold_steps}
        spec = lay.diags[idx]
        diags = _diagonals(st.weight.toarray(), spec, self.slots)
        pts: dict[int, seal.Plaintext] = {}
        for k in range(spec.num_diags):
            if not np.any(diags[k]):
                continue
            j = k // spec.baby
            pts[k] = self._encode(np.roll(diags[k], j * spec.baby), level, w_scale)
        bias = np.zeros(self.slots)
        if spec.final:
            bias[:m] = st.bias
        else:
            b = np.zeros(spec.m_pad)
            b[:m] = st.bias
            bias = np.tile(b, self.slots // spec.m_pad)
        return {"diag": pts, "spec": spec, "bias": self._encode(bias, level + 1, self.scale),
                "folds": spec.fold_steps}

    # ------------------------------------------------------------------ query I/O
    def _read_query(self, blob: bytes) -> tuple[dict[str, Any], list[tuple[bytes, Any]]]:
        """Unframe a query and check its header against this context and plan."""
        header, sections = unframe(blob, QUERY_MAGIC, "query")
        if header.get("key_id") != self.key_id:
            raise HEError("the query was encrypted under a different key than this public context")
        if header.get("plan") != self.plan.fingerprint or header.get("packing") != self.packing:
            raise HEError("the query was laid out for a different plan or packing")
        if self.packing == "batch" and not 0 < int(header.get("batch", 0)) <= self.slots:
            raise HEError(f"batch size {header.get('batch')} is outside 1..{self.slots}")
        encoding = header.get("encoding", "seal")
        if encoding not in ("seal", residue_wire.ENCODING):
            raise HEError(f"the query uses an unknown encoding {encoding!r}")
        if encoding != "seal" and self.packing != "batch":
            raise HEError("only batch queries may be residue-encoded")
        want = self.layout.query_cts
        if encoding == "seal" and (len(sections) != want or any(t != b"C" for t, _ in sections)):
            raise HEError(f"the query has {len(sections)} ciphertexts; this plan expects {want}")
        return header, sections

    def _query_residues(self, header: dict[str, Any], sections: list[tuple[bytes, Any]]) -> np.ndarray:
        """The query's ciphertexts as residues ``[n, 2, L, N]`` (validated)."""
        n = self.layout.query_cts
        primes = [m.value() for m in self.ctx.first_context_data().parms().coeff_modulus()]
        if header.get("encoding", "seal") == residue_wire.ENCODING:
            return residue_wire.unpack(sections, primes, n, self.N)
        x = np.empty((n, 2, len(primes), self.N), dtype=np.uint64)
        for j, (_, data) in enumerate(sections):
            x[j] = raw.residues(self._load_ciphertext(data))
        return x

    def _query_ciphertexts(self, header: dict[str, Any], sections: list[tuple[bytes, Any]]) -> list[seal.Ciphertext]:
        """The query's ciphertexts as SEAL objects (validated)."""
        if header.get("encoding", "seal") == "seal":
            return [self._load_ciphertext(data) for _, data in sections]
        x = self._query_residues(header, sections)
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
               "batch": header.get("batch", 0), "masked": masked}
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
        self.ev.add_plain_inplace(acc, prep["bias"])
        return acc

    def _linear_single(self, x: seal.Ciphertext, prep: dict[str, Any]) -> seal.Ciphertext:
        spec: DiagSpec = prep["spec"]
        pts: dict[int, seal.Plaintext] = prep["diag"]
        needed_babies = sorted({k % spec.baby for k in pts})
        babies = {b: (x if b == 0 else self._rot(x, b)) for b in needed_babies}
        acc = None
        for j in range(spec.giants):
            inner = None
            for b in range(spec.baby):
                pt = pts.get(j * spec.baby + b)
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

    def _run_single(self, cts: list[seal.Ciphertext]) -> list[seal.Ciphertext]:
        x = None
        for idx, st in enumerate(self.plan.stages):
            prep = self._single[idx]
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

    def _run_batch(self, cts: list[seal.Ciphertext]) -> list[seal.Ciphertext]:
        xs = cts
        for idx, st in enumerate(self.plan.stages):
            level, _ = self._schedule[idx]
            if isinstance(st, SquareStage):
                xs = [self._square(x) for x in xs]
                continue
            w_scale = self._single[idx]["w_scale"]
            pid = self.levels[level][0]
            w = st.weight
            out = []
            pt = seal.Plaintext()
            for i in range(w.shape[0]):
                lo, hi = w.indptr[i], w.indptr[i + 1]
                if lo == hi:
                    raise HEError(f"stage {idx} row {i} has no weights; batch packing needs at least one")
                acc = None
                for j, wij in zip(w.indices[lo:hi], w.data[lo:hi]):
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

    def _run_fast_batch(self, blob: bytes) -> tuple[list[seal.Ciphertext], dict[str, Any]]:
        assert self._engine is not None
        header, sections = self._read_query(blob)
        box = [self._query_residues(header, sections)]  # the engine frees it after the first stage
        del sections
        try:
            return self._engine.run_owned(box), header
        except raw.RawLayoutError as exc:
            raise HEError(f"batch evaluation failed: {exc}") from None

    def _run(self, blob: bytes) -> tuple[list[seal.Ciphertext], dict[str, Any]]:
        if self._engine is not None:
            try:
                return self._run_fast_batch(blob)
            except (RuntimeError, ValueError) as exc:
                raise HEError(f"SEAL refused the evaluation: {exc}") from None
        header, sections = self._read_query(blob)
        cts = self._query_ciphertexts(header, sections)
        try:
            res = self._run_single(cts) if self.packing == "single" else self._run_batch(cts)
        except (RuntimeError, ValueError) as exc:
            raise HEError(f"SEAL refused the evaluation: {exc}") from None
        return res, header

    def evaluate(self, query: bytes) -> bytes:
        """Enc(z), unmasked (for tests and benchmarks; the protocol uses :meth:`evaluate_masked`)."""
        res, header = self._run(query)
        return self._result(res, header, masked=False)

    def evaluate_masked(self, query: bytes, frac_bits: int) -> tuple[bytes, np.ndarray]:
        """Enc(z - r) and the answering party's share ``b = capc.fixedpoint.encode(r, frac_bits)``
        (uint64 [C] for single packing, [B, C] for batch).  See :mod:`capc.he.mask`.

        Raises:
            HEError: if frac_bits, the hiding bits and the logit bound exceed the decoding precision
                or the output level lacks headroom for the mask.
        """
        if isinstance(frac_bits, bool) or not isinstance(frac_bits, (int, np.integer)) or frac_bits < 0:
            raise HEError(f"frac_bits must be a non-negative integer, got {frac_bits!r}")
        f = int(frac_bits)
        # the mask is sized by a bound that holds (the larger of the declared B and the sound bound
        # derived from this plan over the input domain); s is lowered to fit the decoding precision
        s_bits, log2_bound, bound = mask_sizing(self.logit_bound, self.derived_bound, f,
                                                requested=self.hiding_bits, minimum=self.min_hiding_bits)
        need = needed_output_bits(math.log2(self.scale), s_bits, log2_bound)
        if self.output_modulus_bits < need:
            raise HEError(f"the parameters keep {self.output_modulus_bits} modulus bits at the output "
                          f"level but the mask needs {need} (scale + {s_bits} hiding bits + "
                          f"logit bound 2^{log2_bound}); refusing to return a weakly masked result")
        res, header = self._run(query)
        c = self.plan.num_classes
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
            secret = c
        else:
            batch = int(header["batch"])
            b = fixedpoint.encode(np.stack([r[:batch] for r in shares], axis=1), f)
            secret = c * self.slots
        self.last_hiding = hiding_report(s_bits, bound, f, secret,
                                         2 * self.slots * len(res) - secret, self.derived_bound)
        self.last_hiding["flood_std"] = std
        self.last_hiding["grid_smoothing_bits"] = grid_smoothing_bits(std, s_bits, log2_bound,
                                                                      2 * self.slots * len(res))
        return self._result(res, header, masked=True), b

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
