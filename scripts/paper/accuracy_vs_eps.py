#!/usr/bin/env python3
"""Querying parties' accuracy before/after CaPC vs the privacy budget epsilon (plaintext simulation).

For each budget, runs :func:`capc.learning.simulation.run_learning_simulation` (parties train, the
querying parties buy labels through Confident-GNMax until the budget is spent, retrain over seeds)
and records accuracy and balanced accuracy before and after (mean over retraining seeds), queries
answered and both accountings, labelled. --dataset takes any dataset capc.learning.datasets knows.

Writes accuracy_vs_eps.csv, .png and .json into --out; budgets already in the CSV are skipped, so
a crashed run resumes where it stopped.

    python scripts/paper/accuracy_vs_eps.py --out results/accuracy_vs_eps
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # allow running from a source checkout without installing
    sys.path.insert(0, str(ROOT))

from capc.learning.results_folder import ResultsFolder  # noqa: E402

FIELDS = ["budget_eps", "party", "queries_answered", "epsilon_protocol", "epsilon_paper",
          "accuracy_before", "accuracy_after", "balanced_before", "balanced_after"]


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--n_parties", type=int, default=10, help="total parties K (presets by K)")
    p.add_argument("--num_querying_parties", type=int, default=1)
    p.add_argument("--queries_per_party", type=int, default=100)
    p.add_argument("--budgets", type=lambda s: [float(x) for x in s.split(",")], default=[5.0, 10.0, 20.0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--retrain_seeds", type=lambda s: [int(x) for x in s.split(",")], default=[11, 13])
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    from tqdm.auto import tqdm

    from capc.errors import CapcError
    from capc.learning.models import ModelConfig
    from capc.learning.simulation import SimulationConfig, run_learning_simulation

    folder = ResultsFolder(args.out, "accuracy_vs_eps", FIELDS)
    done = folder.done(lambda r: float(r["budget_eps"]))
    folder.write_params(args, seeds={"models": args.seed, "retrain": args.retrain_seeds})
    try:
        with folder.appender() as append:
            for budget in tqdm([b for b in args.budgets if b not in done], desc="accuracy vs eps"):
                cfg = SimulationConfig(dataset=args.dataset, data_dir=args.data_dir, n_parties=args.n_parties,
                                       num_querying_parties=args.num_querying_parties,
                                       queries_per_party=args.queries_per_party, budget_eps=budget,
                                       seed=args.seed, retrain_seeds=tuple(args.retrain_seeds),
                                       model_config=ModelConfig(epochs=args.epochs))
                res = run_learning_simulation(cfg)
                for r in res["parties"]:
                    paper = r["accounting"]["paper"]
                    append({"budget_eps": budget, "party": r["party"], "queries_answered": r["queries_answered"],
                            "epsilon_protocol": f"{r['epsilon_data_independent']:.4f}",
                            "epsilon_paper": "" if paper is None else f"{paper['epsilon']:.4f}",
                            "accuracy_before": f"{r['before']['accuracy_mean']:.4f}",
                            "accuracy_after": f"{r['after']['accuracy_mean']:.4f}",
                            "balanced_before": f"{r['before']['balanced_accuracy_mean']:.4f}",
                            "balanced_after": f"{r['after']['balanced_accuracy_mean']:.4f}"})
    except CapcError as exc:
        print(f"accuracy_vs_eps: {exc}", file=sys.stderr)
        return 2
    _plot(folder, args)
    return 0


def _plot(folder: ResultsFolder, args: argparse.Namespace) -> None:
    rows = folder.rows()
    eps = sorted({float(r["budget_eps"]) for r in rows})

    def mean(col: str) -> list[float]:
        return [float(np.mean([float(r[col]) for r in rows if float(r["budget_eps"]) == e])) for e in eps]

    with folder.figure(f"{args.dataset}, K = {args.n_parties}") as ax:
        ax.plot(eps, mean("accuracy_before"), "o--", label="before (own data)")
        ax.plot(eps, mean("accuracy_after"), "o-", label="after CaPC labels")
        ax.set_xlabel("budget epsilon (protocol's ledger)")
        ax.set_ylabel("test accuracy of querying parties")


if __name__ == "__main__":
    sys.exit(main())
