#!/usr/bin/env python3
"""Benchmark capc's garbled-circuit engine and print tables (run on an otherwise idle machine).

Rows:
* AND-gate throughput between two processes over loopback TCP (``gc_bench``): in layers of independent
  gates (as the circuits run them) and one gate at a time, with bytes per gate;
* ``argmax_share`` (C = 10, 100, 1000) and ``noisy_argmax`` (C = 10) as fresh process pairs (process start,
  connect, handshake, base OTs and the circuit all included), median wall time;
* the same circuits inside one :class:`capc.gc.GcSession` (garbler in a second process, loopback TCP, base
  OTs done): median ms per warm query, AND gates and bytes per query (both directions), the part of the
  bytes that is OT extension (the QP's sends), and the budget 32 B per AND gate + OT next to the EMP
  toolkit's bytes for the same query as reported in issue 13;
* the hybrid's GC layers at its register widths (``capc.he.hybrid.GC_WIDTHS``, 26-bit layer, 49-bit output,
  no shift): ``relu_share`` and ``maxpool_share`` (window 4, ReLU after) on a batch of n values, with
  microseconds, bytes and AND gates per element.

Usage: python scripts/bench_gc.py [--repeats N] [--gates N] [--batch N] [--json PATH]
``--json`` writes the parameters, versions, load averages and every measurement to PATH.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from capc.gc import GcSession, program_path  # noqa: E402
from capc.he.hybrid import GC_WIDTHS  # noqa: E402

#: Bytes per warm argmax_share query of the EMP toolkit (v0.3.x, same circuit), as measured side by side
#: in issue 13: the reference the engine's bytes are compared with.
EMP_ARGMAX_BYTES = {10: 91_000, 100: 970_000, 1000: 9_900_000}
POOL_WINDOW = 4
SEED = 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_gates(n: int) -> dict:
    """AND gates per second (layered and one at a time) and bytes per gate, from a gc_bench process pair."""
    exe, port = str(program_path("gc_bench")), free_port()
    a = subprocess.Popen([exe, "1", str(port), str(n)], stdout=subprocess.PIPE, text=True)
    b = subprocess.run([exe, "2", str(port), str(n)], capture_output=True, text=True, check=True)
    a.communicate(timeout=300)
    gates, seconds, _rate, _sent, recv, single, single_s = b.stdout.split()
    return {"and_gates": int(gates), "layered_gates_per_s": int(gates) / float(seconds),
            "single_gates_per_s": int(single) / float(single_s), "bytes_per_gate": int(recv) / int(gates)}


def fresh_pair(program: str, C: int, repeats: int) -> float:
    """Median wall time (s) of a fresh process pair, from starting the garbler to both exiting."""
    rng = np.random.default_rng(SEED)
    exe = str(program_path(program))
    times = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        if program == "argmax_share":
            alice = list(rng.integers(-2 ** 40, 2 ** 40, 2 * C))
        else:
            alice = list(rng.integers(-2 ** 40, 2 ** 40, 2 * C)) + [0, 0]
        bob = list(rng.integers(-2 ** 40, 2 ** 40, C))
        (d / "a.txt").write_text("".join(f"{v}\n" for v in alice))
        (d / "b.txt").write_text("".join(f"{v}\n" for v in bob))
        for _ in range(repeats):
            port = free_port()
            t0 = time.perf_counter()
            pa = subprocess.Popen([exe, "1", str(port), str(d / "a.txt")])
            pb = subprocess.Popen([exe, "2", str(port), str(d / "b.txt"), str(d / "out.txt")])
            if pb.wait(60) != 0 or pa.wait(60) != 0:
                raise RuntimeError(f"{program} failed")
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _call(s: GcSession, op: str, role: str, C: int, rng: np.random.Generator):
    """One query of `op` with C values (classes or layer elements) on this side."""
    x = rng.integers(-2 ** 22, 2 ** 22, C)
    if role == "garbler":
        if op == "argmax_share":
            return s.argmax_share_garbler(x, rng.integers(-2 ** 62, 2 ** 62, C))
        if op == "noisy_argmax":
            return s.noisy_argmax_garbler(rng.integers(0, 100, C), rng.integers(-5, 5, C), 0, 0)
        if op == "relu_share":
            return s.relu_share_garbler(x, rng.integers(-2 ** 46, 2 ** 46, C), **GC_WIDTHS)
        return s.maxpool_share_garbler(x, rng.integers(-2 ** 46, 2 ** 46, C // POOL_WINDOW), POOL_WINDOW,
                                       relu_after=True, **GC_WIDTHS)
    if op == "argmax_share":
        return s.argmax_share_evaluator(x)
    if op == "noisy_argmax":
        return s.noisy_argmax_evaluator(x)
    if op == "relu_share":
        return s.relu_share_evaluator(x, **GC_WIDTHS)
    return s.maxpool_share_evaluator(x, POOL_WINDOW, relu_after=True, **GC_WIDTHS)


def _garbler(sock: socket.socket, plan: list[tuple[str, int]], repeats: int) -> None:
    s = GcSession(sock, "garbler")
    rng = np.random.default_rng(SEED + 1)
    for op, C in plan:
        for _ in range(repeats + 1):
            _call(s, op, "garbler", C, rng)
    sock.close()


def in_session(plan: list[tuple[str, int]], repeats: int) -> dict[tuple[str, int], dict]:
    """Per (op, C): median seconds per warm query, and per query: bytes on the wire (both directions), bytes
    the QP sent (its OT extension and query header) and AND gates."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    ctx = mp.get_context("fork")
    cli = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    proc = ctx.Process(target=_garbler, args=(conn, plan, repeats))
    proc.start()
    conn.close()
    qp = GcSession(cli, "evaluator")
    rng = np.random.default_rng(SEED + 2)
    out = {}
    for op, C in plan:
        times, volumes, sent, gates = [], [], [], []
        for i in range(repeats + 1):  # the first query of a plan row is a warm-up
            before, sent0, g0 = qp.bytes_sent + qp.bytes_received, qp.bytes_sent, qp.and_gates
            t0 = time.perf_counter()
            _call(qp, op, "evaluator", C, rng)
            if i > 0:
                times.append(time.perf_counter() - t0)
                volumes.append(qp.bytes_sent + qp.bytes_received - before)
                sent.append(qp.bytes_sent - sent0)
                gates.append(qp.and_gates - g0)
        out[(op, C)] = {"seconds": statistics.median(times), "bytes": int(statistics.median(volumes)),
                        "qp_bytes": int(statistics.median(sent)), "and_gates": int(statistics.median(gates))}
    proc.join(60)
    cli.close()
    srv.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10, help="runs per row (median is reported)")
    ap.add_argument("--gates", type=int, default=20_000_000, help="AND gates for the throughput row")
    ap.add_argument("--batch", type=int, default=84_500, help="values per relu_share / maxpool_share call "
                    "(default: 845 activations x 100 queries; a multiple of 4)")
    ap.add_argument("--json", type=Path, default=None, help="write parameters, versions and results here")
    args = ap.parse_args()
    if args.batch <= 0 or args.batch % POOL_WINDOW:
        ap.error(f"--batch must be a positive multiple of {POOL_WINDOW}")
    from capc.gc import _engine

    record = {"parameters": {**vars(args), "json": str(args.json) if args.json else None, "seed": SEED,
                             "widths": GC_WIDTHS, "pool_window": POOL_WINDOW},
              "versions": {"python": platform.python_version(), "numpy": np.__version__,
                           "protocol": int(_engine.protocol_version), "aes_path": _engine.aes_path(),
                           "machine": platform.machine(), "cpus": os.cpu_count()},
              "load_average_start": os.getloadavg()}
    print(f"AES path: {_engine.aes_path()}; protocol version {_engine.protocol_version}; "
          f"load average at start {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    g = bench_gates(args.gates)
    record["gates"] = g
    print(f"\n{'measurement':<52} {'value':>12}")
    print(f"{'AND gates/s, layers of 1024 (garble+evaluate, loopback)':<52} {g['layered_gates_per_s'] / 1e6:>10.1f} M")
    print(f"{'AND gates/s, one at a time':<52} {g['single_gates_per_s'] / 1e6:>10.1f} M")
    print(f"{'bytes per AND gate':<52} {g['bytes_per_gate']:>12.1f}")

    plan = [("argmax_share", 10), ("argmax_share", 100), ("argmax_share", 1000), ("noisy_argmax", 10)]
    sess = in_session(plan, args.repeats)
    print(f"\n{'circuit':<13} {'C':>5} {'fresh ms':>9} {'ms/query':>9} {'AND/query':>10} {'bytes/query':>12} "
          f"{'OT bytes':>9} {'32 B*AND+OT':>12} {'EMP bytes':>10}")
    record["circuits"] = []
    for op, C in plan:
        fresh = fresh_pair(op, C, max(3, args.repeats // (1 if C <= 100 else 3)))
        r = sess[(op, C)]
        ot = r["qp_bytes"] - 20  # the QP sends its OT extension and its 20-byte query header
        budget = 32 * r["and_gates"] + ot
        emp = EMP_ARGMAX_BYTES.get(C) if op == "argmax_share" else None
        print(f"{op:<13} {C:>5} {fresh * 1e3:>9.1f} {r['seconds'] * 1e3:>9.2f} {r['and_gates']:>10} "
              f"{r['bytes']:>12} {ot:>9} {budget:>12} {emp if emp else '-':>10}")
        record["circuits"].append({"op": op, "C": C, "fresh_pair_s": fresh, **r, "ot_bytes": ot,
                                   "budget_32B_per_and_plus_ot": budget, "emp_bytes_reported": emp})
    print("(bytes/query = 32 B per AND gate + OT + 16 B of output table per class + headers; "
          "EMP: its bytes for the same query as reported in issue 13)")

    n = args.batch
    layers = [("relu_share", n), ("maxpool_share", n)]
    sess = in_session(layers, max(1, args.repeats // 5))
    print(f"\n{'layer (26/49 bits, shift 0)':<30} {'n':>7} {'s/call':>8} {'us/element':>11} {'bytes/element':>14} "
          f"{'AND/element':>12}")
    record["layers"] = []
    for op, C in layers:
        r = sess[(op, C)]
        name = op if op == "relu_share" else f"{op} (w {POOL_WINDOW}, ReLU)"
        print(f"{name:<30} {C:>7} {r['seconds']:>8.3f} {r['seconds'] / C * 1e6:>11.2f} {r['bytes'] / C:>14.0f} "
              f"{r['and_gates'] / C:>12.1f}")
        record["layers"].append({"op": op, "n": C, **r, "us_per_element": r["seconds"] / C * 1e6,
                                 "bytes_per_element": r["bytes"] / C, "and_per_element": r["and_gates"] / C})
    record["load_average_end"] = os.getloadavg()
    print(f"\nload average (1/5/15 min) at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
