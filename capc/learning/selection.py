"""Active-learning query selection from a querying party's own softmax outputs.

As in the original CaPC learning code, a querying party ranks its unlabelled pool and sends the top
``n`` as queries:

* ``random`` — the pool in its given (already shuffled) order, i.e. the first ``n``; with a seed, a
  seeded random subset instead;
* ``entropy`` — normalised Shannon entropy ``-sum_c p_c log p_c / log C`` (highest first);
* ``gap`` — ``1 - (p_(1) - p_(2))``, one minus the margin between the two largest probabilities
  (highest first).

Ties keep pool order (stable sort), so the selection is deterministic.
"""

from __future__ import annotations

import numpy as np

from capc.learning.errors import SelectionError

MODES = ("random", "entropy", "gap")


def _check_probs(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise SelectionError(f"expected softmax outputs of shape (N, C) with C >= 2, got {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise SelectionError("softmax outputs must be finite and non-negative")
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise SelectionError("softmax rows must sum to 1 (pass probabilities, not logits)")
    return p


def entropy_scores(probs: np.ndarray) -> np.ndarray:
    """Normalised entropy in [0, 1] of each row of ``probs`` (1 = uniform, 0 = one-hot)."""
    p = _check_probs(probs)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=1) / np.log(p.shape[1])


def gap_scores(probs: np.ndarray) -> np.ndarray:
    """``1 - (p_(1) - p_(2))`` of each row: 1 when the top two classes tie, 0 when one has all mass."""
    p = _check_probs(probs)
    top2 = np.sort(p, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def utility_scores(probs: np.ndarray, mode: str) -> np.ndarray:
    """Scores by which ``mode`` ranks the pool (higher = queried first); ``random`` gives zeros."""
    if mode == "entropy":
        return entropy_scores(probs)
    if mode == "gap":
        return gap_scores(probs)
    if mode == "random":
        return np.zeros(len(_check_probs(probs)))
    raise SelectionError(f"unknown selection mode {mode!r}; choose one of {', '.join(MODES)}")


def select_queries(probs: np.ndarray, num_queries: int, mode: str = "random",
                   seed: int | None = None) -> np.ndarray:
    """Indices into the pool of the ``num_queries`` samples to query, in query order.

    Args:
        probs: the querying party's softmax outputs on its pool, shape (N, C).
        num_queries: how many to select (``0 <= num_queries <= N``).
        mode: ``random``, ``entropy`` or ``gap`` (see module docstring).
        seed: for ``random`` only: ``None`` keeps pool order (as the original), an int draws a
            seeded random subset.

    Raises:
        SelectionError: bad mode, count or probabilities.
    """
    scores = utility_scores(probs, mode)
    n = len(scores)
    if isinstance(num_queries, bool) or not isinstance(num_queries, (int, np.integer)) \
            or not 0 <= num_queries <= n:
        raise SelectionError(f"num_queries must be an integer in 0..{n}, got {num_queries!r}")
    if mode == "random":
        if seed is None:
            return np.arange(num_queries, dtype=np.int64)
        return np.random.default_rng(seed).permutation(n)[:num_queries].astype(np.int64)
    return np.argsort(-scores, kind="stable")[:num_queries].astype(np.int64)
