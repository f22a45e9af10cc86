"""Plaintext simulation of CaPC's learning experiment (what the paper's accuracy results measure).

This runs the *learning* side of CaPC without encryption, as the original ``learning/main.py``
does: the same labels come out of the cryptographic protocol, which only hides who learns what.

1. The training split is partitioned among ``n_parties`` (IID or weak classes); every party trains
   its own model (party ``i`` with seed ``seed + i``; architectures assigned round robin from
   ``architectures``, querying parties included), fanned out through
   :func:`capc.learning.fanout.train_and_vote` (in this process, or on Ray with ``use_ray`` /
   ``ray_address``). Each party labels the whole query pool once.
2. The query pool (first part of the test split) is divided equally and contiguously among the
   ``num_querying_parties`` querying parties (ids ``0..Q-1``).
3. Each querying party ranks its share of the pool with its own model (random / entropy / gap /
   k-center, the latter on softmax outputs starting from its own training points) and
   asks the top ``queries_per_party``. All other parties vote (one-hot argmax); Confident-GNMax with
   exact discrete-Gaussian noise and RDP accounting (:func:`capc.privacy.simulate.simulate_queries`)
   releases labels until the privacy budget is spent.
4. The querying party retrains its own architecture from scratch on its data plus the answered
   queries (several seeds, through the same fan-out) and is compared with the same training on
   its data alone.

:meth:`SimulationConfig.validate` checks every parameter that can be checked without data (names,
ranges, Ray availability) and :func:`run_learning_simulation` loads the dataset and builds the
partition before any model trains, so bad input fails in seconds.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from capc.learning.errors import LearningError

PARTITIONS = ("iid", "weak")


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
    architectures: str | Sequence[str] = "cryptonets"  # round robin over parties 0..K-1 (QPs first)
    epochs: int | None = None  # None: model_config's epochs (ModelConfig default 40)
    width: float = 1.0  # VGG / ResNet channel multiplier
    batch_size: int | None = None  # None: each architecture's recipe
    use_ray: bool = False
    ray_address: str | None = None
    num_cpus: int | None = None  # Ray workers on this machine (default: all cores)

    def training(self, architecture: str) -> Any:
        """The :class:`~capc.learning.party_training.PartyTraining` of a party of ``architecture``."""
        from capc.learning.party_training import PartyTraining

        epochs = self.epochs if self.epochs is not None else (
            self.model_config.epochs if self.model_config is not None else 40)
        return PartyTraining(architecture, epochs=epochs, width=self.width, batch_size=self.batch_size,
                             model_config=self.model_config)

    def validate(self) -> list[str]:
        """Check everything that needs no data; returns the party architectures (round robin).

        Raises:
            LearningError: the first bad parameter, named, with what it accepts.
        """
        from capc.learning.architectures import assign_architectures
        from capc.learning.datasets import canonical_dataset_name
        from capc.learning.fanout import check_ray_request
        from capc.learning.selection import MODES

        canonical_dataset_name(self.dataset)
        if isinstance(self.n_parties, bool) or not isinstance(self.n_parties, int) or self.n_parties < 2:
            raise LearningError(f"n_parties={self.n_parties!r} must be an integer >= 2")
        if not 1 <= self.num_querying_parties < self.n_parties:
            raise LearningError(f"num_querying_parties={self.num_querying_parties} must be in 1..{self.n_parties - 1}")
        if self.partition not in PARTITIONS:
            raise LearningError(f"unknown partition {self.partition!r}; choose one of {', '.join(PARTITIONS)}")
        if self.mode not in MODES:
            raise LearningError(f"unknown selection mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.queries_per_party is not None and self.queries_per_party < 0:
            raise LearningError(f"queries_per_party={self.queries_per_party} must be >= 0")
        if not (self.budget_eps >= 0):
            raise LearningError(f"budget_eps={self.budget_eps} must be >= 0 (inf for no budget)")
        if not list(self.retrain_seeds):
            raise LearningError("retrain_seeds is empty; give at least one seed")
        archs = assign_architectures(self.architectures, self.n_parties)
        for arch in dict.fromkeys(archs):
            self.training(arch)  # epochs / width / batch size
        check_ray_request(self.use_ray, self.ray_address)
        return archs

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = asdict(self)
        d["model_config"] = self.model_config.to_dict() if self.model_config is not None else None
        d["weak_classes"], d["retrain_seeds"] = list(self.weak_classes), list(self.retrain_seeds)
        if not isinstance(self.architectures, str):
            d["architectures"] = list(self.architectures)
        d["budget_eps"] = None if math.isinf(self.budget_eps) else self.budget_eps
        return d


@functools.lru_cache(maxsize=2)
def load_dataset_cached(name: str, data_dir: str | None) -> Any:
    """:func:`capc.learning.datasets.load_dataset`, kept for the next configuration of a sweep
    (the arrays are never modified)."""
    from capc.learning.datasets import load_dataset

    return load_dataset(name, data_dir)


#: Party models' outputs of the last few configurations, keyed by everything that determines them
#: (training is seeded and deterministic): a sweep over budgets, modes or query counts trains the
#: K parties once per model seed. Only the logits are kept, not the models.
_PARTY_MODELS: dict[tuple[Any, ...], Any] = {}
_PARTY_MODELS_KEEP = 4


def _party_models_key(cfg: SimulationConfig, archs: Sequence[str], own_for: tuple[int, ...]) -> tuple[Any, ...]:
    trainings = tuple(repr(cfg.training(a)) for a in dict.fromkeys(archs))
    weak = (tuple(int(c) for c in cfg.weak_classes), float(cfg.weak_class_ratio), cfg.num_querying_parties) \
        if cfg.partition == "weak" else ()
    return (cfg.dataset, cfg.data_dir, cfg.n_parties, cfg.partition, weak, tuple(archs), trainings,
            int(cfg.seed), own_for)


def _remember_party_models(key: tuple[Any, ...], fan: Any) -> None:
    _PARTY_MODELS[key] = fan
    while len(_PARTY_MODELS) > _PARTY_MODELS_KEEP:
        _PARTY_MODELS.pop(next(iter(_PARTY_MODELS)))


def ensemble_votes(models: Sequence[Any], x: np.ndarray, num_classes: int) -> np.ndarray:
    """Vote histogram (len(x), num_classes): each model votes for its argmax logit."""
    from capc.learning.models import predict_logits

    votes = np.zeros((len(x), num_classes), dtype=np.int64)
    for model in models:
        votes[np.arange(len(x)), predict_logits(model, x).argmax(axis=1)] += 1
    return votes


def run_learning_simulation(cfg: SimulationConfig, progress: bool = False,
                            executor: Any = None) -> dict[str, Any]:
    """Run the experiment described in the module docstring; returns a JSON-ready result dict.

    Args:
        cfg: the parameters.
        progress: show progress bars.
        executor: a :class:`~capc.learning.fanout.Executor` to run the training on (kept open, so
            a sweep starts Ray once); default: one built from ``cfg.use_ray`` / ``cfg.ray_address``.

    Raises:
        LearningError: inconsistent parameters or missing dataset files (the message says which),
            all before any model trains.
    """
    from capc.learning.default_models import make_partition
    from capc.learning.fanout import Executor, train_and_vote
    from capc.learning.models import softmax
    from capc.learning.retrain import UNANSWERED, retrain_with_queries
    from capc.learning.selection import select_queries
    from capc.privacy.gnmax import ConfidentGNMaxParams, dataset_delta, suggested_parameters
    from capc.privacy.simulate import (PAPER_LABEL, PROTOCOL_LABEL, paper_accounting_simulation_only,
                                       simulate_queries, warn_if_meaningless)

    t0 = time.perf_counter()
    archs = cfg.validate()
    ds = load_dataset_cached(cfg.dataset, cfg.data_dir)
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

    own_ex = executor is None
    ex = Executor(cfg.use_ray, cfg.ray_address, cfg.num_cpus) if own_ex else executor
    timings: dict[str, float] = {}
    try:
        t1 = time.perf_counter()
        if progress:
            print(f"training {cfg.n_parties} party models ({ex.backend}) ...", flush=True)
        base = cfg.training(archs[0])
        own_for = tuple(range(cfg.num_querying_parties)) if cfg.mode == "kcenter" else ()
        key = _party_models_key(cfg, archs, own_for)
        fan = _PARTY_MODELS.get(key)
        timings["party_models_reused"] = float(fan is not None)
        if fan is None:
            fan = train_and_vote([(ds.x_train[p], ds.y_train[p]) for p in parts], archs, ds.x_query,
                                 num_classes=ds.num_classes, epochs=base.epochs, width=base.width,
                                 batch_size=base.batch_size, model_config=base.model_config, seed=cfg.seed,
                                 own_logits_for=own_for, executor=ex)
            _remember_party_models(key, fan)
        timings["party_training_s"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        results = []
        wrap = _progress(progress)
        for q in wrap(range(cfg.num_querying_parties), "querying parties"):
            pool = np.arange(q * share, (q + 1) * share)
            pool_y = ds.y_query[pool]
            probs = softmax(fan.logits[q, pool])
            labelled = softmax(fan.own_logits[q]) if cfg.mode == "kcenter" else None
            chosen = select_queries(probs, n_queries, cfg.mode, labelled_features=labelled)
            others = [k for k in range(cfg.n_parties) if k != q]
            votes = fan.histograms(ds.num_classes, parties=others, queries=pool[chosen])
            sim = simulate_queries(votes, params, delta, cfg.budget_eps, true_labels=pool_y[chosen],
                                   seed=None if cfg.noise_seed is None else cfg.noise_seed + q)
            eps_charged = float(sim.eps_data_independent[-1]) if sim.processed else 0.0
            warn_if_meaningless(eps_charged, f"querying party {q}", cfg.budget_eps)
            paper = (paper_accounting_simulation_only(votes, params, delta, cfg.budget_eps)
                     if params.sigma_G > 0 and (params.is_plain_gnmax or params.sigma_T > 0) else None)
            labels = np.full(len(chosen), UNANSWERED, dtype=np.int64)
            labels[:sim.processed] = np.where(sim.answered, sim.labels, UNANSWERED)
            x_priv, y_priv = ds.x_train[parts[q]], ds.y_train[parts[q]]
            training = cfg.training(archs[q])  # the QP retrains its own architecture
            common = dict(num_classes=ds.num_classes, seeds=cfg.retrain_seeds, training=training, executor=ex)
            before = retrain_with_queries(x_priv, y_priv, np.zeros((0, *ds.input_shape), np.float32),
                                          np.zeros(0, np.int64), ds.x_eval, ds.y_eval, **common)
            after = retrain_with_queries(x_priv, y_priv, ds.x_query[pool[chosen]], labels, ds.x_eval, ds.y_eval,
                                         **common)
            results.append({
                "party": q, "architecture": archs[q], "num_private": int(len(parts[q])),
                "queries_asked": int(len(chosen)),
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
        timings["querying_and_retraining_s"] = time.perf_counter() - t2
    finally:
        if own_ex:
            ex.close()
    timings["total_s"] = time.perf_counter() - t0
    return {"config": cfg.to_dict(), "delta": delta, "partition": part_info, "gnmax": params.to_dict(),
            "architectures": list(archs), "backend": ex.backend, "timings": timings, "parties": results}


def _progress(enabled: bool) -> Any:
    if not enabled:
        return lambda it, desc: it
    from tqdm.auto import tqdm

    return lambda it, desc: tqdm(list(it), desc=desc)
