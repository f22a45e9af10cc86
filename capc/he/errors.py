"""Errors raised by :mod:`capc.he` (encrypted inference on SEAL CKKS)."""

from __future__ import annotations

from capc.errors import CapcError


class HEError(CapcError):
    """Bad input to encrypted inference: an unsupported model, unusable CKKS parameters, a malformed
    or mismatched context/query/result, or values that cannot be encrypted (NaN, wrong shape)."""


class UnsupportedModelError(HEError):
    """The model contains an operation that cannot be evaluated under CKKS by capc (named in the message)."""


class ParameterError(HEError):
    """CKKS parameters cannot serve a model (levels, slots, mask headroom, precision); the message
    says which limit failed and proposes parameters that work."""
