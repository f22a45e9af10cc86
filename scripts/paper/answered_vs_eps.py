#!/usr/bin/env python3
"""Answered queries vs epsilon: the paper's accounting beside what the protocol would charge.

For Confident-GNMax with K teachers (default: PATE 2018's MNIST/Fashion-MNIST-like setting, K = 250,
T = 200, sigma_T = 150, sigma_G = 40, delta = 1e-5), counts the queries answered within each budget
epsilon by (a) the paper's accounting (expected data-dependent RDP with the original's stopping rule,
simulation only) and (b) the privacy guardian's data-independent ledger. The vote histograms are
SYNTHETIC by default (no dataset is read): "unanimous" (all K votes on one class) and "realistic"
(the top class gets a Beta(8, 2) share of the votes, the rest spread uniformly; seeded). With
``--histograms fashion_mnist`` (or ``mnist``, ``digits``) they are REAL: K teachers, each a
multinomial logistic regression trained on its own disjoint slice of the dataset's training set,
vote on the query pool (the first test images; ``--num_queries`` of them). The votes are cached in
the results folder, so a rerun does not train again.

Writes answered_vs_eps.csv, .png and .json into --out; configurations already in the CSV are
skipped, so a crashed run resumes where it stopped.

    python scripts/paper/answered_vs_eps.py --out results/answered_vs_eps
    python scripts/paper/answered_vs_eps.py --out results/answered_vs_eps_fmnist \
        --histograms fashion_mnist --num_queries 9000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # allow running from a source checkout without installing
    sys.path.insert(0, str(ROOT))

from capc.learning.paper_sweep import script_parser  # noqa: E402
from capc.learning.results_folder import ResultsFolder  # noqa: E402

FIELDS = ["histograms", "epsilon", "paper_answered", "paper_processed", "protocol_answered"]
SYNTHETIC = ("unanimous", "realistic")
REAL = ("fashion_mnist", "mnist", "digits")


def synthetic_histograms(kind: str, k: int, n: int, classes: int, seed: int) -> np.ndarray:
    """(n, classes) integer vote histograms of ``k`` teachers, 'unanimous' or 'realistic'."""
    votes = np.zeros((n, classes), np.int64)
    if kind == "unanimous":
        votes[:, 0] = k
        return votes
    if kind != "realistic":
        raise ValueError(f"unknown histogram kind {kind!r} (expected one of {', '.join(SYNTHETIC + REAL)})")
    rng = np.random.default_rng(seed)
    top = np.round(rng.beta(8, 2, size=n) * k).astype(np.int64)
    votes[:, 0] = top
    for i, rest in enumerate(k - top):
        votes[i, 1:] = rng.multinomial(rest, np.full(classes - 1, 1.0 / (classes - 1)))
    return votes


def teacher_histograms(dataset: str, k: int, n: int, seed: int, data_dir: str | None,
                       cache: Path | None = None) -> np.ndarray:
    """(n, classes) vote histograms of ``k`` real teachers on the first ``n`` images of ``dataset``'s
    query pool: teacher i is a multinomial logistic regression (scikit-learn, seeded) trained on the
    i-th of k disjoint, shuffled slices of the training set.  Cached in ``cache`` (an .npz) when given."""
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            if z["votes"].shape[0] >= n:
                return z["votes"][:n]
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from capc.learning.datasets import load_dataset

    ds = load_dataset(dataset, data_dir)
    if n > len(ds.x_query):
        raise ValueError(f"--num_queries {n} exceeds {dataset}'s query pool of {len(ds.x_query)} images")
    if len(ds.x_train) < 2 * k:
        raise ValueError(f"{k} teachers need at least {2 * k} training images; {dataset} has {len(ds.x_train)}")
    x = ds.x_train.reshape(len(ds.x_train), -1)
    xq = ds.x_query[:n].reshape(n, -1)
    order = np.random.default_rng(seed).permutation(len(x))
    votes = np.zeros((n, ds.num_classes), np.int64)
    from tqdm.auto import tqdm
    import warnings

    for i, part in enumerate(tqdm(np.array_split(order, k), desc=f"{k} {dataset} teachers")):
        clf = LogisticRegression(max_iter=200, random_state=seed + i)
        with warnings.catch_warnings():  # a few slices stop at max_iter: their teacher is just weaker
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(x[part], ds.y_train[part])
        pred = clf.predict(xq).astype(np.int64)
        votes[np.arange(n), pred] += 1
    if cache is not None:
        np.savez(cache, votes=votes, labels=ds.y_query[:n])
    return votes


def histograms_for(kind: str, args: argparse.Namespace, folder_path: Path | None) -> np.ndarray:
    """The vote histograms of one ``--histograms`` kind (synthetic, or real teachers' votes)."""
    if kind in REAL:
        cache = None if folder_path is None else folder_path / f"votes_{kind}_K{args.teachers}_seed{args.seed}.npz"
        return teacher_histograms(kind, args.teachers, args.num_queries, args.seed, args.data_dir, cache)
    return synthetic_histograms(kind, args.teachers, args.num_queries, 10, args.seed)


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    p = script_parser(__doc__)
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--teachers", type=int, default=250)
    p.add_argument("--threshold", type=float, default=200)
    p.add_argument("--sigma_threshold", type=float, default=150)
    p.add_argument("--sigma_gnmax", type=float, default=40)
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--eps", type=lambda s: [float(x) for x in s.split(",")], default=[0.5, 1.0, 2.0, 4.0, 8.0])
    p.add_argument("--histograms", type=lambda s: s.split(","), default=["unanimous", "realistic"])
    p.add_argument("--num_queries", type=int, default=10000,
                   help="histograms per kind (the pool size; real kinds: at most the dataset's query pool)")
    p.add_argument("--data_dir", default=None, help="dataset files for the real kinds (see capc.learning.datasets)")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    from tqdm.auto import tqdm

    from capc.errors import CapcError
    from capc.privacy.errors import PrivacyParameterError
    from capc.privacy.gnmax import ConfidentGNMaxParams
    from capc.privacy.simulate import PAPER_LABEL, PROTOCOL_LABEL, paper_accounting_simulation_only, protocol_answerable

    folder = ResultsFolder(args.out, "answered_vs_eps", FIELDS)
    try:
        params = ConfidentGNMaxParams(args.sigma_gnmax, args.sigma_threshold, args.threshold)
        for kind in args.histograms:
            if kind not in REAL:
                synthetic_histograms(kind, args.teachers, 1, 10, args.seed)
        if args.teachers < 1 or args.num_queries < 1:
            raise ValueError("--teachers and --num_queries must be at least 1")
    except (PrivacyParameterError, ValueError) as exc:
        print(f"answered_vs_eps: {exc}", file=sys.stderr)
        return 2
    real = [k for k in args.histograms if k in REAL]
    folder.write_params(args, seed=args.seed,
                        histograms_are=("real teachers' votes on " + ", ".join(real)) if real else "synthetic",
                        labels={"paper": PAPER_LABEL, "protocol": PROTOCOL_LABEL})
    done = folder.done(lambda r: (r["histograms"], float(r["epsilon"])))
    todo = [(k, e) for k in args.histograms for e in args.eps if (k, e) not in done]
    with folder.appender() as append:
        for kind, eps in tqdm(todo, desc="answered vs eps"):
            try:
                votes = histograms_for(kind, args, Path(args.out))
            except (ValueError, CapcError) as exc:  # e.g. the dataset's files are missing: say where
                print(f"answered_vs_eps: {exc}", file=sys.stderr)
                return 2
            paper = paper_accounting_simulation_only(votes, params, args.delta, eps)
            append({"histograms": kind, "epsilon": eps, "paper_answered": f"{paper.answered:.1f}",
                    "paper_processed": paper.processed,
                    "protocol_answered": min(protocol_answerable(params, args.delta, eps), args.num_queries)})
    _plot(folder, args)
    return 0


def _plot(folder: ResultsFolder, args: argparse.Namespace) -> None:
    rows = folder.rows()
    title = (f"K={args.teachers}, T={args.threshold:g}, sigma_T={args.sigma_threshold:g}, "
             f"sigma_G={args.sigma_gnmax:g}")
    with folder.figure(title) as ax:
        for kind in dict.fromkeys(r["histograms"] for r in rows):
            rs = sorted((r for r in rows if r["histograms"] == kind), key=lambda r: float(r["epsilon"]))
            ax.plot([float(r["epsilon"]) for r in rs], [float(r["paper_answered"]) for r in rs], "o-",
                    label=f"{kind}: paper's accounting")
        rs = sorted({float(r["epsilon"]): r for r in rows}.values(), key=lambda r: float(r["epsilon"]))
        ax.plot([float(r["epsilon"]) for r in rs], [float(r["protocol_answered"]) for r in rs], "k--",
                label="protocol's ledger (any votes)")
        ax.set_xlabel(f"epsilon (delta = {args.delta:g})")
        ax.set_ylabel("queries answered")


if __name__ == "__main__":
    sys.exit(main())
