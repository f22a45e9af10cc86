"""Active-learning query selection from a querying party's own softmax outputs.

As in the original CaPC learning code, a querying party ranks its unlabelled pool and sends the top
``n`` as queries:

* ``random`` — the pool in its given (already shuffled) order, i.e. the first ``n``; with a seed, a
  seeded random subset instead;
* ``entropy`` — normalised Shannon entropy ``-sum_c p_c log p_c / log C`` (highest first);
* ``gap`` — as the original: a softmax over the two largest *logits* only, and one minus its margin
  (highest first). Since log-probabilities are logits up to a constant, from probabilities this is
  ``1 - (p_(1) - p_(2)) / (p_(1) + p_(2))`` (``= 1 - tanh((z_(1) - z_(2)) / 2)``);
* ``kcenter`` — greedy k-center (Sener & Savarese, 2018) on feature vectors (embeddings, or the
  softmax outputs when no features are given): repeatedly the pool point farthest (Euclidean) from
  every chosen or already-labelled point.

Ties keep pool order (stable sort), so the selection is deterministic.
"""

from __future__ import annotations

import numpy as np

from capc.learning.errors import SelectionError

MODES = ("random", "entropy", "gap", "kcenter")


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
    """One minus the margin of a softmax over the top-2 logits: 1 when they tie, 0 when one has all mass."""
    p = _check_probs(probs)
    top2 = np.sort(p, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0]) / (top2[:, 1] + top2[:, 0])  # p_(1) > 0: rows sum to 1


def kcenter_greedy(features: np.ndarray, num_queries: int,
                   labelled: np.ndarray | None = None) -> np.ndarray:
    """Greedy k-center: indices of ``num_queries`` pool points, each the farthest from all centres so far.

    Args:
        features: pool embeddings, shape (N, d), finite.
        num_queries: how many to pick (``0 <= num_queries <= N``).
        labelled: optional embeddings (M, d) of points already labelled; they are the initial
            centres. Without them the first pick is pool point 0 (deterministic).

    Ties go to the lowest index. Raises :class:`SelectionError` on bad shapes or counts.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or not np.isfinite(f).all():
        raise SelectionError(f"k-center features must be a finite (N, d) array, got shape {f.shape}")
    n = len(f)
    _check_count(num_queries, n)
    min_dist = np.full(n, np.inf)
    if labelled is not None:
        c = np.asarray(labelled, dtype=np.float64)
        if c.ndim != 2 or c.shape[1] != f.shape[1] or not np.isfinite(c).all():
            raise SelectionError(f"labelled embeddings must be finite with shape (M, {f.shape[1]}), "
                                 f"got {c.shape}")
        for row in c:  # row by row: O(N) memory however many labelled points there are
            min_dist = np.minimum(min_dist, ((f - row) ** 2).sum(axis=1))
    chosen: list[int] = []
    for _ in range(int(num_queries)):
        i = 0 if np.isinf(min_dist).all() else int(np.argmax(min_dist))
        chosen.append(i)
        min_dist = np.minimum(min_dist, ((f - f[i]) ** 2).sum(axis=1))
        min_dist[i] = -1.0  # never picked twice, even when duplicates sit at distance 0
    return np.asarray(chosen, dtype=np.int64)


def _check_count(num_queries: int, n: int) -> None:
    if isinstance(num_queries, bool) or not isinstance(num_queries, (int, np.integer)) \
            or not 0 <= num_queries <= n:
        raise SelectionError(f"num_queries must be an integer in 0..{n}, got {num_queries!r}")


def utility_scores(probs: np.ndarray, mode: str) -> np.ndarray:
    """Scores by which ``mode`` ranks the pool (higher = queried first); ``random`` gives zeros."""
    if mode == "entropy":
        return entropy_scores(probs)
    if mode == "gap":
        return gap_scores(probs)
    if mode in ("random", "kcenter"):
        return np.zeros(len(_check_probs(probs)))
    raise SelectionError(f"unknown selection mode {mode!r}; choose one of {', '.join(MODES)}")


def select_queries(probs: np.ndarray, num_queries: int, mode: str = "random",
                   seed: int | None = None, features: np.ndarray | None = None,
                   labelled_features: np.ndarray | None = None) -> np.ndarray:
    """Indices into the pool of the ``num_queries`` samples to query, in query order.

    Args:
        probs: the querying party's softmax outputs on its pool, shape (N, C).
        num_queries: how many to select (``0 <= num_queries <= N``).
        mode: ``random``, ``entropy``, ``gap`` or ``kcenter`` (see module docstring).
        seed: for ``random`` only: ``None`` keeps pool order (as the original), an int draws a
            seeded random subset.
        features: for ``kcenter``: pool embeddings (N, d); defaults to ``probs``.
        labelled_features: for ``kcenter``: embeddings of already-labelled points (initial centres).

    Raises:
        SelectionError: bad mode, count or probabilities.
    """
    scores = utility_scores(probs, mode)
    n = len(scores)
    _check_count(num_queries, n)
    if mode == "kcenter":
        feats = probs if features is None else features
        if len(feats) != n:
            raise SelectionError(f"features have {len(feats)} rows for a pool of {n}")
        return kcenter_greedy(feats, num_queries, labelled_features)
    if mode == "random":
        if seed is None:
            return np.arange(num_queries, dtype=np.int64)
        return np.random.default_rng(seed).permutation(n)[:num_queries].astype(np.int64)
    return np.argsort(-scores, kind="stable")[:num_queries].astype(np.int64)
