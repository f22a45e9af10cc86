"""Every party of a run in one process: the roles in threads, their channels in memory.

The querying party, the answering parties and the privacy guardian are the very role objects a
real run uses (:mod:`capc.parties.querying_party`, :mod:`~capc.parties.answering_party`,
:mod:`~capc.parties.privacy_guardian`), with the same messages, label store and ledger; only the
transport (in-memory socket pairs instead of mutual TLS) and, usually, the crypto (the plaintext
providers of :mod:`capc.parties.plaintext`) differ. ``--cpu`` runs this way, and so do the role tests,
in milliseconds (CrypTen's all-parties-in-one-test pattern).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from capc.net.channel import Channel, channel_pair
from capc.net.errors import ConnectError
from capc.parties.answering_party import AnsweringParty
from capc.parties.common import PartyContext, TimingLog, party_logger
from capc.parties.crypto import Providers
from capc.parties.privacy_guardian import PrivacyGuardian
from capc.parties.runconfig import RunConfig, party_view


class InProcessRun:
    """One run's parties in this process. ``down`` names parties that refuse connections (a party
    that is not there); :meth:`restart_pg` replaces the privacy guardian by a fresh one on the same
    ledger, as a restarted process would be."""

    def __init__(self, cfg: RunConfig, providers: Providers, log_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.providers = providers
        self.log_dir = log_dir  # each party's log goes to <log_dir>/<name>.log (default: stderr)
        self.down: set[str] = set()
        self.threads: list[threading.Thread] = []
        self.errors: list[tuple[str, BaseException]] = []  # a server session that ended with an error
        self.aps = {p.name: AnsweringParty(self.context(p.name)) for p in cfg.answering_parties}
        self.pg = PrivacyGuardian(self.context("pg"))

    def context(self, name: str) -> PartyContext:
        """The context party ``name`` runs with: its own view of the run file, the in-memory
        connector, the run's providers."""
        Path(self.cfg.run_dir).mkdir(parents=True, exist_ok=True)
        cfg = party_view(self.cfg, name, self.cfg.pki_dir)
        return PartyContext(cfg=cfg, name=name, log=self._logger(name),
                            timing=TimingLog(self.cfg.run_dir, name), providers=self.providers,
                            connector=lambda peer: self.connect(name, peer))

    def _logger(self, name: str) -> logging.Logger:
        if self.log_dir is None:
            return party_logger(name)
        log = logging.getLogger(f"capc.inprocess.{self.cfg.run_id}.{name}")
        if not log.handlers:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            h = logging.FileHandler(self.log_dir / f"{name}.log", encoding="utf-8")
            h.setFormatter(logging.Formatter(f"%(asctime)s {name}: %(message)s", "%H:%M:%S"))
            log.addHandler(h)
            log.setLevel(logging.INFO)
            log.propagate = False
        return log

    def connect(self, me: str, peer: str) -> Channel:
        """``me``'s end of a new channel to ``peer``; ``peer``'s end is served in a thread."""
        if peer in self.down:
            raise ConnectError(f"{peer} is not reachable (it is down)")
        mine, theirs = channel_pair(me, peer, default_timeout=self.cfg.protocol.timeout)
        if peer == "pg":
            handler = self.pg.handle
        elif peer in self.aps:
            handler = self.aps[peer].serve_connection
        else:
            raise ConnectError(f"{peer} is not a server of this run")

        def serve() -> None:
            try:
                handler(theirs, me)
            except Exception as exc:  # as transport.serve does: one bad session never takes the party down
                self.errors.append((peer, exc))

        t = threading.Thread(target=serve, name=f"{peer}<-{me}", daemon=True)
        t.start()
        self.threads.append(t)
        return mine

    def restart_pg(self) -> None:
        """A new privacy guardian on the same ledger file (its sessions with the old one are gone)."""
        self.pg = PrivacyGuardian(self.context("pg"))

    def run_querying_party(self, name: str = "") -> dict:
        """Run the querying party through the run's queries; return its results file's content."""
        import json

        from capc.parties.main import run_querying_party

        qp = name or self.cfg.by_role("qp")[0].name
        run_querying_party(self.context(qp))
        return json.loads((Path(self.cfg.run_dir) / f"results-{qp}.json").read_text())

    def close(self, timeout: float = 30.0) -> None:
        """Stop the answering parties' channels to the PG and wait for every server session to end
        (after the QP closed its channels)."""
        for ap in self.aps.values():
            ap.close()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
