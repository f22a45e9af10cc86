"""Deadlines: an absolute point in (monotonic) time that every wait in :mod:`capc.net` is bounded by."""

from __future__ import annotations

import math
import time


class Deadline:
    """A point in ``time.monotonic()`` time; ``Deadline(5.0)`` expires five seconds from now."""

    __slots__ = ("at", "seconds")

    def __init__(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or math.isnan(seconds) \
                or seconds < 0:
            raise ValueError(f"a timeout must be a non-negative number of seconds, got {seconds!r}")
        self.seconds = float(seconds)
        self.at = time.monotonic() + self.seconds

    @classmethod
    def coerce(cls, value: Deadline | float) -> Deadline:
        """Return ``value`` if it is a Deadline, else a Deadline ``value`` seconds from now."""
        return value if isinstance(value, Deadline) else cls(value)

    def remaining(self) -> float:
        """Seconds left (0.0 once expired)."""
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        """True once the deadline has passed."""
        return time.monotonic() >= self.at

    def __repr__(self) -> str:
        return f"Deadline({self.seconds:g}s, {self.remaining():.3f}s left)"
