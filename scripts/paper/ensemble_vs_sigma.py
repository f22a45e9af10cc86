#!/usr/bin/env python3
"""Ensemble (label) accuracy vs the GNMax noise sigma_G, as the paper's privacy/utility sweep.

Trains one model per answering party on an IID split of --dataset (default: scikit-learn's digits,
the dataset capc ships with; others plug in through capc.learning.datasets), takes their one-hot
votes on the query pool, and measures the accuracy of plain GNMax's noisy argmax (exact discrete
Gaussian noise, seeded) for each sigma_G, with the data-independent epsilon charged per answer.

Writes ensemble_vs_sigma.csv, .png and .json into --out; configurations already in the CSV are
skipped, so a crashed run resumes where it stopped.

    python scripts/paper/ensemble_vs_sigma.py --out results/ensemble_vs_sigma
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

FIELDS = ["sigma_G", "noise_seed", "label_accuracy", "noiseless_accuracy", "epsilon_per_answer"]


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--n_parties", type=int, default=10, help="answering parties (teachers)")
    p.add_argument("--sigmas", type=lambda s: [float(x) for x in s.split(",")], default=[0.5, 1, 2, 3, 4, 6, 8])
    p.add_argument("--noise_seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    p.add_argument("--num_queries", type=int, default=300)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--seed", type=int, default=0, help="party i's model uses seed + i")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    from tqdm.auto import tqdm

    from capc.errors import CapcError
    from capc.privacy.gnmax import ConfidentGNMaxParams
    from capc.privacy.rdp import RdpAccountant
    from capc.privacy.simulate import simulate_queries

    folder = ResultsFolder(args.out, "ensemble_vs_sigma", FIELDS)
    done = folder.done(lambda r: (float(r["sigma_G"]), int(r["noise_seed"])))
    todo = [(s, n) for s in args.sigmas for n in args.noise_seeds if (s, n) not in done]
    folder.write_params(args, seeds={"models": args.seed, "noise": args.noise_seeds})
    try:
        if todo:
            votes, truth = _votes(args)
        with folder.appender() as append:
            for sigma, noise_seed in tqdm(todo, desc="ensemble vs sigma_G"):
                params = ConfidentGNMaxParams(sigma, 0, 0)  # plain GNMax: every query answered
                sim = simulate_queries(votes, params, args.delta, true_labels=truth, seed=noise_seed)
                eps1 = RdpAccountant().compose_all(params.worst_case_events()).get_epsilon(args.delta)
                append({"sigma_G": sigma, "noise_seed": noise_seed, "label_accuracy": f"{sim.label_accuracy:.4f}",
                        "noiseless_accuracy": f"{np.mean(votes.argmax(1) == truth):.4f}",
                        "epsilon_per_answer": f"{eps1:.4f}"})
    except CapcError as exc:
        print(f"ensemble_vs_sigma: {exc}", file=sys.stderr)
        return 2
    _plot(folder, args)
    return 0


def _votes(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """Train the teachers and return their vote histograms and the true labels on the query pool."""
    from capc.learning.datasets import load_dataset
    from capc.learning.default_models import make_partition, party_seed
    from capc.learning.models import ModelConfig, train_party_model
    from capc.learning.simulation import ensemble_votes

    ds = load_dataset(args.dataset, args.data_dir)
    parts, _ = make_partition(ds, args.n_parties, "iid")
    cfg = ModelConfig(epochs=args.epochs)
    models = [train_party_model(ds.x_train[p], ds.y_train[p], num_classes=ds.num_classes,
                                seed=party_seed(args.seed, i), config=cfg) for i, p in enumerate(parts)]
    n = min(args.num_queries, len(ds.y_query))
    return ensemble_votes(models, ds.x_query[:n], ds.num_classes), np.asarray(ds.y_query[:n], np.int64)


def _plot(folder: ResultsFolder, args: argparse.Namespace) -> None:
    rows = folder.rows()
    sig = sorted({float(r["sigma_G"]) for r in rows})
    acc = [[float(r["label_accuracy"]) for r in rows if float(r["sigma_G"]) == s] for s in sig]
    with folder.figure(f"{args.dataset}, {args.n_parties} answering parties") as ax:
        ax.errorbar(sig, [np.mean(a) for a in acc], yerr=[np.std(a) for a in acc], fmt="o-",
                    label="noisy GNMax labels")
        ax.axhline(float(rows[0]["noiseless_accuracy"]), color="k", ls="--", label="noiseless plurality")
        ax.set_xlabel("sigma_G (votes)")
        ax.set_ylabel("label accuracy")


if __name__ == "__main__":
    sys.exit(main())
