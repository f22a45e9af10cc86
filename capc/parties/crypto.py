"""The roles' crypto seams: an HE provider (step 1a) and a 2PC provider (steps 1b and 3).

The querying, answering and privacy-guardian roles never call SEAL or the garbled-circuit engine
directly; they call these small interfaces, so that the same role code runs with

* the real primitives — CKKS through :mod:`capc.he` (:class:`RealHE`) and capc's garbled circuits
  through :class:`capc.gc.GcSession` (:class:`GarbledCircuits`), or
* plaintext stand-ins (:mod:`capc.parties.plaintext`) with the same inputs, outputs and message
  flow but no secrecy, for ``--cpu`` and for the in-process role tests.

A query is a batch of one: every call takes and returns ``B`` queries at once ([B, ...] inputs,
uint64[B, C] shares); how the B queries are packed into ciphertexts stays inside :mod:`capc.he`.

A model with ReLU / max-pool layers is a chain of CKKS segments joined by garbled-circuit layers
(:mod:`capc.he.hybrid`): the ciphers and evaluators then take a ``segment`` (through the blobs'
headers) and the AP's ``unmask``, and both sides read the public :attr:`gc_layers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from capc import fixedpoint
from capc.errors import CapcError
from capc.parties.runconfig import RunConfig


class QueryCipher(Protocol):
    """The QP's keys for one model layout: encrypts queries, decrypts masked results into shares."""

    key_id: str
    #: the public GC layers between the model's CKKS segments (empty for a plain model)
    gc_layers: tuple

    def public_context(self) -> bytes:
        """What the AP needs to evaluate (no secret key)."""

    def encrypt(self, xs: np.ndarray, segment: int = 0) -> tuple[bytes, ...]:
        """Encrypt the queries ``xs`` [B, *input_shape] (or the masked activations [B, n] entering
        ``segment`` > 0) into the request's blobs."""

    def decrypt_shares(self, blobs: tuple[bytes, ...], count: int, frac_bits: int) -> np.ndarray:
        """The QP's fixed-point shares a (uint64[count, C]) of the masked logits ``z - r`` (of the
        masked outputs of the blobs' segment, [count, n])."""

    def close(self) -> None:
        """Release worker processes (idempotent)."""


class KeyRing(Protocol):
    """The QP's key sets, one per distinct model layout among the APs."""

    def for_plan(self, plan_bytes: bytes) -> QueryCipher:
        """The key set for an AP's public model plan (made on first use)."""

    def all(self) -> list[QueryCipher]:
        """Every key set made so far."""

    def close(self) -> None:
        """Close every key set."""


class MaskedEvaluator(Protocol):
    """The AP's model bound to one QP's public context."""

    last_hiding: dict | None

    def evaluate_masked(self, blobs: tuple[bytes, ...], count: int, frac_bits: int,
                        unmask: np.ndarray | None = None) -> tuple[tuple[bytes, ...], np.ndarray]:
        """Enc(z - r) for the ``count`` queries in ``blobs`` and the AP's shares b (uint64[count, C]);
        for a later segment of a hybrid model, ``unmask`` (uint64[count, n]) is the mask this AP put
        on the activations in the GC layer before."""

    def activation_mask(self, segment: int, count: int, frac_bits: int) -> np.ndarray:
        """A fresh mask (uint64[count, n_out]) for the outputs of the GC layer after ``segment``,
        sized by the sound bound on them (statistical hiding)."""

    def prepare(self, batch_size: int) -> None:
        """Set-up for batches of ``batch_size`` queries (weights laid out, helpers started), so that
        the first batch does not wait for it."""


class AnswerModel(Protocol):
    """An AP's own model, as the HE provider loaded it."""

    num_classes: int
    #: the public GC layers between the model's CKKS segments (empty for a plain model)
    gc_layers: tuple

    def public_plan(self) -> bytes:
        """The public layout the QP needs to make keys (no weights)."""

    def evaluator(self, context_bytes: bytes) -> MaskedEvaluator:
        """Bind the model to a QP's public context."""


class HEProvider(Protocol):
    """Step 1a's primitives."""

    name: str

    def load_model(self, path: str, cfg: RunConfig) -> AnswerModel:
        """Load an AP's model file; refuse one whose class count differs from the run's."""

    def keyring(self, cfg: RunConfig) -> KeyRing:
        """The QP's (empty) key ring."""


class TwoPartySession(Protocol):
    """A long-lived 2PC session between two parties over one channel's raw stream."""

    def argmax_share_garbler(self, b: np.ndarray, m: np.ndarray) -> None: ...

    def argmax_share_evaluator(self, a: np.ndarray) -> np.ndarray: ...

    def noisy_argmax_garbler(self, M: np.ndarray, eta_G: np.ndarray, eta_T: int, threshold: int) -> bool: ...

    def noisy_argmax_evaluator(self, W: np.ndarray) -> tuple[bool, int | None]: ...

    def relu_share_garbler(self, b: np.ndarray, m: np.ndarray, shift: int = 0, in_bits: int = 64,
                           out_bits: int = 64) -> None: ...

    def relu_share_evaluator(self, a: np.ndarray, shift: int = 0, in_bits: int = 64,
                             out_bits: int = 64) -> np.ndarray: ...

    def maxpool_share_garbler(self, b: np.ndarray, m: np.ndarray, window: int, shift: int = 0,
                              relu_after: bool = False, in_bits: int = 64, out_bits: int = 64) -> None: ...

    def maxpool_share_evaluator(self, a: np.ndarray, window: int, shift: int = 0, relu_after: bool = False,
                                in_bits: int = 64, out_bits: int = 64) -> np.ndarray: ...

    def close(self) -> None: ...


class TwoPartyProvider(Protocol):
    """Steps 1b and 3's primitive: opens a session on a channel's raw byte stream."""

    name: str

    def session(self, raw_io: object, role: str) -> TwoPartySession:
        """``role`` is "garbler" (AP, PG) or "evaluator" (QP)."""


@dataclass(frozen=True)
class Providers:
    """The crypto a party's roles use."""

    he: HEProvider
    mpc: TwoPartyProvider

    @property
    def plaintext(self) -> bool:
        return self.he.name == "plaintext"


# ---------------------------------------------------------------- the real primitives


class _RealCipher:
    """:class:`capc.he.QueryKeys` seen as B queries in, B rows of shares out, for both packings."""

    def __init__(self, keys: object, packing: str) -> None:
        self.keys = keys
        self.packing = packing
        self.key_id = keys.key_id  # type: ignore[attr-defined]
        self.sizes = keys.sizes  # type: ignore[attr-defined]
        from capc.he.hybrid import gc_layers_of

        self.gc_layers = gc_layers_of(keys.plan)  # type: ignore[attr-defined]

    def public_context(self) -> bytes:
        return self.keys.public_context()  # type: ignore[attr-defined]

    def encrypt(self, xs: np.ndarray, segment: int = 0) -> tuple[bytes, ...]:
        if self.packing == "single":
            return tuple(self.keys.encrypt(x, segment) for x in xs)  # type: ignore[attr-defined]
        return (self.keys.encrypt(xs, segment),)  # type: ignore[attr-defined]

    def decrypt_shares(self, blobs: tuple[bytes, ...], count: int, frac_bits: int) -> np.ndarray:
        expect = count if self.packing == "single" else 1
        if len(blobs) != expect:
            raise CapcError(f"the result holds {len(blobs)} blobs for {count} queries; expected {expect}")
        if self.packing == "single":
            masked = np.stack([np.asarray(self.keys.decrypt_logits(b), dtype=np.float64)  # type: ignore[attr-defined]
                               for b in blobs])
        else:
            masked = np.asarray(self.keys.decrypt_logits(blobs[0]), dtype=np.float64)  # type: ignore[attr-defined]
            if masked.ndim != 2 or masked.shape[0] < count:
                raise CapcError(f"the result decrypts to shape {masked.shape}, expected {count} rows")
            masked = masked[:count]
        return fixedpoint.encode(masked, frac_bits)

    def close(self) -> None:
        self.keys.close()  # type: ignore[attr-defined]


class _RealKeyRing:
    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self._keys: dict[str, _RealCipher] = {}

    def for_plan(self, plan_bytes: bytes) -> QueryCipher:
        from capc.he import QueryKeys
        from capc.he.batch import default_workers
        from capc.he.hybrid import public_plan_from_bytes
        from capc.parties.models import he_setup

        pub = public_plan_from_bytes(plan_bytes)
        if pub.num_classes != self.cfg.protocol.num_classes:
            raise CapcError(f"an answering party's model has {pub.num_classes} outputs, the run has "
                            f"{self.cfg.protocol.num_classes} classes")
        fp = pub.fingerprint
        if fp not in self._keys:
            packing = self.cfg.protocol.packing
            keys = QueryKeys(pub, he_setup(pub, self.cfg), packing=packing, encrypt_workers=default_workers())
            keys.warm_up()  # the encryption workers start while the QP finishes its set-up
            self._keys[fp] = _RealCipher(keys, packing)
        return self._keys[fp]

    def all(self) -> list[QueryCipher]:
        return list(self._keys.values())

    def close(self) -> None:
        for keys in self._keys.values():
            keys.close()


class _RealEvaluator:
    def __init__(self, evaluator: object, packing: str) -> None:
        self.ev = evaluator
        self.packing = packing
        self.last_hiding: dict | None = None

    def evaluate_masked(self, blobs: tuple[bytes, ...], count: int, frac_bits: int,
                        unmask: np.ndarray | None = None) -> tuple[tuple[bytes, ...], np.ndarray]:
        expect = count if self.packing == "single" else 1
        if len(blobs) != expect:
            raise CapcError(f"the request holds {len(blobs)} blobs for {count} queries; {self.packing} "
                            f"packing needs {expect}")
        if unmask is not None and len(unmask) != count:
            raise CapcError(f"the mask covers {len(unmask)} queries, the request {count}")
        results, shares = [], []
        for i, blob in enumerate(blobs):
            m = None if unmask is None else (unmask[i] if self.packing == "single" else unmask)
            res, b = self.ev.evaluate_masked(blob, frac_bits, unmask=m)  # type: ignore[attr-defined]
            results.append(res)
            shares.append(np.asarray(b).reshape(-1, np.asarray(b).shape[-1]))
        b_all = fixedpoint.as_ring(np.concatenate(shares))
        if b_all.shape[0] < count:
            raise CapcError(f"the model produced {b_all.shape[0]} rows of shares for {count} queries")
        self.last_hiding = getattr(self.ev, "last_hiding", None)
        return tuple(results), b_all[:count]

    def activation_mask(self, segment: int, count: int, frac_bits: int) -> np.ndarray:
        return self.ev.activation_mask(segment, count, frac_bits)  # type: ignore[attr-defined]

    def prepare(self, batch_size: int) -> None:
        self.ev.prepare(batch_size)  # type: ignore[attr-defined]


class _RealModel:
    def __init__(self, plan: object, cfg: RunConfig) -> None:
        from capc.he.hybrid import gc_layers_of

        self.plan = plan
        self.cfg = cfg
        self.num_classes = plan.num_classes  # type: ignore[attr-defined]
        self.gc_layers = gc_layers_of(plan)

    def public_plan(self) -> bytes:
        return self.plan.public_plan.to_bytes()  # type: ignore[attr-defined]

    def evaluator(self, context_bytes: bytes) -> MaskedEvaluator:
        from capc.he import ModelEvaluator

        p = self.cfg.protocol
        return _RealEvaluator(ModelEvaluator(self.plan, context_bytes, hiding_bits=p.hiding_bits,  # type: ignore[arg-type]
                                             logit_bound=p.logit_bound), p.packing)


class RealHE:
    """CKKS on SEAL through :mod:`capc.he`."""

    name = "ckks"

    def load_model(self, path: str, cfg: RunConfig) -> AnswerModel:
        from capc.parties.models import load_plan

        return _RealModel(load_plan(path, cfg), cfg)

    def keyring(self, cfg: RunConfig) -> KeyRing:
        return _RealKeyRing(cfg)


class GarbledCircuits:
    """capc's garbled-circuit engine (:class:`capc.gc.GcSession`)."""

    name = "gc"

    def session(self, raw_io: object, role: str) -> TwoPartySession:
        from capc.gc import GcSession

        return GcSession(raw_io, role)


def real_providers() -> Providers:
    """What a real run uses."""
    return Providers(RealHE(), GarbledCircuits())


def providers_for(cfg: RunConfig) -> Providers:
    """The providers a run file asks for: plaintext for ``--cpu`` (``protocol.plaintext``), else real."""
    if cfg.protocol.plaintext:
        from capc.parties.plaintext import plaintext_providers

        return plaintext_providers()
    return real_providers()
