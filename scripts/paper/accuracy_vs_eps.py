#!/usr/bin/env python3
"""Querying parties' accuracy before/after CaPC vs the privacy budget epsilon (plaintext simulation).

For each budget, runs :func:`capc.learning.simulation.run_learning_simulation` (parties train, the
querying parties buy labels through Confident-GNMax until the protocol's data-independent ledger
reaches the budget, then retrain from scratch) and records accuracy and balanced accuracy before
and after, queries answered and both accountings, labelled (the paper's data-dependent epsilon is
a simulation-only figure). The party models depend on the model seed only, so they train once per
seed and serve every budget. Every budget runs once per --model_seeds seed, retraining over
--retrain_seeds; the summary reports mean ± std over querying parties and both kinds of seeds.

Writes accuracy_vs_eps.csv (resumable: (budget, model seed) pairs already in it are skipped),
accuracy_vs_eps_summary.csv (mean/std columns), .png (error bars) and .json into --out.

Small default (digits, K = 10 with its preset 2/6/10, one querying party, 100 queries asked):

    python scripts/paper/accuracy_vs_eps.py --out results/accuracy_vs_eps

Paper scale (SVHN, K = 250 VGG7 parties, the preset 40/200/300, delta 1e-6):

    python scripts/paper/accuracy_vs_eps.py --out results/accuracy_vs_eps_svhn --dataset svhn \
        --data_dir DATA/svhn --n_parties 250 --num_querying_parties 3 --architectures VGG7 \
        --epochs 200 --queries_per_party 3000 --budgets 0.5,1,2,4,8 --model_seeds 0 \
        --retrain_seeds 11,13,17,113,117 --use_ray
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # allow running from a source checkout without installing
    sys.path.insert(0, str(ROOT))

from capc.learning.paper_sweep import (  # noqa: E402
    RUN_FIELDS, add_simulation_args, before_after, float_list, print_summary, run_sweep, script_parser)
from capc.learning.results_folder import ResultsFolder  # noqa: E402

NAME = "accuracy_vs_eps"
KEYS = ["budget_eps"]


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    p = script_parser(__doc__)
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--budgets", type=float_list, default=[5.0, 10.0, 20.0], help="epsilon budgets swept")
    add_simulation_args(p, swept=("budget",), epochs=10)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    from capc.errors import CapcError
    from capc.privacy.simulate import PAPER_LABEL, PROTOCOL_LABEL

    folder = ResultsFolder(args.out, NAME, KEYS + RUN_FIELDS)
    try:
        summary = run_sweep(folder, args, [{"budget_eps": float(b)} for b in args.budgets], KEYS,
                            "accuracy vs eps", extra_params={"labels": {"epsilon_protocol": PROTOCOL_LABEL,
                                                                        "epsilon_paper": PAPER_LABEL}})
    except CapcError as exc:
        print(f"{NAME}: {exc}", file=sys.stderr)
        return 2
    summary.sort(key=lambda r: float(r["budget_eps"]))
    eps = [float(r["budget_eps"]) for r in summary]
    with folder.figure(f"{args.dataset}, K = {args.n_parties}, "
                       f"{len(args.model_seeds)}x{len(args.retrain_seeds)} seeds") as ax:
        before_after(ax, summary, eps, "budget epsilon (protocol's ledger)")
    print_summary(summary, KEYS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
