"""Plaintext simulation of CaPC's learning experiment (what the paper's accuracy results measure).

This runs the *learning* side of CaPC without encryption, as the original ``learning/main.py``
does: the same labels come out of the cryptographic protocol, which only hides who learns what.

1. The training split is partitioned among ``n_parties`` (IID or weak classes); every party trains
   its own cryptonets-style model (party ``i`` with seed ``seed + i``).
2. The query pool (first part of the test split) is divided equally and contiguously among the
   ``num_querying_parties`` querying parties (ids ``0..Q-1``).
3. Each querying party ranks its share of the pool with its own model (random / entropy / gap) and
   asks the top ``queries_per_party``. All other parties vote (one-hot argmax); Confident-GNMax with
   exact discrete-Gaussian noise and RDP accounting (:func:`capc.privacy.simulate.simulate_queries`)
   releases labels until the privacy budget is spent.
4. The querying party retrains from scratch on its data plus the answered queries (several seeds)
   and is compared with the same training on its data alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from capc.learning.errors import LearningError


@dataclass
class SimulationConfig:
    """Parameters of :func:`run_learning_simulation` (defaults: a small digits experiment)."""

    dataset: str = "digits"
    data_dir: str | None = None
    n_parties: int = 10
    num_querying_parties: int = 3
    partition: str = "iid"
    weak_classes: Sequence[int] = (1, 2)
    weak_class_ratio: float = 0.1
    mode: str = "entropy"
    queries_per_party: int | None = None  # None: the party's whole share of the pool
    sigma_G: float | None = None  # None: the paper's preset for K = n_parties (suggested_parameters)
    sigma_T: float | None = None
    threshold: float | None = None
    delta: float | None = None  # None: the original's delta for the dataset (SVHN 1e-6, else 1e-5)
    budget_eps: float = float("inf")
    seed: int = 0
    retrain_seeds: Sequence[int] = (11, 13, 17, 113, 117)
    noise_seed: int | None = 0  # seeded (non-cryptographic) noise so runs are reproducible
    model_config: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = asdict(self)
        d["model_config"] = self.model_config.to_dict() if self.model_config is not None else None
        d["weak_classes"], d["retrain_seeds"] = list(self.weak_classes), list(self.retrain_seeds)
        return d


def ensemble_votes(models: Sequence[Any], x: np.ndarray, num_classes: int) -> np.ndarray:
    """Vote histogram (len(x), num_classes): each model votes for its argmax logit."""
    from capc.learning.models import predict_logits

    votes = np.zeros((len(x), num_classes), dtype=np.int64)
    for model in models:
        votes[np.arange(len(x)), predict_logits(model, x).argmax(axis=1)] += 1
    return votes


def run_learning_simulation(cfg: SimulationConfig, progress: bool = False) -> dict[str, Any]:
    """Run the experiment described in the module docstring; returns a JSON-ready result dict.

    Raises:
        LearningError: inconsistent parameters (the message says which).
    """
    from capc.learning.datasets import load_dataset
    from capc.learning.default_models import make_partition, party_seed
    from capc.learning.models import predict_logits, softmax, train_party_model
    from capc.learning.retrain import UNANSWERED, retrain_with_queries
    from capc.learning.selection import select_queries
    from capc.privacy.gnmax import ConfidentGNMaxParams, dataset_delta, suggested_parameters
    from capc.privacy.simulate import (PAPER_LABEL, PROTOCOL_LABEL, paper_accounting_simulation_only,
                                       simulate_queries, warn_if_meaningless)

    if not 1 <= cfg.num_querying_parties < cfg.n_parties:
        raise LearningError(f"num_querying_parties={cfg.num_querying_parties} must be in 1..{cfg.n_parties - 1}")
    ds = load_dataset(cfg.dataset, cfg.data_dir)
    parts, part_info = make_partition(ds, cfg.n_parties, cfg.partition, weak_classes=cfg.weak_classes,
                                      weak_class_ratio=cfg.weak_class_ratio,
                                      num_querying_parties=cfg.num_querying_parties)
    share = len(ds.y_query) // cfg.num_querying_parties
    n_queries = share if cfg.queries_per_party is None else int(cfg.queries_per_party)
    if not 0 <= n_queries <= share:
        raise LearningError(f"queries_per_party={n_queries} exceeds each querying party's pool share ({share})")
    # The original's table is keyed by the total number of models K, querying party included.
    suggested = suggested_parameters(cfg.n_parties)
    delta = dataset_delta(cfg.dataset) if cfg.delta is None else float(cfg.delta)
    params = ConfidentGNMaxParams(
        suggested.sigma_G if cfg.sigma_G is None else cfg.sigma_G,
        suggested.sigma_T if cfg.sigma_T is None else cfg.sigma_T,
        suggested.threshold if cfg.threshold is None else cfg.threshold)

    wrap = _progress(progress)
    models = [train_party_model(ds.x_train[p], ds.y_train[p], num_classes=ds.num_classes,
                                seed=party_seed(cfg.seed, i), config=cfg.model_config)
              for i, p in enumerate(wrap(parts, "training parties"))]
    results = []
    for q in wrap(range(cfg.num_querying_parties), "querying parties"):
        pool_x = ds.x_query[q * share:(q + 1) * share]
        pool_y = ds.y_query[q * share:(q + 1) * share]
        chosen = select_queries(softmax(predict_logits(models[q], pool_x)), n_queries, cfg.mode)
        votes = ensemble_votes(models[:q] + models[q + 1:], pool_x[chosen], ds.num_classes)
        sim = simulate_queries(votes, params, delta, cfg.budget_eps, true_labels=pool_y[chosen],
                               seed=None if cfg.noise_seed is None else cfg.noise_seed + q)
        eps_charged = float(sim.eps_data_independent[-1]) if sim.processed else 0.0
        warn_if_meaningless(eps_charged, f"querying party {q}", cfg.budget_eps)
        paper = (paper_accounting_simulation_only(votes, params, delta, cfg.budget_eps)
                 if params.sigma_G > 0 and (params.is_plain_gnmax or params.sigma_T > 0) else None)
        labels = np.full(len(chosen), UNANSWERED, dtype=np.int64)
        labels[:sim.processed] = np.where(sim.answered, sim.labels, UNANSWERED)
        x_priv, y_priv = ds.x_train[parts[q]], ds.y_train[parts[q]]
        before = retrain_with_queries(x_priv, y_priv, np.zeros((0, *ds.input_shape), np.float32),
                                      np.zeros(0, np.int64), ds.x_eval, ds.y_eval, num_classes=ds.num_classes,
                                      seeds=cfg.retrain_seeds, config=cfg.model_config)
        after = retrain_with_queries(x_priv, y_priv, pool_x[chosen], labels, ds.x_eval, ds.y_eval,
                                     num_classes=ds.num_classes, seeds=cfg.retrain_seeds, config=cfg.model_config)
        results.append({
            "party": q, "num_private": int(len(parts[q])), "queries_asked": int(len(chosen)),
            "queries_processed": sim.processed, "queries_answered": sim.answered_count,
            "label_accuracy": None if np.isnan(sim.label_accuracy) else sim.label_accuracy,
            "epsilon_data_independent": eps_charged,
            "accounting": {
                "protocol": {"label": PROTOCOL_LABEL, "answered": sim.answered_count, "epsilon": eps_charged},
                "paper": None if paper is None else {
                    "label": PAPER_LABEL, "expected_answered": paper.answered, "processed": paper.processed,
                    "epsilon": float(paper.eps[-1]) if paper.processed else 0.0},
            },
            "epsilon_data_dependent_simulation_only":
                float(sim.eps_data_dependent_simulation_only[-1]) if sim.processed else 0.0,
            "stopped_by_budget": sim.stopped_by_budget,
            "before": before.to_dict(), "after": after.to_dict(),
        })
    return {"config": cfg.to_dict(), "delta": delta, "partition": part_info, "gnmax": params.to_dict(),
            "parties": results}


def _progress(enabled: bool) -> Any:
    if not enabled:
        return lambda it, desc: it
    from tqdm.auto import tqdm

    return lambda it, desc: tqdm(list(it), desc=desc)
