"""The HE-friendly activation layers the model compiler recognises exactly (``Square``,
``Polynomial``); defined in :mod:`capc.learning.layers`, re-exported here for the compiler's users."""

from capc.learning.layers import Polynomial, Square

__all__ = ["Square", "Polynomial"]
