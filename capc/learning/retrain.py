"""Retraining a querying party's model on its private data plus the labels CaPC returned.

As in the original ``retrain_private_models``: the party's training set is its private data
concatenated with the answered queries and their (DP-noisy) labels; the model is trained **from
scratch** once per seed (default seeds 11, 13, 17, 113, 117) and the evaluation metrics are
reported as mean and standard deviation over the seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from capc.learning.errors import LearningError

DEFAULT_SEEDS = (11, 13, 17, 113, 117)
#: Label value marking a query that CaPC did not answer (Confident-GNMax threshold not met).
UNANSWERED = -1


@dataclass
class RetrainResult:
    """Metrics of one retraining experiment, one entry per seed."""

    seeds: list[int]
    accuracy: list[float]
    balanced_accuracy: list[float]
    per_class_accuracy: list[list[float]]
    num_private: int
    num_queries_used: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy_mean(self) -> float:
        """Mean accuracy over seeds."""
        return float(np.mean(self.accuracy))

    @property
    def accuracy_std(self) -> float:
        """Population standard deviation of the accuracy over seeds."""
        return float(np.std(self.accuracy))

    @property
    def balanced_accuracy_mean(self) -> float:
        """Mean balanced accuracy over seeds."""
        return float(np.mean(self.balanced_accuracy))

    @property
    def balanced_accuracy_std(self) -> float:
        """Standard deviation of the balanced accuracy over seeds."""
        return float(np.std(self.balanced_accuracy))

    def per_class_mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-class accuracy mean and std over seeds (NaN for classes absent from the evaluation set)."""
        arr = np.asarray(self.per_class_accuracy, dtype=np.float64)
        return np.mean(arr, axis=0), np.std(arr, axis=0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        mean, std = self.per_class_mean_std()
        return {"seeds": self.seeds, "num_private": self.num_private, "num_queries_used": self.num_queries_used,
                "accuracy": self.accuracy, "accuracy_mean": self.accuracy_mean, "accuracy_std": self.accuracy_std,
                "balanced_accuracy": self.balanced_accuracy,
                "per_class_accuracy": [[None if np.isnan(v) else float(v) for v in seed_row]
                                       for seed_row in self.per_class_accuracy],
                "balanced_accuracy_mean": self.balanced_accuracy_mean,
                "balanced_accuracy_std": self.balanced_accuracy_std,
                "per_class_accuracy_mean": [None if np.isnan(v) else float(v) for v in mean],
                "per_class_accuracy_std": [None if np.isnan(v) else float(v) for v in std], **self.extra}

    def summary(self) -> str:
        """One line: ``acc 0.912 ± 0.004, balanced 0.910 ± 0.005 (5 seeds, 120 queries)``."""
        return (f"acc {self.accuracy_mean:.4f} ± {self.accuracy_std:.4f}, balanced "
                f"{self.balanced_accuracy_mean:.4f} ± {self.balanced_accuracy_std:.4f} "
                f"({len(self.seeds)} seeds, {self.num_queries_used} queries)")


def evaluate_model(model: Any, x: np.ndarray, y: np.ndarray, num_classes: int = 10) -> dict[str, Any]:
    """Accuracy, balanced accuracy and per-class accuracy of ``model`` on (x, y)."""
    from capc.learning.metrics import accuracy, balanced_accuracy, per_class_accuracy
    from capc.learning.models import predict_logits

    logits = predict_logits(model, x)
    return {"accuracy": accuracy(y, logits), "balanced_accuracy": balanced_accuracy(y, logits, num_classes),
            "per_class_accuracy": per_class_accuracy(y, logits, num_classes).tolist()}


def retrain_with_queries(x_private: np.ndarray, y_private: np.ndarray, x_queries: np.ndarray,
                         query_labels: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray, *,
                         num_classes: int = 10, seeds: Sequence[int] = DEFAULT_SEEDS, config: Any = None,
                         verbose: int = 0, model_type: str = "cryptonets", training: Any = None,
                         executor: Any = None) -> RetrainResult:
    """Train from scratch on private data + answered queries, once per seed, and evaluate.

    Args:
        x_private, y_private: the party's own training data.
        x_queries: the queried images (N, H, W, C); may be empty.
        query_labels: CaPC's label per query, :data:`UNANSWERED` (-1) for unanswered ones (dropped).
        x_eval, y_eval: held-out evaluation data.
        num_classes: number of classes.
        seeds: one from-scratch training per seed.
        config: :class:`~capc.learning.models.ModelConfig` (architecture and hyper-parameters).
        verbose: Keras fit verbosity.
        model_type: layout of the retrained model (``cryptonets``, ``cryptonets-relu`` or ``mlp``).
        training: a :class:`~capc.learning.party_training.PartyTraining` (any architecture, e.g.
            the querying party's own VGG); replaces ``config`` / ``model_type`` when given.
        executor: a :class:`~capc.learning.fanout.Executor` running the seeds as parallel tasks
            (default: one after the other in this process).

    Raises:
        LearningError: mismatched shapes, labels out of range, or no seeds.
    """
    from capc.learning.models import check_xy, train_party_model

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise LearningError("retraining needs at least one seed")
    x_private, y_private = check_xy(x_private, y_private, num_classes)
    x_queries = np.asarray(x_queries, dtype=np.float32)
    if x_queries.size == 0:  # no queries at all: accept any empty array
        x_queries = np.zeros((0, *x_private.shape[1:]), np.float32)
    query_labels = np.asarray(query_labels).reshape(-1)
    if len(query_labels) != len(x_queries):
        raise LearningError(f"{len(x_queries)} queries but {len(query_labels)} labels")
    if x_queries.shape[1:] != x_private.shape[1:]:
        raise LearningError(f"query images {x_queries.shape[1:]} differ from private images {x_private.shape[1:]}")
    answered = query_labels != UNANSWERED
    if answered.any():
        xq, yq = check_xy(x_queries[answered], query_labels[answered].astype(np.int64), num_classes)
        x_train = np.concatenate([x_private, xq])
        y_train = np.concatenate([y_private, yq])
    else:
        x_train, y_train = x_private, y_private
    if training is None and executor is None:
        results = []
        for seed in seeds:
            model = train_party_model(x_train, y_train, num_classes=num_classes, seed=seed, config=config,
                                      verbose=verbose, model_type=model_type)
            results.append(evaluate_model(model, x_eval, y_eval, num_classes))
    else:
        from capc.learning.fanout import Executor
        from capc.learning.party_training import PartyTraining

        if training is None:
            cfg = config
            training = PartyTraining(model_type, epochs=cfg.epochs if cfg is not None else 40, model_config=cfg)
        ex = executor if executor is not None else Executor()
        results = ex.map(_retrain_one, [(training, s) for s in seeds],
                         [f"retraining seed {s} ({training.architecture})" for s in seeds],
                         shared={"x": x_train, "y": y_train, "x_eval": x_eval, "y_eval": y_eval,
                                 "num_classes": num_classes})
    accs = [r["accuracy"] for r in results]
    baccs = [r["balanced_accuracy"] for r in results]
    per_class = [r["per_class_accuracy"] for r in results]
    return RetrainResult(seeds=seeds, accuracy=accs, balanced_accuracy=baccs, per_class_accuracy=per_class,
                         num_private=int(len(y_private)), num_queries_used=int(answered.sum()))


def _retrain_one(training: Any, seed: int, *, x: np.ndarray, y: np.ndarray, x_eval: np.ndarray,
                 y_eval: np.ndarray, num_classes: int) -> dict[str, Any]:
    """One from-scratch training and its evaluation (a fan-out task)."""
    model = training.train(x, y, num_classes=num_classes, seed=seed)
    return evaluate_model(model, x_eval, y_eval, num_classes)
