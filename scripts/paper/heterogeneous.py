#!/usr/bin/env python3
"""Homogeneous vs heterogeneous party architectures: does CaPC help when parties train different models?

Each --config LABEL=ARCHS assigns the architectures ARCHS round robin to parties 0..K-1 (querying
parties first, so the querying party's own model — trained and retrained — is ARCHS[0]); K parties
train on an IID split, the querying party labels its most uncertain pool queries through
Confident-GNMax over the others' votes within --budget, and retrains from scratch with and without
them. Every configuration runs once per --model_seeds seed, retraining over --retrain_seeds; the
summary reports mean ± std over querying parties, model seeds and retraining seeds.

The small default keeps the querying party's architecture fixed (cryptonets) and varies only the
answering parties: all cryptonets, or cryptonets / cryptonets-relu / mlp (the three layouts the
encrypted protocol serves), K = 10 on digits.

Writes heterogeneous.csv (resumable: (configuration, model seed) pairs already in it are
skipped), heterogeneous_summary.csv (mean/std columns), .png and .json into --out.

    python scripts/paper/heterogeneous.py --out results/heterogeneous

Paper scale (CIFAR-10, K = 50, the original's recipe for VGG / ResNet):

    python scripts/paper/heterogeneous.py --out results/heterogeneous_cifar10 --dataset cifar10 \
        --data_dir DATA --n_parties 50 --num_querying_parties 3 --queries_per_party 3000 --budget 2 \
        --epochs 200 --model_seeds 0 --retrain_seeds 11,13,17,113,117 \
        --config homogeneous=ResNet18 --config heterogeneous=ResNet18,VGG16,VGG19,VGG5,ResNet10 --use_ray
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # allow running from a source checkout without installing
    sys.path.insert(0, str(ROOT))

from capc.learning.paper_sweep import (  # noqa: E402
    RUN_FIELDS, add_simulation_args, errorbars, print_summary, run_sweep, script_parser)
from capc.learning.results_folder import ResultsFolder  # noqa: E402

NAME = "heterogeneous"
KEYS = ["label", "architectures"]
DEFAULT_CONFIGS = ["homogeneous=cryptonets", "heterogeneous=cryptonets,cryptonets-relu,mlp"]


def config_spec(text: str) -> tuple[str, str]:
    """``"LABEL=ARCH1,ARCH2"`` -> (label, "ARCH1,ARCH2") (names are checked before training)."""
    label, sep, archs = text.partition("=")
    if not sep or not label.strip() or not archs.strip():
        raise argparse.ArgumentTypeError(f"expected LABEL=ARCH[,ARCH...], e.g. heterogeneous=VGG16,VGG19,VGG5; "
                                         f"got {text!r}")
    return label.strip(), archs.replace(" ", "")


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    p = script_parser(__doc__)
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--config", dest="configs", type=config_spec, action="append", default=None,
                   help=f"LABEL=ARCHS, repeatable (default: {' '.join(DEFAULT_CONFIGS)})")
    add_simulation_args(p, swept=("architectures",), epochs=20)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    from capc.errors import CapcError

    if args.configs is None:
        args.configs = [config_spec(c) for c in DEFAULT_CONFIGS]
    labels = [lab for lab, _ in args.configs]
    if len(set(labels)) != len(labels):
        print(f"{NAME}: configuration labels must be distinct, got {labels}", file=sys.stderr)
        return 2
    folder = ResultsFolder(args.out, NAME, KEYS + RUN_FIELDS)
    configs = [{"label": lab, "architectures": archs} for lab, archs in args.configs]
    try:
        summary = run_sweep(folder, args, configs, KEYS, "architectures")
    except CapcError as exc:
        print(f"{NAME}: {exc}", file=sys.stderr)
        return 2
    order = {lab: i for i, lab in enumerate(labels)}
    summary = sorted((r for r in summary if r["label"] in order), key=lambda r: order[r["label"]])
    x = list(range(len(summary)))
    with folder.figure(f"{args.dataset}, K = {args.n_parties}, budget eps = {args.budget:g}, "
                       f"{len(args.model_seeds)}x{len(args.retrain_seeds)} seeds") as ax:
        errorbars(ax, summary, [i - 0.05 for i in x], "accuracy_before", "before (own data)", "o")
        errorbars(ax, summary, [i + 0.05 for i in x], "accuracy_after", "after CaPC labels", "s")
        ax.set_xticks(x)
        ax.set_xticklabels([f"{r['label']}\n{r['architectures']}" for r in summary], fontsize=6)
        ax.set_xlim(-0.5, len(x) - 0.5)
        ax.set_ylabel("querying party test accuracy")
    print_summary(summary, KEYS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
