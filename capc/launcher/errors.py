"""Errors raised by the experiment launcher (:mod:`capc.launcher`).

All derive from :class:`capc.errors.CapcError` so that ``run_experiment.py`` can print a one-line
message naming what went wrong instead of a traceback.
"""

from __future__ import annotations

from capc.errors import CapcError, ConfigError


class LauncherError(CapcError):
    """Base class of the launcher's deliberate errors."""


class FlagError(ConfigError, LauncherError):
    """A command-line flag has a bad value; the message starts with the flag's name."""

    def __init__(self, flag: str, message: str) -> None:
        self.flag = flag
        super().__init__(f"{flag}: {message}")


class RunDirError(LauncherError):
    """The run directory cannot be created or written."""


class ControlError(LauncherError):
    """The control channel between launcher and parties failed (bad message, closed socket)."""


class PartyFailed(LauncherError):
    """A party process failed, died, or reported ``failed``; names the party and quotes its log."""

    def __init__(self, party: str, reason: str, log_tail: str = "",
                 log_path: str | None = None) -> None:
        self.party = party
        self.reason = reason
        self.log_tail = log_tail
        message = f"party {party!r} failed: {reason}"
        if log_tail:
            quoted = "\n".join("    | " + line for line in log_tail.splitlines())
            where = f" ({log_path})" if log_path else ""
            message += f"\n  last lines of its log{where}:\n{quoted}"
        super().__init__(message)


class PartyTimeout(LauncherError):
    """Parties did not reach a state (``ready``, ``done``) before the deadline; names them."""

    def __init__(self, waiting_for: str, parties: list[str], seconds: float) -> None:
        self.parties = parties
        super().__init__(
            f"timed out after {seconds:.1f} s waiting for {waiting_for} from: {', '.join(parties)}"
        )


class TmuxError(LauncherError):
    """tmux or libtmux is missing, or a tmux command failed."""


class ProtocolNotBuilt(LauncherError):
    """The protocol runner (``capc.parties.orchestrate.run_protocol``) is not available."""
