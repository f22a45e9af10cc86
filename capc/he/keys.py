"""The querying party's side: CKKS keys, the public context, query encryption, result decryption."""

from __future__ import annotations

import secrets
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np
import tenseal.sealapi as seal

from capc.config import HEParams
from capc.he import raw, residue_wire
from capc.he.bounds import PIXELS, InputDomain
from capc.he.errors import HEError
from capc.he.hybrid import segments_of
from capc.he.layout import batch_layout, query_vectors, result_values, single_layout
from capc.he.params import HESetup, choose_params
from capc.he.plan import as_public
from capc.he.residue_wire import ResiduePacker
from capc.he.seal import (CONTEXT_MAGIC, QUERY_MAGIC, RESULT_MAGIC, _Scratch, frame, galois_elements,
                          make_context, make_parms, unframe)
from capc.he.worker_guard import exit_with_parent


#: Fewest ciphertexts per encryption worker worth the inter-process round trip.
_MIN_PER_WORKER = 32

#: Fewest ciphertexts of a single query worth splitting over the workers (about 7 ms each to encode,
#: encrypt and pack at N = 16384, against a round trip of about a millisecond).
_MIN_SINGLE_SPLIT = 4


def _encrypt_into(encoder: Any, encryptor: Any, scale: float, vecs: np.ndarray, packer: ResiduePacker,
                  first: int) -> None:
    ct, pt = seal.Ciphertext(), seal.Plaintext()
    for j, vec in enumerate(vecs):
        encoder.encode(vec.tolist(), scale, pt)
        encryptor.encrypt_symmetric(pt, ct)
        packer.put(first + j, raw.residues(ct))


_WORKER: dict[str, Any] = {}


def _worker_init(parms: bytes, secret_key: bytes, security_level: int, scale: float) -> None:
    exit_with_parent()
    scratch = _Scratch()
    try:
        p = scratch.load(seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS), parms)
        ctx = make_context(p, security_level)
        sk = scratch.load(seal.SecretKey(), secret_key, ctx)
    finally:
        scratch.close()
    _WORKER.update(ctx=ctx, encoder=seal.CKKSEncoder(ctx), encryptor=seal.Encryptor(ctx, sk), scale=scale)


def _worker_ping() -> None:
    return None


def _worker_encrypt(shm_name: str, primes: list[int], count: int, n: int, first: int, vecs: np.ndarray) -> None:
    shm = SharedMemory(shm_name)
    try:
        packer = ResiduePacker(primes, count, n, buffer=shm.buf)
        _encrypt_into(_WORKER["encoder"], _WORKER["encryptor"], _WORKER["scale"], vecs, packer, first)
        del packer
    finally:
        shm.close()


class QueryKeys:
    """CKKS key pair of the querying party for one plan and packing.

    Args:
        plan: the answering party's :class:`~capc.he.plan.Plan` or its :class:`~capc.he.plan.PublicPlan`.
        params: an :class:`~capc.he.params.HESetup` from :func:`~capc.he.params.choose_params`, or
            :class:`~capc.config.HEParams` (validated here with the default hiding bits), or None
            (recommended parameters).
        packing: ``"single"`` (one query per call) or ``"batch"`` (up to N/2 queries per call).
        domain: the model's declared input domain (default pixels in [0, 1]); :meth:`encrypt`
            refuses any value outside it, because the answering party's mask is sized by a logit
            bound that holds only on this domain (:mod:`capc.he.bounds`).
        encrypt_workers: processes that encrypt in parallel: a batch, or a single query of several
            ciphertexts.  They are this party's own children and receive the secret key through a
            private pipe; call :meth:`close` (or use ``with``) to stop them.

    The secret key never leaves the querying party: :meth:`public_context` holds the encryption
    parameters, the public key (for the APs' re-randomisation), the relinearisation keys and only the Galois keys the plan's rotations need; with
    ``encrypt_workers > 1`` the only copies are in this process's own worker processes, which exit
    with it.
    """

    def __init__(self, plan: Any, params: HESetup | HEParams | None = None, packing: str = "single",
                 encrypt_workers: int = 1, domain: InputDomain = PIXELS) -> None:
        self.plan = as_public(plan)
        if not isinstance(domain, InputDomain):
            raise HEError(f"domain must be a capc.he.bounds.InputDomain, got {type(domain).__name__}")
        self.domain = domain
        if isinstance(params, HESetup):
            if params.packing != packing:
                raise HEError(f"params were validated for {params.packing!r} packing, not {packing!r}")
            self.setup = params
        else:
            self.setup = choose_params(self.plan, params, packing=packing)
        self.packing = packing
        he = self.setup.he_params
        self.slots = he.slots
        parms = make_parms(he)
        self._ctx = make_context(parms, he.security_level)
        keygen = seal.KeyGenerator(self._ctx)
        self._sk = keygen.secret_key()
        self._scratch = _Scratch()
        #: the plan's CKKS segments (one for a plain plan; a hybrid plan's are joined by GC layers)
        self.segments = segments_of(self.plan)
        last = len(self.segments) - 1
        self._layouts: list[Any] = [single_layout(seg, self.slots, hidden=k < last) if packing == "single"
                                    else batch_layout(seg, self.slots) for k, seg in enumerate(self.segments)]
        self._batch_layouts: dict[tuple[int, int], Any] = {}
        steps = sorted({r for lay in self._layouts for r in lay.rotation_steps})
        parms_bytes = self._scratch.dump(parms)
        relin = self._scratch.dump(keygen.create_relin_keys())
        # the answering parties re-randomise every ciphertext they return with a fresh encryption of
        # zero under this key (circuit privacy); without it the returned c1 is a function of the
        # AP's weights and of randomness the QP chose
        pk = seal.PublicKey()
        keygen.create_public_key(pk)
        public_key = self._scratch.dump(pk)
        conjugate = any(getattr(lay, "conjugate", False) for lay in self._layouts)
        elements = galois_elements(steps, he.poly_modulus_degree) + \
            ([2 * he.poly_modulus_degree - 1] if conjugate else [])  # SEAL's complex conjugation
        galois = self._scratch.dump(keygen.create_galois_keys(elements)) if elements else b""
        self.key_id = secrets.token_hex(16)
        header = {"kind": "context", "packing": packing, "scale": he.scale,
                  "security_level": he.security_level, "coeff_modulus": list(he.coeff_modulus),
                  "poly_modulus_degree": he.poly_modulus_degree, "plan": self.plan.fingerprint,
                  "key_id": self.key_id, "rotation_steps": steps, "conjugate": conjugate}
        sections = ([(b"P", parms_bytes), (b"K", public_key), (b"R", relin)]
                    + ([(b"G", galois)] if galois else []))
        self._public = frame(CONTEXT_MAGIC, header, sections)
        self.sizes = {"public_key": len(public_key), "relin_keys": len(relin), "galois_keys": len(galois), "galois_key_count": len(elements),
                      "public_context": len(self._public)}
        self._encoder = seal.CKKSEncoder(self._ctx)
        self._encryptor = seal.Encryptor(self._ctx, self._sk)
        self._decryptor = seal.Decryptor(self._ctx, self._sk)
        #: queries travel as packed residues when this TenSEAL build exposes them (else SEAL's seeded,
        #: compressed serialisation: a smaller query, but about 5 ms more to save and 3 ms more to load
        #: per ciphertext at N = 16384)
        self.residue_encoding = raw.supported()
        if isinstance(encrypt_workers, bool) or not isinstance(encrypt_workers, int) or encrypt_workers < 1:
            raise HEError(f"encrypt_workers must be a positive integer, got {encrypt_workers!r}")
        #: processes encrypting residue-encoded queries (they hold a copy of the secret key)
        self.encrypt_workers = encrypt_workers
        self._parms_bytes = parms_bytes
        self._pool: ProcessPoolExecutor | None = None

    def batch_layout(self, segment: int, batch: int) -> Any:
        """The batch layout of ``segment`` for ``batch`` queries (lanes, query and result tables)."""
        key = (segment, int(batch))
        if key not in self._batch_layouts:
            self._batch_layouts[key] = batch_layout(self.segments[segment], self.slots, int(batch))
        return self._batch_layouts[key]

    def public_context(self) -> bytes:
        """Serialized public context (parameters, public key, relin keys, needed Galois keys; no
        secret key)."""
        return self._public

    def _check_values(self, x: Any, batch: bool, segment: int = 0) -> np.ndarray:
        try:
            arr = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise HEError("the query must be a numeric array") from None
        seg = self.segments[segment]
        n = seg.input_size
        if batch:
            if arr.ndim < 1 or arr.size % n or arr.size == 0:
                raise HEError(f"a batch must have shape [B, {', '.join(map(str, seg.input_shape))}], "
                              f"got {arr.shape}")
            arr = arr.reshape(-1, n)
            if arr.shape[0] > self.slots:
                raise HEError(f"batch of {arr.shape[0]} queries exceeds the {self.slots} slots")
        elif arr.size != n:
            raise HEError(f"a query must have shape {seg.input_shape} ({n} values), got {arr.shape}")
        else:
            arr = arr.reshape(n)
        if not np.all(np.isfinite(arr)):
            raise HEError("the query contains NaN or infinite values")
        if segment == 0:  # later segments carry masked activations, whose range the mask sets
            self.domain.check(arr)
        return arr

    def _encrypt_vec(self, vec: np.ndarray) -> bytes:
        pt = seal.Plaintext()
        self._encoder.encode(vec.tolist(), self.setup.he_params.scale, pt)
        return self._scratch.dump(self._encryptor.encrypt_symmetric(pt))

    def _encrypt_residues(self, vecs: np.ndarray, header: dict[str, Any]) -> bytes:
        """Encrypt each vector and pack the residues into planes (:mod:`capc.he.residue_wire`) instead
        of SEAL's compressed serialisation; returns the framed query.  With ``encrypt_workers > 1`` the
        ciphertexts are split over worker processes (SEAL's bindings hold the GIL) that write their
        planes into shared memory: a batch of enough ciphertexts to amortise the round trip, and a
        single query of several (its latency is on every query's critical path)."""
        primes = [m.value() for m in self._ctx.first_context_data().parms().coeff_modulus()]
        n, big_n = len(vecs), self.slots * 2
        split = _MIN_SINGLE_SPLIT if self.packing == "single" else 2 * _MIN_PER_WORKER
        if self.encrypt_workers > 1 and n >= split:
            try:
                return self._encrypt_residues_parallel(vecs, header, primes)
            except (BrokenProcessPool, OSError) as exc:
                # a worker died or shared memory ran out: nothing was sent yet, so encrypt here instead
                warnings.warn(f"parallel encryption failed ({type(exc).__name__}: {exc}); encrypting in "
                              "this process from now on", RuntimeWarning, stacklevel=3)
                self._shutdown_pool()
                self.encrypt_workers = 1
        packer = ResiduePacker(primes, n, big_n)
        _encrypt_into(self._encoder, self._encryptor, self.setup.he_params.scale, vecs, packer, 0)
        return frame(QUERY_MAGIC, header, packer.sections())

    def _encrypt_residues_parallel(self, vecs: np.ndarray, header: dict[str, Any], primes: list[int]) -> bytes:
        n, big_n = len(vecs), self.slots * 2
        _, total = residue_wire.plane_layout(primes, n, big_n)
        shm = SharedMemory(create=True, size=total)
        try:
            bounds = np.linspace(0, n, self.encrypt_workers + 1).astype(int)
            pool = self._get_pool()
            futs = [pool.submit(_worker_encrypt, shm.name, primes, n, big_n, int(lo), np.ascontiguousarray(vecs[lo:hi]))
                    for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
            try:
                for f in futs:
                    f.result()
            except BaseException:
                self._shutdown_pool()
                raise
            packer = ResiduePacker(primes, n, big_n, buffer=shm.buf)
            sections = packer.sections()
            del packer
            try:
                return frame(QUERY_MAGIC, header, sections)  # copies the planes out of shared memory
            finally:
                for _, view in sections:
                    view.release()
                del sections
        finally:
            shm.close()
            shm.unlink()

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.encrypt_workers, mp_context=get_context("spawn"),
                                             initializer=_worker_init,
                                             initargs=(self._parms_bytes, self._scratch.dump(self._sk),
                                                       self.setup.he_params.security_level,
                                                       self.setup.he_params.scale))
        return self._pool

    def warm_up(self) -> None:
        """Start the encryption worker processes now (in the background) rather than at the first
        batch, so that their start-up overlaps the querying party's set-up."""
        if self.residue_encoding and self.encrypt_workers > 1:  # only residue encoding uses them
            pool = self._get_pool()
            for _ in range(self.encrypt_workers):
                pool.submit(_worker_ping)

    def _shutdown_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        """Stop the encryption worker processes (idempotent)."""
        self._shutdown_pool()

    def __enter__(self) -> "QueryKeys":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def encrypt(self, x: Any, segment: int = 0) -> bytes:
        """Encrypt one query (single packing, shape ``input_shape``) or a batch (batch packing,
        shape [B, *input_shape] with B <= N/2) as the input of ``segment`` (0: the model input; in a
        hybrid plan ``k > 0``: the masked activations entering segment k).  Raises :class:`HEError` on
        NaN/inf, a value outside the declared input domain (segment 0), or a bad shape."""
        if isinstance(segment, bool) or not isinstance(segment, int) or not 0 <= segment < len(self.segments):
            raise HEError(f"segment must be in 0..{len(self.segments) - 1}, got {segment!r}")
        if self.packing == "single":
            v = self._check_values(x, batch=False, segment=segment)
            count = 0
        else:
            v = self._check_values(x, batch=True, segment=segment)
            count = v.shape[0]
        layout = self._layouts[segment] if self.packing == "single" else self.batch_layout(segment, count)
        vecs = query_vectors(layout, v)
        header = {"kind": "query", "packing": self.packing, "key_id": self.key_id,
                  "plan": self.plan.fingerprint, "count": len(vecs), "batch": count, "segment": segment}
        if self.packing == "batch":
            header["lanes"] = layout.lanes
        if self.residue_encoding:
            header["encoding"] = residue_wire.ENCODING
            return self._encrypt_residues(np.asarray(vecs), header)
        return frame(QUERY_MAGIC, header, [(b"C", self._encrypt_vec(vec)) for vec in vecs])

    def decrypt_logits(self, blob: bytes) -> np.ndarray:
        """Decrypt a result: float64 [C] (single) or [B, C] (batch), C being the outputs of the
        result's segment (the logits for the last one).  Masked results decrypt to ``z - r``; the
        querying party's share is ``capc.fixedpoint.encode(value, frac_bits)``."""
        header, sections = unframe(blob, RESULT_MAGIC, "result")
        if header.get("key_id") != self.key_id:
            raise HEError("the result was not computed under this querying party's key")
        k = header.get("segment", 0)
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(self.segments):
            raise HEError(f"the result names segment {k!r}; this plan has {len(self.segments)}")
        c = self.segments[k].num_classes
        b = int(header.get("batch", 0))
        if self.packing == "batch" and not 0 < b <= self.slots:
            raise HEError(f"result names batch size {header.get('batch')!r}")
        layout = None if self.packing == "single" else self.batch_layout(k, b)
        expect = 1 if layout is None else (c if layout.result_units is None else layout.result_units.shape[0])
        if header.get("packing") != self.packing or len(sections) != expect:
            raise HEError(f"result has {len(sections)} ciphertexts for {header.get('packing')!r} packing; "
                          f"expected {expect} for {self.packing!r}")
        values = []
        for tag, data in sections:
            if tag != b"C":
                raise HEError("result contains a non-ciphertext section")
            ct = seal.Ciphertext()
            try:
                self._scratch.load(ct, data, self._ctx)
            except (RuntimeError, ValueError) as exc:
                raise HEError(f"result ciphertext does not load under this context: {exc}") from None
            pt = seal.Plaintext()
            self._decryptor.decrypt(ct, pt)
            values.append(np.asarray(self._encoder.decode_double(pt), dtype=np.float64))
        if layout is None:
            return values[0][:c].copy()
        return result_values(layout, values, b)
