#!/usr/bin/env python3
"""Reproduce CaPC's learning result in plaintext simulation: querying parties improve their models.

Trains one model per party, lets each querying party label its most useful pool queries through
Confident-GNMax over the other parties' votes (exact discrete-Gaussian noise, RDP accounting), and
retrains it from scratch on its data plus the answered queries. Prints accuracy and balanced accuracy
before and after (mean ± std over seeds), the queries answered, and epsilon spent. The cryptographic
protocol returns the same labels; this script leaves it out to run in about a minute.

Party models train through the fan-out (capc.learning.fanout): in this process by default, over
a local Ray runtime with --use_ray, over a Ray cluster with --ray_address. Every flag is checked,
and the dataset files looked for, before the first model trains.

Examples::

    python scripts/reproduce_learning.py                          # digits, 10 parties, 3 QPs, IID
    python scripts/reproduce_learning.py --partition weak --weak_classes 1,2 --json out.json
    python scripts/reproduce_learning.py --architectures cryptonets,cryptonets-relu,mlp --mode kcenter
    python scripts/reproduce_learning.py --dataset svhn --data_dir DATA/svhn --n_parties 250 \
        --architectures VGG7 --epochs 200 --queries_per_party 3000 --budget 2 --use_ray
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow running from a source checkout without installing
    sys.path.insert(0, str(ROOT))

from capc.learning.argtypes import int_list  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags (names follow the original learning code where one exists)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    from capc.learning.datasets import DATASET_NAMES
    from capc.learning.selection import MODES

    p.add_argument("--dataset", type=str.lower, choices=sorted({*DATASET_NAMES, "fashion_mnist"}), default="digits")
    p.add_argument("--data_dir", default=None, help="directory of the dataset's files (not needed for digits)")
    p.add_argument("--n_parties", type=int, default=10)
    p.add_argument("--num_querying_parties", type=int, default=3)
    p.add_argument("--partition", choices=("iid", "weak"), default="iid")
    p.add_argument("--weak_classes", type=int_list, default=[1, 2])
    p.add_argument("--weak_class_ratio", type=float, default=0.1)
    p.add_argument("--mode", choices=MODES, default="entropy", help="query selection")
    p.add_argument("--queries_per_party", type=int, default=None, help="default: the party's pool share")
    p.add_argument("--sigma_gnmax", type=float, default=None, help="default: the paper's preset for K = n_parties")
    p.add_argument("--sigma_threshold", type=float, default=None)
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--delta", type=float, default=None, help="default: per dataset (SVHN 1e-6, else 1e-5)")
    p.add_argument("--budget", type=float, default=math.inf, help="epsilon budget per querying party")
    p.add_argument("--seed", type=int, default=0, help="party i's model uses seed + i")
    p.add_argument("--retrain_seeds", type=int_list, default=[11, 13, 17, 113, 117])
    p.add_argument("--architectures", default="cryptonets",
                   help="party architectures, round robin over parties 0..K-1 (querying parties first, "
                        "each retrains its own), e.g. VGG16,VGG19,VGG5")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 40)")
    p.add_argument("--width", type=float, default=1.0, help="VGG / ResNet channel multiplier")
    p.add_argument("--batch_size", type=int, default=None, help="default: each architecture's recipe")
    p.add_argument("--use_ray", action="store_true", help="fan training out over a local Ray runtime")
    p.add_argument("--ray_address", default=None, help="fan out over this Ray cluster (e.g. auto, ray://head:10001)")
    p.add_argument("--num_cpus", type=int, default=None, help="local Ray workers (default: all cores)")
    p.add_argument("--json", default=None, help="also write the full results to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    from capc.errors import CapcError
    from capc.learning.simulation import SimulationConfig, run_learning_simulation

    cfg = SimulationConfig(
        dataset=args.dataset, data_dir=args.data_dir, n_parties=args.n_parties,
        num_querying_parties=args.num_querying_parties, partition=args.partition,
        weak_classes=args.weak_classes, weak_class_ratio=args.weak_class_ratio, mode=args.mode,
        queries_per_party=args.queries_per_party, sigma_G=args.sigma_gnmax, sigma_T=args.sigma_threshold,
        threshold=args.threshold, delta=args.delta, budget_eps=args.budget, seed=args.seed,
        retrain_seeds=args.retrain_seeds, architectures=args.architectures, epochs=args.epochs,
        width=args.width, batch_size=args.batch_size, use_ray=args.use_ray, ray_address=args.ray_address,
        num_cpus=args.num_cpus)
    if args.json and not Path(args.json).resolve().parent.is_dir():
        print(f"reproduce_learning: --json {args.json}: directory {Path(args.json).resolve().parent} does not exist",
              file=sys.stderr)
        return 2
    try:
        res = run_learning_simulation(cfg, progress=True)
    except CapcError as exc:
        print(f"reproduce_learning: {exc}", file=sys.stderr)
        return 2
    g = res["gnmax"]
    print(f"\n{cfg.dataset}, {cfg.n_parties} parties ({', '.join(dict.fromkeys(res['architectures']))}; "
          f"{res['backend']}, {res['timings']['total_s']:.0f} s), {cfg.partition} partition, mode {cfg.mode}; "
          f"sigma_G={g['sigma_G']} sigma_T={g['sigma_T']} T={g['threshold']} delta={res['delta']} "
          f"(simulation: plaintext votes, real DP noise and accounting)")
    print(f"{'QP':>3} {'asked':>5} {'answ':>5} {'lab.acc':>7} {'eps':>7} {'acc before':>16} {'acc after':>16} "
          f"{'bal before':>16} {'bal after':>16}")
    for r in res["parties"]:
        b, a = r["before"], r["after"]
        lab = f"{r['label_accuracy']:.3f}" if r["label_accuracy"] is not None else "-"
        print(f"{r['party']:>3} {r['queries_asked']:>5} {r['queries_answered']:>5} {lab:>7} "
              f"{r['epsilon_data_independent']:>7.2f} "
              f"{b['accuracy_mean']:>9.4f}±{b['accuracy_std']:.4f} {a['accuracy_mean']:>9.4f}±{a['accuracy_std']:.4f} "
              f"{b['balanced_accuracy_mean']:>9.4f}±{b['balanced_accuracy_std']:.4f} "
              f"{a['balanced_accuracy_mean']:>9.4f}±{a['balanced_accuracy_std']:.4f}")
    if cfg.partition == "weak":
        for r in res["parties"]:
            pb, pa = r["before"]["per_class_accuracy_mean"], r["after"]["per_class_accuracy_mean"]
            weak = ", ".join(f"class {c}: {pb[c]:.3f} -> {pa[c]:.3f}" for c in cfg.weak_classes)
            print(f"QP {r['party']} weak-class accuracy {weak}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=float) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
