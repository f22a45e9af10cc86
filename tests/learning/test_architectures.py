"""Architectures: every name builds with its declared weight-layer count and trains one step."""

from __future__ import annotations

import numpy as np
import pytest

from capc.learning.architectures import (ARCHITECTURES, RESNET_RECIPE, VGG_RECIPE, assign_architectures,
                                         build_architecture, count_weight_layers, recipe_for,
                                         train_architecture)
from capc.learning.errors import ModelError


def _expected_layers(name: str) -> int | None:
    for prefix in ("VGG", "ResNet"):
        if name.startswith(prefix):
            return int(name[len(prefix):])
    return None


@pytest.mark.parametrize("name", [a for a in ARCHITECTURES if a[0] in "VR"])
def test_vgg_resnet_build_count_and_train_one_step(name):
    model = build_architecture(name, (16, 16, 3), num_classes=4, width=1 / 32)
    assert count_weight_layers(model) == _expected_layers(name)
    assert model.output_shape == (None, 4)
    rng = np.random.default_rng(0)
    x = rng.random((8, 16, 16, 3), dtype=np.float32)
    y = np.arange(8) % 4
    trained = train_architecture(name, x, y, num_classes=4, width=1 / 32, epochs=1, seed=1)
    assert np.isfinite(trained.predict(x, verbose=0)).all()


def test_cryptonets_layouts_match_the_original_shapes():
    expected = {"cryptonets": [(5, 5, 1, 5), (5,), (980, 100), (100,), (100, 10), (10,)],
                "cryptonets-relu": [(5, 5, 1, 5), (5,), (980, 100), (100,), (100, 10), (10,)],
                "mlp": [(5, 5, 1, 5), (5, 5, 5, 50), (200, 100), (100, 10), (10,)]}
    for name, shapes in expected.items():
        model = build_architecture(name, (28, 28, 1))
        assert [tuple(w.shape) for w in model.get_weights()] == shapes, name
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    model = train_architecture("mlp", x, np.array([0, 1, 2, 3]), epochs=1)
    assert model.predict(x, verbose=0).shape == (4, 10)


def test_training_is_seeded():
    x = np.random.default_rng(0).random((8, 8, 8, 1), dtype=np.float32)
    y = np.arange(8) % 2
    a = train_architecture("VGG3", x, y, num_classes=2, width=1 / 16, seed=3)
    b = train_architecture("VGG3", x, y, num_classes=2, width=1 / 16, seed=3)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_recipes_and_round_robin():
    assert recipe_for("vgg16") is VGG_RECIPE and (VGG_RECIPE.learning_rate, VGG_RECIPE.weight_decay) == (0.1, 1e-4)
    assert recipe_for("ResNet8") is RESNET_RECIPE
    assert (RESNET_RECIPE.learning_rate, RESNET_RECIPE.weight_decay, RESNET_RECIPE.momentum,
            RESNET_RECIPE.batch_size) == (0.01, 1e-5, 0.9, 128)
    assert assign_architectures("VGG16,VGG19,VGG5", 5) == ["VGG16", "VGG19", "VGG5", "VGG16", "VGG19"]
    assert assign_architectures(["resnet10"], 2) == ["ResNet10", "ResNet10"]
    with pytest.raises(ModelError, match="unknown architecture 'VGG4'"):
        assign_architectures("VGG16,VGG4", 3)
    with pytest.raises(ModelError, match="empty"):
        assign_architectures(" , ", 3)
    with pytest.raises(ModelError, match="num_parties"):
        assign_architectures("VGG5", 0)
    with pytest.raises(ModelError, match="input_shape"):
        build_architecture("VGG5", (8, 8))
