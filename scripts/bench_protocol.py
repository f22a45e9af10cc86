#!/usr/bin/env python3
"""Benchmark the whole CaPC protocol: per-query wall time by step for N answering parties.

Each configuration is a real local run (separate processes, mutual TLS on 127.0.0.1, CKKS, garbled
circuits, the PG's ledger) of the 28x28 CryptoNets models (conv 5x5 stride 2 -> square -> dense 100
-> square -> dense 10) trained on ``digits28`` (scikit-learn's digits enlarged to MNIST's 28x28, so no
download is needed; the work per query is that of MNIST). Prints one row per N:

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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def read_timing(run_dir: Path) -> list[dict]:
    rows = []
    for f in run_dir.glob("timing-*.jsonl"):
        rows += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return rows


def bench(n_aps: int, n_queries: int, dataset: str, base: Path) -> dict[str, float]:
    from capc.parties.local import make_local_run

    queries = list(range(n_queries + 1))
    run = make_local_run(base / f"n{n_aps}", n_aps, queries, dataset=dataset, frac_bits=3, hiding_bits=40,
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
    ap_inf = [r["seconds"] for r in timing if r["step"] == "1a_he_inference" and r["query"] != queries[0]]
    keygen = [r["seconds"] for r in timing if r["step"] == "setup_keygen"]

    def mean(step: str) -> float:
        return statistics.mean(q["seconds"][step] for q in measured)

    e2e = statistics.mean(sum(q["seconds"].values()) for q in measured)
    return {"N": n_aps, "setup_s": wall - sum(sum(q["seconds"].values()) for q in res),
            "keygen_s": keygen[0] if keygen else float("nan"), "1a": mean("1a"),
            "ap_inference": statistics.mean(ap_inf), "1b": mean("1b"), "2+3": mean("2+3"), "e2e": e2e,
            "answered": sum(q["answered"] for q in measured), "queries": len(measured)}


def make_query_file(path: Path, dataset: str, n: int) -> Path:
    """n queries for batch labelling: the dataset's query pool, repeated with one-pixel shifts so that
    every query is a distinct image (a pool of a few hundred digits cannot give 1,000 otherwise)."""
    import numpy as np

    from capc.learning.datasets import load_dataset

    ds = load_dataset(dataset)
    xs, ys = [], []
    shifts = [(0, 0), (1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (-1, -1)]
    for dy, dx in shifts:
        xs.append(np.roll(ds.x_query, (dy, dx), axis=(1, 2)))
        ys.append(ds.y_query)
    x, y = np.concatenate(xs)[:n], np.concatenate(ys)[:n]
    if len(x) < n:
        raise SystemExit(f"{dataset}: cannot make {n} distinct queries from its pool of {len(ds.x_query)}")
    np.savez(path, x=x, y=y)
    return path


def bench_batch(n_aps: int, n_queries: int, batch: int, dataset: str, base: Path,
                sequential: bool) -> dict[str, float]:
    from capc.parties.local import make_local_run

    query_file = make_query_file(base / "queries.npz", dataset, n_queries)
    run = make_local_run(base / f"batch-n{n_aps}", n_aps, list(range(n_queries)), dataset=dataset,
                         query_file=str(query_file), frac_bits=3,
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
    ap = [r["seconds"] for r in timing if r["step"] == "1a_he_inference_batch"]
    keygen = [r["seconds"] for r in timing if r["step"] == "setup_keygen"]
    labelling = sum(sum(q["seconds"].values()) for q in res)
    return {"N": n_aps, "queries": len(res), "batch": batch, "wall": wall, "labelling": labelling,
            "keygen": keygen[0] if keygen else float("nan"), "ap_batch": statistics.mean(ap) if ap else float("nan"),
            "answered": sum(q["answered"] for q in res)}


def print_table(head: list[str], rows: list[list[str]]) -> None:
    """Right-aligned columns, 9 characters wide."""
    for line in [head] + rows:
        print("  ".join(f"{cell:>9}" for cell in line))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parties", type=int, nargs="+", default=[1, 3, 5, 10])
    ap.add_argument("--queries", type=int, default=6, help="measured queries per N (plus one warm-up)")
    ap.add_argument("--dataset", default="digits28", choices=("digits28", "digits", "mnist"))
    ap.add_argument("--batch", type=int, default=0, help="measure batch labelling with batches of this size")
    ap.add_argument("--sequential", action="store_true",
                    help="with --batch: send each batch to the APs one after the other (bounds peak memory)")
    args = ap.parse_args()
    from capc.learning.default_models import default_model_paths

    print(f"training/loading {max(args.parties) + 1} {args.dataset} CryptoNets models ...", flush=True)
    default_model_paths(max(args.parties) + 1, dataset=args.dataset)
    if args.batch:
        with tempfile.TemporaryDirectory(prefix="capc-bench-") as tmp:
            rows = [bench_batch(n, args.queries, args.batch, args.dataset, Path(tmp), args.sequential)
                    for n in args.parties]
        load = os.getloadavg()
        print(f"\nCaPC batch labelling, {args.dataset} CryptoNets, {os.cpu_count()} cores, load average "
              f"{load[0]:.1f}; APs {'one after the other' if args.sequential else 'at once'}; seconds")
        print_table(["N", "queries", "batch", "keygen", "AP batch", "labelling", "per query", "wall", "answered"],
                    [[f"{r['N']:d}", f"{r['queries']:d}", f"{r['batch']:d}", f"{r['keygen']:.2f}",
                      f"{r['ap_batch']:.2f}", f"{r['labelling']:.2f}", f"{r['labelling'] / r['queries']:.4f}",
                      f"{r['wall']:.2f}", f"{r['answered']:d}"] for r in rows])
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="capc-bench-") as tmp:
        for n in args.parties:
            print(f"N = {n} ...", flush=True)
            rows.append(bench(n, args.queries, args.dataset, Path(tmp)))
    load = os.getloadavg()
    print(f"\nCaPC protocol, {args.dataset} CryptoNets, {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
          f"load average {load[0]:.1f}; seconds, means over {args.queries} queries after one warm-up")
    print_table(["N", "setup", "keygen", "1a", "AP infer", "1b", "2+3", "per query", "answered"],
                [[f"{r['N']:d}", f"{r['setup_s']:.2f}", f"{r['keygen_s']:.2f}", f"{r['1a']:.3f}",
                  f"{r['ap_inference']:.3f}", f"{r['1b']:.4f}", f"{r['2+3']:.4f}", f"{r['e2e']:.3f}",
                  f"{r['answered']}/{r['queries']}"] for r in rows])


if __name__ == "__main__":
    main()
