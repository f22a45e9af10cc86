"""Benchmark of capc.privacy: time to draw one query's privacy-guardian noise (C discrete-Gaussian
samples of scale 2^g sigma_G plus the threshold sample) and the latency of a ledger reserve + settle.

Usage: python scripts/bench_privacy.py [--reps N]
Prints a table; numbers depend on machine load (report them with the load they were measured under).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from capc.privacy.gnmax import ConfidentGNMaxParams, PrivacyGuardianNoise
from capc.privacy.ledger import BudgetLedger


def _time_noise(sigma_g: float, g: int, classes: int, reps: int) -> tuple[float, float]:
    noise = PrivacyGuardianNoise(ConfidentGNMaxParams(sigma_g, sigma_g * 4, 1, g))
    noise.draw(classes)  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        noise.draw(classes)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, max(times) * 1e3


def _time_ledger(reps: int) -> tuple[float, float]:
    worst = ConfidentGNMaxParams(7, 30, 50).worst_case_events()
    with tempfile.TemporaryDirectory() as d:
        with BudgetLedger(Path(d) / "bench.sqlite", float("inf"), 1e-5) as led:
            times = []
            for i in range(reps):
                t0 = time.perf_counter()
                led.reserve("qp", str(i), worst)
                led.settle("qp", str(i), answered=i % 2 == 0)
                times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, max(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    print(f"{'sigma_G':>8} {'g':>3} {'C':>6} {'2^g sigma':>10} {'median ms':>10} {'max ms':>8}")
    for sigma_g, g, classes in [(1, 0, 10), (7, 8, 10), (40, 0, 1000), (40, 8, 100), (40, 8, 1000), (40, 12, 1000)]:
        med, worst = _time_noise(sigma_g, g, classes, args.reps)
        print(f"{sigma_g:>8} {g:>3} {classes:>6} {sigma_g * 2**g:>10} {med:>10.2f} {worst:>8.2f}")
    med, worst = _time_ledger(args.reps * 5)
    print(f"\nledger reserve+settle (WAL, synchronous=FULL): median {med:.2f} ms, max {worst:.2f} ms")


if __name__ == "__main__":
    main()
