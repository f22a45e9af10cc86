"""Start real CaPC party processes on 127.0.0.1 from a RUN.json, for the integration tests.

Every party is its own ``capc party`` process; all traffic goes over mutual-TLS sockets; nothing is
mocked. The harness also computes what the protocol must reproduce: each AP's own plaintext
prediction (argmax of its logits, lowest index on ties) and their plurality.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from capc.learning.datasets import load_dataset
from capc.learning.default_models import default_model_paths
from capc.learning.models import load_model, predict_logits
from capc.net.certs import make_run_pki
from capc.parties.runconfig import PartyEntry, ProtocolParams, RunConfig, save_run_config

PROCESS_TIMEOUT = 300


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@dataclass
class Run:
    cfg: RunConfig
    run_file: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return Path(self.cfg.run_dir)

    def log(self, name: str) -> Path:
        return self.dir / "logs" / f"{name}.log"

    def start(self, name: str) -> subprocess.Popen:
        role = self.cfg.party(name).role
        self.log(name).parent.mkdir(exist_ok=True)
        out = open(self.log(name), "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("CAPC_CONTROL_SOCKET", None)
        p = subprocess.Popen([sys.executable, "-m", "capc.cli", "party", "--role", role, "--name", name,
                              "--run", str(self.run_file)], stdout=out, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
        out.close()
        self.procs[name] = p
        return p

    def start_servers(self) -> None:
        for p in self.cfg.parties:
            if p.role != "qp":
                self.start(p.name)

    def run_qp(self, timeout: float = PROCESS_TIMEOUT) -> int:
        qp = self.start("qp-0")
        return qp.wait(timeout)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs[name]
        if p.poll() is None:
            os.killpg(p.pid, sig)
            p.wait(30)

    def stop_all(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(15)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(15)

    def results(self) -> dict[str, Any]:
        return json.loads((self.dir / "results-qp-0.json").read_text())

    def labels(self) -> dict[int, int | None]:
        return {q["query_id"]: (q["label"] if q["answered"] else None) for q in self.results()["queries"]}


def make_run(tmp_path: Path, n_aps: int, queries: list[int], **protocol: Any) -> Run:
    """A run directory with PKI, default digits models (party 0 = QP) and RUN.json."""
    models = default_model_paths(n_aps + 1)
    names = ["qp-0"] + [f"ap-{i}" for i in range(1, n_aps + 1)] + ["pg"]
    ports = free_ports(len(names))
    parties = [PartyEntry("qp-0", "127.0.0.1", ports[0], str(models[0]))]
    parties += [PartyEntry(f"ap-{i}", "127.0.0.1", ports[i], str(models[i])) for i in range(1, n_aps + 1)]
    parties.append(PartyEntry("pg", "127.0.0.1", ports[-1]))
    defaults = dict(frac_bits=8, hiding_bits=36, logit_bound=16.0, vote_scale_exp=4, sigma_gnmax=0.0,
                    sigma_threshold=0.0, threshold=0.0, budget_eps=float("inf"), timeout=120.0)
    defaults.update(protocol)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    make_run_pki(run_dir / "pki", names)
    cfg = RunConfig(run_id="itest", run_dir=str(run_dir), pki_dir=str(run_dir / "pki"), parties=tuple(parties),
                    protocol=ProtocolParams(**defaults), queries=tuple(queries), dataset="digits")
    return Run(cfg, save_run_config(cfg, run_dir / "RUN.json"))


def ap_predictions(n_aps: int, query_ids: list[int]) -> np.ndarray:
    """predictions[j, k]: AP j+1's own plaintext argmax (lowest index on ties) on query k."""
    ds = load_dataset("digits")
    x = ds.x_query[query_ids]
    models = default_model_paths(n_aps + 1)[1:]
    return np.stack([np.argmax(predict_logits(load_model(m), x), axis=1) for m in models])


def clear_margin_queries(n_aps: int, count: int, margin: float = 0.05, start: int = 0) -> list[int]:
    """Query ids on which every AP's top-two logits differ by more than ``margin`` (so the fixed-point
    and CKKS approximations cannot flip any AP's vote)."""
    ds = load_dataset("digits")
    x = ds.x_query
    models = default_model_paths(n_aps + 1)[1:]
    ok = np.ones(len(x), dtype=bool)
    for m in models:
        z = np.sort(predict_logits(load_model(m), x), axis=1)
        ok &= (z[:, -1] - z[:, -2]) > margin
    ids = [int(i) for i in np.flatnonzero(ok) if i >= start]
    return ids[:count]


def plurality(preds: np.ndarray, num_classes: int = 10) -> list[int]:
    return [int(np.argmax(np.bincount(preds[:, k], minlength=num_classes))) for k in range(preds.shape[1])]
