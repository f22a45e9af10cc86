"""Party process specifications and the subprocess backend (one process group per party).

A backend starts the processes of a run and signals their process groups; it reports each exit
as a :class:`~capc.launcher.control.ControlEvent` of type ``exited`` on the launcher's event queue,
so the launcher waits on one queue with deadlines and never polls. :class:`SubprocessBackend`
runs each party as a child in its own session and process group with stdout and stderr going to
its log file; the tmux backend (:mod:`capc.launcher.tmux`) runs them in panes.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from capc.launcher.control import ControlEvent
from capc.launcher.errors import LauncherError

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
#: Roles the tmux layout knows; others are shown in their own pane after these.
ROLES = ("qp", "ap", "pg")


@dataclass(frozen=True)
class PartySpec:
    """How to start one party: a unique ``name`` (also its log and pane name), its ``role``
    (``qp``, ``ap``, ``pg`` or another word), the command ``argv``, extra environment variables
    ``env`` (added to the launcher's environment), the log file (default ``logs/<name>.log``)
    and the working directory (default the launcher's)."""

    name: str
    role: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    log_path: Path | None = None
    cwd: Path | None = None

    def check(self) -> None:
        """Raise :class:`LauncherError` naming the party if the spec is unusable."""
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise LauncherError(f"party name {self.name!r} must be letters, digits, '_' or '-'")
        if not isinstance(self.role, str) or not self.role.isidentifier():
            raise LauncherError(f"party {self.name!r}: role {self.role!r} is not a plain word")
        if isinstance(self.argv, (str, bytes)) or not self.argv or \
                not all(isinstance(a, str) for a in self.argv):
            raise LauncherError(f"party {self.name!r}: argv must be a non-empty list of strings")
        for key, value in (self.env or {}).items():
            if not isinstance(key, str) or not isinstance(value, str) or not key or "=" in key:
                raise LauncherError(f"party {self.name!r}: bad environment entry {key!r}")


@dataclass
class PartyHandle:
    """A started party and what the launcher knows about it.

    ``state`` moves ``starting`` -> ``ready`` -> ``done``, or to ``failed``; ``returncode`` is set
    once the process has exited (negative: killed by that signal). ``pid``/``pgid`` are the
    process the backend started (in tmux mode the pane's supervisor) and its process group;
    ``party_pid`` is the pid the party itself reported when it connected.
    """

    spec: PartySpec
    log_path: Path
    pid: int | None = None
    pgid: int | None = None
    state: str = "starting"
    endpoint: str | None = None
    summary: dict[str, Any] | None = None
    failure: str | None = None
    returncode: int | None = None
    connected: bool = False
    party_pid: int | None = None
    last_progress: dict[str, Any] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    pane_id: str | None = None

    @property
    def name(self) -> str:
        """The party's name."""
        return self.spec.name

    @property
    def role(self) -> str:
        """The party's role."""
        return self.spec.role

    @property
    def exited(self) -> bool:
        """True once the process is known to have exited."""
        return self.returncode is not None


def describe_exit(code: int) -> str:
    """``exited with code 3`` or ``killed by SIGKILL`` for a Popen-style return code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def log_tail(path: Path, lines: int = 12, max_bytes: int = 64 * 1024) -> str:
    """The last ``lines`` lines of a log file ('' if it is missing or empty)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(deque(text.splitlines(), maxlen=lines))


def signal_group(pgid: int | None, sig: int) -> bool:
    """Send ``sig`` to a process group the launcher created; False if the group is gone."""
    if pgid is None or pgid <= 1:
        return False
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class Backend(Protocol):
    """What the launcher needs from a way of running party processes."""

    def spawn(self, handle: PartyHandle, env: dict[str, str]) -> None:
        """Start the party; set ``handle.pid`` and ``handle.pgid``; report its exit as an event."""

    def exit_code(self, handle: PartyHandle) -> int | None:
        """The exit status if it can be learned without waiting, else None."""

    def close(self, keep: bool = False) -> None:
        """Release backend resources (tmux: the window, unless ``keep``)."""


class SubprocessBackend:
    """Each party a child process in its own session/process group, output to its log file."""

    def __init__(self, events: "queue.Queue[ControlEvent]") -> None:
        self.events = events

    def spawn(self, handle: PartyHandle, env: dict[str, str]) -> None:
        """Start ``handle.spec`` with ``env``; a watcher thread posts ``exited`` when it ends."""
        spec = handle.spec
        with open(handle.log_path, "ab") as log:
            try:
                proc = subprocess.Popen(
                    list(spec.argv), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, env=env,
                    cwd=str(spec.cwd) if spec.cwd is not None else None,
                    start_new_session=True,  # own process group: stopped as a unit, never by name
                    close_fds=True,
                )
            except OSError as exc:
                raise LauncherError(f"party {spec.name!r}: cannot start {spec.argv[0]!r}: "
                                    f"{exc.strerror or exc}") from None
        handle.popen, handle.pid, handle.pgid = proc, proc.pid, proc.pid
        threading.Thread(target=self._watch, args=(spec.name, proc),
                         name=f"capc-wait-{spec.name}", daemon=True).start()

    def _watch(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        self.events.put(ControlEvent(name, "exited", {"code": code}, "process"))

    def exit_code(self, handle: PartyHandle) -> int | None:
        """The child's status if it has exited (reaps it), else None."""
        return handle.popen.poll() if handle.popen is not None else None

    def close(self, keep: bool = False) -> None:
        """Nothing to release: the launcher stops the processes itself."""
