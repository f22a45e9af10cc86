"""capc.learning — datasets, partitions, cryptonets-style party models, query selection, retraining.

Modules (one job each):

* :mod:`~capc.learning.datasets` — digits (scikit-learn), MNIST, Fashion-MNIST, SVHN, CIFAR-10 (local files), query pool / evaluation cut;
* :mod:`~capc.learning.partition` — IID and weak-class (non-IID) partitions among parties;
* :mod:`~capc.learning.layers` — the ``Square`` / ``Polynomial`` activation layers;
* :mod:`~capc.learning.model_types` — the model types (layouts) ``cryptonets``, ``cryptonets-relu``, ``mlp``;
* :mod:`~capc.learning.models` — building, seeded training, prediction, saving and loading models;
* :mod:`~capc.learning.export` — frozen ``.pb`` export (nodes ``input`` -> ``output``) and loading;
* :mod:`~capc.learning.cards` — model cards (JSON + Markdown);
* :mod:`~capc.learning.default_models` — model sets per party and the shipped default models;
* :mod:`~capc.learning.selection` — random / entropy / gap query selection;
* :mod:`~capc.learning.metrics` — accuracy, per-class and balanced accuracy;
* :mod:`~capc.learning.retrain` — retraining on private data plus CaPC labels over several seeds;
* :mod:`~capc.learning.architectures` — VGG / ResNet / CryptoNets layouts by name and their recipes;
* :mod:`~capc.learning.party_training` — one party's architecture and training length (``PartyTraining``);
* :mod:`~capc.learning.fanout` — training tasks in-process or over Ray (``Executor``, ``train_and_vote``);
* :mod:`~capc.learning.simulation` — the plaintext CaPC learning experiment;
* :mod:`~capc.learning.paper_sweep` — sweeps of it for ``scripts/paper`` (flags, rows, resume);
* :mod:`~capc.learning.results_folder` — resumable CSV, summary, JSON and figure of one script.

The light modules (datasets, partition, selection, metrics) import without TensorFlow; the names
below are imported lazily so that ``import capc.learning`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Dataset": "datasets", "load_dataset": "datasets", "input_domain": "datasets",
    "build_architecture": "architectures", "assign_architectures": "architectures",
    "train_architecture": "architectures", "recipe_for": "architectures", "ARCHITECTURES": "architectures",
    "train_and_vote": "fanout", "FanoutResult": "fanout", "Executor": "fanout",
    "PartyTraining": "party_training", "SimulationConfig": "simulation",
    "run_learning_simulation": "simulation", "kcenter_greedy": "selection",
    "iid_partition": "partition", "weak_class_partition": "partition", "check_partition": "partition",
    "ModelConfig": "models", "build_cryptonets_model": "models", "train_party_model": "models",
    "build_party_model": "models", "MODEL_TYPES": "model_types", "check_model_type": "model_types",
    "predict_logits": "models", "softmax": "models", "save_model": "models", "load_model": "models",
    "export_frozen_graph": "export", "FrozenModel": "export", "INPUT_NODE": "export", "OUTPUT_NODE": "export",
    "load_default_models": "default_models", "default_model_paths": "default_models",
    "train_model_set": "default_models",
    "select_queries": "selection", "entropy_scores": "selection", "gap_scores": "selection",
    "accuracy": "metrics", "per_class_accuracy": "metrics", "balanced_accuracy": "metrics",
    "retrain_with_queries": "retrain", "RetrainResult": "retrain",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"capc.learning.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'capc.learning' has no attribute {name!r}")
