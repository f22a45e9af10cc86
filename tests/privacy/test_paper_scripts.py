"""scripts/paper/: each script's tiny setting runs end to end, writes CSV + PNG + JSON, and resumes."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "paper" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_answered_vs_eps_tiny_runs_and_resumes(tmp_path, monkeypatch):
    mod = _load("answered_vs_eps")
    argv = ["--out", str(tmp_path), "--eps", "0.5,1", "--num_queries", "300"]
    assert mod.main(argv) == 0
    rows = list(csv.DictReader((tmp_path / "answered_vs_eps.csv").open()))
    assert [(r["histograms"], float(r["epsilon"])) for r in rows] == [
        ("unanimous", 0.5), ("unanimous", 1.0), ("realistic", 0.5), ("realistic", 1.0)]
    # The paper's accounting answers more than the protocol's data-independent ledger on unanimous votes.
    assert all(float(r["paper_answered"]) > int(r["protocol_answered"]) for r in rows if r["histograms"] == "unanimous")
    assert (tmp_path / "answered_vs_eps.png").stat().st_size > 1000
    meta = json.loads((tmp_path / "answered_vs_eps.json").read_text())
    assert meta["histograms_are"] == "synthetic" and "numpy" in meta["versions"]

    calls = []
    # Resume: nothing already in the CSV is recomputed, only the new epsilon (once per histogram kind).
    import capc.privacy.simulate as sim

    orig = sim.paper_accounting_simulation_only
    monkeypatch.setattr(sim, "paper_accounting_simulation_only", lambda *a, **k: calls.append(a[3]) or orig(*a, **k))
    assert mod.main(argv[:3] + ["0.5,1,2", "--num_queries", "300"]) == 0
    assert calls == [2.0, 2.0]
    assert len(list(csv.DictReader((tmp_path / "answered_vs_eps.csv").open()))) == 6


def test_answered_vs_eps_bad_input_is_named(tmp_path, capsys):
    mod = _load("answered_vs_eps")
    assert mod.main(["--out", str(tmp_path), "--histograms", "bogus"]) == 2
    assert "bogus" in capsys.readouterr().err
