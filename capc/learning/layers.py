"""Polynomial activation layers of cryptonets-style models (``Square``, ``Polynomial``).

The canonical definitions live in :mod:`capc.he.layers` (the HE compiler reads them). This module
re-exports them; if that package cannot be imported in this installation (for example TenSEAL is
missing), it defines the same two layers under the same registered Keras names (``capc>Square``,
``capc>Polynomial``) so that saved models load identically either way. Keras' registry keeps whichever definition registers last, and
both compute the same function, so mixing the two is harmless.
"""

from __future__ import annotations

from typing import Any, Sequence

try:  # pragma: no cover - which branch runs depends on the installation
    from capc.he.layers import Polynomial, Square  # type: ignore[attr-defined]
except ImportError:  # capc.he (or one of its dependencies, e.g. tenseal) is not installed
    import keras

    @keras.saving.register_keras_serializable(package="capc")
    class Square(keras.layers.Layer):  # type: ignore[no-redef]
        """Element-wise square ``x * x``, the CryptoNets activation (Gilad-Bachrach et al., ICML 2016)."""

        def call(self, inputs: Any) -> Any:
            return inputs * inputs

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

    @keras.saving.register_keras_serializable(package="capc")
    class Polynomial(keras.layers.Layer):  # type: ignore[no-redef]
        """Element-wise polynomial ``sum_i coeffs[i] * x**i`` (coefficients lowest degree first)."""

        def __init__(self, coeffs: Sequence[float], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            coeffs = [float(c) for c in coeffs]
            if not coeffs:
                raise ValueError("Polynomial needs at least one coefficient")
            self.coeffs = coeffs

        def call(self, inputs: Any) -> Any:
            # Horner's rule: one multiplication per degree.
            out = inputs * 0.0 + self.coeffs[-1]
            for c in reversed(self.coeffs[:-1]):
                out = out * inputs + c
            return out

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

        def get_config(self) -> dict[str, Any]:
            config = super().get_config()
            config["coeffs"] = list(self.coeffs)
            return config

__all__ = ["Square", "Polynomial"]
