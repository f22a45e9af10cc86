"""Classification metrics used to report CaPC's effect: accuracy, per-class accuracy, balanced accuracy.

Per-class accuracy (recall of each class) is the fairness signal of the CaPC paper's non-IID
experiments; balanced accuracy is its mean over the classes present in the labels.
"""

from __future__ import annotations

import numpy as np

from capc.learning.errors import LearningError


def _check(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 2:  # logits or probabilities
        y_pred = y_pred.argmax(axis=1)
    y_pred = y_pred.reshape(-1)
    if len(y_true) != len(y_pred):
        raise LearningError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    if len(y_true) == 0:
        raise LearningError("cannot compute a metric on zero samples")
    return y_true.astype(np.int64), y_pred.astype(np.int64)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of correct predictions. ``y_pred`` may be labels (N,) or scores (N, C)."""
    t, p = _check(y_true, y_pred)
    return float(np.mean(t == p))


def per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Recall of each class, shape (num_classes,); NaN for a class absent from ``y_true``."""
    t, p = _check(y_true, y_pred)
    if t.max() >= num_classes or t.min() < 0:
        raise LearningError(f"labels must lie in 0..{num_classes - 1}")
    totals = np.bincount(t, minlength=num_classes).astype(np.float64)
    hits = np.bincount(t[t == p], minlength=num_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, hits / np.maximum(totals, 1), np.nan)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (as scikit-learn defines it)."""
    return float(np.nanmean(per_class_accuracy(y_true, y_pred, num_classes)))
