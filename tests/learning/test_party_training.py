"""PartyTraining: one party's architecture and training length, checked on construction."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("keras")

from capc.learning.errors import ModelError  # noqa: E402
from capc.learning.party_training import PartyTraining  # noqa: E402


def test_checks_and_names():
    t = PartyTraining("vgg5", epochs=3, width=0.25, batch_size=16)
    assert t.architecture == "VGG5" and not t.is_party_model
    assert PartyTraining("CryptoNets-ReLU").is_party_model
    assert t.to_dict()["recipe"]["optimizer"] == "sgd" and t.with_architecture("mlp").architecture == "mlp"
    assert pickle.loads(pickle.dumps(t)) == t  # shipped to Ray workers
    for kwargs, msg in [({"architecture": "VGG99"}, "unknown architecture"), ({"epochs": 0}, "epochs"),
                        ({"width": 0}, "width"), ({"batch_size": 0}, "batch_size")]:
        with pytest.raises(ModelError, match=msg):
            PartyTraining(**{"architecture": "VGG5", **kwargs})


def test_batch_size_and_epochs_reach_training():
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, 40)
    model = PartyTraining("cryptonets", epochs=2, batch_size=8).train(x, y, num_classes=3, seed=1)
    assert len(model.history.history["loss"]) == 2
    assert model.history.params["steps"] == 5  # 40 samples / batch 8
    vgg = PartyTraining("VGG3", epochs=1, width=1 / 16, batch_size=10).train(x, y, num_classes=3, seed=1)
    assert vgg.history.params["steps"] == 4
