"""Both sides of the hybrid evaluation at the library level (capc.he + capc.gc, no roles): the
querying party's keys and the answering party's evaluator in this thread, the garbled-circuit layers
between them over a socketpair with the garbler in a second thread. Returns the reconstructed
logits a + b, so tests and benchmarks can compare them with TensorFlow's."""

from __future__ import annotations

import queue
import socket
import threading
from typing import Any

import numpy as np

from capc import fixedpoint
from capc.gc import GcSession
from capc.he import ModelEvaluator, QueryKeys, choose_params
from capc.he.hybrid import evaluate_layer, garble_layer, gc_layers_of, segments_of


class HybridPair:
    """A QP key set and an AP evaluator for ``plan``, plus a GC session pair for its layers."""

    def __init__(self, plan: Any, he_params: Any, packing: str, frac_bits: int, hiding_bits: int = 30) -> None:
        self.plan, self.packing, self.f = plan, packing, frac_bits
        setup = choose_params(plan.public_plan, he_params, packing=packing, frac_bits=frac_bits,
                              hiding_bits=hiding_bits)
        self.keys = QueryKeys(plan.public_plan, setup, packing=packing)
        self.ev = ModelEvaluator(plan, self.keys.public_context(), hiding_bits=hiding_bits)
        self.layers = gc_layers_of(plan)
        self._to_ap: queue.Queue = queue.Queue()
        self._masks: queue.Queue = queue.Queue()
        self.qp_sock, self.ap_sock = socket.socketpair()
        for s in (self.qp_sock, self.ap_sock):
            s.settimeout(120)
        self._errors: list[BaseException] = []
        self._ap = threading.Thread(target=self._garbler, daemon=True)
        self._ap.start()
        self.qp_gc = GcSession(self.qp_sock, "evaluator")

    def _garbler(self) -> None:
        try:
            gc = GcSession(self.ap_sock, "garbler")
            while True:
                item = self._to_ap.get()
                if item is None:
                    gc.close()
                    return
                k, b = item
                m = self.ev.activation_mask(k, b.shape[0], self.f)
                garble_layer(gc, self.layers[k], b, m)
                self._masks.put(m)
        except BaseException as exc:  # surfaced by the evaluator's side
            self._errors.append(exc)
            self._masks.put(None)

    def _one_request(self, xs: np.ndarray) -> np.ndarray:
        """One request: a single query (single packing) or the whole batch; logits [rows, C]."""
        blob = self.keys.encrypt(xs[0] if self.packing == "single" else xs)
        unmask = None
        for k in range(len(segments_of(self.plan))):
            res, b = self.ev.evaluate_masked(blob, self.f, unmask=unmask)
            b = np.asarray(b).reshape(-1, np.asarray(b).shape[-1])
            a = fixedpoint.encode(self.keys.decrypt_logits(res), self.f).reshape(b.shape)
            if k == len(self.layers):
                return fixedpoint.decode(fixedpoint.add(a, b), self.f)
            self._to_ap.put((k, b))
            y = evaluate_layer(self.qp_gc, self.layers[k], a)
            m = self._masks.get()
            if m is None:
                raise self._errors[0]
            nxt = fixedpoint.decode(y, self.f)
            blob = self.keys.encrypt(nxt[0] if self.packing == "single" else nxt, segment=k + 1)
            unmask = m[0] if self.packing == "single" else m
        raise AssertionError("unreachable")

    def logits(self, xs: np.ndarray) -> np.ndarray:
        """Logits [n, C] of the queries ``xs`` [n, *input_shape] (batch packing: one request)."""
        xs = np.asarray(xs, dtype=np.float64)
        if self.packing == "single":
            return np.concatenate([self._one_request(xs[i:i + 1]) for i in range(len(xs))])
        return self._one_request(xs)

    def close(self) -> None:
        self._to_ap.put(None)
        self._ap.join(30)
        self.qp_gc.close()
        self.ev.close()
        self.keys.close()
        self.qp_sock.close()
        self.ap_sock.close()
