"""The control channel between the launcher and its party processes (replaces sleeps and polling).

The launcher listens on a Unix domain socket in the run directory (mode 0600). Each party process
connects with :class:`ControlClient` and speaks newline-delimited JSON objects with a ``type``:

party -> launcher
    ``hello {party, kind, token, pid}`` (first line; answered by ``welcome`` or ``rejected``),
    ``ready {endpoint}``, ``progress {data}``, ``done {summary}``, ``failed {reason}``;
    a pane supervisor (tmux mode, ``kind="supervisor"``) also sends ``exited {code}``.
launcher -> party
    ``welcome {...}``, ``rejected {reason}``, ``stop {}``, or any message the protocol runner sends.

The launcher learns of a party's death from EOF on its connection (and, in subprocess mode, from
the exit code). The per-run ``token`` (passed in the party's environment) keeps a process of
another run from joining. Environment variables read by :meth:`ControlClient.from_env`:
``CAPC_CONTROL_SOCKET``, ``CAPC_PARTY_NAME``, ``CAPC_CONTROL_TOKEN``.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import selectors
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from capc.launcher.errors import ControlError

ENV_SOCKET = "CAPC_CONTROL_SOCKET"
ENV_PARTY = "CAPC_PARTY_NAME"
ENV_TOKEN = "CAPC_CONTROL_TOKEN"
#: Longest accepted message line; longer lines are a protocol error (guards the launcher's memory).
MAX_LINE = 1 << 20
#: Linux limits AF_UNIX paths to 107 bytes plus the terminating NUL.
MAX_UNIX_PATH = 107
#: Event types a party may send.
PARTY_EVENTS = frozenset({"ready", "progress", "done", "failed"})
SUPERVISOR_EVENTS = frozenset({"exited"})


def encode(message: dict[str, Any]) -> bytes:
    """One message as a JSON line."""
    return (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode("utf-8")


@dataclass
class ControlEvent:
    """Something the launcher learned about a party.

    ``type`` is a message type from the party, or one of the server's own: ``connected``, ``eof``
    (connection closed), ``protocol_error`` (bad line), ``exited`` (with ``data["code"]``).
    ``kind`` is ``"party"`` or ``"supervisor"`` (the tmux pane wrapper), or ``"process"`` for exit
    events from the subprocess watcher.
    """

    party: str
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    kind: str = "party"
    time: float = field(default_factory=time.monotonic)


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.party: str | None = None
        self.kind = "party"
        self.send_lock = threading.Lock()


class ControlServer:
    """Listens on a Unix socket; turns party messages into :class:`ControlEvent` s on ``events``.

    ``authorize(party, kind, hello)`` decides whether a connecting process may join: it returns
    the ``welcome`` payload (a dict) or a rejection reason (a str). One I/O thread serves all
    connections through a selector; sending happens from the caller's thread.
    """

    def __init__(self, path: Path, token: str, events: "queue.Queue[ControlEvent]",
                 authorize: Callable[[str, str, dict[str, Any]], dict[str, Any] | str]) -> None:
        self.path = Path(path)
        if len(os.fsencode(str(self.path))) > MAX_UNIX_PATH:
            raise ControlError(f"control socket path is longer than {MAX_UNIX_PATH} bytes: "
                               f"{str(self.path)!r}")
        self.token = token
        self.events = events
        self._authorize = authorize
        self._sel = selectors.DefaultSelector()
        self._conns: dict[tuple[str, str], _Conn] = {}
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        self._closing = False
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket file is created 0600: only this user may connect
        try:
            self._listener.bind(str(self.path))
        except OSError as exc:
            self._listener.close()
            raise ControlError(f"cannot listen on control socket {str(self.path)!r}: {exc}") from None
        finally:
            os.umask(old_umask)
        self._listener.listen(64)
        self._listener.setblocking(False)
        self._sel.register(self._listener, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._loop, name="capc-control", daemon=True)
        self._thread.start()

    # -- I/O thread ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._closing:
            for key, _ in self._sel.select():
                if key.data == "wake":
                    os.read(self._wake_r, 64)
                elif key.data == "listen":
                    self._accept()
                else:
                    self._read(key.data)
        for key in list(self._sel.get_map().values()):
            if isinstance(key.data, _Conn):
                key.data.sock.close()

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        sock.setblocking(True)
        sock.settimeout(10.0)  # bounds sendall if a party stops reading
        self._sel.register(sock, selectors.EVENT_READ, _Conn(sock))

    def _drop(self, conn: _Conn, reason: str | None) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(conn.sock)
        conn.sock.close()
        if conn.party is not None:
            with self._lock:
                if self._conns.get((conn.party, conn.kind)) is conn:
                    del self._conns[(conn.party, conn.kind)]
            data = {"reason": reason} if reason else {}
            if reason:
                self.events.put(ControlEvent(conn.party, "protocol_error", data, conn.kind))
            self.events.put(ControlEvent(conn.party, "eof", {}, conn.kind))

    def _read(self, conn: _Conn) -> None:
        try:
            chunk = conn.sock.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(conn, None)
            return
        conn.buf += chunk
        while b"\n" in conn.buf:
            line, conn.buf = conn.buf.split(b"\n", 1)
            if not line.strip():
                continue
            if not self._handle(conn, line):
                return
        if len(conn.buf) > MAX_LINE:
            self._drop(conn, f"message longer than {MAX_LINE} bytes")

    def _handle(self, conn: _Conn, line: bytes) -> bool:
        try:
            msg = json.loads(line)
            if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
                raise ValueError("not a JSON object with a string 'type'")
        except (ValueError, UnicodeDecodeError) as exc:
            self._drop(conn, f"bad control message: {exc}")
            return False
        kind = msg.get("type")
        if conn.party is None:
            return self._hello(conn, msg)
        allowed = PARTY_EVENTS if conn.kind == "party" else SUPERVISOR_EVENTS
        if kind not in allowed:
            self._drop(conn, f"unknown control message type {kind!r}")
            return False
        data = {k: v for k, v in msg.items() if k != "type"}
        self.events.put(ControlEvent(conn.party, kind, data, conn.kind))
        return True

    def _hello(self, conn: _Conn, msg: dict[str, Any]) -> bool:
        party, kind = msg.get("party"), msg.get("kind", "party")
        reason: str | None = None
        welcome: dict[str, Any] | str = {}
        if msg.get("type") != "hello" or not isinstance(party, str) or not party:
            reason = "first message must be hello with a party name"
        elif kind not in ("party", "supervisor"):
            reason = f"unknown connection kind {kind!r}"
        elif msg.get("token") != self.token:
            reason = "wrong run token (is this process from another run?)"
        else:
            with self._lock:
                taken = (party, kind) in self._conns
            if taken:
                reason = f"{party!r} is already connected"
            else:
                welcome = self._authorize(party, kind, msg)
                if isinstance(welcome, str):
                    reason = welcome
        if reason is not None:
            with contextlib.suppress(OSError):
                conn.sock.sendall(encode({"type": "rejected", "reason": reason}))
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(conn.sock)
            conn.sock.close()
            return False
        assert isinstance(welcome, dict)
        conn.party, conn.kind = party, kind
        with self._lock:
            self._conns[(party, kind)] = conn
        try:
            conn.sock.sendall(encode({"type": "welcome", **welcome}))
        except OSError:
            self._drop(conn, None)
            return False
        self.events.put(ControlEvent(party, "connected", {"pid": msg.get("pid")}, kind))
        return True

    # -- caller's thread ------------------------------------------------------------------------
    def send(self, party: str, message: dict[str, Any], kind: str = "party") -> bool:
        """Send ``message`` to a connected party; False if it is not connected (or went away)."""
        with self._lock:
            conn = self._conns.get((party, kind))
        if conn is None:
            return False
        try:
            with conn.send_lock:
                conn.sock.sendall(encode(message))
        except OSError:
            return False
        return True

    def connected(self, kind: str = "party") -> list[str]:
        """Names of the parties currently connected with ``kind``."""
        with self._lock:
            return [p for (p, k) in self._conns if k == kind]

    def close(self) -> None:
        """Stop the I/O thread, close every connection and remove the socket file."""
        if self._closing:
            return
        self._closing = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5.0)
        self._listener.close()
        self._sel.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class ControlClient:
    """A party's end of the control channel.

    Typical use in a party process::

        with ControlClient.from_env() as ctl, ctl.guard():
            server = listen(...)
            ctl.ready(endpoint=f"{host}:{port}")
            ...                       # protocol work; ctl.stop_requested() is a cheap check
            ctl.done({"queries": 3})

    ``guard()`` reports any exception as ``failed`` before re-raising it. Sending is safe from
    several threads; receiving (``receive``, ``stop_requested``, ``wait_stop``) belongs to one
    thread at a time. A closed channel (the launcher went away) counts as ``stop``.
    """

    def __init__(self, path: str | os.PathLike[str], party_name: str, *, token: str = "",
                 kind: str = "party", timeout: float = 30.0) -> None:
        self.party = party_name
        self.kind = kind
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)  # for connect; reads then wait through a selector
        self._send_lock = threading.Lock()
        self._buf = b""
        self._pending: list[dict[str, Any]] = []
        self._stop = False
        self._finished = False
        try:
            self._sock.connect(os.fspath(path))
            self._sock.settimeout(None)
            self._poll = selectors.DefaultSelector()
            self._poll.register(self._sock, selectors.EVENT_READ)
            self._send({"type": "hello", "party": party_name, "kind": kind, "token": token,
                        "pid": os.getpid()})
            reply = self._read_message(timeout)
        except OSError as exc:
            self._sock.close()
            raise ControlError(f"cannot reach the launcher's control socket {os.fspath(path)!r}: "
                               f"{exc}") from None
        if reply is None or reply.get("type") != "welcome":
            self._sock.close()
            why = reply.get("reason") if reply else "connection closed"
            raise ControlError(f"launcher refused party {party_name!r}: {why}")
        self.welcome = {k: v for k, v in reply.items() if k != "type"}

    @classmethod
    def from_env(cls, kind: str = "party", timeout: float = 30.0) -> "ControlClient":
        """Connect using the variables the launcher puts in each party's environment."""
        missing = [v for v in (ENV_SOCKET, ENV_PARTY, ENV_TOKEN) if not os.environ.get(v)]
        if missing:
            raise ControlError(f"not started by the capc launcher: {', '.join(missing)} not set")
        return cls(os.environ[ENV_SOCKET], os.environ[ENV_PARTY], token=os.environ[ENV_TOKEN],
                   kind=kind, timeout=timeout)

    # -- sending --------------------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        with self._send_lock:
            self._sock.sendall(encode(message))

    def ready(self, endpoint: str | None = None, **extra: Any) -> None:
        """Tell the launcher this party is listening (at ``endpoint``, e.g. ``host:port``)."""
        self._send({"type": "ready", "endpoint": endpoint, **extra})

    def progress(self, **data: Any) -> None:
        """Report progress (free-form JSON fields, e.g. ``query=3, step="1a"``)."""
        self._send({"type": "progress", "data": data})

    def done(self, summary: dict[str, Any] | None = None) -> None:
        """Report successful completion with an optional JSON summary."""
        self._finished = True
        self._send({"type": "done", "summary": summary or {}})

    def failed(self, reason: str) -> None:
        """Report failure with a one-line reason (also said when the process then exits non-zero)."""
        self._finished = True
        with contextlib.suppress(OSError):
            self._send({"type": "failed", "reason": str(reason)})

    def exited(self, code: int) -> None:
        """(Supervisor only) report the supervised party's exit status."""
        self._send({"type": "exited", "code": int(code)})

    # -- receiving ------------------------------------------------------------------------------
    def _read_message(self, timeout: float | None) -> dict[str, Any] | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buf:
            # Wait for data with a selector rather than a socket timeout, so that a sender in
            # another thread is never affected by this reader's deadline.
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._poll.select(left):
                raise TimeoutError("no control message before the deadline")
            chunk = self._sock.recv(65536)
            if not chunk:
                return None
            self._buf += chunk
            if len(self._buf) > MAX_LINE:
                raise ControlError("control message from the launcher is too long")
        line, self._buf = self._buf.split(b"\n", 1)
        msg = json.loads(line)
        if msg.get("type") == "stop":
            self._stop = True
        return msg

    def receive(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next message from the launcher; None if the launcher closed the channel.

        Raises ``TimeoutError`` if nothing arrives within ``timeout`` seconds.
        """
        if self._pending:
            return self._pending.pop(0)
        return self._read_message(timeout)

    def stop_requested(self) -> bool:
        """True once the launcher has sent ``stop`` (or closed the channel); never blocks."""
        if self._stop:
            return True
        try:
            msg = self._read_message(0.0001)
        except TimeoutError:
            return False
        if msg is None:
            self._stop = True
            return True
        if msg.get("type") != "stop":
            self._pending.append(msg)
        return self._stop

    def wait_stop(self, timeout: float | None = None) -> bool:
        """Block until ``stop`` arrives or the channel closes (True) or ``timeout`` passes (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                msg = self._read_message(left)
            except TimeoutError:
                return False
            if msg is None:
                self._stop = True
            elif msg.get("type") != "stop":
                self._pending.append(msg)
        return True

    def fileno(self) -> int:
        """The socket's file descriptor (for selectors in party event loops)."""
        return self._sock.fileno()

    @contextlib.contextmanager
    def guard(self) -> Iterator["ControlClient"]:
        """Report an exception escaping the body as ``failed`` (type and message), then re-raise."""
        try:
            yield self
        except BaseException as exc:
            if not self._finished:
                last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
                where = f" at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno}" if last else ""
                self.failed(f"{type(exc).__name__}: {exc}{where}")
            raise

    def close(self) -> None:
        """Close the connection (the launcher sees EOF)."""
        with contextlib.suppress(OSError, ValueError, KeyError):
            self._poll.close()
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
