#!/usr/bin/env python3
"""Benchmark capc.net over real mutual-TLS sockets on 127.0.0.1 and print a table.

Measures: connection set-up (TCP + TLS 1.3 + Hello/HelloAck), small control-message round trips,
large-message throughput (PublicContext / QueryRequest sizes) and raw 2PC byte-stream throughput in
small writes, as a garbled-circuit engine would produce. Run: ``python scripts/bench_net.py``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time

import numpy as np

from capc.net import (Listener, PartyTLS, PublicContext, Shutdown, StepDone, VoteShare, connect,
                      make_run_pki)

RUN = "bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connects", type=int, default=20)
    ap.add_argument("--round-trips", type=int, default=500)
    ap.add_argument("--big-mib", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--raw-mib", type=int, default=8)
    ap.add_argument("--raw-chunk", type=int, default=16,
                    help="bytes per raw_io write (16 = one garbled label)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as d:
        make_run_pki(d, ["qp-0", "pg"])
        qp, pg = PartyTLS.load(d, "qp-0"), PartyTLS.load(d, "pg")
        rows: list[tuple[str, str]] = []
        with Listener(tls=pg, allowed_peers=["qp-0"], run_id=RUN) as lst:
            # 1. connection set-up
            def accept_n(n: int) -> None:
                for _ in range(n):
                    ch, _ = lst.accept(timeout=30)
                    ch.recv(Shutdown, timeout=30)
                    ch.close()
            t = threading.Thread(target=accept_n, args=(args.connects,))
            t.start()
            times = []
            for _ in range(args.connects):
                t0 = time.perf_counter()
                ch = connect("127.0.0.1", lst.port, qp, "pg", 30, run_id=RUN)
                times.append(time.perf_counter() - t0)
                ch.send(Shutdown())
                ch.close()
            t.join()
            rows.append(("connect (TCP+TLS1.3+Hello), median", f"{1e3 * statistics.median(times):.2f} ms"))

            # 2..4 on one channel
            def serve() -> None:
                ch, _ = lst.accept(timeout=30)
                with ch:
                    for _ in range(args.round_trips):
                        m = ch.recv(VoteShare, timeout=30)
                        ch.send(StepDone(int(m.query_ids[0]), "vote_share"))
                    for _ in args.big_mib:
                        ch.recv(PublicContext, timeout=120)
                        ch.send(StepDone(0, "context"))
                    io = ch.raw_io(timeout=60)
                    buf = bytearray(1 << 16)
                    for mib in (args.raw_mib, args.raw_mib * 4):
                        left = mib << 20
                        while left:
                            left -= io.recv_into(buf, min(len(buf), left))
                        io.sendall(b"k")
                    ch.recv(Shutdown, timeout=30)
            t = threading.Thread(target=serve)
            t.start()
            ch = connect("127.0.0.1", lst.port, qp, "pg", 30, run_id=RUN)
            share = np.arange(10, dtype=np.uint64).reshape(1, 10)
            t0 = time.perf_counter()
            for i in range(args.round_trips):
                ch.send(VoteShare("qp-0", np.array([i], dtype=np.uint64), 10, share))
                ch.recv(StepDone, timeout=30)
            dt = (time.perf_counter() - t0) / args.round_trips
            rows.append(("VoteShare(C=10) -> StepDone round trip", f"{1e6 * dt:.0f} us"))
            for mib in args.big_mib:
                blob = np.random.default_rng(mib).bytes(mib << 20)
                t0 = time.perf_counter()
                ch.send(PublicContext(blob, {"n": 8192}), timeout=120)
                ch.recv(StepDone, timeout=120)
                dt = time.perf_counter() - t0
                rows.append((f"PublicContext {mib} MiB send+decode+ack", f"{dt:.3f} s ({mib / dt:.0f} MiB/s)"))
            for buffered, chunk_size, mib in ((True, args.raw_chunk, args.raw_mib),
                                              (False, 65536, args.raw_mib * 4)):
                io = ch.raw_io(timeout=60, buffered=buffered)
                chunk = bytes(chunk_size)
                t0 = time.perf_counter()
                for _ in range((mib << 20) // chunk_size):
                    io.sendall(chunk)
                io.recv_exact(1)
                dt = time.perf_counter() - t0
                rows.append((f"raw_io {mib} MiB in {chunk_size} B writes, "
                             f"{'buffered' if buffered else 'unbuffered'}",
                             f"{dt:.3f} s ({mib / dt:.0f} MiB/s)"))
            ch.send(Shutdown())
            t.join()
            ch.close()

    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  result")
    print("-" * (width + 24))
    for name, val in rows:
        print(f"{name:<{width}}  {val}")


if __name__ == "__main__":
    main()
