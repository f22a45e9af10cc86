"""The :class:`Launcher` handed to the protocol runner: starts parties, waits on them, stops them.

All waiting goes through one event queue fed by the control socket (ready, progress, done,
failed, connection closed) and by the backend (process exits), read with deadlines: no sleeps and
no file polling. Any party failing, dying or reporting ``failed`` while the launcher waits stops
the whole run (only its own process groups: ``stop``, then SIGTERM, then SIGKILL) and raises
:class:`~capc.launcher.errors.PartyFailed` naming the party, the reason and its last log lines.
"""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Mapping, Sequence

from capc.launcher import control
from capc.launcher.control import ControlEvent, ControlServer
from capc.launcher.errors import LauncherError, PartyFailed, PartyTimeout
from capc.launcher.processes import (Backend, PartyHandle, PartySpec, SubprocessBackend,
                                     describe_exit, log_tail, signal_group)
from capc.launcher.results import ExperimentResult, format_table
from capc.launcher.rundir import RunDir, TimingWriter

#: Seconds a party gets to exit after ``stop`` before SIGTERM, and after SIGTERM before SIGKILL.
DEFAULT_GRACE = 10.0  # a party exits well within this; TensorFlow teardown is slow on a loaded machine
#: Seconds to wait for a process's exit status after its control connection closed unexpectedly.
EXIT_STATUS_WAIT = 3.0
#: Signals ignored while stopping, so that a second Ctrl-C cannot leave processes behind.
_STOP_MASKED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_EOF_REASON = "closed its control connection before reporting done"


def _package_parent() -> str:
    return str(Path(__file__).resolve().parents[2])


class Launcher:
    """Runs one experiment's party processes for the protocol runner.

    Parameters: the run directory, a ``backend`` (``"subprocess"``, ``"tmux"``, or a backend
    object), the default ``timeout`` for waits, ``grace`` seconds for stopping, ``out`` for the
    launcher's own messages (also written to ``logs/launcher.log``), ``debug`` (keep the tmux
    window), ``timing_extra`` (a second timing file, ``--log_timing_file``) and, for tmux,
    ``tmux_options`` passed to :class:`capc.launcher.tmux.TmuxBackend`.
    Use it as a context manager: leaving the block stops every party that is still running.
    """

    def __init__(self, run_dir: RunDir, *, backend: str | Backend = "subprocess",
                 timeout: float = 600.0, grace: float = DEFAULT_GRACE,
                 out: IO[str] | None = None, debug: bool = False,
                 timing_extra: Path | None = None,
                 tmux_options: Mapping[str, Any] | None = None) -> None:
        self.run_dir = run_dir
        self.timeout = float(timeout)
        self.grace = float(grace)
        self.debug = debug
        self.out = out if out is not None else sys.stdout
        self.events: "queue.Queue[ControlEvent]" = queue.Queue()
        self.handles: dict[str, PartyHandle] = {}
        self._lock = threading.Lock()
        self._progress_callbacks: list[Callable[[str, dict[str, Any]], None]] = []
        self._closed = False
        self._log = open(run_dir.logs / "launcher.log", "a", encoding="utf-8")
        self.timing: TimingWriter = run_dir.open_timing(timing_extra)
        self.token = secrets.token_hex(16)
        sock_path = run_dir.path / "control.sock"
        self._sock_dir: str | None = None
        if len(os.fsencode(str(sock_path))) > control.MAX_UNIX_PATH - 4:
            # Deep run directories exceed the AF_UNIX path limit: use a private short directory.
            self._sock_dir = tempfile.mkdtemp(prefix="capc-")
            sock_path = Path(self._sock_dir) / "control.sock"
        self.control = ControlServer(sock_path, self.token, self.events, self._authorize)
        try:
            if backend == "subprocess":
                self.backend: Backend = SubprocessBackend(self.events)
            elif backend == "tmux":
                from capc.launcher.tmux import TmuxBackend

                self.backend = TmuxBackend(self, **dict(tmux_options or {}))
            elif isinstance(backend, str):
                raise LauncherError(f"unknown launcher backend {backend!r}")
            else:
                self.backend = backend
        except BaseException:
            self.control.close()
            if self._sock_dir is not None:
                shutil.rmtree(self._sock_dir, ignore_errors=True)
            self._log.close()
            raise

    # -- output -----------------------------------------------------------------------------------
    def say(self, message: str) -> None:
        """Print a launcher message and append it to ``logs/launcher.log``."""
        print(message, file=self.out, flush=True)
        self._log.write(message + "\n")
        self._log.flush()

    def progress(self, total: int, desc: str = "queries", **kwargs: Any) -> Any:
        """A tqdm progress bar on stderr for multi-query runs (off when stderr is not a TTY)."""
        from tqdm import tqdm

        kwargs.setdefault("disable", None)
        return tqdm(total=total, desc=desc, unit="query", file=sys.stderr, **kwargs)

    def on_progress(self, callback: Callable[[str, dict[str, Any]], None]) -> None:
        """Call ``callback(party, data)`` for every ``progress`` event seen while waiting."""
        self._progress_callbacks.append(callback)

    def report(self, result: ExperimentResult) -> str:
        """Print the final table, store ``results.json``, and return the table text."""
        table = format_table(result, self.run_dir.run_id)
        self.run_dir.write_json("results.json", result.to_json())
        self.say(table)
        return table

    # -- parties ----------------------------------------------------------------------------------
    @property
    def control_path(self) -> Path:
        """Path of the control socket."""
        return self.control.path

    def spec(self, name: str, role: str, argv: Sequence[str],
             env: Mapping[str, str] | None = None, cwd: Path | None = None) -> PartySpec:
        """A :class:`PartySpec` whose log goes to ``logs/<name>.log`` of this run."""
        return PartySpec(name, role, list(argv), dict(env or {}), self.run_dir.log_path(name), cwd)

    def party_env(self, spec: PartySpec) -> dict[str, str]:
        """The environment a party runs with: ours, the spec's extras, and the control variables."""
        env = dict(os.environ)
        env.update(spec.env or {})
        parent = _package_parent()
        old = env.get("PYTHONPATH")
        env["PYTHONPATH"] = parent if not old else parent + os.pathsep + old
        env["PYTHONUNBUFFERED"] = "1"  # logs and panes show output as it happens
        env[control.ENV_SOCKET] = str(self.control.path)
        env[control.ENV_PARTY] = spec.name
        env[control.ENV_TOKEN] = self.token
        env["CAPC_RUN_DIR"] = str(self.run_dir.path)
        if self.debug:  # --debug: the parties log every message they send and receive (sizes only)
            from capc.parties.common import LOG_LEVEL_ENV

            env[LOG_LEVEL_ENV] = "DEBUG"
        return env

    def _authorize(self, party: str, kind: str, hello: dict[str, Any]) -> dict[str, Any] | str:
        with self._lock:
            handle = self.handles.get(party)
        if handle is None:
            return f"no party named {party!r} in this run"
        if kind == "supervisor":
            spec = handle.spec
            return {"argv": list(spec.argv), "env": self.party_env(spec),
                    "cwd": str(spec.cwd) if spec.cwd else None, "log": str(handle.log_path)}
        return {"run_id": self.run_dir.run_id}

    def start_parties(self, specs: Iterable[PartySpec],
                      timeout: float | None = None) -> dict[str, PartyHandle]:
        """Start ``specs`` and wait until each has sent ``ready``; return their handles by name.

        Each handle's ``endpoint`` is what the party reported. Raises :class:`PartyFailed` or
        :class:`PartyTimeout` (after stopping every party) if one fails or the deadline passes.
        """
        specs = list(specs)
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise LauncherError(f"duplicate party names in {names}")
        for spec in specs:
            spec.check()
            if spec.name in self.handles:
                raise LauncherError(f"party {spec.name!r} was already started in this run")
        started: dict[str, PartyHandle] = {}
        for spec in specs:
            log = Path(spec.log_path) if spec.log_path else self.run_dir.log_path(spec.name)
            handle = PartyHandle(spec=spec, log_path=log)
            with self._lock:
                self.handles[spec.name] = handle
            try:
                self.backend.spawn(handle, self.party_env(spec))
            except BaseException:
                self.stop_all()
                raise
            started[spec.name] = handle
            self._log_line(f"started {spec.name} ({spec.role}) pid {handle.pid}")
        self._wait(names, lambda h: h.state in ("ready", "done"), "ready", timeout)
        return started

    def send(self, party: str, message: Mapping[str, Any]) -> bool:
        """Send a JSON message (must have a ``type``) to a connected party."""
        if not isinstance(message.get("type"), str):
            raise LauncherError("control messages need a string 'type'")
        return self.control.send(party, dict(message))

    def wait_done(self, names: Iterable[str] | None = None, timeout: float | None = None,
                  wait_exit: bool = True) -> dict[str, dict[str, Any]]:
        """Wait until the named parties (default: all) sent ``done`` and, if ``wait_exit``, exited
        with status 0; return their summaries by name."""
        names = list(self.handles) if names is None else list(names)
        unknown = [n for n in names if n not in self.handles]
        if unknown:
            raise LauncherError(f"unknown parties: {unknown}")

        def finished(h: PartyHandle) -> bool:
            return h.state == "done" and (h.returncode is not None or not wait_exit)

        self._wait(names, finished, "done", timeout)
        return {n: dict(self.handles[n].summary or {}) for n in names}

    def wait_event(self, party: str, event_type: str,
                   timeout: float | None = None) -> dict[str, Any]:
        """Wait for the next ``event_type`` (e.g. ``progress``) from ``party``; return its data."""
        if party not in self.handles:
            raise LauncherError(f"unknown party {party!r}")
        box: list[dict[str, Any]] = []

        def hook(ev: ControlEvent) -> None:
            if ev.party == party and ev.type == event_type and not box:
                box.append(ev.data)

        self._wait([party], lambda h: bool(box), event_type, timeout, hook=hook)
        return box[0]

    # -- the event loop ---------------------------------------------------------------------------
    def _log_line(self, text: str) -> None:
        self._log.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self._log.flush()

    def _apply(self, ev: ControlEvent) -> str | None:
        """Update the party's handle from an event; return a failure reason, if it is one."""
        h = self.handles.get(ev.party)
        if h is None:
            return None
        if ev.type == "connected":
            if ev.kind == "party":
                h.connected = True
                h.party_pid = ev.data.get("pid")
            return None
        if ev.type == "ready":
            if h.state == "starting":
                h.state = "ready"
            h.endpoint = ev.data.get("endpoint")
            self._log_line(f"{h.name} ready at {h.endpoint}")
            return None
        if ev.type == "progress":
            h.last_progress = ev.data.get("data") or {}
            for cb in self._progress_callbacks:
                cb(h.name, h.last_progress)
            return None
        if ev.type == "done":
            h.state = "done"
            h.summary = ev.data.get("summary") or {}
            self._log_line(f"{h.name} done")
            return None
        if ev.type == "failed":
            return f"reported failure: {ev.data.get('reason', 'no reason given')}"
        if ev.type == "protocol_error":
            return f"broke the control protocol: {ev.data.get('reason')}"
        if ev.type == "exited":
            code = ev.data.get("code")
            if h.returncode is None and isinstance(code, int):
                h.returncode = code
            if h.returncode not in (0, None):
                return describe_exit(h.returncode)
            if h.state != "done" and h.failure is None:
                if h.connected:
                    # The exit watcher and the control reader are different threads: a "done" the
                    # party sent before exiting may still be queued behind this event. Its control
                    # connection's EOF comes after anything it sent, so let the "eof" event decide.
                    return None
                return "exited with code 0 without reporting done"
            return None
        if ev.type == "eof":
            if ev.kind == "supervisor":
                # The pane wrapper died without reporting: ask the backend (tmux pane status).
                if h.returncode is None:
                    code = self.backend.exit_code(h)
                    h.returncode = code if code is not None else -signal.SIGKILL
                    if h.returncode != 0:
                        return describe_exit(h.returncode)
                return None
            h.connected = False
            if h.state not in ("done", "failed"):
                return _EOF_REASON
        return None

    def _await_exit(self, handle: PartyHandle, seconds: float) -> None:
        """Process events for up to ``seconds`` until ``handle`` has an exit status."""
        deadline = time.monotonic() + seconds
        while handle.returncode is None:
            ev = self._next_event(deadline)
            if ev is None:
                return
            if ev.type == "exited" and ev.party in self.handles:
                h = self.handles[ev.party]
                if h.returncode is None:
                    h.returncode = ev.data.get("code")
            else:
                self._apply(ev)

    def _fail(self, party: str, reason: str) -> None:
        handle = self.handles[party]
        if handle.returncode is None:
            self._await_exit(handle, EXIT_STATUS_WAIT)
        if handle.returncode is not None and reason == _EOF_REASON:
            reason = f"{describe_exit(handle.returncode)} before reporting done"
        elif handle.returncode is not None and describe_exit(handle.returncode) not in reason:
            reason = f"{reason} ({describe_exit(handle.returncode)})"
        handle.state, handle.failure = "failed", reason
        self._log_line(f"{party} FAILED: {reason}")
        self.stop_all()
        raise PartyFailed(party, reason, log_tail(handle.log_path), str(handle.log_path))

    def _wait(self, names: list[str], predicate: Callable[[PartyHandle], bool], what: str,
              timeout: float | None,
              hook: Callable[[ControlEvent], None] | None = None) -> None:
        seconds = self.timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + seconds
        while True:
            pending = [n for n in names if not predicate(self.handles[n])]
            if not pending:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                self._log_line(f"timeout waiting for {what} from {pending}")
                self.stop_all()
                raise PartyTimeout(what, pending, seconds)
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                continue
            failure = self._apply(ev)
            if hook is not None:
                hook(ev)
            if failure is not None:
                self._fail(ev.party, failure)

    # -- stopping ---------------------------------------------------------------------------------
    def _next_event(self, deadline: float) -> ControlEvent | None:
        """The next control event, or None once ``deadline`` (monotonic seconds) has passed."""
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            return self.events.get(timeout=left)
        except queue.Empty:
            return None

    def _running(self) -> list[PartyHandle]:
        return [h for h in self.handles.values() if h.pid is not None and h.returncode is None]

    def _drain_until_exited(self, seconds: float, only: list[str] | None = None) -> None:
        """Handle control events until the parties (``only`` these, if given) exited or time is up."""
        deadline = time.monotonic() + seconds
        while [h for h in self._running() if only is None or h.name in only]:
            ev = self._next_event(deadline)
            if ev is None:
                return
            h = self.handles.get(ev.party)
            if h is None:
                continue
            if ev.type == "exited" and h.returncode is None:
                h.returncode = ev.data.get("code")
            elif ev.type == "eof" and ev.kind == "supervisor" and h.returncode is None:
                code = self.backend.exit_code(h)
                h.returncode = code if code is not None else -signal.SIGKILL
            elif ev.type == "done":
                h.state, h.summary = "done", ev.data.get("summary") or {}

    def stop_all(self, grace: float | None = None) -> list[str]:
        """Stop every party still running: ``stop`` message, then SIGTERM, then SIGKILL, each
        after ``grace`` seconds; finally SIGKILL what is left in each party's process group.

        Only this run's process groups are signalled. Ctrl-C, SIGTERM and SIGHUP are ignored while
        stopping so that a second one cannot leave processes behind. Returns the names that had to be stopped.
        """
        grace = self.grace if grace is None else grace
        in_main = threading.current_thread() is threading.main_thread()
        old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _STOP_MASKED} if in_main else {}
        try:
            stopped = [h.name for h in self._running()]
            # Querying parties first: they finish the query in flight and record what they have,
            # instead of seeing their answering parties vanish mid-query.
            clients = [h for h in self._running() if h.role == "qp"]
            for h in clients:
                self.control.send(h.name, {"type": "stop"})
            if clients:
                self._drain_until_exited(grace, only=[h.name for h in clients])
            for h in self._running():
                self.control.send(h.name, {"type": "stop"})
            self._drain_until_exited(grace)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                running = self._running()
                if not running:
                    break
                for h in running:
                    self._log_line(f"sending {signal.Signals(sig).name} to {h.name} "
                                   f"(process group {h.pgid})")
                    signal_group(h.pgid, sig)
                self._drain_until_exited(grace if sig == signal.SIGTERM else 10.0)
            for h in self.handles.values():
                # Helpers a party left behind in its group go too; an empty group is a no-op.
                signal_group(h.pgid, signal.SIGKILL)
            if stopped:
                self._log_line(f"stopped {', '.join(stopped)}")
            return stopped
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def close(self) -> None:
        """Stop all parties, close the control socket and the backend (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop_all()
        finally:
            self.backend.close(keep=self.debug)
            self.control.close()
            if self._sock_dir is not None:
                shutil.rmtree(self._sock_dir, ignore_errors=True)
            self._log.close()

    def __enter__(self) -> "Launcher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
