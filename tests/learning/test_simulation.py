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
