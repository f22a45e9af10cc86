#!/usr/bin/env python3
"""Benchmark capc.he on the 28x28 CryptoNets network (random weights) and print a table.

Network: conv 5x5 stride 2 SAME, 5 channels (980) -> square -> dense 100 -> square -> dense 10.
Single-query packing is always measured; ``--batch B`` also measures batch packing with B queries
(memory grows with the 784 query ciphertexts).  Times are medians over ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def cryptonets(seed: int = 0):
    import keras

    from capc.he.layers import Square

    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(5, 5, strides=2, padding="same"),
                             Square(), keras.layers.Flatten(), keras.layers.Dense(100), Square(),
                             keras.layers.Dense(10)])


def timed(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", help="HE parameter file (default: capc's recommendation)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=0, help="also measure batch packing with this many queries")
    args = ap.parse_args()

    from capc import fixedpoint
    from capc.config import load_he_params
    from capc.he import ModelEvaluator, QueryKeys, choose_params, compile_model

    plan = compile_model(cryptonets())
    he = load_he_params(args.params) if args.params else None
    rows: list[tuple[str, str]] = []
    setup = choose_params(plan, he)
    p = setup.he_params
    rows.append(("parameters", f"N={p.poly_modulus_degree} q={list(p.coeff_modulus)} scale=2^{p.log2_scale:g}"))
    t, keys = timed(lambda: QueryKeys(plan, setup), 1)
    rows.append(("single: keygen (QP)", f"{t:.2f} s"))
    rows.append(("single: public keys (relin + Galois)",
                 f"{keys.sizes['public_context'] / 1e6:.1f} MB ({keys.sizes['galois_key_count']} Galois keys)"))
    t, ev = timed(lambda: ModelEvaluator(plan, keys.public_context()), 1)
    rows.append(("single: AP set-up (load keys, encode weights)", f"{t:.2f} s"))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (28, 28, 1))
    t, q = timed(lambda: keys.encrypt(x), args.repeat)
    rows.append(("single: encrypt", f"{t * 1e3:.1f} ms, query {len(q) / 1e6:.2f} MB"))
    t, r = timed(lambda: ev.evaluate(q), args.repeat)
    rows.append(("single: AP inference (unmasked)", f"{t:.3f} s"))
    t, (rb, b) = timed(lambda: ev.evaluate_masked(q, setup.frac_bits), args.repeat)
    rows.append(("single: AP inference + mask", f"{t:.3f} s, result {len(rb) / 1e6:.2f} MB"))
    t, v = timed(lambda: keys.decrypt_logits(rb), args.repeat)
    rows.append(("single: decrypt", f"{t * 1e3:.1f} ms"))
    err = np.abs(keys.decrypt_logits(r) - plan.forward(x)).max()
    total = fixedpoint.to_signed(fixedpoint.reconstruct(fixedpoint.encode(v, setup.frac_bits), b))
    dev = np.abs(total - fixedpoint.to_signed(fixedpoint.encode(plan.forward(x), setup.frac_bits))).max()
    rows.append(("single: max |logit error| / share deviation", f"{err:.2e} / {dev} (f={setup.frac_bits})"))
    h = ev.last_hiding
    rows.append(("single: hiding bits per logit / whole result",
                 f"{h['per_logit_bits']:.0f} / {h['result_bits']:.1f}"))
    del ev, keys
    if args.batch:
        bs = choose_params(plan, he, packing="batch")
        keys = QueryKeys(plan, bs, packing="batch")
        ev = ModelEvaluator(plan, keys.public_context())
        xb = rng.uniform(0, 1, (args.batch, 28, 28, 1))
        t, qb = timed(lambda: keys.encrypt(xb), 1)
        rows.append((f"batch {args.batch}: encrypt", f"{t:.1f} s, query {len(qb) / 1e6:.0f} MB"))
        t, (rb, b) = timed(lambda: ev.evaluate_masked(qb, bs.frac_bits), 1)
        rows.append((f"batch {args.batch}: AP inference + mask",
                     f"{t:.1f} s = {t / args.batch * 1e3:.2f} ms/query (max batch {bs.he_params.slots})"))
        t, vb = timed(lambda: keys.decrypt_logits(rb), 1)
        agree = (vb + fixedpoint.decode(b, bs.frac_bits)).argmax(1) == plan.forward(xb).argmax(1)
        rows.append((f"batch {args.batch}: decrypt, result", f"{t * 1e3:.0f} ms, {len(rb) / 1e6:.1f} MB, "
                     f"argmax agreement {agree.mean() * 100:.2f} %"))
    from capc.he.evaluator import ModelEvaluator as _E

    rows.append(("peak memory (this process)", f"{_E.peak_memory_mb():.0f} MB"))
    width = max(len(k) for k, _ in rows)
    print(f"| {'measurement'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for k, val in rows:
        print(f"| {k.ljust(width)} | {val} |")


if __name__ == "__main__":
    main()
