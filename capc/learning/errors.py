"""Errors raised by :mod:`capc.learning` (datasets, partitions, models, export, retraining).

All derive from :class:`capc.errors.CapcError` so that command-line entry points can print them as a
one-line message.
"""

from __future__ import annotations

from capc.errors import CapcError


class LearningError(CapcError):
    """Base class of the errors raised by :mod:`capc.learning`."""


class DatasetError(LearningError, ValueError):
    """A dataset name is unknown, or its files are missing or malformed (the message names them)."""


class PartitionError(LearningError, ValueError):
    """Partition parameters are inconsistent (e.g. more parties than samples, unknown weak class)."""


class ModelError(LearningError, ValueError):
    """A model cannot be built, loaded or trained with the given arguments."""


class ExportError(LearningError, ValueError):
    """A model cannot be exported to a frozen graph the HE compiler reads (unsupported layer or op)."""


class SelectionError(LearningError, ValueError):
    """Query selection got bad scores, an unknown mode or an impossible count."""
