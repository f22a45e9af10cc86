#!/usr/bin/env python3
"""Benchmark the whole CaPC protocol: per-query wall time by step for N answering parties.

Each configuration is a real local run (separate processes, mutual TLS on 127.0.0.1, CKKS, garbled
circuits, the PG's ledger) of the 28x28 CryptoNets models (conv 5x5 stride 2 -> square -> dense 100
-> square -> dense 10) trained on ``digits28`` (scikit-learn's digits enlarged to MNIST's 28x28, so no
download is needed; the work per query is that of MNIST); ``--model_type cryptonets-relu mlp`` adds
the ReLU layouts (HE segments + garbled-circuit layers), each with a per-layer table (AP time and
ciphertext bytes per CKKS segment, time and bytes per GC layer). Prints one row per N:

* setup: from starting the processes to the QP holding every AP's public plan and having sent keys
  (key generation included);
* per query, means over the measured queries (the first query is a warm-up and is not counted):
  1a (QP: encrypt, send, AP inference, receive, decrypt — all APs in parallel), the AP's own inference
  time, 1b (garbled argmax, all APs in parallel), 2+3 (vote shares, ledger, noisy argmax), end to end.

``--batch B`` instead measures batch labelling: ``--queries`` queries (e.g. 1000) in CKKS batches of B
(step 1a once per batch, step 1b per query and AP, step 3 once per batch), reporting the wall time
of the whole labelling.

Usage: python scripts/bench_protocol.py [--parties 1 3 5 10] [--queries 6] [--dataset digits28]
       python scripts/bench_protocol.py --parties 3 --queries 1000 --batch 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def read_timing(run_dir: Path) -> list[dict]:
    rows = []
    for f in run_dir.glob("timing-*.jsonl"):
        rows += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return rows


def layer_rows(timing: list[dict], skip: set) -> list[list[str]]:
    """Per CKKS segment and GC layer: mean seconds and MB per query and AP (the records of the
    AP's step 1a, without the warm-up query)."""
    out = []
    recs = [r for r in timing if str(r.get("party", "")).startswith("ap") and r.get("query") not in skip]
    segs = sorted({r.get("segment", 0) for r in recs if r["step"] == "1a_he_inference"})
    for k in segs:
        inf = [r for r in recs if r["step"] == "1a_he_inference" and r.get("segment", 0) == k]
        info = [r for r in recs if r["step"] == "1a_hiding_bits" and r.get("segment", 0) == k]
        per = max(1, inf[0].get("batch", 1)) if inf else 1
        out.append([f"segment {k}", f"{statistics.mean(r['seconds'] for r in inf) / per:.4f}",
                    f"{statistics.mean(r.get('request_bytes', 0) for r in info) / per / 1e6:.3f}",
                    f"{statistics.mean(r.get('result_bytes', 0) for r in info) / per / 1e6:.3f}"])
        gc = [r for r in recs if r["step"] == "1a_gc_layer" and r.get("segment", 0) == k]
        if gc:
            out.append([f"gc layer {k}", f"{statistics.mean(r['seconds'] for r in gc) / per:.4f}",
                        f"{statistics.mean(r.get('gc_bytes', 0) for r in gc) / per / 1e6:.3f}", ""])
    return out


def bench(n_aps: int, n_queries: int, dataset: str, base: Path, model_type: str = "cryptonets",
          he_params: str | None = None, frac_bits: int = 3) -> dict[str, float]:
    from capc.parties.local import make_local_run

    queries = list(range(n_queries + 1))
    run = make_local_run(base / f"{model_type}-n{n_aps}", n_aps, queries, dataset=dataset, model_type=model_type,
                         frac_bits=frac_bits, hiding_bits=40, he_params=he_params,
                         logit_bound=16.0, sigma_gnmax=2.0, budget_eps=float("inf"), timeout=600.0)
    t0 = time.perf_counter()
    try:
        run.start_servers()
        status = run.run_qp(timeout=3600)
        wall = time.perf_counter() - t0
        if status != 0:
            raise SystemExit(f"N={n_aps}: the querying party failed; see {run.log('qp-0')}")
    finally:
        run.stop_all()
    res = run.results()["queries"]
    measured = [q for q in res if q["query_id"] != queries[0]]
    timing = read_timing(run.dir)
    per_query: dict[tuple, float] = {}
    for r in timing:  # a hybrid model's AP evaluates several segments per query
        if r["step"] == "1a_he_inference" and r["query"] != queries[0]:
            key = (r.get("party"), r["query"])
            per_query[key] = per_query.get(key, 0.0) + r["seconds"]
    ap_inf = list(per_query.values())
    keygen = [r["seconds"] for r in timing if r["step"] == "setup_keygen"]

    def mean(step: str) -> float:
        return statistics.mean(q["seconds"][step] for q in measured)

    def qp_step(step: str) -> float:  # the QP's per-AP records of steps 1a and 1b, slowest AP per query
        by_query: dict[int, float] = {}
        for r in timing:
            if r["step"] == step and str(r.get("party", "")).startswith("qp") and r["query"] != queries[0]:
                by_query[r["query"]] = max(by_query.get(r["query"], 0.0), r["seconds"])
        return statistics.mean(by_query.values()) if by_query else float("nan")

    e2e = statistics.mean(sum(q["seconds"].values()) for q in measured)
    return {"N": n_aps, "setup_s": wall - sum(sum(q["seconds"].values()) for q in res),
            "keygen_s": keygen[0] if keygen else float("nan"), "1a": qp_step("1a"),
            "ap_inference": statistics.mean(ap_inf), "1b": qp_step("1b"), "2+3": mean("2+3"), "e2e": e2e,
            "answered": sum(q["answered"] for q in measured), "queries": len(measured),
            "model_type": model_type, "layers": layer_rows(timing, {queries[0]})}


def make_query_file(path: Path, dataset: str, n: int) -> Path:
    """n queries for batch labelling: the dataset's query pool, repeated with shifts of up to three
    pixels (smallest first) so that every query is a distinct image (a pool of a few hundred digits
    cannot give 1,000, let alone 8,192, otherwise)."""
    import numpy as np

    from capc.learning.datasets import load_dataset

    ds = load_dataset(dataset)
    xs, ys = [], []
    shifts = sorted(((dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)), key=lambda s: (abs(s[0]) + abs(s[1]), s))
    for dy, dx in shifts:
        xs.append(np.roll(ds.x_query, (dy, dx), axis=(1, 2)))
        ys.append(ds.y_query)
    x, y = np.concatenate(xs)[:n], np.concatenate(ys)[:n]
    if len(x) < n:
        raise SystemExit(f"{dataset}: cannot make {n} distinct queries from its pool of {len(ds.x_query)}")
    np.savez(path, x=x, y=y)
    return path


def bench_batch(n_aps: int, n_queries: int, batch: int, dataset: str, base: Path,
                sequential: bool, model_type: str = "cryptonets", he_params: str | None = None,
                frac_bits: int = 3) -> dict[str, float]:
    from capc.parties.local import make_local_run

    query_file = make_query_file(base / "queries.npz", dataset, n_queries)
    run = make_local_run(base / f"batch-{model_type}-n{n_aps}", n_aps, list(range(n_queries)), dataset=dataset,
                         query_file=str(query_file), frac_bits=frac_bits, model_type=model_type, he_params=he_params,
                         hiding_bits=40, logit_bound=16.0, sigma_gnmax=2.0, budget_eps=float("inf"),
                         timeout=1800.0, packing="batch", batch_size=batch, sequential_batch_aps=sequential)
    t0 = time.perf_counter()
    try:
        run.start_servers()
        if run.run_qp(timeout=7200) != 0:
            raise SystemExit(f"batch N={n_aps}: the querying party failed; see {run.log('qp-0')}")
        wall = time.perf_counter() - t0
    finally:
        run.stop_all()
    res = run.results()["queries"]
    timing = read_timing(run.dir)
    per_batch: dict[tuple, float] = {}
    for r in timing:  # summed over a hybrid model's segments
        if r["step"] == "1a_he_inference":
            key = (r.get("party"), r["query"])
            per_batch[key] = per_batch.get(key, 0.0) + r["seconds"]
    ap = list(per_batch.values())
    keygen = [r["seconds"] for r in timing if r["step"] == "setup_keygen"]

    def total(step: str, party: str = "") -> float:
        return sum(r["seconds"] for r in timing if r["step"] == step and str(r.get("party", "")).startswith(party))

    # where a batch's time goes: the QP's encryption, then per AP its 1a (send, evaluate, receive,
    # decrypt) and 1b (garbled argmax), then the PG's steps 2+3 for the whole batch
    n_batches = max(1, -(-n_queries // batch))
    # the QP times each AP's 1a from the batch's start, so with --sequential they are cumulative: the
    # batch's 1a is the time until its last AP answered
    last_1a: dict[Any, float] = {}
    for r in timing:
        if r["step"] == "1a" and r.get("party") == "qp-0":
            last_1a[r["query"]] = max(last_1a.get(r["query"], 0.0), r["seconds"])
    per_ap_1b = [r["seconds"] for r in timing if r["step"] == "1b" and r.get("party") == "qp-0"]
    breakdown = {"encrypt": total("1a_encrypt", "qp") / n_batches,
                 "1a all APs": statistics.mean(last_1a.values()) if last_1a else float("nan"),
                 "AP inference": statistics.mean(ap) if ap else float("nan"),
                 "1b per AP": statistics.mean(per_ap_1b) if per_ap_1b else float("nan"),
                 "2+3": sum(q["seconds"].get("2+3", 0.0) for q in res) / n_batches}
    labelling = sum(sum(q["seconds"].values()) for q in res)
    return {"N": n_aps, "queries": len(res), "batch": batch, "wall": wall, "labelling": labelling,
            "keygen": keygen[0] if keygen else float("nan"), "ap_batch": statistics.mean(ap) if ap else float("nan"),
            "answered": sum(q["answered"] for q in res), "model_type": model_type,
            "layers": layer_rows(timing, set()), "breakdown": breakdown}


def print_table(head: list[str], rows: list[list[str]]) -> None:
    """Right-aligned columns, 9 characters wide (the first 15)."""
    for line in [head] + rows:
        print("  ".join(f"{cell:>15}" if i == 0 else f"{cell:>9}" for i, cell in enumerate(line)))


def print_layers(rows: list[dict]) -> None:
    for r in rows:
        if len(r["layers"]) > 2:  # a hybrid model: segments and GC layers
            print(f"\n  {r['model_type']}, N = {r['N']}: per query and AP")
            print_table(["layer", "seconds", "in MB", "out MB"], r["layers"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parties", type=int, nargs="+", default=[1, 3, 5, 10])
    ap.add_argument("--queries", type=int, default=6, help="measured queries per N (plus one warm-up)")
    ap.add_argument("--dataset", default="digits28", choices=("digits28", "digits", "mnist"))
    ap.add_argument("--model_type", nargs="+", default=["cryptonets"],
                    choices=("cryptonets", "cryptonets-relu", "mlp"), help="layouts to measure, one table row each")
    ap.add_argument("--params", default=None, help="CKKS parameter file (default: capc's recommendation)")
    ap.add_argument("--round_exp", type=int, default=3, help="fraction bits f of the shares")
    ap.add_argument("--batch", type=int, default=0, help="measure batch labelling with batches of this size")
    ap.add_argument("--sequential", action="store_true",
                    help="with --batch: send each batch to the APs one after the other (bounds peak memory)")
    args = ap.parse_args()
    from capc.learning.default_models import default_model_paths

    for mt in args.model_type:
        print(f"training/loading {max(args.parties) + 1} {args.dataset} {mt} models ...", flush=True)
        default_model_paths(max(args.parties) + 1, dataset=args.dataset, model_type=mt)
    if args.batch:
        with tempfile.TemporaryDirectory(prefix="capc-bench-") as tmp:
            rows = [bench_batch(n, args.queries, args.batch, args.dataset, Path(tmp), args.sequential, mt,
                                args.params, args.round_exp)
                    for mt in args.model_type for n in args.parties]
        load = os.getloadavg()
        print(f"\nCaPC batch labelling, {args.dataset}, {os.cpu_count()} cores, load average "
              f"{load[0]:.1f}; APs {'one after the other' if args.sequential else 'at once'}; seconds")
        print_table(["model", "N", "queries", "batch", "keygen", "AP batch", "labelling", "per query", "wall",
                     "answered"],
                    [[r["model_type"], f"{r['N']:d}", f"{r['queries']:d}", f"{r['batch']:d}", f"{r['keygen']:.2f}",
                      f"{r['ap_batch']:.2f}", f"{r['labelling']:.2f}", f"{r['labelling'] / r['queries']:.4f}",
                      f"{r['wall']:.2f}", f"{r['answered']:d}"] for r in rows])
        print("\n  where a batch's time goes (seconds per batch; 1a runs from the encrypted batch to the last AP's "
              "decrypted answer, transfers included; AP inference is one AP's; 1b overlaps the next AP's 1a)")
        print_table(["model", "N"] + list(rows[0]["breakdown"]),
                    [[r["model_type"], f"{r['N']:d}"] + [f"{v:.2f}" for v in r["breakdown"].values()] for r in rows])
        print_layers(rows)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="capc-bench-") as tmp:
        for mt in args.model_type:
            for n in args.parties:
                print(f"{mt}, N = {n} ...", flush=True)
                rows.append(bench(n, args.queries, args.dataset, Path(tmp), mt, args.params, args.round_exp))
    load = os.getloadavg()
    print(f"\nCaPC protocol, {args.dataset}, {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
          f"load average {load[0]:.1f}; seconds, means over {args.queries} queries after one warm-up")
    print_table(["model", "N", "setup", "keygen", "1a", "AP infer", "1b", "2+3", "per query", "answered"],
                [[r["model_type"], f"{r['N']:d}", f"{r['setup_s']:.2f}", f"{r['keygen_s']:.2f}", f"{r['1a']:.3f}",
                  f"{r['ap_inference']:.3f}", f"{r['1b']:.4f}", f"{r['2+3']:.4f}", f"{r['e2e']:.3f}",
                  f"{r['answered']}/{r['queries']}"] for r in rows])
    print_layers(rows)


if __name__ == "__main__":
    main()
