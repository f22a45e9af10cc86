"""scripts/train_models.py end to end in a subprocess: files, card, exit status on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("keras")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_models.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)


def test_script_trains_weak_partition_set(tmp_path):
    res = _run("--n_parties", "3", "--partition", "weak", "--weak_classes", "1,2", "--epochs", "1",
               "--parties", "0,2", "--out_dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    out = tmp_path / "digits-3p-weak"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"party-{i}.{ext}" for i in (0, 2) for ext in ("keras", "pb", "card.json", "card.md"))
    card = json.loads((out / "party-0.card.json").read_text())
    part = card["data"]["partition"]
    assert part["scheme"] == "weak" and part["weak_classes"] == [1, 2] and part["num_querying_parties"] == 1
    assert card["training"]["epochs"] == 1 and card["training"]["seed"] == 0
    assert json.loads((out / "party-2.card.json").read_text())["training"]["seed"] == 2
    counts = card["data"]["train_label_counts"]
    assert counts[1] < counts[3] / 4 and counts[2] < counts[3] / 4  # the QP lacks the weak classes
    assert "eval acc" in res.stdout


def test_script_reports_missing_mnist(tmp_path):
    res = _run("--dataset", "mnist", "--data_dir", str(tmp_path), "--out_dir", str(tmp_path))
    assert res.returncode == 2
    assert "mnist.npz" in res.stderr and str(tmp_path) in res.stderr
    assert "Traceback" not in res.stderr


def test_script_uses_mnist_when_files_are_present(tmp_path):
    from shipped_checks import write_tiny_mnist

    data = write_tiny_mnist(tmp_path / "data")
    res = _run("--data_dir", str(data), "--num_query_pool", "10", "--n_parties", "2", "--parties", "1",
               "--epochs", "1", "--out_dir", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    card = json.loads((tmp_path / "out" / "mnist-2p-iid" / "party-1.card.json").read_text())
    assert card["data"]["dataset"] == "mnist" and card["data"]["num_train_samples"] == 20
    assert card["model"]["input_shape"] == [None, 28, 28, 1]
    conv = card["model"]["layers"][0]
    assert conv["kernel_size"] == [5, 5] and conv["strides"] == [2, 2]
    assert card["evaluation"]["num_samples"] == 10
