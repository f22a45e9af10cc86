"""The exception hierarchy shared by every capc subpackage.

Every error that capc raises on purpose derives from :class:`CapcError`, so that a command-line entry
point can turn it into a one-line message naming what was wrong instead of a traceback.
"""

from __future__ import annotations


class CapcError(Exception):
    """Base class of all errors capc raises deliberately (bad input, failed peer, exhausted budget)."""


class ConfigError(CapcError, ValueError):
    """A configuration or parameter file is invalid; the message names the file and the field."""


class FixedPointOverflow(CapcError, OverflowError):
    """A real value does not fit the signed 64-bit fixed-point ring at the requested scale."""
