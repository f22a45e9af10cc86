#!/usr/bin/env python3
"""Benchmark capc's garbled-circuit engine and print a table (run on an otherwise idle machine).

Rows:
* AND-gate throughput between two processes over loopback TCP (``gc_bench``), with bytes per gate;
* ``argmax_share`` / ``noisy_argmax`` as fresh process pairs (process start, connect, handshake, base OTs
  and the circuit all included), median wall time of several runs;
* the same circuits inside one :class:`capc.gc.GcSession` (garbler in a second process, loopback TCP,
  base OTs already done), median time per query and bytes sent by both sides per query;
* ``relu_share`` (shift 8) and ``maxpool_share`` (window 4, shift 8) on a batch of n values in a session,
  with time and bytes per element.

Usage: python scripts/bench_gc.py [--repeats N] [--gates N]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_gates(n: int) -> tuple[float, float]:
    """Return (AND gates per second, bytes per gate) from a gc_bench process pair."""
    exe, port = str(program_path("gc_bench")), free_port()
    a = subprocess.Popen([exe, "1", str(port), str(n)], stdout=subprocess.PIPE, text=True)
    b = subprocess.run([exe, "2", str(port), str(n)], capture_output=True, text=True, check=True)
    a.communicate(timeout=300)
    gates, seconds, _rate, sent, _recv = b.stdout.split()
    recv = int(_recv)
    return int(gates) / float(seconds), recv / int(gates)


def fresh_pair(program: str, C: int, repeats: int) -> float:
    """Median wall time (s) of a fresh process pair, from starting the garbler to both exiting."""
    rng = np.random.default_rng(0)
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


POOL_WINDOW = 4


def _garbler(sock: socket.socket, plan: list[tuple[str, int]], repeats: int) -> None:
    s = GcSession(sock, "garbler")
    rng = np.random.default_rng(1)
    for op, C in plan:
        for _ in range(repeats + 1):
            if op == "argmax_share":
                s.argmax_share_garbler(rng.integers(-2 ** 40, 2 ** 40, C), rng.integers(-2 ** 62, 2 ** 62, C))
            elif op == "relu_share":
                s.relu_share_garbler(rng.integers(-2 ** 40, 2 ** 40, C), rng.integers(-2 ** 30, 2 ** 30, C), shift=8)
            elif op == "maxpool_share":
                s.maxpool_share_garbler(rng.integers(-2 ** 40, 2 ** 40, C), rng.integers(-2 ** 30, 2 ** 30, C // 4),
                                        POOL_WINDOW, shift=8)
            else:
                s.noisy_argmax_garbler(rng.integers(0, 100, C), rng.integers(-5, 5, C), 0, 0)
    sock.close()


def in_session(plan: list[tuple[str, int]], repeats: int) -> dict[tuple[str, int], tuple[float, int]]:
    """Per (op, C): median seconds per query and bytes on the wire per query (both directions)."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    ctx = mp.get_context("fork")
    cli = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    proc = ctx.Process(target=_garbler, args=(conn, plan, repeats))
    proc.start()
    conn.close()
    qp = GcSession(cli, "evaluator")
    rng = np.random.default_rng(2)
    out = {}
    for op, C in plan:
        times, volumes = [], []
        for i in range(repeats + 1):  # the first query of a plan row is a warm-up
            x = rng.integers(-2 ** 40, 2 ** 40, C)
            before = qp.bytes_sent + qp.bytes_received
            t0 = time.perf_counter()
            if op == "argmax_share":
                qp.argmax_share_evaluator(x)
            elif op == "relu_share":
                qp.relu_share_evaluator(x, shift=8)
            elif op == "maxpool_share":
                qp.maxpool_share_evaluator(x, POOL_WINDOW, shift=8)
            else:
                qp.noisy_argmax_evaluator(x)
            if i > 0:
                times.append(time.perf_counter() - t0)
                volumes.append(qp.bytes_sent + qp.bytes_received - before)
        out[(op, C)] = (statistics.median(times), int(statistics.median(volumes)))
    proc.join(60)
    cli.close()
    srv.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10, help="runs per row (median is reported)")
    ap.add_argument("--gates", type=int, default=20_000_000, help="AND gates for the throughput row")
    ap.add_argument("--batch", type=int, default=84_500, help="values per relu_share / maxpool_share call "
                    "(default: 845 activations x 100 queries)")
    args = ap.parse_args()
    from capc.gc import _engine

    print(f"AES-NI: {'yes' if _engine.aesni_enabled() else 'no (OpenSSL path)'}")
    rate, per_gate = bench_gates(args.gates)
    print(f"\n{'measurement':<46} {'value':>14}")
    print(f"{'AND gates/s (garble+evaluate, loopback)':<46} {rate / 1e6:>11.1f} M")
    print(f"{'bytes per AND gate':<46} {per_gate:>14.1f}")
    plan = [("argmax_share", 10), ("argmax_share", 100), ("argmax_share", 1000), ("noisy_argmax", 10)]
    print(f"\n{'circuit':<14} {'C':>5} {'fresh pair ms':>14} {'session ms/query':>17} {'bytes/query':>12}")
    sess = in_session(plan, args.repeats)
    for op, C in plan:
        fresh = fresh_pair(op, C, max(3, args.repeats // (1 if C <= 100 else 3)))
        t, vol = sess[(op, C)]
        print(f"{op:<14} {C:>5} {fresh * 1e3:>14.1f} {t * 1e3:>17.2f} {vol:>12}")
    n = args.batch
    layers = [("relu_share", n), ("maxpool_share", n)]
    sess = in_session(layers, max(1, args.repeats // 5))
    print(f"\n{'layer (shift 8)':<24} {'n':>7} {'session ms/call':>16} {'us/element':>11} {'bytes/element':>14}")
    for op, C in layers:
        t, vol = sess[(op, C)]
        name = op if op == "relu_share" else f"{op} (window {POOL_WINDOW})"
        print(f"{name:<24} {C:>7} {t * 1e3:>16.1f} {t / C * 1e6:>11.2f} {vol / C:>14.0f}")


if __name__ == "__main__":
    main()
