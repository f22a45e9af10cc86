"""The answering parties cannot rebuild the querying party's queries, and every party holds only its
own key.  Tested as the attack of a curious AP with everything it legitimately holds: its run file,
its log, its timing file and the query ids it received on the wire.

Before: query ids were indices into the public query pool, and the run file every party read listed
the queries, the dataset and the seed, so ``ap-1.log`` plus ``RUN.json`` rebuilt every plaintext
query and its true label; and ``pki/`` held the CA key and every party's private key.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from capc.learning.datasets import load_dataset
from capc.parties.queries import wire_query_id
from capc.parties.runconfig import load_run_config

from .protocol_harness import ap_predictions, clear_margin_queries, make_run, plurality

pytestmark = pytest.mark.timeout(600)


def _rebuild_queries(run_file, log_text: str, timing_text: str) -> list[np.ndarray]:
    """The old attack: take every query id the party saw, and look it up in the pool of the dataset
    its run file names (also using the run file's own query list, which the old file carried)."""
    cfg = load_run_config(run_file)
    seen = {int(v) for v in re.findall(r"quer(?:y|ies)(?: id)? (\d+)", log_text)}
    for line in timing_text.splitlines():
        rec = json.loads(line) if line.strip() else {}
        if isinstance(rec.get("query"), int):
            seen.add(rec["query"])
    seen |= set(cfg.queries)
    if not cfg.dataset:
        return []
    pool = load_dataset(cfg.dataset, cfg.data_dir).x_query
    return [pool[q] for q in sorted(seen) if 0 <= q < len(pool)]


def test_an_answering_party_cannot_rebuild_the_queries(tmp_path):
    queries = clear_margin_queries(1, 3)
    run = make_run(tmp_path, 1, queries)
    try:
        run.start_servers()
        assert run.run_qp() == 0, run.log("qp-0").read_text()[-3000:]
        assert [run.labels()[q] for q in queries] == plurality(ap_predictions(1, queries))
    finally:
        run.stop_all()
    qp_view = load_run_config(run.run_files["qp-0"])
    wire = {wire_query_id(qp_view.query_key, q) for q in queries}
    # the AP did see the queries' opaque ids (its log and timing name them) ...
    log = run.log("ap-1").read_text()
    timing = (run.dir / "timing-ap-1.jsonl").read_text()
    assert any(str(w) in log or str(w) in timing for w in wire)
    # ... but its run file names no query, dataset, seed or key, and no other party's model
    ap_view = load_run_config(run.run_files["ap-1"])
    assert ap_view.queries == () and ap_view.dataset is None and ap_view.query_key is None
    assert ap_view.seed == 0 and ap_view.query_file is None
    assert [p.model for p in ap_view.parties if p.name != "ap-1"] == [None, None]
    # ... so the old attack finds nothing, and no pool index appears where the AP can read it
    assert _rebuild_queries(run.run_files["ap-1"], log, timing) == []
    assert not any(f"query {q} " in log or f"query {q}:" in log for q in queries)
    pg_view = load_run_config(run.run_files["pg"])
    assert pg_view.queries == () and pg_view.dataset is None and all(p.model is None for p in pg_view.parties)


def test_each_party_holds_only_its_own_private_key(tmp_path):
    run = make_run(tmp_path, 2, [0])
    for name, run_file in run.run_files.items():
        d = run_file.parent
        keys = [f for f in d.iterdir() if b"PRIVATE KEY" in f.read_bytes()]
        assert [k.name for k in keys] == [f"{name}.key"], name
        assert oct(keys[0].stat().st_mode & 0o777) == "0o600"
        # the one key is the party's own: it matches the public key of the party's certificate
        key = serialization.load_pem_private_key(keys[0].read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate((d / f"{name}.pem").read_bytes())
        assert key.public_key().public_numbers() == cert.public_key().public_numbers()
        assert load_run_config(run_file).pki_dir == str(d)
    # the launcher's pki/ keeps the CA key and the certificates, and no party's private key
    pki = run.dir / "pki"
    assert (pki / "ca.key").exists()
    assert not [f.name for f in pki.iterdir() if f.name != "ca.key" and b"PRIVATE KEY" in f.read_bytes()]


def test_a_party_started_with_another_partys_directory_is_refused(tmp_path):
    import subprocess
    import sys

    run = make_run(tmp_path, 1, [0])
    out = subprocess.run([sys.executable, "-m", "capc.cli", "party", "--role", "ap", "--name", "ap-1",
                          "--run", str(run.run_files["pg"])], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "ap-1" in (out.stderr + out.stdout)
