#!/usr/bin/env python3
"""Benchmark capc.he on the 28x28 CryptoNets network (random weights) and print a table.

Network: conv 5x5 stride 2 SAME, 5 channels (980) -> square -> dense 100 -> square -> dense 10.
``--model_type cryptonets-relu`` or ``mlp`` measures the original demo's ReLU layouts instead: one row
per CKKS segment (the AP's masked evaluation, query and result bytes) for single packing and each
``--batch`` size; the garbled-circuit layers between segments are measured by bench_protocol.py.
Single-query packing is measured unless ``--no-single``; ``--batch B [B ...]`` also measures batch
packing at each batch size, with ``--workers`` processes: a batch of B queries gets the most lanes
per query (capc.he.lanes, up to 16) that fit its B in N/2 slots, so up to N/32 queries run with 16
lanes, up to N/16 with 8, and larger batches with one lane cost the same up to N/2 queries.  Times are medians over ``--repeat``
runs; run it with ``nice`` on a shared machine and read the load average in the last row.
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
    ap.add_argument("--batch", type=int, nargs="*", default=[],
                    help="also measure batch packing with these batch sizes (e.g. 8192 1024)")
    ap.add_argument("--workers", type=int, default=None, help="batch worker processes (default min(2, cores))")
    ap.add_argument("--no-single", action="store_true", help="skip the single-query rows")
    ap.add_argument("--model_type", default="cryptonets", choices=("cryptonets", "cryptonets-relu", "mlp"))
    ap.add_argument("--round_exp", type=int, default=3, help="fraction bits f (ReLU layouts)")
    args = ap.parse_args()
    if args.model_type != "cryptonets":
        return hybrid_main(args)

    from capc import fixedpoint
    from capc.config import load_he_params
    from capc.he import ModelEvaluator, QueryKeys, choose_params, compile_model

    plan = compile_model(cryptonets())
    he = load_he_params(args.params) if args.params else None
    rows: list[tuple[str, str]] = []
    setup = choose_params(plan, he)
    p = setup.he_params
    rows.append(("parameters", f"N={p.poly_modulus_degree} q={list(p.coeff_modulus)} scale=2^{p.log2_scale:g}"))
    rng = np.random.default_rng(0)
    if not args.no_single:
        t, keys = timed(lambda: QueryKeys(plan, setup), 1)
        rows.append(("single: keygen (QP)", f"{t:.2f} s"))
        rows.append(("single: public keys (relin + Galois)",
                     f"{keys.sizes['public_context'] / 1e6:.1f} MB ({keys.sizes['galois_key_count']} Galois keys)"))
        t, ev = timed(lambda: ModelEvaluator(plan, keys.public_context()), 1)
        rows.append(("single: AP set-up (load keys, encode weights)", f"{t:.2f} s"))
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
        from capc.he.batch import default_workers

        enc_workers = args.workers or default_workers()
        t, keys = timed(lambda: QueryKeys(plan, bs, packing="batch", encrypt_workers=enc_workers), 1)
        keys.warm_up()
        rows.append(("batch: keygen (QP), public keys", f"{t:.2f} s, {keys.sizes['public_context'] / 1e6:.1f} MB "
                     f"(relin + {keys.sizes['galois_key_count']} Galois keys for the lane sum)"))
        t, ev = timed(lambda: ModelEvaluator(plan, keys.public_context(), workers=args.workers), 1)
        rows.append(("batch: AP set-up", f"{t:.2f} s, {ev.workers} worker process(es)"))
        for n in args.batch:
            xb = rng.uniform(0, 1, (n, 28, 28, 1))
            tag = f"batch {n} ({keys.batch_layout(0, n).lanes} lanes)"
            keys.encrypt(xb[:64])  # warm-up: waits for the encryption workers to start
            t, qb = timed(lambda: keys.encrypt(xb), 1)
            rows.append((f"{tag}: encrypt ({enc_workers} processes)",
                         f"{t:.1f} s = {t / n * 1e3:.2f} ms/query, query {len(qb) / 1e6:.0f} MB"))
            ev.evaluate(qb)  # warm-up: starts the worker processes
            t, r = timed(lambda: ev.evaluate(qb), args.repeat)
            rows.append((f"{tag}: AP inference (unmasked)", f"{t:.1f} s = {t / n * 1e3:.2f} ms/query"))
            t, (rb, b) = timed(lambda: ev.evaluate_masked(qb, bs.frac_bits), args.repeat)
            rows.append((f"{tag}: AP inference + mask",
                         f"{t:.1f} s = {t / n * 1e3:.2f} ms/query, result {len(rb) / 1e6:.1f} MB"))
            t, vb = timed(lambda: keys.decrypt_logits(rb), 1)
            ref = plan.forward(xb)
            z = keys.decrypt_logits(r)
            err = np.abs(z - ref).max()
            agree = (z.argmax(1) == ref.argmax(1)).mean()
            f = bs.frac_bits
            total = fixedpoint.to_signed(fixedpoint.reconstruct(fixedpoint.encode(vb, f), b))
            dev = np.abs(total - fixedpoint.to_signed(fixedpoint.encode(ref, f))).max()
            rows.append((f"{tag}: decrypt", f"{t * 1e3:.0f} ms"))
            rows.append((f"{tag}: max |logit error|, argmax agreement, share deviation",
                         f"{err:.2e}, {agree * 100:.2f} %, {dev} (f={f})"))
            h = ev.last_hiding
            rows.append((f"{tag}: hiding bits per logit / whole result",
                         f"{h['per_logit_bits']:.0f} / {h['result_bits']:.1f}"))
            del qb, r, rb
        ev.close()
        keys.close()
    from capc.he.evaluator import ModelEvaluator as _E

    rows.append(("peak memory (this process / largest child)",
                 f"{_E.peak_memory_mb():.0f} MB / "
                 f"{__import__('resource').getrusage(__import__('resource').RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB"))
    rows.append(("load average (1/5/15 min) at the end", " ".join(f"{v:.2f}" for v in os.getloadavg())))
    width = max(len(k) for k, _ in rows)
    print(f"| {'measurement'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for k, val in rows:
        print(f"| {k.ljust(width)} | {val} |")


def print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"| {'measurement'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for k, val in rows:
        print(f"| {k.ljust(width)} | {val} |")


def hybrid_main(args: argparse.Namespace) -> None:
    """Per-segment costs of a ReLU layout (random weights), single packing and each batch size."""
    from capc import fixedpoint
    from capc.config import load_he_params
    from capc.he import ModelEvaluator, QueryKeys, choose_params, compile_model
    from capc.learning.architectures import build_cryptonets_layout

    import keras

    keras.utils.set_random_seed(0)
    plan = compile_model(build_cryptonets_layout(args.model_type, (28, 28, 1)))
    he = load_he_params(args.params) if args.params else None
    f = args.round_exp
    rng = np.random.default_rng(0)
    rows: list[tuple[str, str]] = [("model", f"{args.model_type}: {len(plan.segments)} CKKS segments, "
                                             f"{len(plan.gc_layers)} GC layers")]
    runs = ([] if args.no_single else [("single", 1)]) + [("batch", n) for n in args.batch]
    for packing, n in runs:
        setup = choose_params(plan.public_plan, he, packing=packing, frac_bits=f)
        p = setup.he_params
        tag = "single" if packing == "single" else f"batch {n}"
        rows.append((f"{tag}: parameters", f"N={p.poly_modulus_degree} q={list(p.coeff_modulus)} "
                                           f"scale=2^{p.log2_scale:g}"))
        keys = QueryKeys(plan.public_plan, setup, packing=packing)
        ev = ModelEvaluator(plan, keys.public_context(), workers=args.workers)
        rows.append((f"{tag}: public context", f"{keys.sizes['public_context'] / 1e6:.1f} MB "
                                              f"({keys.sizes['galois_key_count']} Galois keys)"))
        total = 0.0
        for k, seg in enumerate(plan.segments):
            if k == 0:
                x = rng.uniform(0, 1, (n, 28, 28, 1))
                unmask = None
            else:  # masked activations, as the QP re-encrypts them after a GC layer
                m = ev.activation_mask(k - 1, n, f)
                x = fixedpoint.decode(fixedpoint.sub(fixedpoint.encode(
                    np.abs(rng.normal(0, 1, (n, seg.input_size))), f), m), f)
                unmask = m
            arg = x[0] if packing == "single" else x
            um = None if unmask is None else (unmask[0] if packing == "single" else unmask)
            te, q = timed(lambda: keys.encrypt(arg, segment=k), 1)
            t, (rb, _) = timed(lambda: ev.evaluate_masked(q, f, um), args.repeat)
            td, _ = timed(lambda: keys.decrypt_logits(rb), 1)
            total += te + t + td
            rows.append((f"{tag}: segment {k} ({seg.input_size} -> {seg.num_classes})",
                         f"encrypt {te * 1e3:.0f} ms, AP {t * 1e3:.0f} ms, decrypt {td * 1e3:.0f} ms; "
                         f"query {len(q) / 1e6:.2f} MB, result {len(rb) / 1e6:.2f} MB"))
        rows.append((f"{tag}: HE per query (all segments, one AP)", f"{total / n * 1e3:.1f} ms"))
        ev.close()
        keys.close()
    rows.append(("load average (1/5/15 min) at the end", " ".join(f"{v:.2f}" for v in os.getloadavg())))
    print_rows(rows)


if __name__ == "__main__":
    main()
