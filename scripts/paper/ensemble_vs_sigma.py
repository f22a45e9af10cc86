#!/usr/bin/env python3
"""Ensemble (label) accuracy vs the GNMax noise sigma_G, as the paper's privacy/utility sweep.

Trains one model per answering party on an IID split of --dataset (default: scikit-learn's digits,
the dataset capc ships with; others plug in through capc.learning.datasets), takes their one-hot
votes on the query pool, and measures the accuracy of plain GNMax's noisy argmax (exact discrete
Gaussian noise, seeded) for each sigma_G, with the data-independent epsilon charged per answer.

The teachers train through the fan-out (capc.learning.fanout; --use_ray / --ray_address).

Writes ensemble_vs_sigma.csv (one row per sigma_G and noise seed; configurations already in it are
skipped, so a crashed run resumes where it stopped), ensemble_vs_sigma_summary.csv (mean/std over
noise seeds), .png (error bars) and .json (parameters, seeds, versions, timings) into --out.

    python scripts/paper/ensemble_vs_sigma.py --out results/ensemble_vs_sigma

Paper scale (CIFAR-10, K = 50 ResNet teachers):

    python scripts/paper/ensemble_vs_sigma.py --out results/ensemble_vs_sigma_cifar10 --dataset cifar10 \
        --data_dir DATA --n_parties 50 --architectures ResNet18 --epochs 200 --num_queries 9000 \
        --sigmas 1,2,5,7,10,20,40 --use_ray
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # allow running from a source checkout without installing
    sys.path.insert(0, str(ROOT))

from capc.learning.paper_sweep import script_parser  # noqa: E402
from capc.learning.results_folder import ResultsFolder  # noqa: E402

FIELDS = ["sigma_G", "noise_seed", "label_accuracy", "noiseless_accuracy", "epsilon_per_answer"]


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    p = script_parser(__doc__)
    p.add_argument("--out", required=True, help="results folder")
    from capc.learning.datasets import DATASET_NAMES

    p.add_argument("--dataset", type=str.lower, choices=sorted({*DATASET_NAMES, "fashion_mnist"}), default="digits")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--n_parties", type=int, default=10, help="answering parties (teachers)")
    p.add_argument("--sigmas", type=lambda s: [float(x) for x in s.split(",")], default=[0.5, 1, 2, 3, 4, 6, 8])
    p.add_argument("--noise_seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    p.add_argument("--num_queries", type=int, default=300)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--architectures", default="cryptonets", help="teacher architectures, round robin")
    p.add_argument("--width", type=float, default=1.0, help="VGG / ResNet channel multiplier")
    p.add_argument("--batch_size", type=int, default=None, help="default: each architecture's recipe")
    p.add_argument("--use_ray", action="store_true", help="fan training out over a local Ray runtime")
    p.add_argument("--ray_address", default=None, help="fan out over this Ray cluster")
    p.add_argument("--num_cpus", type=int, default=None, help="local Ray workers (default: all cores)")
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
    seeds = {"models": args.seed, "noise": args.noise_seeds}
    folder.write_params(args, seeds=seeds)
    try:
        from capc.learning.architectures import assign_architectures
        from capc.learning.fanout import check_ray_request

        assign_architectures(args.architectures, args.n_parties)  # bad names: fail before training
        check_ray_request(args.use_ray, args.ray_address)
        t0 = time.perf_counter()
        if todo:
            votes, truth = _votes(args)
        t_train = time.perf_counter() - t0
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
    summary = folder.write_summary(["sigma_G"], ["label_accuracy", "noiseless_accuracy", "epsilon_per_answer"])
    folder.write_params(args, seeds=seeds, timings={"teacher_training_s": round(t_train, 2),
                                                    "rows_run_this_invocation": len(todo)})
    _plot(folder, args, summary)
    return 0


def _votes(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """Train the teachers (through the fan-out) and return their vote histograms and the true
    labels on the query pool."""
    from capc.learning.datasets import load_dataset
    from capc.learning.default_models import make_partition
    from capc.learning.fanout import train_and_vote

    ds = load_dataset(args.dataset, args.data_dir)
    parts, _ = make_partition(ds, args.n_parties, "iid")
    n = min(args.num_queries, len(ds.y_query))
    fan = train_and_vote([(ds.x_train[p], ds.y_train[p]) for p in parts], args.architectures, ds.x_query[:n],
                         num_classes=ds.num_classes, epochs=args.epochs, width=args.width,
                         batch_size=args.batch_size, seed=args.seed, use_ray=args.use_ray,
                         ray_address=args.ray_address, num_cpus=args.num_cpus)
    return fan.histograms(ds.num_classes), np.asarray(ds.y_query[:n], np.int64)


def _plot(folder: ResultsFolder, args: argparse.Namespace, summary: list[dict]) -> None:
    from capc.learning.paper_sweep import errorbars

    summary = sorted(summary, key=lambda r: float(r["sigma_G"]))
    with folder.figure(f"{args.dataset}, {args.n_parties} answering parties, "
                       f"{len(args.noise_seeds)} noise seeds") as ax:
        errorbars(ax, summary, [float(r["sigma_G"]) for r in summary], "label_accuracy", "noisy GNMax labels")
        ax.axhline(float(summary[0]["noiseless_accuracy_mean"]), color="k", ls="--", label="noiseless plurality")
        ax.set_xlabel("sigma_G (votes)")
        ax.set_ylabel("label accuracy")


if __name__ == "__main__":
    sys.exit(main())
