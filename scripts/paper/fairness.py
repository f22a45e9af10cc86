#!/usr/bin/env python3
"""Fairness: IID vs the weak-class split, balanced and per-class accuracy before/after CaPC.

Under --partitions weak the querying parties (ids 0..Q-1) get only --weak_class_ratio of their
fair share of each --weak_classes class (the original's ``load_private_data_imbalanced``); the
answering parties split the rest. CaPC labels from the answering parties should repair the weak
classes, which accuracy alone hides and balanced / per-class accuracy shows. Under iid every party
gets an equal contiguous slice. Each partition runs once per --model_seeds seed, retraining over
--retrain_seeds; the summary reports mean ± std over querying parties, model seeds and retraining
seeds, including weak_before / weak_after (the mean accuracy over the weak classes) and every
class's accuracy.

Writes fairness.csv (resumable: (partition, model seed) pairs already in it are skipped),
fairness_summary.csv (mean/std columns), .png (per-class accuracy) and .json into --out.

    python scripts/paper/fairness.py --out results/fairness

Paper scale (SVHN, K = 250 VGG7 parties, weak classes 1 and 2 at 10%):

    python scripts/paper/fairness.py --out results/fairness_svhn --dataset svhn --data_dir DATA/svhn \
        --n_parties 250 --num_querying_parties 3 --architectures VGG7 --epochs 200 \
        --queries_per_party 3000 --budget 2 --model_seeds 0 --retrain_seeds 11,13,17,113,117 --use_ray
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # allow running from a source checkout without installing
    sys.path.insert(0, str(ROOT))

from capc.learning.argtypes import int_list  # noqa: E402
from capc.learning.paper_sweep import (  # noqa: E402
    NUM_CLASSES, RUN_FIELDS, add_simulation_args, per_class_fields, print_summary, run_sweep, script_parser)
from capc.learning.results_folder import ResultsFolder  # noqa: E402

NAME = "fairness"
KEYS = ["partition", "weak_classes", "weak_class_ratio"]
DERIVED = ["weak_before", "weak_after"]


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    p = script_parser(__doc__)
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--partitions", type=lambda s: [t.strip() for t in s.split(",") if t.strip()],
                   default=["iid", "weak"], help="iid and/or weak")
    p.add_argument("--weak_classes", type=int_list, default=[1, 2])
    p.add_argument("--weak_class_ratio", type=float, default=0.1)
    add_simulation_args(p, epochs=20, queries_per_party=150)
    return p


def _weak_mean(which: str, weak: list[int]):
    def fn(row: dict) -> str:
        vals = [float(row[f"{which}_c{c}"]) for c in weak if row.get(f"{which}_c{c}") not in (None, "")]
        return f"{sum(vals) / len(vals):.4f}" if vals else ""
    return fn


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    from capc.errors import CapcError

    bad = [c for c in args.weak_classes if not 0 <= c < NUM_CLASSES]
    if not args.weak_classes or bad:
        print(f"{NAME}: --weak_classes must be classes 0..{NUM_CLASSES - 1}, got {args.weak_classes}", file=sys.stderr)
        return 2
    folder = ResultsFolder(args.out, NAME, KEYS + RUN_FIELDS + DERIVED + per_class_fields(NUM_CLASSES))
    # The weak classes are measured under iid too (the same columns), so the two rows compare.
    configs = [{"partition": part, "weak_classes": tuple(args.weak_classes), "weak_class_ratio": args.weak_class_ratio}
               for part in args.partitions]
    derived = {"weak_before": _weak_mean("before", args.weak_classes),
               "weak_after": _weak_mean("after", args.weak_classes)}
    try:
        summary = run_sweep(folder, args, configs, KEYS, "fairness", per_class=True, derived=derived)
    except CapcError as exc:
        print(f"{NAME}: {exc}", file=sys.stderr)
        return 2
    want = {(p, ",".join(map(str, args.weak_classes)), repr(args.weak_class_ratio)) for p in args.partitions}
    summary = [r for r in summary if (r["partition"], r["weak_classes"], r["weak_class_ratio"]) in want]
    _plot(folder, args, summary)
    print_summary(summary, KEYS)
    for r in summary:
        print(f"partition={r['partition']}: weak classes {args.weak_classes} accuracy "
              f"{float(r['weak_before_mean']):.4f}±{float(r['weak_before_std']):.4f} -> "
              f"{float(r['weak_after_mean']):.4f}±{float(r['weak_after_std']):.4f}")
    return 0


def _plot(folder: ResultsFolder, args: argparse.Namespace, summary: list[dict]) -> None:
    classes = list(range(NUM_CLASSES))
    title = (f"{args.dataset}, K = {args.n_parties}, weak classes {args.weak_classes} at "
             f"{args.weak_class_ratio:g}, budget eps = {args.budget:g}")
    with folder.figure(title) as ax:
        for c in args.weak_classes:
            ax.axvspan(c - 0.4, c + 0.4, color="0.9")
        for i, r in enumerate(summary):
            off = (i - (len(summary) - 1) / 2) * 0.15
            for which, style in (("before", "--"), ("after", "-")):
                ys = [float(r[f"{which}_c{c}_mean"] or "nan") for c in classes]
                es = [float(r[f"{which}_c{c}_std"] or "nan") for c in classes]
                ax.errorbar([c + off for c in classes], ys, yerr=es, fmt="o" + style, ms=3, capsize=2,
                            label=f"{r['partition']} {which} (balanced {float(r[f'balanced_{which}_mean']):.3f})")
        ax.set_xticks(classes)
        ax.set_xlabel("class (weak classes shaded)")
        ax.set_ylabel("querying party per-class accuracy")


if __name__ == "__main__":
    sys.exit(main())
