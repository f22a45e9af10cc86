"""Sweeps of the learning simulation for the paper scripts: shared flags, runs, rows and plots.

A sweep is a list of *units*: one configuration (a dict of the swept values, e.g. ``{"n_parties":
20}``) at one party-model seed. Each unit is one :func:`capc.learning.simulation.run_learning_simulation`
(K parties train with seeds ``model_seed + i``, every querying party retrains over the retraining
seeds) and becomes one CSV row per (querying party, retraining seed), so the summary's mean and
std run over querying parties, party-model seeds and retraining seeds together. Units already in
the CSV are skipped (resume after a crash); every configuration is validated, and the dataset
loaded, before the first model trains; all units share one executor (Ray starts once).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from capc.learning.argtypes import int_list
from capc.learning.results_folder import ResultsFolder

#: Columns of every sweep's run CSV after the swept keys.
RUN_FIELDS = ["model_seed", "party", "architecture", "retrain_seed", "num_private", "queries_asked",
              "queries_answered", "label_accuracy", "epsilon_protocol", "epsilon_paper", "accuracy_before",
              "accuracy_after", "balanced_before", "balanced_after", "unit_wall_s", "backend"]
#: Classes of every capc dataset (digits, MNIST, Fashion-MNIST, SVHN, CIFAR-10): the per-class columns.
NUM_CLASSES = 10
#: The metrics a sweep's summary reports (mean and std over each configuration's rows).
METRICS = ["accuracy_before", "accuracy_after", "balanced_before", "balanced_after", "queries_answered",
           "label_accuracy", "epsilon_protocol", "epsilon_paper"]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Flag defaults shown, and the epilog (the docstring's commands) kept as written."""


def script_parser(doc: str) -> argparse.ArgumentParser:
    """A parser for a paper script: the docstring's first paragraph as description, the rest (what
    it writes, the small-default and paper-scale commands) as ``--help``'s epilog."""
    head, _, rest = doc.strip().partition("\n\n")
    return argparse.ArgumentParser(description=head, epilog=rest, formatter_class=_HelpFormatter)


def float_list(text: str) -> list[float]:
    """``"1,2.5"`` -> ``[1.0, 2.5]``; anything else is an argparse error naming the value."""
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_simulation_args(p: argparse.ArgumentParser, swept: Collection[str] = (), **defaults: Any) -> None:
    """The flags every sweep shares; ``swept`` names flags the script replaces by its own sweep
    flag (``n_parties``, ``budget``, ``architectures``), ``defaults`` overrides defaults by dest name."""
    from capc.learning.datasets import DATASET_NAMES
    from capc.learning.selection import MODES

    d = {"dataset": "digits", "n_parties": 10, "num_querying_parties": 1, "queries_per_party": 100,
         "mode": "entropy", "budget": 20.0, "epochs": 10, "width": 1.0, "batch_size": None,
         "architectures": "cryptonets", "model_seeds": [0, 1], "retrain_seeds": [11, 13], **defaults}
    names = sorted({*DATASET_NAMES, "fashion_mnist"})
    p.add_argument("--dataset", default=d["dataset"], type=str.lower, choices=names)
    p.add_argument("--data_dir", default=None, help="directory of the dataset's files (not needed for digits)")
    if "n_parties" not in swept:
        p.add_argument("--n_parties", type=int, default=d["n_parties"], help="total parties K (presets by K)")
    p.add_argument("--num_querying_parties", type=int, default=d["num_querying_parties"])
    p.add_argument("--queries_per_party", type=int, default=d["queries_per_party"])
    p.add_argument("--mode", choices=MODES, default=d["mode"], help="query selection")
    if "budget" not in swept:
        p.add_argument("--budget", type=float, default=d["budget"], help="epsilon budget per querying party")
    p.add_argument("--sigma_gnmax", type=float, default=None, help="default: the paper's preset for K")
    p.add_argument("--sigma_threshold", type=float, default=None)
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--delta", type=float, default=None, help="default: per dataset (SVHN 1e-6, else 1e-5)")
    if "architectures" not in swept:
        p.add_argument("--architectures", default=d["architectures"],
                       help="party architectures, round robin over parties 0..K-1 (querying parties first)")
    p.add_argument("--epochs", type=int, default=d["epochs"])
    p.add_argument("--width", type=float, default=d["width"], help="VGG / ResNet channel multiplier")
    p.add_argument("--batch_size", type=int, default=d["batch_size"], help="default: each architecture's recipe")
    p.add_argument("--model_seeds", type=int_list, default=d["model_seeds"],
                   help="party-model base seeds (party i trains with seed + i); one run each")
    p.add_argument("--retrain_seeds", type=int_list, default=d["retrain_seeds"])
    p.add_argument("--use_ray", action="store_true", help="fan training out over a local Ray runtime")
    p.add_argument("--ray_address", default=None, help="fan out over this Ray cluster (e.g. auto, ray://head:10001)")
    p.add_argument("--num_cpus", type=int, default=None, help="local Ray workers (default: all cores)")


def simulation_config(args: argparse.Namespace, unit: Mapping[str, Any]) -> Any:
    """The :class:`~capc.learning.simulation.SimulationConfig` of one unit: the flags, overridden by
    the unit's swept values (its ``model_seed`` seeds the party models and the noise)."""
    from capc.learning.simulation import SimulationConfig

    cfg = SimulationConfig(
        dataset=args.dataset, data_dir=args.data_dir, n_parties=getattr(args, "n_parties", 10),
        num_querying_parties=args.num_querying_parties, queries_per_party=args.queries_per_party,
        mode=args.mode, sigma_G=args.sigma_gnmax, sigma_T=args.sigma_threshold, threshold=args.threshold,
        delta=args.delta, budget_eps=getattr(args, "budget", math.inf),
        architectures=getattr(args, "architectures", "cryptonets"), epochs=args.epochs, width=args.width,
        batch_size=args.batch_size, retrain_seeds=tuple(args.retrain_seeds),
        use_ray=args.use_ray, ray_address=args.ray_address, num_cpus=args.num_cpus)
    for key, value in unit.items():
        if key == "model_seed":
            cfg.seed, cfg.noise_seed = int(value), int(value) * 1000
        elif key == "label":
            continue
        else:
            setattr(cfg, key, value)
    return cfg


def key_text(value: Any) -> str:
    """A swept value as the CSV stores it (so that a resumed run recognises it)."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def result_rows(res: Mapping[str, Any], per_class: bool = False) -> list[dict[str, Any]]:
    """One row per (querying party, retraining seed) of a simulation result (``RUN_FIELDS``;
    with ``per_class`` also ``before_c<i>`` / ``after_c<i>``, the per-class accuracies)."""
    rows = []
    for r in res["parties"]:
        paper = r["accounting"]["paper"]
        b, a = r["before"], r["after"]
        for i, seed in enumerate(b["seeds"]):
            row: dict[str, Any] = {
                "model_seed": res["config"]["seed"], "party": r["party"], "architecture": r["architecture"],
                "retrain_seed": seed, "num_private": r["num_private"], "queries_asked": r["queries_asked"],
                "queries_answered": r["queries_answered"],
                "label_accuracy": "" if r["label_accuracy"] is None else f"{r['label_accuracy']:.4f}",
                "epsilon_protocol": f"{r['epsilon_data_independent']:.4f}",
                "epsilon_paper": "" if paper is None else f"{paper['epsilon']:.4f}",
                "accuracy_before": f"{b['accuracy'][i]:.4f}", "accuracy_after": f"{a['accuracy'][i]:.4f}",
                "balanced_before": f"{b['balanced_accuracy'][i]:.4f}",
                "balanced_after": f"{a['balanced_accuracy'][i]:.4f}",
                "unit_wall_s": f"{res['timings']['total_s']:.2f}", "backend": res["backend"]}
            if per_class:
                for c, (vb, va) in enumerate(zip(b["per_class_accuracy"][i], a["per_class_accuracy"][i])):
                    row[f"before_c{c}"] = "" if vb is None else f"{vb:.4f}"  # None: class absent
                    row[f"after_c{c}"] = "" if va is None else f"{va:.4f}"
            rows.append(row)
    return rows


def per_class_fields(num_classes: int) -> list[str]:
    """The per-class columns :func:`result_rows` adds with ``per_class``."""
    return [f"{w}_c{c}" for c in range(num_classes) for w in ("before", "after")]


def run_sweep(folder: ResultsFolder, args: argparse.Namespace, configs: Sequence[Mapping[str, Any]],
              keys: Sequence[str], desc: str, per_class: bool = False,
              extra_params: Mapping[str, Any] | None = None,
              derived: Mapping[str, Callable[[Mapping[str, Any]], str]] | None = None) -> list[dict[str, Any]]:
    """Run every (configuration, model seed) not yet in ``folder``'s CSV and return the summary.

    Args:
        folder: the results folder (its fields: ``keys + RUN_FIELDS`` [+ per-class]).
        args: the parsed flags (:func:`add_simulation_args`).
        configs: the swept values of each configuration (keys ``keys``; ``label`` names it in
            the CSV when the value itself is not readable, e.g. an architecture list).
        keys: the CSV columns that identify a configuration.
        desc: progress-bar label.
        per_class: also write per-class accuracies (fairness).
        extra_params: more entries for the JSON (labels, descriptions).
        derived: more columns computed from each finished row (name -> function of the row);
            they are summarised too (their names must be in the folder's fields).

    Raises:
        LearningError: a bad configuration or missing dataset files, before any training.
    """
    from tqdm.auto import tqdm

    from capc.learning import simulation
    from capc.learning.errors import LearningError
    from capc.learning.fanout import Executor

    units = [{**c, "model_seed": s} for c in configs for s in args.model_seeds]
    if not units:
        raise LearningError("nothing to run: no configurations or no --model_seeds")
    cfgs = [simulation_config(args, u) for u in units]
    for cfg in cfgs:  # every configuration checked before the first model trains
        cfg.validate()
    simulation.load_dataset_cached(args.dataset, args.data_dir)  # missing files: fail now, say where
    done = folder.done(lambda r: tuple(r[k] for k in (*keys, "model_seed")))
    todo = [(u, c) for u, c in zip(units, cfgs)
            if tuple(key_text(u[k]) for k in (*keys, "model_seed")) not in done]
    params = {"seeds": {"models": list(args.model_seeds), "retrain": list(args.retrain_seeds),
                        "noise": "model_seed * 1000 + querying party"},
              "configurations": [dict(c) for c in configs], **(extra_params or {})}
    folder.write_params(args, **params)
    unit_times: dict[str, float] = {}
    with Executor(args.use_ray, args.ray_address, args.num_cpus) as ex, folder.appender() as append:
        for unit, cfg in tqdm(todo, desc=desc):
            t = time.perf_counter()
            res = simulation.run_learning_simulation(cfg, executor=ex)
            for row in result_rows(res, per_class):
                row = {**{k: key_text(unit[k]) for k in keys}, **row}
                append({**row, **{name: fn(row) for name, fn in (derived or {}).items()}})
            unit_times[" ".join(f"{k}={key_text(v)}" for k, v in unit.items())] = round(time.perf_counter() - t, 2)
    summary = folder.write_summary(keys, [*METRICS, *(derived or {}),
                                          *(per_class_fields(NUM_CLASSES) if per_class else [])])
    rows = folder.rows()
    units_wall = {tuple(r[k] for k in (*keys, "model_seed")): float(r["unit_wall_s"]) for r in rows}
    folder.write_params(args, **params, timings={
        "units_run_this_invocation": len(todo), "units_skipped_already_in_csv": len(units) - len(todo),
        "unit_wall_s_this_invocation": unit_times, "sum_unit_wall_s_in_csv": round(sum(units_wall.values()), 2)})
    return summary


def errorbars(ax: Any, summary: Sequence[Mapping[str, Any]], x: Sequence[float], metric: str, label: str,
              fmt: str = "o-", **kw: Any) -> None:
    """Plot ``metric``'s mean with ±std error bars at positions ``x`` (one per summary row)."""
    ax.errorbar(list(x), [float(r[f"{metric}_mean"]) for r in summary],
                yerr=[float(r[f"{metric}_std"]) for r in summary], fmt=fmt, capsize=3, label=label, **kw)


def before_after(ax: Any, summary: Sequence[Mapping[str, Any]], x: Sequence[float], xlabel: str) -> None:
    """The querying party's accuracy before and after its CaPC labels (mean ± std) along a swept
    value ``x``, each "after" point annotated with the queries answered."""
    errorbars(ax, summary, x, "accuracy_before", "before (own data)", "o--")
    errorbars(ax, summary, x, "accuracy_after", "after CaPC labels", "o-")
    for v, r in zip(x, summary):
        ax.annotate(f"{float(r['queries_answered_mean']):.0f} ans.", (v, float(r["accuracy_after_mean"])),
                    textcoords="offset points", xytext=(4, 6), fontsize=6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("querying party test accuracy")


def print_summary(summary: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> None:
    """One line per configuration: accuracy and balanced accuracy before -> after (mean ± std),
    queries answered and epsilon (means), runs."""
    def ms(r: Mapping[str, Any], m: str) -> str:
        return f"{float(r[m + '_mean']):.4f}±{float(r[m + '_std']):.4f}"

    for r in summary:
        head = " ".join(f"{k}={r[k]}" for k in keys)
        print(f"{head}: acc {ms(r, 'accuracy_before')} -> {ms(r, 'accuracy_after')}, balanced "
              f"{ms(r, 'balanced_before')} -> {ms(r, 'balanced_after')}, answered "
              f"{float(r['queries_answered_mean']):.1f}, eps {float(r['epsilon_protocol_mean']):.2f} (n={r['n']})")
