"""The tmux backend: a window whose panes show the launcher, the QP, each AP and the PG, live.

Used inside tmux (``$TMUX``) or with ``--tmux``. The window ``capc-<run id>`` is added to the
session ``--session`` (default ``capc``) if that session exists, else the session is created
detached; the unique window name keeps two runs from colliding. Pane 0 follows the launcher's log.
Each party pane runs :mod:`capc.launcher.supervisor`, which reports the party's exit status over
the control channel, so processes are still managed by the launcher (nothing is typed into
panes). Past ``max_ap_panes`` APs, the APs run as plain subprocesses and one pane follows all of
their logs. Panes stay after their process ends (``remain-on-exit``). A window added to the user's own session
stays open at the end, with every pane's last output, until the user dismisses it; a session the
launcher created detached is closed at the end unless ``--debug``.

Reference: the original kept commands in panes of an attached session ``capc`` through libtmux
and typed them with ``send_keys``, so no exit status came back (research notes, section 5).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from typing import TYPE_CHECKING, Any

from capc.launcher.errors import TmuxError
from capc.launcher.processes import PartyHandle, SubprocessBackend

if TYPE_CHECKING:
    from capc.launcher.launcher import Launcher

#: Above this many APs, the APs share one pane that follows their logs.
MAX_AP_PANES = 4
#: Pane order after the launcher's: QP, APs, PG, then parties with other roles.
_RANK = {"qp": 0, "ap": 1, "pg": 2}


def _server(socket_name: str | None, socket_path: str | None) -> Any:
    try:
        import libtmux
    except ImportError:
        raise TmuxError("tmux mode needs the libtmux package (pip install libtmux), or use "
                        "--no-tmux") from None
    if shutil.which("tmux") is None:
        raise TmuxError("tmux mode needs the tmux program (apt-get install tmux), or use --no-tmux")
    if socket_name is not None:
        return libtmux.Server(socket_name=socket_name)
    if socket_path is None and os.environ.get("TMUX"):
        socket_path = os.environ["TMUX"].split(",", 1)[0]  # the server we are running inside
    if socket_path is not None:
        return libtmux.Server(socket_path=socket_path)
    return libtmux.Server()


class TmuxBackend:
    """Runs parties in panes of a tmux window (see the module docstring).

    ``session``: session name; ``n_aps``: the run's AP count (decides pane-per-AP or a shared log
    pane); ``socket_name`` / ``socket_path``: a specific tmux server (tests use a private one);
    ``size``: the size of a newly created detached session.
    """

    def __init__(self, launcher: "Launcher", session: str = "capc", n_aps: int = 1,
                 socket_name: str | None = None, socket_path: str | None = None,
                 max_ap_panes: int = MAX_AP_PANES, size: tuple[int, int] = (220, 60)) -> None:
        self.launcher = launcher
        self.server = _server(socket_name, socket_path)
        self.session = session
        self.share_ap_pane = n_aps > max_ap_panes
        self._subprocesses = SubprocessBackend(launcher.events)
        self._ap_logs: list[str] = []
        self._ap_pane: str | None = None
        self.window_name = f"capc-{launcher.run_dir.run_id}"
        launcher_log = launcher.run_dir.logs / "launcher.log"
        first = self._follow_command([str(launcher_log)])
        fmt = "#{session_id} #{window_id} #{pane_id}"
        if self.server.has_session(session):
            self.created_session = False
            out = self._cmd("new-window", "-d", "-P", "-F", fmt, "-t", f"={session}:",
                            "-n", self.window_name, first)
        else:
            self.created_session = True
            out = self._cmd("new-session", "-d", "-P", "-F", fmt, "-s", session, "-n",
                            self.window_name, "-x", str(size[0]), "-y", str(size[1]), first)
        self.session_id, self.window_id, self.launcher_pane = out[0].split()
        self._cmd("set-option", "-w", "-t", self.window_id, "remain-on-exit", "on")
        self._cmd("set-option", "-w", "-t", self.window_id, "pane-border-status", "top")
        self._cmd("set-option", "-w", "-t", self.window_id, "pane-border-format",
                  " #{pane_index} #{pane_title} ")
        self._title(self.launcher_pane, "launcher")
        self._panes: list[tuple[int, str]] = [(-1, self.launcher_pane)]  # (rank, id), in order
        if self.created_session and not os.environ.get("TMUX"):
            target = f"-L {socket_name} " if socket_name else ""
            launcher.say(f"tmux: watch the run with `tmux {target}attach -t {session}`")

    # -- helpers ----------------------------------------------------------------------------------
    def _cmd(self, *args: str) -> list[str]:
        result = self.server.cmd(*args)
        if result.stderr:
            raise TmuxError(f"tmux {args[0]} failed: {' '.join(result.stderr)}")
        return list(result.stdout)

    def _title(self, pane: str, title: str) -> None:
        self._cmd("select-pane", "-t", pane, "-T", title)

    @staticmethod
    def _follow_command(paths: list[str]) -> str:
        # GNU tail exits by itself once the launcher process is gone (--pid).
        quoted = " ".join(shlex.quote(p) for p in paths)
        return f"exec tail -n +1 -F --pid={os.getpid()} {quoted} 2>/dev/null"

    def _split(self, role: str, command: str, env: dict[str, str] | None = None,
               cwd: str | None = None) -> tuple[str, int]:
        # Insert after the last pane of the same or an earlier rank, keeping QP, APs, PG order.
        rank = _RANK.get(role, 3)
        pos = max(i for i, (r, _) in enumerate(self._panes) if r <= rank)
        args = ["split-window", "-d", "-P", "-F", "#{pane_id} #{pane_pid}",
                "-t", self._panes[pos][1]]
        for key, value in (env or {}).items():
            args += ["-e", f"{key}={value}"]
        if cwd:
            args += ["-c", cwd]
        self._cmd("select-layout", "-t", self.window_id, "tiled")  # make room before splitting
        out = self._cmd(*args, command)
        self._cmd("select-layout", "-t", self.window_id, "tiled")
        pane, pid = out[0].split()
        self._panes.insert(pos + 1, (rank, pane))
        return pane, int(pid)

    # -- Backend interface ------------------------------------------------------------------------
    def spawn(self, handle: PartyHandle, env: dict[str, str]) -> None:
        """Start the party in its own pane under the supervisor (or, for APs past the pane limit,
        as a subprocess whose log the shared AP pane follows)."""
        spec = handle.spec
        if spec.role == "ap" and self.share_ap_pane:
            handle.log_path.touch()
            self._subprocesses.spawn(handle, env)
            self._ap_logs.append(str(handle.log_path))
            follow = self._follow_command(self._ap_logs)
            if self._ap_pane is None:
                self._ap_pane, _ = self._split("ap", follow)
            else:
                self._cmd("respawn-pane", "-k", "-t", self._ap_pane, follow)
            self._title(self._ap_pane, f"APs ({len(self._ap_logs)}): logs")
            return
        from capc.launcher import control

        pane_env = {key: env[key] for key in
                    (control.ENV_SOCKET, control.ENV_PARTY, control.ENV_TOKEN, "PYTHONPATH")}
        command = f"exec {shlex.quote(sys.executable)} -m capc.launcher.supervisor"
        cwd = str(spec.cwd) if spec.cwd is not None else os.getcwd()
        pane, pid = self._split(spec.role, command, pane_env, cwd)
        self._title(pane, f"{spec.role.upper()} {spec.name}")
        handle.pane_id, handle.pid, handle.pgid = pane, pid, pid  # a pane is its own process group

    def exit_code(self, handle: PartyHandle) -> int | None:
        """The pane's exit status once it is dead (negative for a signal), else None."""
        if handle.popen is not None:
            return self._subprocesses.exit_code(handle)
        if handle.pane_id is None:
            return None
        try:
            out = self._cmd("display-message", "-p", "-t", handle.pane_id,
                            "#{pane_dead}:#{pane_dead_status}:#{pane_dead_signal}")
        except TmuxError:
            return None
        dead, status, sig = (out[0].split(":") + ["", "", ""])[:3] if out else ("", "", "")
        if dead != "1":
            return None
        if sig:
            return -int(sig)
        return int(status) if status else None

    def capture(self, pane: str) -> list[str]:
        """The visible text of a pane (non-empty lines)."""
        return [line for line in self._cmd("capture-pane", "-p", "-J", "-t", pane) if line]

    def close(self, keep: bool = False) -> None:
        """Close the run's window (and the session if this run created it) unless ``keep``, or unless
        the window was opened in the user's own tmux session, where they are watching it: there it
        stays, with every pane's last output, until the user dismisses it."""
        if keep or not self.created_session:
            self.launcher.say(f"tmux: window {self.window_name} stays open for inspection; dismiss it "
                               f"with `tmux kill-window -t {self.window_id}`")
            return
        try:
            windows = self._cmd("list-windows", "-t", self.session_id, "-F", "#{window_id}")
            if self.created_session and windows == [self.window_id]:
                self._cmd("kill-session", "-t", self.session_id)
            else:
                self._cmd("kill-window", "-t", self.window_id)
        except TmuxError:
            pass  # the session or server is already gone: nothing left to close

