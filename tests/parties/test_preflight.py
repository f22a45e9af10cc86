"""Checked before launch: a run the answering parties would refuse is refused before a run directory
exists or any party starts, with the reason (regression: config/10.json took 12-29 s to be refused,
after every party had started, and left a half-made run directory)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Runs the launcher's main in this process and reports its status, its error output, and whether
# TensorFlow had to be imported to decide.
SCRIPT = """
import io, json, sys
from capc.launcher.experiment import main
err = io.StringIO()
status = main(sys.argv[1:], out=io.StringIO(), err=err)
print(json.dumps({"status": status, "err": err.getvalue(), "tf": "tensorflow" in sys.modules}))
"""


def launch(*args: str, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, "--no-tmux", *args], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_config_10_is_refused_before_anything_exists_and_fast_once_checked(tmp_path):
    import os

    env = dict(os.environ, CAPC_CACHE_DIR=str(tmp_path / "cache"))
    args = ["--encryption_params", str(REPO / "config" / "10.json"), "--run_dir", str(tmp_path / "run")]
    first = launch(*args, env=env)
    assert first["status"] == 1
    for reason in ("ap-1", "complex_packing", "too few levels", "too noisy: scale 2^24", "parameters that work"):
        assert reason in first["err"]
    assert not (tmp_path / "run").exists()  # no run directory, so no party was started either
    # the second check of the same models needs neither TensorFlow nor a compilation
    again = launch(*args, env=env)
    assert again["status"] == 1 and again["err"] == first["err"] and not again["tf"]
    assert not (tmp_path / "run").exists()


def test_class_count_mismatch_is_refused_before_anything_exists(tmp_path):
    res = launch("--num_classes", "5", "--run_dir", str(tmp_path / "run"))
    assert res["status"] == 1 and "has 10 outputs, the run has 5 classes (--num_classes)" in res["err"]
    assert not (tmp_path / "run").exists()


def test_a_changed_model_file_is_compiled_afresh(tmp_path, monkeypatch):
    """The cached facts are keyed by the file's content: a different model under the same name is not
    mistaken for the checked one."""
    import shutil

    from capc.parties.models import plan_facts
    from capc.parties.runconfig import ProtocolParams, RunConfig, PartyEntry

    monkeypatch.setenv("CAPC_CACHE_DIR", str(tmp_path / "cache"))
    model = tmp_path / "m.pb"
    shutil.copy(REPO / "models" / "digits" / "party-1.pb", model)
    cfg = RunConfig("r", str(tmp_path), str(tmp_path), (PartyEntry("qp-0"), PartyEntry("ap-1", model=str(model)),
                                                          PartyEntry("pg")), ProtocolParams())
    pub1, bound1 = plan_facts(str(model), cfg)
    shutil.copy(REPO / "models" / "digits" / "party-2.pb", model)
    pub2, bound2 = plan_facts(str(model), cfg)
    assert len(list((tmp_path / "cache" / "plans").glob("*.json"))) == 2
    assert bound1 != bound2
    assert plan_facts(str(model), cfg)[1] == bound2
