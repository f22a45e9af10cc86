"""What every party process shares: its identity, run file, TLS material, log, timing file and the
launcher's control connection.

The transport calls (listen, connect) are wrapped here so the role modules read as protocol steps.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from capc.errors import ConfigError
from capc.parties.crypto import Providers, real_providers
from capc.parties.runconfig import RunConfig

if TYPE_CHECKING:
    from capc.net.channel import Channel


#: Environment variable with the parties' log level (``DEBUG`` or ``INFO``); the launcher sets
#: ``DEBUG`` for ``--debug``.
LOG_LEVEL_ENV = "CAPC_LOG_LEVEL"
_LIBRARY_LOGGERS = ("capc.net", "capc.gc", "capc.he")


def log_level() -> int:
    """The level named by :data:`LOG_LEVEL_ENV` (default INFO); an unknown name is an error, not a
    silent fallback."""
    name = os.environ.get(LOG_LEVEL_ENV, "INFO").strip().upper() or "INFO"
    if name not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"{LOG_LEVEL_ENV}={name!r}: expected DEBUG, INFO, WARNING or ERROR")
    return getattr(logging, name)


def party_logger(name: str) -> logging.Logger:
    """A logger writing ``time party: message`` lines to stderr (the launcher routes stderr to the
    party's log file or tmux pane). One handler per logger: the original added a handler to the root
    logger on every call and printed every line several times.  At DEBUG (``--debug``) capc's
    library loggers (messages sent and received, with their sizes) write to the same stream."""
    log = logging.getLogger(f"capc.party.{name}")
    if not log.handlers:
        level = log_level()
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter(f"%(asctime)s {name}: %(message)s", "%H:%M:%S"))
        log.addHandler(h)
        log.setLevel(level)
        log.propagate = False
        if level <= logging.DEBUG:
            lib = logging.StreamHandler(sys.stderr)
            lib.setFormatter(logging.Formatter(f"%(asctime)s {name} [%(name)s]: %(message)s", "%H:%M:%S"))
            for lib_name in _LIBRARY_LOGGERS:
                lib_log = logging.getLogger(lib_name)
                if not lib_log.handlers:
                    lib_log.addHandler(lib)
                    lib_log.setLevel(logging.DEBUG)
                    lib_log.propagate = False
    return log


class TimingLog:
    """Appends ``{"party", "step", "query", "seconds", "t"}`` JSON lines to ``timing-<party>.jsonl``."""

    def __init__(self, run_dir: str | Path, party: str) -> None:
        self.path = Path(run_dir) / f"timing-{party}.jsonl"
        self.party = party
        self._lock = threading.Lock()

    def record(self, step: str, seconds: float, query: int | None = None, **extra: Any) -> None:
        line = json.dumps({"party": self.party, "step": step, "query": query, "seconds": round(seconds, 6),
                           "t": time.time(), **extra})
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    @contextmanager
    def span(self, step: str, query: int | None = None, **extra: Any) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.record(step, time.perf_counter() - t0, query, **extra)


@dataclass
class PartyContext:
    """The facts and helpers a role implementation needs."""

    cfg: RunConfig
    name: str
    log: logging.Logger
    timing: TimingLog
    control: Any = None  # capc.launcher.control.ControlClient, when started by the launcher
    #: the crypto of this party's roles (real, or plaintext for --cpu and the in-process tests)
    providers: Providers = field(default_factory=real_providers)
    #: opens a channel to a peer by party name: mutual TLS by default, in-memory pairs in the
    #: in-process harness (:mod:`capc.parties.inprocess`)
    connector: Callable[[str], Channel] | None = None

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.run_dir)

    def tls(self) -> Any:
        """This party's mutual-TLS material from the run's PKI directory."""
        from capc.net.tls import PartyTLS

        return PartyTLS.load(self.cfg.pki_dir, self.name)

    def connect(self, peer: str) -> Channel:
        """A channel to party ``peer``."""
        if self.connector is not None:
            return self.connector(peer)
        from capc.parties.transport import connect_to

        return connect_to(self, peer)

    def report(self, kind: str, **data: Any) -> None:
        """Send a ``ready``/``progress``/``done``/``failed`` event to the launcher, if there is one."""
        if self.control is not None:
            try:
                getattr(self.control, kind)(**data)
            except Exception as exc:  # the launcher going away must not kill a protocol step
                self.log.warning("could not report %s to the launcher: %s", kind, exc)
