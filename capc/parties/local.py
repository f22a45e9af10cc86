"""Run a whole CaPC run's party processes on this machine without the launcher.

For benchmarks and integration tests: :func:`make_local_run` writes a run directory (run CA and
certificates, one directory per party with only its own run file and key, one model per party) and :class:`LocalRun` starts each party as its own
``capc party`` process with its output in ``logs/<name>.log``. Every byte between parties still goes
through the real protocol code over mutual-TLS sockets on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capc.learning.default_models import default_model_paths
from capc.net.certs import make_run_pki
from capc.parties.runconfig import ProtocolParams, RunConfig, new_run_config, write_party_files

PROCESS_TIMEOUT = 300


@dataclass
class LocalRun:
    """The processes of one local run."""

    cfg: RunConfig
    run_files: dict[str, Path]  # each party's own run file (parties/<name>/run.json)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        """The run directory."""
        return Path(self.cfg.run_dir)

    def log(self, name: str) -> Path:
        """A party's log file (stdout and stderr)."""
        return self.dir / "logs" / f"{name}.log"

    def start(self, name: str, env: dict[str, str] | None = None, program: list[str] | None = None) -> subprocess.Popen:
        """Start party ``name`` in its own process group; ``env`` adds environment variables and
        ``program`` replaces ``python -m capc.cli`` (tests run a party with a fault injected this way)."""
        role = self.cfg.party(name).role
        self.log(name).parent.mkdir(exist_ok=True)
        out = open(self.log(name), "ab")
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        full_env.pop("CAPC_CONTROL_SOCKET", None)  # not launched by the launcher: no control channel
        env = full_env
        argv = program or [sys.executable, "-m", "capc.cli"]
        p = subprocess.Popen([*argv, "party", "--role", role, "--name", name, "--run", str(self.run_files[name])],
                             stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        out.close()
        self.procs[name] = p
        return p

    def start_servers(self) -> None:
        """Start the privacy guardian and every answering party."""
        for p in self.cfg.parties:
            if p.role != "qp":
                self.start(p.name)

    def run_qp(self, timeout: float = PROCESS_TIMEOUT) -> int:
        """Run the querying party through the run's queries; return its exit status."""
        qp = self.start("qp-0")
        return qp.wait(timeout)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to a party's process group and reap it."""
        p = self.procs[name]
        if p.poll() is None:
            os.killpg(p.pid, sig)
            p.wait(30)

    def stop_all(self) -> None:
        """Stop every party still running (SIGTERM, then SIGKILL)."""
        for name, p in self.procs.items():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(15)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(15)

    def results(self) -> dict[str, Any]:
        """The querying party's results file."""
        return json.loads((self.dir / "results-qp-0.json").read_text())

    def labels(self) -> dict[int, int | None]:
        """query pool item -> label (None when not answered)."""
        return {q["query_id"]: (q["label"] if q["answered"] else None) for q in self.results()["queries"]}


def make_local_run(base: Path, n_aps: int, queries: list[int], dataset: str = "digits",
                   query_file: str | None = None, model_type: str = "cryptonets", **protocol: Any) -> "LocalRun":
    """A run directory under ``base`` with PKI, default ``model_type`` models for ``dataset`` (party 0 =
    QP) and each party's run file; ``query_file`` replaces the dataset's query pool; ``protocol``
    overrides the declared defaults of :class:`ProtocolParams` (those of ``run_experiment.py``)."""
    models = default_model_paths(n_aps + 1, dataset=dataset, model_type=model_type)
    run_dir = base / "run"
    run_dir.mkdir(parents=True)
    cfg = new_run_config("local", run_dir, models, ProtocolParams(**protocol), queries, dataset=dataset,
                         query_file=query_file)
    make_run_pki(run_dir / "pki", [p.name for p in cfg.parties])
    return LocalRun(cfg, write_party_files(cfg, run_dir / "pki", run_dir))
