"""Polynomial activation layers of cryptonets-style models (``Square``, ``Polynomial``).

A Keras ``Activation`` or ``Lambda`` holds an arbitrary Python callable that cannot be read back
reliably from a saved model, so capc's models use these two registered layers instead:

* :class:`Square` computes ``x**2`` element-wise (the CryptoNets activation, Gilad-Bachrach et al.,
  ICML 2016);
* :class:`Polynomial` computes ``c0 + c1*x + c2*x**2 + ...`` element-wise with fixed coefficients
  (lowest degree first); :mod:`capc.he.compiler` evaluates degree <= 2 in one multiplicative level.

Both are registered under the package name ``capc`` (``capc>Square``, ``capc>Polynomial``), so
``keras.models.load_model`` restores them once this module has been imported. They live here, not in
:mod:`capc.he`, so that training and loading models needs Keras only (no TenSEAL).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras


@keras.saving.register_keras_serializable(package="capc")
class Square(keras.layers.Layer):
    """Element-wise square activation, ``y = x * x``."""

    def call(self, inputs: Any) -> Any:
        return inputs * inputs

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


@keras.saving.register_keras_serializable(package="capc")
class Polynomial(keras.layers.Layer):
    """Element-wise polynomial activation ``y = sum_k coeffs[k] * x**k`` (coefficients lowest first).

    Args:
        coeffs: the polynomial coefficients; at least one, all finite floats.
    """

    def __init__(self, coeffs: Sequence[float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        values = [float(c) for c in coeffs]
        if not values:
            raise ValueError("Polynomial needs at least one coefficient")
        if any(c != c or c in (float("inf"), float("-inf")) for c in values):
            raise ValueError(f"Polynomial coefficients must be finite, got {values}")
        self.coeffs = tuple(values)

    def call(self, inputs: Any) -> Any:
        # Horner's rule: c_d, then (acc * x + c_k) down to k = 0.
        acc = keras.ops.zeros_like(inputs) + self.coeffs[-1]
        for c in reversed(self.coeffs[:-1]):
            acc = acc * inputs + c
        return acc

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["coeffs"] = list(self.coeffs)
        return config


__all__ = ["Square", "Polynomial"]
