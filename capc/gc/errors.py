"""Errors raised by :mod:`capc.gc`; the compiled engine raises these same classes."""

from __future__ import annotations

from capc.errors import CapcError


class GcError(CapcError):
    """Base class of garbled-circuit (2PC) failures."""


class GcInputError(GcError, ValueError):
    """An argument is malformed: wrong shape, length, dtype, role or class count."""


class GcNetworkError(GcError, ConnectionError):
    """The byte stream to the peer failed: closed, timed out, or could not connect."""


class GcProtocolError(GcError):
    """The two parties disagree: different operation, class count, role or query order, or a bad peer."""


class GcEngineMissing(GcError, ImportError):
    """The compiled engine (``capc.gc._engine`` or the programs in ``gc-emp-test/bin``) is not built."""
