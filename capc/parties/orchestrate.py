"""The protocol runner behind ``run_experiment.py``: set up a run, start the parties, collect results.

``run_protocol(config, launcher)`` (the interface :mod:`capc.launcher.experiment` calls):

1. resolves one model per party (``--checkpoint_dir``, or the default digits models, trained on first
   use): party 0 is the querying party, parties 1..N the answering parties — each AP loads its own;
2. makes the run's CA and one certificate per party (``pki/``), picks the listening ports, and writes
   ``RUN.json``;
3. starts the privacy guardian, the answering parties and the querying party as separate processes
   through the launcher (subprocesses or tmux panes), which waits for each to report ready;
4. follows the QP's progress (a progress bar), waits for it to finish, stops the APs and the PG;
5. reads the QP's results and the PG's ledger into an :class:`~capc.launcher.results.ExperimentResult`.

``--cpu`` runs :func:`run_plaintext` instead: the same roles, messages and ledger in one process
with the plaintext providers (no encryption, no 2PC), labelled as such everywhere it is shown.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from capc.errors import CapcError, ConfigError
from capc.parties.runconfig import PartyEntry, ProtocolParams, RunConfig, new_run_config, write_party_files
from capc.protocol_params import MODEL_SUFFIXES


def _model_files(config: Any, say: Callable[[str], None] | None = None) -> list[Path]:
    """One model file per party: index 0 for the QP, 1..N for the APs."""
    n = config.n_parties
    if config.checkpoint_dir is not None:
        files = sorted(p for p in Path(config.checkpoint_dir).iterdir() if p.suffix in MODEL_SUFFIXES)
        # Prefer one format per party when a directory holds both .keras and .pb of the same model.
        by_stem: dict[str, Path] = {}
        for f in files:
            by_stem.setdefault(f.stem, f)
        files = list(by_stem.values())
        if not files:
            raise ConfigError(f"--checkpoint_dir {config.checkpoint_dir} holds no model files "
                              f"({', '.join(MODEL_SUFFIXES)})")
        if len(files) < n + 1 and not config.ignore_parties:
            raise ConfigError(f"--checkpoint_dir {config.checkpoint_dir} holds {len(files)} models; "
                              f"{n} answering parties and the querying party need {n + 1} "
                              "(or pass --ignore_parties to reuse models, which makes votes agree)")
        return [files[i % len(files)] for i in range(n + 1)]
    from capc.learning.default_models import default_model_paths

    paths = default_model_paths(n + 1, config.models_dir, dataset=config.dataset_name,
                                data_dir=config.data_dir, on_train=say, model_type=config.model_type)
    return [Path(p["keras"]) if isinstance(p, dict) else Path(p) for p in paths]


def _is_local(host: str) -> bool:
    """True for loopback addresses: every party of the run shares this machine."""
    import ipaddress

    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_packing(config: Any) -> tuple[str, str]:
    """The run's packing and, when ``--packing auto`` chose batch for the CKKS file, why."""
    packing = getattr(config, "packing", "auto")
    if packing != "auto":
        return packing, ""
    if config.batch_size > 1:
        return "batch", ""
    if config.encryption_params:
        from capc.config import load_he_params

        try:
            he = load_he_params(str(config.encryption_params))
        except CapcError:
            return "single", ""  # the preflight names what is wrong with the file
        special, data_max = he.coeff_modulus[-1], max(he.coeff_modulus[:-1])
        if special < data_max:
            return "batch", (f"{config.encryption_params}: its special prime ({special} bits) is smaller "
                             f"than its largest data prime ({data_max} bits), so it cannot key-switch "
                             "(rotate) soundly: queries go one per slot (batch packing, as he-transformer "
                             "packed them); --packing single refuses this file")
    return "single", ""


def build_run_config(config: Any, run_dir: Path, models: Sequence[Path], ports: Sequence[int] | None = None
                     ) -> RunConfig:
    """The whole run's configuration from the flags, from which each party's own run file is cut
    (:func:`~capc.parties.runconfig.party_view`); ``ports`` (one per party) default to the flags'
    or to free ones."""
    protocol = ProtocolParams(
        num_classes=config.num_classes, frac_bits=config.round_exp, hiding_bits=config.hiding_bits,
        logit_bound=config.max_logit, vote_scale_exp=config.vote_scale_exp,
        sigma_gnmax=config.dp_noise_scale, sigma_threshold=config.sigma_threshold,
        threshold=config.threshold, budget_eps=config.budget_eps, delta=config.delta,
        he_params=str(config.encryption_params) if config.encryption_params else None,
        packing=resolve_packing(config)[0], batch_size=config.batch_size,
        sequential_batch_aps=config.batch_size > 1 and _is_local(config.host),
        plaintext=config.cpu, timeout=config.timeout)
    queries = range(config.start_batch, config.start_batch + config.n_queries)
    fixed = config.ports()
    return new_run_config(run_dir.name[:64], run_dir, models, protocol, queries, host=config.host,
                          ports=ports if ports is not None else (fixed or None), qp_id=config.qp_id,
                          dataset=config.dataset_name,
                          data_dir=str(config.data_dir) if config.data_dir else None,
                          seed=config.seed)


def prepare_protocol(config: Any, say: Callable[[str], None]) -> Callable[[Any, Any], Any]:
    """Everything that can be checked before a run directory exists or any party starts: one model per
    party (training the default models only if they are missing), the query ids, and every answering
    party's model against the CKKS parameters and the class count. Returns the runner for the checked
    run; raises :class:`~capc.errors.CapcError` naming what is wrong."""
    models = _model_files(config, say)
    if not config.cpu:
        from capc.parties.models import preflight
        from capc.parties.queries import load_queries

        probe = build_run_config(config, Path("preflight"), models, ports=[0] * (config.n_parties + 2))
        load_queries(probe)
        why = resolve_packing(config)[1]
        if why:
            say(why)
        say("checking every answering party's model against the CKKS parameters")
        preflight(probe)
    return lambda cfg, launcher: _run_checked(cfg, launcher, models)


def run_protocol(config: Any, launcher: Any) -> Any:
    """Run one CaPC experiment with real processes, sockets and cryptography (see module doc)."""
    return prepare_protocol(config, launcher.say)(config, launcher)


def _run_checked(config: Any, launcher: Any, models: Sequence[Path]) -> Any:
    try:
        result = _run_parties(config, launcher, models)
    finally:
        _merge_timings(launcher, Path(launcher.run_dir.path))
    return result


def _merge_timings(launcher: Any, run_dir: Path) -> None:
    """Fill ``timing.jsonl`` (and ``--log_timing_file``) with every party's per-step records, party by
    party, so one file holds the whole run's timings (each party writes ``timing-<party>.jsonl``)."""
    for f in sorted(run_dir.glob("timing-*.jsonl")):
        party = f.stem[len("timing-"):]
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                rec.setdefault("party", party)
                launcher.timing.append(rec)


def _run_parties(config: Any, launcher: Any, models: Sequence[Path]) -> Any:
    run_dir = Path(launcher.run_dir.path)
    t_start = time.perf_counter()
    if config.cpu:
        result = run_plaintext(config, models, run_dir)
        if getattr(config, "retrain", False):
            result.notes.append(retrain_querying_party(config, result, run_dir))
        return result

    from capc.net.certs import make_run_pki

    cfg = build_run_config(config, run_dir, models)
    make_run_pki(run_dir / "pki", [p.name for p in cfg.parties], hosts=(config.host, "localhost"))
    # each party reads only parties/<name>/: its own run file, key and certificate (pki/ keeps the CA
    # key and the certificates, for the launcher)
    run_files = write_party_files(cfg, run_dir / "pki", run_dir)
    qp = cfg.by_role("qp")[0].name

    def argv(p: PartyEntry) -> list[str]:
        return [sys.executable, "-m", "capc.cli", "party", "--role", p.role, "--name", p.name,
                "--run", str(run_files[p.name])]

    bar = launcher.progress(len(cfg.queries), desc="queries")

    def on_progress(party: str, data: dict[str, Any]) -> None:
        if party == qp and data.get("event") == "query":
            bar.update(1)
        elif data.get("event") == "ap_failed":
            launcher.say(f"answering party {data.get('party')} failed: {data.get('reason')}")

    launcher.on_progress(on_progress)
    servers = [p for p in cfg.parties if p.role != "qp"]
    launcher.say(f"starting the privacy guardian and {len(servers) - 1} answering parties")
    launcher.start_parties([launcher.spec(p.name, p.role, argv(p)) for p in servers])
    t_ready = time.perf_counter()
    launcher.start_parties([launcher.spec(qp, "qp", argv(cfg.party(qp)))])
    per_query = max(60.0, 4 * len(servers))
    launcher.wait_done([qp], timeout=config.timeout + per_query * len(cfg.queries))
    t_done = time.perf_counter()
    bar.close()
    launcher.stop_all()
    result = collect_results(cfg, qp, {"setup": t_ready - t_start, "queries": t_done - t_ready,
                                       "total": time.perf_counter() - t_start})
    if getattr(config, "retrain", False):
        launcher.say("step 4: retraining the querying party's model with the labels it obtained")
        result.notes.append(retrain_querying_party(config, result, run_dir))
    return result


def retrain_seeds(seed: int, count: int = 3) -> tuple[int, ...]:
    """Step 4's training seeds for ``--seed``: ``count`` consecutive seeds from it, so that a run
    is reproduced by its recorded seed and another seed gives other training runs."""
    return tuple(int(seed) + i for i in range(count))


def retrain_querying_party(config: Any, result: Any, run_dir: Path) -> str:
    """Step 4: train the QP's model from scratch on its own data plus its CaPC labels (several seeds)
    and, for comparison, on its own data alone with the same seeds; write ``retrain.json``."""
    from capc.learning.datasets import load_dataset
    from capc.learning.default_models import SHIPPED_PARTIES, make_partition
    from capc.learning.retrain import UNANSWERED, retrain_with_queries

    ds = load_dataset(config.dataset_name, config.data_dir)
    parts, _ = make_partition(ds, max(config.n_parties + 1, SHIPPED_PARTIES), "iid")
    own = np.asarray(parts[0])
    ids = [r.query_id for r in result.rows]
    labels = np.array([UNANSWERED if r.label is None else r.label for r in result.rows], dtype=np.int64)
    seeds = retrain_seeds(config.seed)
    common = dict(x_eval=ds.x_eval, y_eval=ds.y_eval, num_classes=config.num_classes, seeds=seeds,
                  model_type=config.model_type)
    before = retrain_with_queries(ds.x_train[own], ds.y_train[own], ds.x_query[:0], labels[:0], **common)
    after = retrain_with_queries(ds.x_train[own], ds.y_train[own], ds.x_query[ids], labels, **common)
    (run_dir / "retrain.json").write_text(json.dumps({"own_data_only": before.to_dict(),
                                                      "with_capc_labels": after.to_dict()}, indent=2) + "\n")
    return (f"step 4, QP retrained from scratch ({len(seeds)} seeds): own data only {before.summary()}; "
            f"with its CaPC labels {after.summary()}")


def collect_results(cfg: RunConfig, qp: str, totals: dict[str, float]) -> Any:
    """Read the QP's results file and the PG's ledger into an ExperimentResult."""
    from capc.launcher.results import ExperimentResult, PrivacySummary, QueryRow
    from capc.privacy.ledger import LEDGER_FILENAME, BudgetLedger

    run_dir = Path(cfg.run_dir)
    data = json.loads((run_dir / f"results-{qp}.json").read_text())
    rows, notes = [], []
    for q in data["queries"]:
        rows.append(QueryRow(query_id=q["query_id"], label=q["label"] if q["answered"] else None,
                             true_label=q["true_label"], step_seconds=q["seconds"]))
        if q["error"]:
            notes.append(f"query {q['query_id']}: {q['error']}")
    for ap, why in data.get("dropped_aps", {}).items():
        notes.append(f"answering party {ap} was dropped: {why}")
    hiding = _achieved_hiding(run_dir)
    if hiding:
        notes.append(f"statistical hiding of the APs' masked logits: {hiding[0]:g} bits per logit, "
                     f"{hiding[1]:.1f} bits for a whole result (union bound over its slots), worst over the run")
    privacy = None
    ledger_path = run_dir / LEDGER_FILENAME
    if ledger_path.exists():
        ledger = BudgetLedger(ledger_path, None, None, create=False)
        try:
            eps = ledger.spent_eps(qp)
        finally:
            ledger.close()
        p = cfg.protocol
        privacy = PrivacySummary(qp_id=int(qp.split("-")[1]), epsilon=eps, delta=p.delta,
                                 budget_eps=p.budget_eps, answered=sum(r.answered for r in rows),
                                 queries=len(rows), data_independent=True,
                                 note=f"sigma_G={p.sigma_gnmax:g}, sigma_T={p.sigma_threshold:g}, "
                                      f"T={p.threshold:g}; ledger: {ledger_path}")
    return ExperimentResult(rows=rows, privacy=privacy, totals=totals, plaintext=False, notes=notes)


def _achieved_hiding(run_dir: Path) -> tuple[float, float] | None:
    """The smallest per-logit and whole-result hiding bits the APs recorded in their timing files."""
    per, whole = [], []
    for f in run_dir.glob("timing-ap-*.jsonl"):
        for line in f.read_text().splitlines():
            rec = json.loads(line) if line.strip() else {}
            h = rec.get("hiding_bits")
            if isinstance(h, dict):
                per.append(float(h["per_logit_bits"]))
                whole.append(float(h["result_bits"]))
    return (min(per), min(whole)) if per else None


def run_plaintext(config: Any, models: Sequence[Path], run_dir: Path) -> Any:
    """``--cpu``: the same roles, messages, label store and ledger as a real run, in one process over
    in-memory channels, with the plaintext providers (no encryption, no garbled circuits). For
    testing and quick experiments; labelled as such everywhere it is shown."""
    from capc.parties.inprocess import InProcessRun
    from capc.parties.plaintext import plaintext_providers
    from capc.parties.queries import load_queries

    t_start = time.perf_counter()
    cfg = build_run_config(config, run_dir, models, ports=[0] * (config.n_parties + 2))
    load_queries(cfg)  # validates the query ids before any party starts
    # loads every AP's model: a bad one is refused here, before any query
    run = InProcessRun(cfg, plaintext_providers(), log_dir=run_dir / "logs")
    qp = cfg.by_role("qp")[0].name
    t_ready = time.perf_counter()
    run.run_querying_party(qp)
    run.close(timeout=cfg.protocol.timeout)
    t_done = time.perf_counter()
    result = collect_results(cfg, qp, {"setup": t_ready - t_start, "queries": t_done - t_ready,
                                       "total": t_done - t_start})
    result.plaintext = True
    result.notes.insert(0, "PLAINTEXT (--cpu): the protocol's roles and ledger without encryption or 2PC")
    return result
