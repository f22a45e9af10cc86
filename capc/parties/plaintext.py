"""Plaintext stand-ins for the roles' crypto (``--cpu`` and the in-process role tests).

Same interfaces as :mod:`capc.parties.crypto`, same messages and message order, same shares and
ledger — but the "ciphertexts" are the query values themselves and the "2PC" sends the garbler's
inputs to the evaluator in the clear. Nothing here is private: it exists so that the protocol's
rules (budget stops, replays, drop-outs, refusals, who receives the label) are exercised by the very
role code a real run uses, in milliseconds, and so that ``--cpu`` is the real pipeline minus crypto.

The plaintext circuits compute exactly what the garbled circuits compute (``gc-emp-test/programs/
capc_circuits.h``): 64-bit wrapping sums, argmax with the lowest index winning ties.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from capc import fixedpoint
from capc.errors import CapcError, ConfigError
from capc.he.hybrid import GcLayer, segment_width
from capc.parties.crypto import KeyRing, MaskedEvaluator, Providers, QueryCipher, TwoPartySession
from capc.parties.runconfig import RunConfig

#: A model as the plaintext provider runs it: logits [B, C] of inputs [B, *input_shape].
Forward = Callable[[np.ndarray], np.ndarray]
_PLAN_FORMAT = "capc-plaintext-plan-1"


def keras_forward(path: str) -> tuple[Forward, tuple[int, ...], int] | Any:
    """Load a ``.keras`` or frozen ``.pb`` party model: (forward, input shape, classes), or, for a
    model with ReLU / max-pool layers, its :class:`~capc.he.hybrid.HybridPlan` (so that ``--cpu``
    runs the hybrid protocol's message flow segment by segment, as a real run does)."""
    from capc.learning.models import load_model, predict_logits

    try:
        from capc.he import compile_model
        from capc.he.hybrid import HybridPlan

        plan = compile_model(path)
        if isinstance(plan, HybridPlan):
            return plan
    except CapcError:
        pass  # not an HE model (e.g. a VGG party): the whole model runs as one step
    model = load_model(path)
    shape = tuple(int(d) for d in (getattr(model, "input_shape", None) or (None, 28, 28, 1))[1:])
    classes = int((getattr(model, "output_shape", None) or (None, 10))[-1])
    return (lambda x: np.asarray(predict_logits(model, x), dtype=np.float64)), shape, classes


def _blob(segment: int, data: bytes) -> bytes:
    return bytes([segment]) + data  # the "ciphertext" names its segment, as a real query's header does


def _unblob(blobs: tuple[bytes, ...]) -> tuple[int, bytes]:
    segments = {b[:1] for b in blobs}
    if len(segments) != 1 or not blobs[0]:
        raise CapcError("the request's blobs name different segments")
    return blobs[0][0], b"".join(b[1:] for b in blobs)


class _PlainModel:
    def __init__(self, forward: Forward, input_shape: tuple[int, ...], num_classes: int, path: str,
                 plan: Any = None) -> None:
        self.input_shape = input_shape
        self.num_classes = num_classes
        self.path = path
        #: per segment (input shape, forward); one segment unless the model is hybrid
        self.segments: list[tuple[tuple[int, ...], Forward]] = [(input_shape, forward)]
        self.gc_layers: tuple = ()
        if plan is not None:
            self.segments = [(seg.input_shape, seg.forward) for seg in plan.segments]
            self.gc_layers = tuple(plan.gc_layers)

    def public_plan(self) -> bytes:
        return json.dumps({"format": _PLAN_FORMAT, "input_shape": list(self.input_shape),
                           "num_classes": self.num_classes,
                           "segment_inputs": [list(shape) for shape, _ in self.segments],
                           "gc_layers": [g.to_dict() for g in self.gc_layers]}).encode()

    def evaluator(self, context_bytes: bytes) -> MaskedEvaluator:
        return _PlainEvaluator(self, context_bytes.decode("ascii", "replace"))


#: Plaintext activation masks: small enough that y - m stays exact in float64 (nothing is hidden here)
_PLAIN_MASK_BITS = (20, 8)


class _PlainEvaluator:
    def __init__(self, model: _PlainModel, key_id: str) -> None:
        self.model = model
        self.key_id = key_id
        self.last_hiding: dict | None = None

    def evaluate_masked(self, blobs: tuple[bytes, ...], count: int, frac_bits: int,
                        unmask: np.ndarray | None = None) -> tuple[tuple[bytes, ...], np.ndarray]:
        k, raw = _unblob(blobs)
        if k >= len(self.model.segments):
            raise CapcError(f"the request names segment {k}; the model has {len(self.model.segments)}")
        shape, forward = self.model.segments[k]
        n = int(np.prod(shape))
        if len(raw) != 8 * n * count:
            raise CapcError(f"the request holds {len(raw)} bytes, expected {count} queries of {n} values")
        xs = np.frombuffer(raw, dtype="<f8").reshape((count, *shape))
        if (unmask is None) != (k == 0):
            raise CapcError(f"segment {k}: the AP's mask is {'missing' if k else 'unexpected'}")
        if unmask is not None:
            xs = xs + fixedpoint.decode(unmask, frac_bits).reshape(xs.shape)
        z = np.asarray(forward(xs), dtype=np.float64).reshape(count, -1)
        b = fixedpoint.random_ring(z.shape)  # the AP's share; the QP gets encode(z) - b
        a = fixedpoint.sub(fixedpoint.encode(z, frac_bits), b)
        return (_blob(k, np.ascontiguousarray(a, dtype="<u8").tobytes()),), b

    def activation_mask(self, segment: int, count: int, frac_bits: int) -> np.ndarray:
        from capc.he.mask import draw_share_mask

        return draw_share_mask((count, self.model.gc_layers[segment].size_out), *_PLAIN_MASK_BITS, frac_bits)

    def prepare(self, batch_size: int) -> None:
        """Nothing to lay out in the clear."""


class PlaintextHE:
    """Step 1a in the clear. ``forward_for(path)`` returns (forward, input shape, classes) for a
    model file; by default the Keras/frozen-graph model is loaded."""

    name = "plaintext"

    def __init__(self, forward_for: Callable[[str], tuple[Forward, tuple[int, ...], int]] = keras_forward) -> None:
        self.forward_for = forward_for

    def load_model(self, path: str, cfg: RunConfig) -> _PlainModel:
        loaded = self.forward_for(path)
        plan = None
        if isinstance(loaded, tuple):
            forward, shape, classes = loaded
        else:  # a hybrid plan: the model runs segment by segment
            plan = loaded
            forward, shape, classes = plan.forward, tuple(plan.input_shape), int(plan.num_classes)
        if classes != cfg.protocol.num_classes:
            raise ConfigError(f"model {path} has {classes} outputs, the run has "
                              f"{cfg.protocol.num_classes} classes (--num_classes)")
        return _PlainModel(forward, shape, classes, path, plan)

    def keyring(self, cfg: RunConfig) -> KeyRing:
        return _PlainKeyRing(cfg)


class _PlainCipher:
    def __init__(self, plan: dict, key_id: str) -> None:
        self.input_shape = tuple(plan["input_shape"])
        self.num_classes = int(plan["num_classes"])
        self.gc_layers = tuple(GcLayer.from_dict(g) for g in plan.get("gc_layers", []))
        self.segment_inputs = [tuple(s) for s in plan.get("segment_inputs", [self.input_shape])]
        self.key_id = key_id
        self.sizes = {"public_context": len(key_id), "galois_key_count": 0}

    def public_context(self) -> bytes:
        return self.key_id.encode("ascii")

    def encrypt(self, xs: np.ndarray, segment: int = 0) -> tuple[bytes, ...]:
        xs = np.asarray(xs, dtype=np.float64)
        shape = self.segment_inputs[segment]
        if xs.shape[1:] != shape and xs.reshape(len(xs), -1).shape[1] != int(np.prod(shape)):
            raise CapcError(f"queries of shape {xs.shape[1:]} do not fit the model's input {shape}")
        if not np.all(np.isfinite(xs)):
            raise CapcError("the query contains NaN or infinite values")
        return tuple(_blob(segment, np.ascontiguousarray(x, dtype="<f8").tobytes()) for x in xs)

    def decrypt_shares(self, blobs: tuple[bytes, ...], count: int, frac_bits: int) -> np.ndarray:
        k, raw = _unblob(blobs)
        width = segment_width(self.gc_layers, k, self.num_classes)
        if len(blobs) != 1 or len(raw) != 8 * count * width:
            raise CapcError(f"the result does not hold {count} x {width} shares")
        return np.frombuffer(raw, dtype="<u8").astype(np.uint64).reshape(count, width)

    def close(self) -> None:
        pass


class _PlainKeyRing:
    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self._keys: dict[bytes, _PlainCipher] = {}

    def for_plan(self, plan_bytes: bytes) -> QueryCipher:
        try:
            plan = json.loads(plan_bytes)
            ok = plan.get("format") == _PLAN_FORMAT
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise CapcError("an answering party sent a model plan that is not a plaintext plan "
                            "(is it running with real crypto while this party runs --cpu?)")
        if plan["num_classes"] != self.cfg.protocol.num_classes:
            raise CapcError(f"an answering party's model has {plan['num_classes']} outputs, the run has "
                            f"{self.cfg.protocol.num_classes} classes")
        if plan_bytes not in self._keys:
            self._keys[plan_bytes] = _PlainCipher(plan, "plain-" + hashlib.sha256(plan_bytes).hexdigest()[:12])
        return self._keys[plan_bytes]

    def all(self) -> list[QueryCipher]:
        return list(self._keys.values())

    def close(self) -> None:
        pass


def _argmax_lowest(v: np.ndarray) -> int:
    return int(np.argmax(v))  # numpy returns the first maximum: the circuits' tie rule


class _PlainSession:
    """The two circuits computed by the evaluator from the garbler's inputs, sent in the clear."""

    def __init__(self, io: object, role: str) -> None:
        if role not in ("garbler", "evaluator"):
            raise ValueError(f"role must be garbler or evaluator, got {role!r}")
        self.io = io
        self.role = role

    def _send(self, *arrays: np.ndarray) -> None:
        self.io.sendall(b"".join(np.ascontiguousarray(a, dtype="<i8").tobytes() for a in arrays))  # type: ignore[attr-defined]
        self.io.flush()  # type: ignore[attr-defined]

    def _recv(self, n: int) -> np.ndarray:
        return np.frombuffer(self.io.recv_exact(8 * n), dtype="<i8").astype(np.int64)  # type: ignore[attr-defined]

    def argmax_share_garbler(self, b: np.ndarray, m: np.ndarray) -> None:
        self._send(np.asarray(b).view(np.int64), np.asarray(m).view(np.int64))

    def argmax_share_evaluator(self, a: np.ndarray) -> np.ndarray:
        a = np.asarray(a).view(np.int64)
        got = self._recv(2 * a.size)
        b, m = got[:a.size], got[a.size:]
        with np.errstate(over="ignore"):
            k = _argmax_lowest(a + b)
            onehot = np.zeros(a.size, dtype=np.int64)
            onehot[k] = 1
            return onehot - m

    # the register widths only narrow the garbled circuits' arithmetic; within their range (which the
    # hybrid guarantees, see capc.he.hybrid.GC_IN_BITS) the result is the 64-bit one computed here
    def relu_share_garbler(self, b: np.ndarray, m: np.ndarray, shift: int = 0, in_bits: int = 64,
                           out_bits: int = 64) -> None:
        self._send(np.asarray(b).view(np.int64), np.asarray(m).view(np.int64))

    def relu_share_evaluator(self, a: np.ndarray, shift: int = 0, in_bits: int = 64, out_bits: int = 64) -> np.ndarray:
        return self.maxpool_share_evaluator(a, 1, shift, relu_after=True)

    def maxpool_share_garbler(self, b: np.ndarray, m: np.ndarray, window: int, shift: int = 0,
                              relu_after: bool = False, in_bits: int = 64, out_bits: int = 64) -> None:
        self._send(np.asarray(b).view(np.int64), np.asarray(m).view(np.int64))

    def maxpool_share_evaluator(self, a: np.ndarray, window: int, shift: int = 0,
                                relu_after: bool = False, in_bits: int = 64, out_bits: int = 64) -> np.ndarray:
        a = np.asarray(a).view(np.int64)
        got = self._recv(a.size + a.size // window)
        b, m = got[:a.size], got[a.size:]
        if shift:
            raise CapcError("the plaintext circuits do not rescale (shift must be 0)")
        with np.errstate(over="ignore"):
            v = (a + b).reshape(-1, window).max(axis=1)
            if relu_after:
                v = np.maximum(v, 0)
            return v - m

    def noisy_argmax_garbler(self, M: np.ndarray, eta_G: np.ndarray, eta_T: int, threshold: int) -> bool:
        self._send(np.asarray(M).view(np.int64), np.asarray(eta_G, dtype=np.int64),
                   np.array([eta_T, threshold], dtype=np.int64))
        return bool(self.io.recv_exact(1)[0])  # type: ignore[attr-defined]

    def noisy_argmax_evaluator(self, W: np.ndarray) -> tuple[bool, int | None]:
        W = np.asarray(W).view(np.int64)
        c = W.size
        got = self._recv(2 * c + 2)
        M, eta_G, (eta_T, threshold) = got[:c], got[c:2 * c], got[2 * c:]
        with np.errstate(over="ignore"):
            h = W + M
            answered = bool(np.int64(h.max()) + eta_T >= threshold)
            label = _argmax_lowest(h + eta_G) if answered else None
        self.io.sendall(bytes([answered]))  # type: ignore[attr-defined]
        self.io.flush()  # type: ignore[attr-defined]
        return answered, label

    def close(self) -> None:
        pass


class PlaintextTwoParty:
    """Steps 1b and 3 in the clear."""

    name = "plaintext"

    def session(self, raw_io: object, role: str) -> TwoPartySession:
        return _PlainSession(raw_io, role)


def plaintext_providers(forward_for: Callable[[str], tuple[Forward, tuple[int, ...], int]] | None = None
                        ) -> Providers:
    """The providers of ``--cpu`` and of the in-process role tests."""
    return Providers(PlaintextHE(forward_for or keras_forward), PlaintextTwoParty())

