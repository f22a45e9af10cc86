"""scripts/paper/: each script's tiny setting runs end to end, writes CSV + PNG + JSON, and resumes."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

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


def test_answered_vs_eps_on_real_teachers_votes(tmp_path, monkeypatch):
    """Real histograms: K teachers on disjoint slices vote on the query pool; every histogram sums to
    K, the votes are cached (a rerun trains nothing) and the JSON says the votes are real."""
    mod = _load("answered_vs_eps")
    argv = ["--out", str(tmp_path), "--histograms", "digits", "--teachers", "8", "--num_queries", "60",
            "--eps", "1,4", "--threshold", "5", "--sigma_threshold", "2", "--sigma_gnmax", "2"]
    assert mod.main(argv) == 0
    cache = tmp_path / "votes_digits_K8_seed0.npz"
    import numpy as np

    with np.load(cache) as z:
        votes, labels = z["votes"], z["labels"]
    assert votes.shape == (60, 10) and (votes.sum(axis=1) == 8).all()
    # real teachers mostly agree with the true label: the plurality is right far above chance
    assert (votes.argmax(axis=1) == labels).mean() > 0.6
    rows = list(csv.DictReader((tmp_path / "answered_vs_eps.csv").open()))
    assert [float(r["epsilon"]) for r in rows] == [1.0, 4.0]
    assert float(rows[0]["paper_answered"]) <= float(rows[1]["paper_answered"])
    meta = json.loads((tmp_path / "answered_vs_eps.json").read_text())
    assert meta["histograms_are"] == "real teachers' votes on digits"
    import sklearn.linear_model as lm

    monkeypatch.setattr(lm, "LogisticRegression", None)  # training again would fail
    assert mod.main(argv[:-8] + ["--eps", "1,4,8", "--threshold", "5", "--sigma_threshold", "2",
                                 "--sigma_gnmax", "2"]) == 0
    assert len(list(csv.DictReader((tmp_path / "answered_vs_eps.csv").open()))) == 3


def test_answered_vs_eps_bad_input_is_named(tmp_path, capsys):
    mod = _load("answered_vs_eps")
    assert mod.main(["--out", str(tmp_path), "--histograms", "bogus"]) == 2
    assert "bogus" in capsys.readouterr().err


@pytest.mark.slow  # about 10 s here, most of it importing TensorFlow and training three tiny models
def test_ensemble_vs_sigma_tiny_runs_and_resumes(tmp_path, monkeypatch):
    pytest.importorskip("keras")
    mod = _load("ensemble_vs_sigma")
    argv = ["--out", str(tmp_path), "--n_parties", "3", "--epochs", "1", "--num_queries", "40",
            "--sigmas", "0.5,20", "--noise_seeds", "0"]
    assert mod.main(argv) == 0
    rows = list(csv.DictReader((tmp_path / "ensemble_vs_sigma.csv").open()))
    assert [float(r["sigma_G"]) for r in rows] == [0.5, 20.0]
    # More noise costs accuracy and buys a smaller per-answer epsilon.
    assert float(rows[1]["epsilon_per_answer"]) < float(rows[0]["epsilon_per_answer"])
    assert float(rows[1]["label_accuracy"]) < float(rows[0]["label_accuracy"])
    assert (tmp_path / "ensemble_vs_sigma.png").stat().st_size > 1000
    assert json.loads((tmp_path / "ensemble_vs_sigma.json").read_text())["seeds"]["noise"] == [0]

    def no_training(_args):
        raise AssertionError("resumed run retrained the teachers")

    monkeypatch.setattr(mod, "_votes", no_training)
    assert mod.main(argv) == 0  # everything already in the CSV: nothing recomputed
    assert len(list(csv.DictReader((tmp_path / "ensemble_vs_sigma.csv").open()))) == 2


@pytest.mark.slow  # trains and retrains tiny models: about 15 s here
def test_accuracy_vs_eps_tiny_runs_and_resumes(tmp_path, monkeypatch):
    pytest.importorskip("keras")
    mod = _load("accuracy_vs_eps")
    argv = ["--out", str(tmp_path), "--n_parties", "3", "--queries_per_party", "20", "--budgets", "20",
            "--epochs", "1", "--retrain_seeds", "11", "--model_seeds", "0"]
    assert mod.main(argv) == 0
    [row] = list(csv.DictReader((tmp_path / "accuracy_vs_eps.csv").open()))
    assert float(row["budget_eps"]) == 20.0 and float(row["epsilon_protocol"]) <= 20.0
    assert int(row["queries_answered"]) >= 0 and 0.0 < float(row["accuracy_before"]) <= 1.0
    assert (tmp_path / "accuracy_vs_eps.png").stat().st_size > 1000
    assert json.loads((tmp_path / "accuracy_vs_eps.json").read_text())["seeds"]["retrain"] == [11]

    import capc.learning.simulation as simulation

    def no_rerun(_cfg):
        raise AssertionError("resumed run recomputed a budget already in the CSV")

    monkeypatch.setattr(simulation, "run_learning_simulation", no_rerun)
    assert mod.main(argv) == 0
    assert len(list(csv.DictReader((tmp_path / "accuracy_vs_eps.csv").open()))) == 1
