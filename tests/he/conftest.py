"""Shared fixtures for the capc.he tests: small Keras models and one key set per module."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def small_model(seed: int = 0, polynomial: bool = False):
    """A digits-size (8x8x1) CryptoNets-style model: conv 3x3/2 SAME, BN, square, dense, act, dense."""
    import keras

    from capc.he.layers import Polynomial, Square

    keras.utils.set_random_seed(seed)
    act = Polynomial([0.1, 0.5, 0.25]) if polynomial else Square()
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, strides=2, padding="same"),
        keras.layers.BatchNormalization(),
        Square(),
        keras.layers.Flatten(),
        keras.layers.Dense(16),
        act,
        keras.layers.Dense(10),
    ])
    bn = model.layers[1]
    rng = np.random.default_rng(seed)
    bn.moving_mean.assign(rng.uniform(-0.2, 0.2, 4))
    bn.moving_variance.assign(rng.uniform(0.5, 1.5, 4))
    bn.gamma.assign(rng.uniform(0.5, 1.5, 4))
    return model


@pytest.fixture(scope="session")
def model():
    return small_model()
