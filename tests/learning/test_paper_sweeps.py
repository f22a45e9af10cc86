"""scripts/paper/ sweeps over the learning simulation: each new script's tiny setting runs end to
end, writes CSV + summary + PNG + JSON with sane values, resumes without recomputing, and refuses
bad input before training."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("keras")
pytest.importorskip("capc.privacy.simulate")

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--epochs", "2", "--queries_per_party", "20", "--model_seeds", "0", "--retrain_seeds", "11",
        "--budget", "15"]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "paper" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _check_written(out: Path, name: str, n_rows: int, n_configs: int) -> tuple[list[dict], list[dict], dict]:
    rows, summary = _csv(out / f"{name}.csv"), _csv(out / f"{name}_summary.csv")
    assert len(rows) == n_rows and len(summary) == n_configs
    for r in rows:
        assert 0.0 < float(r["accuracy_before"]) <= 1.0 and 0.0 < float(r["accuracy_after"]) <= 1.0
        assert 0 <= int(r["queries_answered"]) <= int(r["queries_asked"]) == 20
        assert 0.0 <= float(r["epsilon_protocol"]) <= 15.0 and float(r["unit_wall_s"]) > 0
    for s in summary:
        assert {"accuracy_after_mean", "accuracy_after_std", "balanced_before_mean"} <= set(s)
        assert float(s["accuracy_before_std"]) >= 0
    assert (out / f"{name}.png").stat().st_size > 1000
    meta = json.loads((out / f"{name}.json").read_text())
    assert meta["seeds"]["retrain"] == [11] and meta["seeds"]["models"] == [0]
    assert meta["versions"]["numpy"] and meta["timings"]["units_run_this_invocation"] >= 0
    return rows, summary, meta


def _forbid_training(monkeypatch):
    import capc.learning.fanout as fanout
    import capc.learning.simulation as simulation

    def no_training(*_a, **_k):
        raise AssertionError("trained although every configuration is already in the CSV / input is bad")

    monkeypatch.setattr(simulation, "run_learning_simulation", no_training)
    monkeypatch.setattr(fanout, "train_and_vote", no_training)


def test_accuracy_vs_parties_tiny_runs_and_resumes(tmp_path, monkeypatch):
    mod = _load("accuracy_vs_parties")
    argv = ["--out", str(tmp_path), "--parties", "3", *TINY]
    assert mod.main(argv) == 0
    rows, summary, meta = _check_written(tmp_path, "accuracy_vs_parties", 1, 1)
    assert rows[0]["n_parties"] == "3" and summary[0]["n"] == "1"
    assert meta["timings"]["units_run_this_invocation"] == 1
    # resuming with one more K runs only that one; everything already in the CSV is skipped
    import capc.learning.simulation as simulation

    ran = []
    orig = simulation.run_learning_simulation
    monkeypatch.setattr(simulation, "run_learning_simulation",
                        lambda cfg, **k: ran.append(cfg.n_parties) or orig(cfg, **k))
    assert mod.main(["--out", str(tmp_path), "--parties", "3,4", *TINY]) == 0
    assert ran == [4]
    _, summary, meta = _check_written(tmp_path, "accuracy_vs_parties", 2, 2)
    assert [s["n_parties"] for s in summary] == ["3", "4"]
    assert meta["timings"]["units_skipped_already_in_csv"] == 1


def test_heterogeneous_tiny_runs_resumes_and_checks_names(tmp_path, monkeypatch, capsys):
    mod = _load("heterogeneous")
    argv = ["--out", str(tmp_path), "--n_parties", "4", "--config", "homo=cryptonets",
            "--config", "hetero=cryptonets,mlp,cryptonets-relu", *TINY]
    assert mod.main(argv) == 0
    rows, summary, _ = _check_written(tmp_path, "heterogeneous", 2, 2)
    assert [(r["label"], r["architectures"]) for r in summary] == [
        ("homo", "cryptonets"), ("hetero", "cryptonets,mlp,cryptonets-relu")]
    assert {r["architecture"] for r in rows} == {"cryptonets"}  # the QP (party 0) gets the first name
    # Same QP architecture and seeds: retraining on its own data alone is identical in both setups.
    assert rows[0]["accuracy_before"] == rows[1]["accuracy_before"]
    _forbid_training(monkeypatch)
    assert mod.main(argv) == 0 and len(_csv(tmp_path / "heterogeneous.csv")) == 2
    capsys.readouterr()
    assert mod.main(["--out", str(tmp_path / "bad"), "--config", "x=VGG16,VGG99", *TINY]) == 2
    assert "VGG99" in capsys.readouterr().err and not (tmp_path / "bad" / "heterogeneous.csv").exists()


def test_fairness_tiny_weak_classes_hurt_and_resume(tmp_path, monkeypatch, capsys):
    mod = _load("fairness")
    argv = ["--out", str(tmp_path), "--n_parties", "4", *TINY, "--epochs", "3"]
    assert mod.main(argv) == 0
    rows, summary, _ = _check_written(tmp_path, "fairness", 2, 2)
    iid, weak = summary
    assert (iid["partition"], weak["partition"]) == ("iid", "weak")
    assert int(rows[1]["num_private"]) < int(rows[0]["num_private"])  # the QP lacks most weak-class samples
    # The querying party missing 90% of classes 1 and 2 recognises them worse before CaPC.
    assert float(weak["weak_before_mean"]) < float(iid["weak_before_mean"]) - 0.1
    assert {f"after_c{c}_mean" for c in range(10)} <= set(weak)
    _forbid_training(monkeypatch)
    assert mod.main(argv) == 0 and len(_csv(tmp_path / "fairness.csv")) == 2
    capsys.readouterr()
    assert mod.main(["--out", str(tmp_path / "bad"), "--dataset", "svhn", "--data_dir", str(tmp_path / "none")]) == 2
    assert "SVHN" in capsys.readouterr().err
