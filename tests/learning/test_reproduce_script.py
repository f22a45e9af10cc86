"""scripts/reproduce_learning.py: every option reaches the simulation; bad values fail before training."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("keras")
pytest.importorskip("capc.privacy.simulate")

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("reproduce_learning", ROOT / "scripts" / "reproduce_learning.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_flags_reach_the_simulation(tmp_path):
    out = tmp_path / "res.json"
    argv = ["--n_parties", "3", "--num_querying_parties", "1", "--queries_per_party", "10", "--epochs", "1",
            "--retrain_seeds", "11", "--budget", "10", "--mode", "kcenter", "--architectures", "mlp,cryptonets",
            "--dataset", "DIGITS", "--json", str(out)]
    assert _load().main(argv) == 0
    res = json.loads(out.read_text())
    assert res["config"]["mode"] == "kcenter" and res["config"]["architectures"] == "mlp,cryptonets"
    assert res["architectures"] == ["mlp", "cryptonets", "mlp"] and res["backend"] == "in-process"
    [qp] = res["parties"]
    assert qp["architecture"] == "mlp" and qp["queries_asked"] == 10 and qp["epsilon_data_independent"] <= 10


@pytest.mark.parametrize("argv, message", [
    (["--architectures", "VGG16,VGG99"], "unknown architecture 'VGG99'"),
    (["--dataset", "svhn", "--data_dir", "{tmp}/missing"], "SVHN data directory"),
    (["--dataset", "cifar10", "--data_dir", "{tmp}"], "CIFAR-10 batches missing"),
    (["--json", "{tmp}/no/such/dir/out.json"], "does not exist"),
    (["--width", "-1", "--architectures", "VGG5"], "width must be a positive number"),
])
def test_bad_values_fail_before_training(tmp_path, monkeypatch, capsys, argv, message):
    import capc.learning.fanout as fanout

    monkeypatch.setattr(fanout, "train_and_vote", lambda *a, **k: pytest.fail("trained before reporting"))
    assert _load().main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    assert message in capsys.readouterr().err


def test_unknown_choices_are_argparse_errors(capsys):
    with pytest.raises(SystemExit):
        _load().main(["--dataset", "imagenet"])
    assert "imagenet" in capsys.readouterr().err
