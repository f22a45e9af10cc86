"""Retraining on private data + CaPC labels: correctness on digits and input checks."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")

from capc.learning.datasets import load_dataset  # noqa: E402
from capc.learning.errors import LearningError  # noqa: E402
from capc.learning.models import ModelConfig  # noqa: E402
from capc.learning.retrain import UNANSWERED, retrain_with_queries  # noqa: E402

FAST = ModelConfig(epochs=3)


def test_retrain_beats_chance_and_counts_answered_queries():
    ds = load_dataset("digits")
    labels = ds.y_query[:100].copy()
    labels[::4] = UNANSWERED  # a quarter of the queries went unanswered
    res = retrain_with_queries(ds.x_train[:200], ds.y_train[:200], ds.x_query[:100], labels,
                               ds.x_eval, ds.y_eval, seeds=(11, 13), config=FAST)
    assert res.seeds == [11, 13] and res.num_private == 200 and res.num_queries_used == 75
    assert len(res.accuracy) == 2 and res.accuracy_mean > 0.5  # chance is 0.1
    assert res.balanced_accuracy_mean > 0.5
    mean, std = res.per_class_mean_std()
    assert mean.shape == (10,) and np.all(std >= 0)
    d = res.to_dict()
    assert d["accuracy_mean"] == pytest.approx(res.accuracy_mean) and "±" in res.summary()


def test_more_correct_labels_help():
    """With the same seeds, 300 correctly labelled queries must raise accuracy over 50 private samples."""
    ds = load_dataset("digits")
    base = retrain_with_queries(ds.x_train[:50], ds.y_train[:50], np.zeros((0, 8, 8, 1)), np.zeros(0, int),
                                ds.x_eval, ds.y_eval, seeds=(11,), config=FAST)
    more = retrain_with_queries(ds.x_train[:50], ds.y_train[:50], ds.x_query, ds.y_query,
                                ds.x_eval, ds.y_eval, seeds=(11,), config=FAST)
    assert base.num_queries_used == 0 and more.num_queries_used == 300
    assert more.accuracy_mean > base.accuracy_mean + 0.05


def test_retrain_input_errors():
    ds = load_dataset("digits")
    with pytest.raises(LearningError, match="labels"):
        retrain_with_queries(ds.x_train[:20], ds.y_train[:20], ds.x_query[:5], ds.y_query[:4],
                             ds.x_eval, ds.y_eval, seeds=(1,), config=FAST)
    with pytest.raises(LearningError, match="seed"):
        retrain_with_queries(ds.x_train[:20], ds.y_train[:20], ds.x_query[:5], ds.y_query[:5],
                             ds.x_eval, ds.y_eval, seeds=(), config=FAST)
    with pytest.raises(LearningError, match="labels must lie"):
        retrain_with_queries(ds.x_train[:20], ds.y_train[:20], ds.x_query[:5], np.full(5, 11),
                             ds.x_eval, ds.y_eval, seeds=(1,), config=FAST)
