#!/usr/bin/env python3
"""Querying parties' accuracy before/after CaPC vs the number of parties K (plaintext simulation).

For each K the training split is cut IID among K parties (so each party holds 1/K of it), every
party trains its model, the querying party buys labels for its most uncertain pool queries through
Confident-GNMax over the other K - 1 parties' votes (the paper's preset for K unless sigmas are
given; exact discrete-Gaussian noise; the protocol's data-independent ledger stops at --budget),
and retrains from scratch with and without them. Every K runs once per --model_seeds seed; each
run retrains over --retrain_seeds. The summary reports mean ± std over querying parties, model
seeds and retraining seeds.

Writes accuracy_vs_parties.csv (one row per run and retraining seed; resumable: (K, model seed)
pairs already in it are skipped), accuracy_vs_parties_summary.csv (mean/std columns), .png (error
bars) and .json (parameters, seeds, versions, timings) into --out.

Small default (digits, K = 5/10/20, cryptonets party models, 20 epochs; a few minutes on 2 cores):

    python scripts/paper/accuracy_vs_parties.py --out results/accuracy_vs_parties

Paper scale (SVHN, VGG7 parties as the original, K up to 250, 3 querying parties, budget 2):

    python scripts/paper/accuracy_vs_parties.py --out results/accuracy_vs_parties_svhn \
        --dataset svhn --data_dir DATA/svhn --parties 50,100,150,200,250 --num_querying_parties 3 \
        --architectures VGG7 --epochs 200 --queries_per_party 3000 --budget 2 \
        --model_seeds 0 --retrain_seeds 11,13,17,113,117 --use_ray   # or --ray_address auto
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
    RUN_FIELDS, add_simulation_args, before_after, print_summary, run_sweep, script_parser)
from capc.learning.results_folder import ResultsFolder  # noqa: E402

NAME = "accuracy_vs_parties"
KEYS = ["n_parties"]


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    p = script_parser(__doc__)
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--parties", type=int_list, default=[5, 10, 20], help="the values of K swept")
    add_simulation_args(p, swept=("n_parties",), epochs=20)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    from capc.errors import CapcError

    folder = ResultsFolder(args.out, NAME, KEYS + RUN_FIELDS)
    try:
        summary = run_sweep(folder, args, [{"n_parties": k} for k in args.parties], KEYS, "accuracy vs K")
    except CapcError as exc:
        print(f"{NAME}: {exc}", file=sys.stderr)
        return 2
    summary.sort(key=lambda r: int(r["n_parties"]))
    ks = [int(r["n_parties"]) for r in summary]
    with folder.figure(f"{args.dataset}, IID, budget eps = {args.budget:g}, "
                       f"{len(args.model_seeds)}x{len(args.retrain_seeds)} seeds") as ax:
        before_after(ax, summary, ks, "number of parties K")
    print_summary(summary, KEYS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
