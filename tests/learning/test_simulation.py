"""Plaintext CaPC learning simulation: votes, labels, accounting and retraining wired together."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")
pytest.importorskip("capc.privacy.simulate")

from capc.learning.errors import LearningError  # noqa: E402
from capc.learning.models import ModelConfig  # noqa: E402
from capc.learning.simulation import SimulationConfig, ensemble_votes, run_learning_simulation  # noqa: E402


class _Const:
    """A stand-in model that always predicts one class (unit test of the vote count)."""

    def __init__(self, label: int) -> None:
        self.label = label

    def predict_logits(self, x):
        out = np.zeros((len(x), 4), np.float32)
        out[:, self.label] = 1.0
        return out


def test_ensemble_votes_counts_argmax():
    votes = ensemble_votes([_Const(1), _Const(1), _Const(3)], np.zeros((5, 2, 2, 1)), 4)
    np.testing.assert_array_equal(votes, np.tile([0, 2, 0, 1], (5, 1)))


def test_tiny_noiseless_run_labels_by_plurality():
    cfg = SimulationConfig(n_parties=4, num_querying_parties=1, queries_per_party=40, mode="gap",
                           sigma_G=0, sigma_T=0, threshold=0, retrain_seeds=(11,),
                           model_config=ModelConfig(epochs=2))
    from capc.privacy.simulate import EpsilonWarning

    with pytest.warns(EpsilonWarning, match="querying party 0: no privacy budget"):  # noiseless, no budget
        res = run_learning_simulation(cfg)
    [r] = res["parties"]
    assert r["accounting"]["protocol"]["answered"] == 40 and r["accounting"]["paper"] is None
    assert r["queries_asked"] == 40 and r["queries_processed"] == 40 and r["queries_answered"] == 40
    assert r["after"]["num_queries_used"] == 40 and r["before"]["num_queries_used"] == 0
    assert r["label_accuracy"] > 0.5  # plurality of three trained models, no noise
    assert r["after"]["accuracy_mean"] > 0.3 and r["before"]["accuracy_mean"] > 0.3  # chance is 0.1


def test_bad_simulation_parameters():
    with pytest.raises(LearningError, match="num_querying_parties"):
        run_learning_simulation(SimulationConfig(n_parties=3, num_querying_parties=3))
    with pytest.raises(LearningError, match="pool share"):
        run_learning_simulation(SimulationConfig(n_parties=4, num_querying_parties=1, queries_per_party=301))


def _no_training(monkeypatch):
    import capc.learning.fanout as fanout

    def boom(*_a, **_k):
        raise AssertionError("a model trained before the bad parameter was reported")

    monkeypatch.setattr(fanout, "train_and_vote", boom)


@pytest.mark.parametrize("kwargs, message", [
    ({"architectures": "cryptonets,VGG99"}, "unknown architecture 'VGG99'"),
    ({"mode": "margin"}, "unknown selection mode 'margin'"),
    ({"partition": "dirichlet"}, "unknown partition 'dirichlet'"),
    ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"retrain_seeds": ()}, "retrain_seeds is empty"),
    ({"ray_address": "auto"}, "ray_address given but use_ray=False"),
])
def test_bad_parameters_fail_before_training(monkeypatch, kwargs, message):
    _no_training(monkeypatch)
    with pytest.raises(LearningError, match=message):
        run_learning_simulation(SimulationConfig(n_parties=4, num_querying_parties=1, **kwargs))


def test_missing_dataset_files_fail_before_training(monkeypatch, tmp_path):
    from capc.learning.errors import DatasetError

    _no_training(monkeypatch)
    with pytest.raises(DatasetError, match="CIFAR-10 batches missing.*data_batch_1"):
        run_learning_simulation(SimulationConfig(dataset="cifar10", data_dir=str(tmp_path), n_parties=4))


def test_kcenter_heterogeneous_run_and_party_models_reused():
    """Per-party architectures round robin (the QP retrains its own), k-center selection, and a
    second budget reusing the party models (same seeds, so the same votes and baseline)."""
    from capc.learning import simulation

    simulation._PARTY_MODELS.clear()
    cfg = SimulationConfig(n_parties=3, num_querying_parties=2, queries_per_party=15, mode="kcenter",
                           architectures="mlp,cryptonets", epochs=2, retrain_seeds=(11,), budget_eps=10.0)
    res = run_learning_simulation(cfg)
    assert res["architectures"] == ["mlp", "cryptonets", "mlp"] and res["backend"] == "in-process"
    assert [r["architecture"] for r in res["parties"]] == ["mlp", "cryptonets"]
    assert res["timings"]["party_models_reused"] == 0.0
    for r in res["parties"]:
        assert r["queries_asked"] == 15 and r["epsilon_data_independent"] <= 10.0
    cfg.budget_eps = 20.0
    again = run_learning_simulation(cfg)
    assert again["timings"]["party_models_reused"] == 1.0
    for a, b in zip(res["parties"], again["parties"]):
        assert a["before"]["accuracy"] == b["before"]["accuracy"]
        assert b["queries_answered"] >= a["queries_answered"]  # a larger budget answers at least as many
