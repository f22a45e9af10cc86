"""Query selection (random / entropy / gap) and the accuracy metrics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from capc.learning.metrics import accuracy, balanced_accuracy, per_class_accuracy
from capc.learning.selection import SelectionError, entropy_scores, gap_scores, select_queries

PROBS = np.array([
    [1.0, 0.0, 0.0, 0.0],      # certain
    [0.25, 0.25, 0.25, 0.25],  # uniform: max entropy, gap score 1
    [0.5, 0.5, 0.0, 0.0],      # two-way tie: gap score 1, entropy 0.5
    [0.7, 0.1, 0.1, 0.1],
])


def test_entropy_and_gap_values():
    np.testing.assert_allclose(entropy_scores(PROBS)[:3], [0.0, 1.0, 0.5], atol=1e-12)
    h = -(0.7 * np.log(0.7) + 3 * 0.1 * np.log(0.1)) / np.log(4)
    assert entropy_scores(PROBS)[3] == pytest.approx(h)
    # Row 3: top-2 softmax margin (0.7 - 0.1) / (0.7 + 0.1) = 0.75, so 0.25 (a full-softmax margin gave 0.4).
    np.testing.assert_allclose(gap_scores(PROBS), [0.0, 1.0, 1.0, 0.25], atol=1e-12)


def test_selection_order():
    np.testing.assert_array_equal(select_queries(PROBS, 4, "entropy"), [1, 3, 2, 0])
    np.testing.assert_array_equal(select_queries(PROBS, 3, "gap"), [1, 2, 3])  # stable on ties
    np.testing.assert_array_equal(select_queries(PROBS, 2, "random"), [0, 1])
    a = select_queries(PROBS, 3, "random", seed=5)
    np.testing.assert_array_equal(a, select_queries(PROBS, 3, "random", seed=5))
    assert len(set(a.tolist())) == 3 and set(a.tolist()) <= {0, 1, 2, 3}
    assert len(select_queries(PROBS, 0, "gap")) == 0


def test_selection_errors():
    with pytest.raises(SelectionError, match="unknown selection mode"):
        select_queries(PROBS, 1, "greedy")
    with pytest.raises(SelectionError, match="num_queries"):
        select_queries(PROBS, 5, "entropy")
    with pytest.raises(SelectionError, match="sum to 1"):
        select_queries(PROBS * 3, 1, "entropy")
    with pytest.raises(SelectionError, match="shape"):
        entropy_scores(np.ones(4) / 4)


def test_metrics_against_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 200)
    pred = np.where(rng.random(200) < 0.7, y, rng.integers(0, 5, 200))
    assert accuracy(y, pred) == pytest.approx(np.mean(y == pred))
    assert balanced_accuracy(y, pred, 5) == pytest.approx(balanced_accuracy_score(y, pred))
    scores = np.eye(5)[pred] * 3.0  # logits-like input is argmaxed
    assert accuracy(y, scores) == pytest.approx(np.mean(y == pred))
    per = per_class_accuracy(y, pred, 6)
    assert np.isnan(per[5])
    assert per[2] == pytest.approx(np.mean(pred[y == 2] == 2))
    with pytest.raises(Exception, match="predictions"):
        accuracy(y, pred[:-1])


def test_gap_is_a_softmax_over_the_top_two_logits():
    logits = np.array([[3.0, 1.0, -2.0, 0.5], [0.0, 0.0, 5.0, 4.0]])
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    # Hand-computed: softmax([3, 1]) = (0.8808, 0.1192) -> margin tanh(1) = 0.76159; softmax([5, 4]) -> tanh(0.5).
    np.testing.assert_allclose(gap_scores(probs), [1 - np.tanh(1.0), 1 - np.tanh(0.5)], rtol=1e-12)
    np.testing.assert_array_equal(select_queries(probs, 2, "gap"), [1, 0])


def test_kcenter_greedy_hand_checked():
    from capc.learning.selection import kcenter_greedy

    pts = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [10.0, 1.0], [5.0, 5.0]])
    # Start at 0; farthest from {0} is point 3 (sqrt 101); then min distances: p1 1, p2 1, p4 ~7.07 -> 4.
    np.testing.assert_array_equal(kcenter_greedy(pts, 3), [0, 3, 4])
    # With a labelled point at (10, 0.5): farthest is point 0, then point 4 (dist to 0: 7.07 vs p1 1).
    np.testing.assert_array_equal(kcenter_greedy(pts, 2, labelled=np.array([[10.0, 0.5]])), [0, 4])
    dup = np.zeros((3, 2))
    np.testing.assert_array_equal(kcenter_greedy(dup, 3), [0, 1, 2])  # duplicates: never one twice
    probs = np.full((5, 2), 0.5)
    np.testing.assert_array_equal(select_queries(probs, 3, "kcenter", features=pts), [0, 3, 4])
    with pytest.raises(SelectionError, match="rows for a pool"):
        select_queries(probs, 2, "kcenter", features=pts[:3])
    with pytest.raises(SelectionError, match=r"shape \(M, 2\)"):
        kcenter_greedy(pts, 1, labelled=np.zeros((1, 3)))
    with pytest.raises(SelectionError, match="num_queries"):
        kcenter_greedy(pts, 6)
