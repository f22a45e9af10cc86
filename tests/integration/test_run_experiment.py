"""run_experiment.py end to end through the launcher (subprocess mode), as a researcher runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(900)


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_experiment.py"), "--no-tmux", *args],
                          capture_output=True, text=True, timeout=800, cwd=ROOT)


def test_default_style_run_writes_a_complete_run_directory(tmp_path):
    out = run(["--n_parties", "2", "--n_queries", "2", "--run_dir", str(tmp_path / "r")])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "CKKS encryption + garbled-circuit 2PC" in out.stdout
    assert "privacy spent by QP 0: epsilon" in out.stdout
    assert "bits per logit" in out.stdout
    d = tmp_path / "r"
    for name in ("params.json", "run.json", "parties/qp-0/run.json", "parties/ap-1/ap-1.key", "results.json", "privacy_ledger.sqlite",
                 "labels-qp-0.sqlite", "logs/qp-0.log", "logs/ap-1.log", "logs/ap-2.log", "logs/pg.log"):
        assert (d / name).exists(), name
    results = json.loads((d / "results.json").read_text())
    assert len(results["rows"]) == 2 and results["plaintext"] is False
    params = json.loads((d / "params.json").read_text())
    assert params["n_parties"] == 2 and params["seed"] == 2
    budget = subprocess.run([sys.executable, "-m", "capc.cli", "budget", str(d)], capture_output=True,
                            text=True, timeout=120)
    assert budget.returncode == 0 and "qp-0" in budget.stdout


def test_cpu_simulation_with_retraining_is_labelled(tmp_path):
    out = run(["--cpu", "--n_queries", "30", "--dp_noise_scale", "0.5", "--budget_eps", "inf", "--retrain",
               "--seed", "5", "--run_dir", str(tmp_path / "r")])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "PLAINTEXT SIMULATION" in out.stdout
    assert "step 4, QP retrained from scratch" in out.stdout
    data = json.loads((tmp_path / "r" / "retrain.json").read_text())
    assert data["with_capc_labels"]["num_queries_used"] == 30
    assert data["own_data_only"]["num_queries_used"] == 0
    # --seed drives step 4's training runs (regression: it was recorded and used nowhere)
    assert data["with_capc_labels"]["seeds"] == data["own_data_only"]["seeds"] == [5, 6, 7]


def test_bad_flags_fail_before_anything_starts(tmp_path):
    out = run(["--n_parties", "0", "--run_dir", str(tmp_path / "r")])
    assert out.returncode == 2 and "--n_parties" in out.stderr
    assert not (tmp_path / "r").exists()
    out = run(["--dp_noise_scale", "0", "--run_dir", str(tmp_path / "r2")])
    assert out.returncode == 2 and "--budget_eps inf" in out.stderr


@pytest.mark.parametrize("args, words", [
    (["--encryption_params", str(ROOT / "config" / "10.json")], "ap-1: "),
    (["--num_classes", "5"], "5 classes"),
    (["--encryption_params", str(ROOT / "config" / "10.json"), "--model_type", "cryptonets-relu",
      "--packing", "single"], "key switching would be unsound"),
])
def test_unusable_parameters_are_refused_before_any_party_starts(tmp_path, args, words):
    """Regression: these were refused by the first AP after every party had started (12-29 s)."""
    d = tmp_path / "r"
    out = run(["--n_parties", "2", "--n_queries", "1", "--run_dir", str(d), *args])
    assert out.returncode == 1, out.stdout[-2000:]
    assert words in out.stderr, out.stderr[-2000:]
    # no party process was started: no run file, no certificates, no party log
    assert not (d / "parties").exists() and not (d / "pki").exists()
    assert not any((d / "logs").glob("ap-*.log")) if (d / "logs").exists() else True


def test_original_command_with_cryptonets_relu_models(tmp_path):
    """The original instructions' command (config/10.json) with the cryptonets-relu models: real
    processes, TLS, CKKS segments and garbled-circuit ReLU layers; with the noise off the labels are
    the plaintext plurality vote of the three answering parties' models."""
    from capc.learning.datasets import load_dataset
    from capc.learning.default_models import default_model_paths
    from capc.learning.models import load_model, predict_logits
    from tests.integration.protocol_harness import plurality

    out = run(["--n_parties=3", "--ignore_parties", "--encryption_params=config/10.json",
               "--model_type", "cryptonets-relu", "--n_queries", "3", "--dp_noise_scale", "0",
               "--sigma_threshold", "0", "--budget_eps", "inf", "--run_dir", str(tmp_path / "r")])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "batch packing" in out.stdout  # config/10.json cannot rotate: said before launch
    rows = json.loads((tmp_path / "r" / "results.json").read_text())["rows"]
    ids = [r["query_id"] for r in rows]
    x = load_dataset("digits").x_query[ids]
    models = default_model_paths(4, model_type="cryptonets-relu")[1:]
    preds = np.stack([np.argmax(predict_logits(load_model(m), x), axis=1) for m in models])
    assert [r["label"] for r in rows] == plurality(preds)
    logs = (tmp_path / "r" / "logs" / "ap-1.log").read_text()
    assert "segment 2" in logs  # the AP answered segment by segment
