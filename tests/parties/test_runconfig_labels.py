"""The run file's validation and the querying party's durable label store."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from capc.errors import CapcError, ConfigError
from capc.parties.label_store import LabelStore, ReplayedQueryId
from capc.parties.runconfig import load_run_config, run_config_from_dict, save_run_config


def good(**changes):
    d = {"run_id": "r1", "run_dir": "runs/r1", "pki_dir": "runs/r1/pki",
         "parties": [{"name": "qp-0"}, {"name": "ap-1", "model": "m1.keras"},
                     {"name": "ap-2", "model": "m2.keras", "port": 4000}, {"name": "pg"}],
         "protocol": {"num_classes": 10, "sigma_gnmax": 2.0}, "queries": [0, 5, 7]}
    d.update(changes)
    return d


def test_valid_file_roundtrips(tmp_path: Path) -> None:
    cfg = run_config_from_dict(good())
    assert [p.role for p in cfg.parties] == ["qp", "ap", "ap", "pg"]
    assert cfg.party("ap-2").port == 4000 and cfg.protocol.sigma_gnmax == 2.0
    path = save_run_config(cfg, tmp_path / "RUN.json")
    assert load_run_config(path) == cfg
    moved = cfg.with_endpoints({"pg": ("127.0.0.1", 5555)})
    assert moved.party("pg").port == 5555 and moved.party("ap-1") == cfg.party("ap-1")


@pytest.mark.parametrize("changes, words", [
    (dict(run_id="bad id"), "'run_id'"),
    (dict(parties=[]), "'parties'"),
    (dict(parties=[{"name": "qp-0"}, {"name": "ap-1", "model": "m"}]), "exactly one privacy guardian"),
    (dict(parties=[{"name": "pg"}, {"name": "ap-1", "model": "m"}]), "at least one qp"),
    (dict(parties=[{"name": "qp-0"}, {"name": "ap-1", "model": "m", "port": 70000}, {"name": "pg"}]), "'port'"),
    (dict(parties=[{"name": "qp-0"}, {"name": "boss", "model": "m"}, {"name": "pg"}]), "'name'"),
    (dict(parties=[{"name": "qp-0"}, {"name": "ap-1", "model": "m", "colour": 1}, {"name": "pg"}]), "unknown key 'colour'"),
    (dict(parties=[{"name": "qp-0"}, {"name": "ap-1", "model": "m"}, {"name": "ap-1", "model": "m"},
                   {"name": "pg"}]), "appears twice"),
    (dict(protocol={"frac_bits": 40}), "'frac_bits'"),
    (dict(protocol={"sigma_gnmax": -1}), "'sigma_gnmax'"),
    (dict(protocol={"sigma_gnmax": float("nan")}), "'sigma_gnmax'"),
    (dict(protocol={"delta": 1.5}), "'delta'"),
    (dict(protocol={"budget_eps": 0}), "'budget_eps'"),
    (dict(protocol={"packing": "diagonal"}), "'packing'"),
    (dict(protocol={"sigma": 1}), "unknown key 'sigma'"),
    (dict(queries=[1, 1]), "repeats"),
    (dict(queries=[-1]), "'queries'"),
])
def test_bad_run_files_name_the_key(changes, words) -> None:
    with pytest.raises(ConfigError, match="RUN.json") as err:
        run_config_from_dict(good(**changes), where="RUN.json")
    assert words in str(err.value)


def test_an_answering_party_needs_its_own_model_but_not_the_others(tmp_path: Path) -> None:
    import argparse

    from capc.parties.main import cmd_party

    cfg = run_config_from_dict(good(parties=[{"name": "qp-0"}, {"name": "ap-1"}, {"name": "ap-2", "model": "m"},
                                             {"name": "pg"}]))
    path = save_run_config(cfg, tmp_path / "RUN.json")
    with pytest.raises(ConfigError, match="ap-1: an answering party needs its own 'model'"):
        cmd_party(argparse.Namespace(role="ap", name="ap-1", run=str(path), listen=None))


def test_yaml_run_files(tmp_path: Path) -> None:
    import yaml

    (tmp_path / "run.yaml").write_text(yaml.safe_dump(good()))
    assert load_run_config(tmp_path / "run.yaml") == run_config_from_dict(good())
    (tmp_path / "bad.yml").write_text("parties: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_run_config(tmp_path / "bad.yml")


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_run_config(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_run_config(tmp_path / "x.json")
    with pytest.raises(ConfigError, match="no party named 'ap-9'"):
        run_config_from_dict(good()).party("ap-9")


def test_label_store_is_durable_and_refuses_replays(tmp_path: Path) -> None:
    db = tmp_path / "labels.sqlite"
    store = LabelStore(db, "qp-0")
    store.begin(3, true_label=7)
    store.complete(3, answered=True, label=7)
    store.begin(4)
    store.complete(4, answered=False, label=5)  # a label is never kept for an unanswered query
    store.begin(5)  # crash before completion: stays pending
    store.close()

    again = LabelStore(db, "qp-0")
    recs = {r.query_id: r for r in again.records()}
    assert recs[3].status == "answered" and recs[3].label == 7 and recs[3].true_label == 7
    assert recs[4].status == "refused" and recs[4].label is None
    assert recs[5].status == "pending"
    for q in (3, 4, 5):
        with pytest.raises(ReplayedQueryId, match=f"query id {q} was already used"):
            again.begin(q)
    with pytest.raises(CapcError, match="not pending"):
        again.complete(3, answered=True, label=1)
    assert again.get(3).label == 7  # never overwritten
    # another querying party has its own id space
    other = LabelStore(db, "qp-1")
    other.begin(3)


def _claim(path: str, q: int, out: "mp.Queue[str]") -> None:
    store = LabelStore(path, "qp-0")
    try:
        store.begin(q)
        out.put("ok")
    except ReplayedQueryId:
        out.put("replay")


def test_two_processes_cannot_both_claim_an_id(tmp_path: Path) -> None:
    path = str(tmp_path / "l.sqlite")
    LabelStore(path, "qp-0").close()
    ctx = mp.get_context("spawn")
    q: "mp.Queue[str]" = ctx.Queue()
    procs = [ctx.Process(target=_claim, args=(path, 11, q)) for _ in range(2)]
    for p in procs:
        p.start()
    results = sorted(q.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(60)
    assert results == ["ok", "replay"]
