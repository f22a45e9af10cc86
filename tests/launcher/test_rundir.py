"""Run directory: layout, params/run info contents, timing records, atomic writes."""

import json
import os
import re
import threading

import pytest

from capc.launcher.errors import RunDirError
from capc.launcher.flags import build_parser, validate
from capc.launcher.rundir import RunDir, TimingWriter, new_run_id, write_json_atomic


def test_default_location_and_id(tmp_path):
    rd = RunDir.create(base=tmp_path)
    assert rd.path.parent == tmp_path and rd.path.name == rd.run_id
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", rd.run_id)
    assert (rd.path / "logs").is_dir()
    assert new_run_id() != new_run_id()


def test_params_and_run_info(run_dir):
    config = validate(build_parser().parse_args(["--n_parties", "2", "--seed", "7"]))
    run_dir.write_params(config.to_json())
    run_dir.write_run_info(config.seed, ["--n_parties", "2", "--seed", "7"])
    params = json.loads((run_dir.path / "params.json").read_text())
    assert params["n_parties"] == 2 and params["seed"] == 7 and params["cpu"] is False
    assert "dp_noise_scale" in params and "run_dir" in params
    info = json.loads((run_dir.path / "run.json").read_text())
    assert info["seed"] == 7 and info["run_id"] == run_dir.run_id
    versions = info["versions"]
    assert set(versions) >= {"python", "numpy", "tensorflow", "tenseal", "capc", "gc_engine"}
    assert versions["python"].count(".") == 2 and versions["capc"]
    assert info["host"]["cpu_count"] >= 1 and info["host"]["hostname"] is not None


def test_log_paths(run_dir):
    assert run_dir.log_path("ap0") == run_dir.path / "logs" / "ap0.log"
    for bad in ("../x", "a/b", "", ".."):
        with pytest.raises(RunDirError):
            run_dir.log_path(bad)


def test_run_dir_must_be_empty(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("1")
    with pytest.raises(RunDirError, match="not empty"):
        RunDir.create(tmp_path / "x")


def test_timing_records_and_second_file(tmp_path, run_dir):
    extra = tmp_path / "global-timing.log"
    tw = run_dir.open_timing(extra)
    assert run_dir.open_timing() is tw
    tw.record("1a", 1.5, party="ap0", query=3)
    with tw.span("2", party="pg", query=3):
        pass
    with pytest.raises(RuntimeError), tw.span("3", party="qp", query=3):
        raise RuntimeError("still timed")
    recs = TimingWriter.read(run_dir.path / "timing.jsonl")
    assert [(r["step"], r["party"], r["query"]) for r in recs] == \
        [("1a", "ap0", 3), ("2", "pg", 3), ("3", "qp", 3)]
    assert recs[0]["seconds"] == 1.5 and all(r["seconds"] >= 0 for r in recs)
    assert TimingWriter.read(extra) == recs
    with pytest.raises(ValueError):
        tw.record("", 1.0)


def test_timing_lines_do_not_interleave(run_dir):
    tw = run_dir.open_timing()

    def writer(k):
        for i in range(200):
            tw.record("step", 0.001, party=f"p{k}", query=i, pad="x" * 200)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recs = TimingWriter.read(run_dir.path / "timing.jsonl")
    assert len(recs) == 800
    for k in range(4):
        assert [r["query"] for r in recs if r["party"] == f"p{k}"] == list(range(200))


def test_atomic_write_leaves_old_file_on_error(tmp_path):
    target = tmp_path / "a.json"
    write_json_atomic(target, {"v": 1})

    loop = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="Circular"):
        write_json_atomic(target, loop)
    assert json.loads(target.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["a.json"]
