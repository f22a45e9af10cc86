#!/usr/bin/env python3
"""Train one model per party and save it as .keras, frozen .pb and a model card.

``--model_type`` picks the layout: ``cryptonets`` (square activations, the default),
``cryptonets-relu`` or ``mlp`` (the original demo's ReLU layouts). By default the models are trained
on scikit-learn's digits (always available); with ``--data_dir`` pointing at MNIST files
(``mnist.npz`` or the four IDX files) they are trained on MNIST, the ReLU layouts then exactly as
the original's 28x28 networks. Output goes to ``<out_dir>/<set>/party-<i>.{keras,pb,card.json,card.md}``,
where ``<set>`` is ``<dataset>`` for the 4-party IID cryptonets default, ``<dataset>-<model_type>``
for the other layouts, and ``<dataset>[-<model_type>]-<n>p-<scheme>`` for other partitions.

Examples::

    python scripts/train_models.py                        # regenerates models/digits/ (4 parties)
    python scripts/train_models.py --model_type mlp       # regenerates models/digits-mlp/
    python scripts/train_models.py --data_dir ~/data      # MNIST, 4 parties -> models/mnist/
    python scripts/train_models.py --n_parties 10 --partition weak --weak_classes 1,2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow running from a source checkout without installing
    sys.path.insert(0, str(ROOT))

from capc.learning.argtypes import int_list  # noqa: E402
from capc.learning.model_types import DEFAULT_MODEL_TYPE, MODEL_TYPES  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=("auto", "digits", "mnist"), default="auto",
                   help="auto: mnist if --data_dir holds MNIST files, else digits")
    p.add_argument("--data_dir", default=None, help="directory with mnist.npz or the four MNIST IDX files")
    p.add_argument("--model_type", choices=MODEL_TYPES, default=DEFAULT_MODEL_TYPE,
                   help="layout: cryptonets (square activations, pure CKKS), or the original demo's "
                        "cryptonets-relu / mlp (ReLU, max-pool: need the garbled-circuit path)")
    p.add_argument("--num_query_pool", type=int, default=None,
                   help="test samples reserved as query pool (default: 300 digits, 9000 MNIST)")
    p.add_argument("--n_parties", type=int, default=4, help="number of parties (QP + APs), one model each")
    p.add_argument("--parties", type=int_list, default=None, help="train only these party ids, e.g. 0,2")
    p.add_argument("--partition", choices=("iid", "weak"), default="iid")
    p.add_argument("--weak_classes", type=int_list, default=[1, 2])
    p.add_argument("--weak_class_ratio", type=float, default=0.1)
    p.add_argument("--num_querying_parties", type=int, default=1)
    p.add_argument("--out_dir", default=str(ROOT / "models"), help="root of the model sets")
    p.add_argument("--seed", type=int, default=0, help="party i is trained with seed + i")
    p.add_argument("--epochs", type=int, default=None, help="default: 40")
    p.add_argument("--batch_size", type=int, default=None, help="default: 32")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 3e-3)")
    p.add_argument("--hidden", type=int, default=None,
                   help="units of the hidden Dense layer (cryptonets only)")
    p.add_argument("--filters", type=int, default=None, help="convolution filters (default 5; cryptonets only)")
    p.add_argument("--keras_verbose", type=int, default=0, choices=(0, 1, 2),
                   help="Keras fit output in addition to the tqdm bars")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    from capc.errors import CapcError
    from capc.learning.datasets import DatasetError, load_dataset
    from capc.learning.default_models import set_name, train_model_set
    from capc.learning.models import ModelConfig

    try:
        dataset = args.dataset
        if dataset == "auto":
            dataset = "digits"
            if args.data_dir is not None:
                try:
                    load_dataset("mnist", args.data_dir, args.num_query_pool)
                    dataset = "mnist"
                except DatasetError as exc:
                    print(f"train_models: no usable MNIST in {args.data_dir} ({exc}); using digits",
                          file=sys.stderr)
        overrides = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size),
                                       ("learning_rate", args.lr), ("hidden", args.hidden),
                                       ("filters", args.filters)) if v is not None}
        config = ModelConfig(**overrides)
        out = Path(args.out_dir) / set_name(dataset, args.n_parties, args.partition, args.model_type)
        cards = train_model_set(dataset, args.n_parties, out, data_dir=args.data_dir,
                                num_query_pool=args.num_query_pool, scheme=args.partition,
                                weak_classes=args.weak_classes, weak_class_ratio=args.weak_class_ratio,
                                num_querying_parties=args.num_querying_parties, parties=args.parties,
                                seed=args.seed, config=config, verbose=args.keras_verbose, progress=True,
                                model_type=args.model_type)
    except CapcError as exc:
        print(f"train_models: {exc}", file=sys.stderr)
        return 2
    print(f"\n{args.model_type} on {dataset}, {args.n_parties} parties ({args.partition})")
    print(f"{'party':>5} {'train':>6} {'eval acc':>9} {'bal acc':>8} {'max|logit|':>10}  files in {out}")
    for c in cards:
        ev = c["evaluation"]
        print(f"{c['party']:>5} {c['data']['num_train_samples']:>6} {ev['accuracy']:>9.4f} "
              f"{ev['balanced_accuracy']:>8.4f} {ev['max_abs_logit_test']:>10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
