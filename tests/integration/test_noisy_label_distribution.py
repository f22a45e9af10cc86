"""Step 3 with noise: the labels the QP obtains through the real garbled circuit follow the plaintext
Confident-GNMax distribution, and the QP's step-1b shares alone carry no information about a vote.

Both parties run the real engine in two threads over a connected socket pair; the PG draws its noise
with the production sampler (cryptographic randomness). The reference distribution comes from the
plaintext mechanism with a large seeded sample.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections import Counter

import numpy as np
import pytest
from scipy.stats import chi2_contingency

from capc import fixedpoint
from capc.gc import GcSession
from capc.privacy.gnmax import ConfidentGNMaxParams, PrivacyGuardianNoise, confident_gnmax
from capc.privacy.noise import SeededRandomSource

VOTES = [3, 2, 0, 1, 0, 0, 0, 0, 0, 0]
TRIALS = 1500


def _run_pair(garbler_fn, evaluator_fn):
    a, b = socket.socketpair()
    out: dict[str, object] = {}

    def garble() -> None:
        with GcSession(a, "garbler") as s:
            out["g"] = garbler_fn(s)

    t = threading.Thread(target=garble)
    t.start()
    with GcSession(b, "evaluator") as s:
        out["e"] = evaluator_fn(s)
    t.join(120)
    a.close()
    b.close()
    return out


def _outcome(answered: bool, label: int | None) -> str:
    return f"label {label}" if answered else "not answered"


@pytest.mark.parametrize("sigma_g, sigma_t, threshold", [(1.5, 0.0, 0.0), (1.0, 1.0, 2.5)])
def test_circuit_labels_follow_the_plaintext_mechanism(sigma_g, sigma_t, threshold):
    params = ConfidentGNMaxParams(sigma_g, sigma_t, threshold, vote_scale_bits=4)
    C = len(VOTES)
    h = np.array(VOTES, dtype=np.int64) * params.scale
    noise = PrivacyGuardianNoise(params)
    draws = [noise.draw(C) for _ in range(TRIALS)]
    pg_answered: list[bool] = []

    def pg(session: GcSession) -> None:
        for n in draws:
            W_share = fixedpoint.random_ring(C)  # fresh additive split of the scaled histogram
            shares.put(W_share)
            M = fixedpoint.sub(fixedpoint.as_ring(h), W_share)
            pg_answered.append(session.noisy_argmax_garbler(M.view(np.int64), n.eta_G, n.eta_T,
                                                            params.threshold_units))

    shares: "queue.Queue[np.ndarray]" = queue.Queue()  # the QP's half of each split, in order
    got: list[str] = []

    def qp(session: GcSession) -> None:
        for _ in range(TRIALS):
            answered, label = session.noisy_argmax_evaluator(shares.get(timeout=120).view(np.int64))
            got.append(_outcome(answered, label))

    _run_pair(pg, qp)
    # exactly what the plaintext mechanism gives on the same noise
    same = [_outcome(*(lambda r: (r.answered, r.label))(confident_gnmax(list(h), n.eta_G, n.eta_T,
                                                                         params.threshold_units)))
            for n in draws]
    assert got == same
    assert pg_answered == [g != "not answered" for g in got]
    # and the distribution matches an independent large plaintext sample
    ref_noise = PrivacyGuardianNoise(params, rng=SeededRandomSource(7))
    ref = Counter()
    for _ in range(20000):
        n = ref_noise.draw(C)
        r = confident_gnmax(list(h), n.eta_G, n.eta_T, params.threshold_units)
        ref[_outcome(r.answered, r.label)] += 1
    observed = Counter(got)
    keys = sorted(k for k in set(ref) | set(observed) if ref[k] + observed[k] >= 20)
    table = np.array([[observed[k] for k in keys], [ref[k] for k in keys]])
    assert chi2_contingency(table).pvalue > 1e-6


def test_qp_vote_shares_are_uniform_whatever_the_vote():
    """w_j = onehot(k) - m_j with m_j uniform: the QP's share has the same distribution for every k."""
    C, trials = 4, 400
    b_share = np.zeros(C, dtype=np.int64)
    logits_by_winner = {k: np.where(np.arange(C) == k, 1000, 0).astype(np.int64) for k in range(C)}
    top_bytes: dict[int, list[int]] = {}
    for k, z in logits_by_winner.items():
        masks = [fixedpoint.random_ring(C) for _ in range(trials)]

        def ap(s: GcSession) -> None:
            for m in masks:
                s.argmax_share_garbler(b_share, m.view(np.int64))

        def qp(s: GcSession) -> list[np.ndarray]:
            return [s.argmax_share_evaluator(z) for _ in range(trials)]

        ws = _run_pair(ap, qp)["e"]
        for w, m in zip(ws, masks):
            assert np.array_equal(fixedpoint.add(fixedpoint.as_ring(w), m), np.eye(C, dtype=np.uint64)[k])
        top_bytes[k] = [int(fixedpoint.as_ring(w)[k]) >> 56 for w in ws]  # the winner's coordinate
    # the winner's coordinate of w is as uniform as any other: compare the top byte's histograms
    counts = np.array([np.bincount(np.array(v) >> 4, minlength=16) for v in top_bytes.values()])
    assert chi2_contingency(counts).pvalue > 1e-6
