"""Parties on separate hosts: every party in its own network namespace, started with ``capc party``.

Each party's namespace has its own address on a private switch (a bridge inside a namespace of its
own, so nothing touches the host's network), reached through a veth pair; loopback inside a party's
namespace reaches only that party. Each party gets a directory of its own holding its run file, the
CA certificate, its own certificate and key and (QP, APs) its model, and writes its results, ledger and
logs there: nothing is shared between the parties but the wire. Addresses are from 198.18.0.0/15, the
range reserved for network test beds; every namespace is removed at the end.

Needs root and ``ip netns`` (CI runs as root); skipped with the reason otherwise.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from capc.net.certs import CA_CERT_FILE
from capc.parties.runconfig import load_run_config, save_run_config

from .protocol_harness import ap_predictions, clear_margin_queries, make_run, plurality

pytestmark = pytest.mark.timeout(600)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _netns_available() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2 ('ip')"
    probe = f"capc-probe-{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"cannot create a network namespace here: {exc.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


class Switch:
    """A bridge in a namespace of its own, and one namespace per party plugged into it."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.hub = f"capc-{self.tag}-sw"
        self.spaces: list[str] = []
        _ip("netns", "add", self.hub)
        self.spaces.append(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")

    def host(self, index: int) -> tuple[str, str]:
        """Create party namespace number ``index``; returns (namespace, address)."""
        ns, addr = f"capc-{self.tag}-{index}", f"198.18.0.{10 + index}"
        _ip("netns", "add", ns)
        self.spaces.append(ns)
        inner, outer = f"v{self.tag}{index}a", f"v{self.tag}{index}b"
        _ip("link", "add", inner, "netns", ns, "type", "veth", "peer", "name", outer, "netns", self.hub)
        _ip("-n", self.hub, "link", "set", outer, "master", "br0", "up")
        _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", inner)
        _ip("-n", ns, "link", "set", inner, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        return ns, addr

    def close(self) -> None:
        for ns in reversed(self.spaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_parties_in_separate_network_namespaces(tmp_path):
    reason = _netns_available()
    if reason:
        pytest.skip(reason)
    n_aps = 2
    queries = clear_margin_queries(n_aps, 2)
    # the local-run helper makes the PKI, models and a run file; the hosts then get only their share
    base = make_run(tmp_path / "made", n_aps, queries)
    switch = Switch()
    procs: dict[str, subprocess.Popen] = {}
    try:
        names = [p.name for p in base.cfg.parties]
        places = {name: switch.host(i) for i, name in enumerate(names)}
        port = 7443
        dirs: dict[str, Path] = {}
        for p in base.cfg.parties:
            # what the launcher gives this party (its run file, the CA certificate, its own key) ...
            src = base.run_files[p.name].parent
            d = tmp_path / "hosts" / p.name
            d.mkdir(parents=True)
            for f in (CA_CERT_FILE, f"{p.name}.pem", f"{p.name}.key"):
                shutil.copy(src / f, d / f)
            own = load_run_config(base.run_files[p.name])
            # ... moved to its host: its address on the switch, its own directory, its model copied over
            moved = tuple(dataclasses.replace(q, host=places[q.name][1], port=port) for q in own.parties)
            if own.party(p.name).model is not None:
                model = Path(own.party(p.name).model)
                shutil.copy(model, d / model.name)
                moved = tuple(dataclasses.replace(q, model=str(d / model.name)) if q.name == p.name else q
                              for q in moved)
            save_run_config(dataclasses.replace(own, run_dir=str(d), pki_dir=str(d), parties=moved), d / "RUN.json")
            dirs[p.name] = d
        # nothing of another party is in a host's directory
        for name, d in dirs.items():
            others = {f"{o}{ext}" for o in names if o != name for ext in (".pem", ".key")}
            assert not others & {f.name for f in d.iterdir()}, name
            assert not (d / "ca.key").exists()

        def start(name: str, role: str) -> subprocess.Popen:
            log = open(dirs[name] / "party.log", "ab")
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            env.pop("CAPC_CONTROL_SOCKET", None)
            proc = subprocess.Popen(["ip", "netns", "exec", places[name][0], sys.executable, "-m", "capc.cli",
                                     "party", "--role", role, "--name", name, "--run", str(dirs[name] / "RUN.json")],
                                    cwd=dirs[name], stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
            log.close()
            procs[name] = proc
            return proc

        for p in base.cfg.parties:
            if p.role != "qp":
                start(p.name, p.role)
        qp = start("qp-0", "qp")
        status = qp.wait(300)
        assert status == 0, (dirs["qp-0"] / "party.log").read_text()[-3000:]
        import json

        results = json.loads((dirs["qp-0"] / "results-qp-0.json").read_text())
        assert [q["query_id"] for q in results["queries"]] == queries
        got = [q["label"] if q["answered"] else None for q in results["queries"]]
        assert got == plurality(ap_predictions(n_aps, queries))
        # the APs and the PG are still serving, each in its own namespace, and wrote only there
        assert all(procs[n].poll() is None for n in names if n != "qp-0")
        assert (dirs["pg"] / "privacy_ledger.sqlite").exists()
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, 15)
                    proc.wait(20)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(proc.pid, 9)
                    proc.wait(20)
        switch.close()
