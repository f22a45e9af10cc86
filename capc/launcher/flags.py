"""Command-line flags of ``run_experiment.py`` and their validation into an :class:`ExperimentConfig`.

The flag names are those of the original CaPC launcher (``run_experiment.py`` / ``run_protocol.py``)
so existing command lines keep working; where the original's meaning was unsound, capc's meaning is
stated in ``--help`` together with the reason. capc's own flags are listed after them.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import capc.protocol_params as pp
from capc.launcher.errors import FlagError
from capc.learning.model_types import DEFAULT_MODEL_TYPE, MODEL_TYPES
from capc.protocol_params import MODEL_SUFFIXES

#: Datasets the protocol's 28x28 / 8x8 models run on (``capc.learning.datasets`` reads them);
#: ``digits`` ships with scikit-learn, so it works offline.
DATASETS = ("digits", "digits28", "mnist", "fashion-mnist")
#: Protocol parameters set by a flag: ExperimentConfig field (the original's flag name) -> declaration.
PROTOCOL_FLAGS: dict[str, pp.Param] = {
    "num_classes": pp.NUM_CLASSES, "hiding_bits": pp.HIDING_BITS, "round_exp": pp.FRAC_BITS,
    "max_logit": pp.LOGIT_BOUND, "dp_noise_scale": pp.SIGMA_GNMAX, "batch_size": pp.BATCH_SIZE,
    "sigma_threshold": pp.SIGMA_THRESHOLD, "threshold": pp.THRESHOLD, "vote_scale_exp": pp.VOTE_SCALE_EXP,
    "budget_eps": pp.BUDGET_EPS, "delta": pp.DELTA, "timeout": pp.TIMEOUT,
}
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.:_\[\]-]+$")


@dataclass(frozen=True)
class ExperimentConfig:
    """Every flag of a run after defaults and validation (see ``build_parser`` for meanings).

    ``tmux`` is ``None`` when neither ``--tmux`` nor ``--no-tmux`` was given (auto: use tmux only
    when already inside it). Paths are absolute or ``None``.
    """

    n_parties: int
    ignore_parties: bool
    encryption_params: Path | None
    start_batch: int
    n_queries: int
    batch_size: int
    num_classes: int
    hiding_bits: int
    round_exp: int
    max_logit: float
    dp_noise_scale: float
    seed: int
    session: str
    start_port: int
    qp_id: int
    checkpoint_dir: Path | None
    dataset_name: str
    model_type: str
    log_timing_file: Path | None
    debug: bool
    cpu: bool
    sigma_threshold: float
    threshold: float
    vote_scale_exp: int
    budget_eps: float
    delta: float
    run_dir: Path | None
    tmux: bool | None
    host: str
    timeout: float
    models_dir: Path | None
    retrain: bool = False
    data_dir: Path | None = None
    packing: str = "auto"

    @property
    def sigma_gnmax(self) -> float:
        """sigma_G of Confident-GNMax, in votes (the original's ``--dp_noise_scale``)."""
        return self.dp_noise_scale

    @property
    def fraction_bits(self) -> int:
        """Fixed-point fraction bits f: logits are encoded as round(2^f * z) (``--round_exp``)."""
        return self.round_exp

    def ports(self) -> list[int]:
        """The fixed ports reserved for this run, or ``[]`` when ``--start_port 0`` (OS-chosen)."""
        if self.start_port == 0:
            return []
        return list(range(self.start_port, self.start_port + self.n_parties + 2))

    def to_json(self) -> dict[str, Any]:
        """The configuration as JSON-ready values (paths as strings)."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            out[key] = str(value) if isinstance(value, Path) else value
        return out


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``run_experiment.py`` (original flags first, then capc's own)."""
    p = argparse.ArgumentParser(
        prog="run_experiment.py",
        description=(
            "Run CaPC between a querying party (QP), N answering parties (APs) and a privacy "
            "guardian (PG), as separate processes (tmux panes inside tmux or with --tmux, else "
            "subprocesses with per-party logs). Output goes to a per-run directory."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    orig = p.add_argument_group("original CaPC flags")
    orig.add_argument("--n_parties", type=int, default=3, help="number of answering parties (APs); capc default 3 (the original's was 1)")
    orig.add_argument(
        "--ignore_parties", action=argparse.BooleanOptionalAction, default=False,
        help="skip the check that --checkpoint_dir holds a model per party (models are then "
             "reused). capc: a real "
             "on/off switch (the original's store_true with default True could not be turned off)",
    )
    orig.add_argument(
        "--encryption_params", type=str, default=None,
        help="CKKS parameter file (JSON, e.g. config/10.json); default: capc's built-in default",
    )
    orig.add_argument("--start_batch", type=int, default=0,
                      help="index of the first query in the dataset's query pool")
    orig.add_argument("--n_queries", type=int, default=5, help="number of queries; capc default 5 (the original's was 1)")
    for dest in ("batch_size", "num_classes", "hiding_bits", "round_exp", "max_logit", "dp_noise_scale"):
        _declared(orig, dest)
    orig.add_argument(
        "--seed", type=int, default=2,
        help="seed of the non-cryptographic randomness: step 4's training runs (--retrain uses seeds "
             "seed, seed+1, seed+2); recorded in params.json. The queries are --start_batch.. in order "
             "(as the original's) and the default models ship trained with the seeds on their cards. "
             "Masks, keys and DP noise always come from the OS's secure generator",
    )
    orig.add_argument("--session", type=str, default="capc", help="tmux session name")
    orig.add_argument(
        "--start_port", type=int, default=0,
        help="first of n_parties+2 consecutive ports, one per party (the QP, ap-1..ap-N, the PG), "
             "each party listening on its own; capc default 0 = the launcher picks ports the OS reports "
             "free just before the run (the original's fixed ports collided between runs)",
    )
    orig.add_argument("--qp_id", type=int, default=0,
                      help="querying party id; the PG keeps one privacy budget per QP id")
    orig.add_argument(
        "--checkpoint_dir", type=str, default=None,
        help="directory of the parties' private models (*.keras, *.h5, *.pb): the QP's own plus "
             "one per AP; default: capc's default models (trained on first use)",
    )
    orig.add_argument("--dataset_name", type=str, default="digits", choices=DATASETS,
                      help="dataset; digits ships with scikit-learn and needs no download, the others are "
                           "read from their standard files in --data_dir")
    orig.add_argument(
        "--model_type", type=str, default=DEFAULT_MODEL_TYPE,
        help=f"layout of the default models, one of {', '.join(MODEL_TYPES)}: cryptonets (square "
             "activations, pure CKKS; models/digits/) or the original demo's cryptonets-relu / mlp "
             "(ReLU, max-pool: evaluated with garbled circuits; models/digits-cryptonets-relu/, "
             "models/digits-mlp/). Ignored with --checkpoint_dir. capc default cryptonets (the "
             "original's was cryptonets-relu)",
    )
    orig.add_argument(
        "--log_timing_file", type=str, default=None,
        help="also append the per-step timing records (JSON lines) to this file; they are always "
             "written to <run_dir>/timing.jsonl (all parties, after the run) and "
             "<run_dir>/timing-<party>.jsonl (each party, as it goes)",
    )
    orig.add_argument(
        "--debug", action="store_true",
        help="keep the tmux window after the run for inspection, and ask the parties for verbose "
             "logs. capc: party processes are still always stopped at the end (the original "
             "left them running)",
    )
    orig.add_argument(
        "--cpu", action="store_true",
        help="PLAINTEXT SIMULATION: no encryption and no garbled circuits; same votes, noise and "
             "accounting, for testing only. Results are labelled as such",
    )
    own = p.add_argument_group("capc flags")
    for dest in ("sigma_threshold", "threshold", "vote_scale_exp", "budget_eps", "delta"):
        _declared(own, dest, dashed=True)
    own.add_argument("--run_dir", "--run-dir", dest="run_dir", type=str, default=None,
                     help="run directory (default runs/<timestamp>-<id>); must be new or empty")
    own.add_argument("--tmux", action=argparse.BooleanOptionalAction, default=None,
                     help="show parties in tmux panes (default: only when already inside tmux)")
    own.add_argument("--host", type=str, default="127.0.0.1",
                     help="address the parties listen on and connect to")
    _declared(own, "timeout")
    own.add_argument("--retrain", action="store_true",
                     help="step 4: afterwards the QP retrains its model from scratch on its own data plus "
                          "the labels it obtained, and the accuracy before/after is reported")
    own.add_argument("--data_dir", "--data-dir", dest="data_dir", type=str, default=None,
                     help="directory holding the dataset's standard files (MNIST / Fashion-MNIST idx "
                          "files, '.gz' allowed); default: where Keras caches them, and for Fashion-MNIST "
                          "also where Debian's dataset-fashion-mnist package installs them")
    own.add_argument("--packing", choices=("auto", "single", "batch"), default="auto",
                     help="how queries fill the CKKS slots: 'single' (one query spread over a ciphertext's "
                          "slots, with rotations), 'batch' (one query per slot, no rotations: how "
                          "he-transformer packed them); 'auto' (default) takes batch when --batch_size > 1 "
                          "or when the CKKS file cannot key-switch (a special prime smaller than a data "
                          "prime, as in config/10.json), else single")
    own.add_argument("--models_dir", "--models-dir", dest="models_dir", type=str, default=None,
                     help="where default models are stored and trained on first use "
                          "(created if missing; default: capc's models directory)")
    return p


def _declared(group: Any, dest: str, dashed: bool = False) -> None:
    """Add the option of a declared protocol parameter: its flags, type, default and doc come from
    :mod:`capc.protocol_params`; ``dashed`` also accepts ``--a-b`` for ``--a_b``."""
    param = PROTOCOL_FLAGS[dest]
    names = list(param.flags)
    if dashed:
        names += [n.replace("_", "-") for n in param.flags if "_" in n]
    group.add_argument(*names, dest=dest, type=param.type, default=param.default, help=param.doc)


def _need(cond: bool, flag: str, message: str) -> None:
    if not cond:
        raise FlagError(flag, message)


def _existing_file(raw: str | None, flag: str) -> Path | None:
    if raw is None:
        return None
    path = Path(raw).expanduser().resolve()
    _need(path.exists(), flag, f"file {raw!r} does not exist")
    _need(path.is_file(), flag, f"{raw!r} is not a regular file")
    return path


def validate(ns: argparse.Namespace) -> ExperimentConfig:
    """Check every value of a parsed namespace; raise :class:`FlagError` naming the bad flag."""
    _need(ns.n_parties >= 1, "--n_parties", f"must be >= 1, got {ns.n_parties}")
    _need(ns.n_queries >= 1, "--n_queries", f"must be >= 1, got {ns.n_queries}")
    _need(ns.start_batch >= 0, "--start_batch", f"must be >= 0, got {ns.start_batch}")
    _need(ns.qp_id >= 0, "--qp_id", f"must be >= 0, got {ns.qp_id}")
    for dest, param in PROTOCOL_FLAGS.items():
        problem = param.problem(getattr(ns, dest))
        _need(problem is None, param.flag, problem or "")
    try:
        pp.check_combination({param.name: getattr(ns, dest) for dest, param in PROTOCOL_FLAGS.items()},
                             encrypted=not ns.cpu)
    except pp.ParamError as exc:
        flag, _, message = str(exc).partition(": ")
        raise FlagError(flag, message) from None
    _need(bool(_NAME_RE.match(ns.session)), "--session",
          f"must be letters, digits, '_' or '-' (tmux reserves '.' and ':'), got {ns.session!r}")
    _need(ns.model_type in MODEL_TYPES, "--model_type",
          f"must be one of {', '.join(MODEL_TYPES)}, got {ns.model_type!r}")
    _need(bool(_HOST_RE.match(ns.host)), "--host", f"is not a host name or address: {ns.host!r}")
    # Fixed ports: all of them must be unprivileged and below 65536.
    if ns.start_port != 0:
        last = ns.start_port + ns.n_parties + 1
        _need(1024 <= ns.start_port <= 65535, "--start_port",
              f"must be 0 (OS-chosen) or in 1024..65535, got {ns.start_port}")
        _need(last <= 65535, "--start_port",
              f"{ns.start_port} leaves no room for {ns.n_parties + 2} ports "
              f"for the QP, {ns.n_parties} APs and the PG (last would be {last})")

    enc = _existing_file(ns.encryption_params, "--encryption_params")
    if enc is not None:
        try:
            parsed = json.loads(enc.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FlagError("--encryption_params", f"{ns.encryption_params!r} is not valid JSON: "
                                                   f"{exc}") from None
        _need(isinstance(parsed, dict), "--encryption_params",
              f"{ns.encryption_params!r} must hold a JSON object")

    ckpt = None
    if ns.checkpoint_dir is not None:
        ckpt = Path(ns.checkpoint_dir).expanduser().resolve()
        _need(ckpt.is_dir(), "--checkpoint_dir", f"{ns.checkpoint_dir!r} is not a directory")
        # One model per party (the QP's own plus one per AP); a .keras and a .pb with the same
        # stem are one model in two formats.
        models = {m.stem for m in ckpt.iterdir() if m.suffix in MODEL_SUFFIXES}
        _need(bool(models), "--checkpoint_dir",
              f"{ns.checkpoint_dir!r} holds no model files ({', '.join(MODEL_SUFFIXES)})")
        _need(ns.ignore_parties or len(models) >= ns.n_parties + 1, "--checkpoint_dir",
              f"{ns.checkpoint_dir!r} holds {len(models)} model(s) but --n_parties="
              f"{ns.n_parties} needs {ns.n_parties + 1} (one per AP and the QP's own); pass "
              f"--ignore_parties to reuse models (the votes then agree)")

    timing = None
    if ns.log_timing_file is not None:
        timing = Path(ns.log_timing_file).expanduser().resolve()
        _need(timing.parent.is_dir(), "--log_timing_file",
              f"directory {str(timing.parent)!r} does not exist")
        _need(not timing.is_dir(), "--log_timing_file", f"{ns.log_timing_file!r} is a directory")

    run_dir = None
    if ns.run_dir is not None:
        run_dir = Path(ns.run_dir).expanduser().resolve()
        if run_dir.exists():
            _need(run_dir.is_dir(), "--run_dir", f"{ns.run_dir!r} exists and is not a directory")
            _need(not any(run_dir.iterdir()), "--run_dir",
                  f"{ns.run_dir!r} is not empty (each run needs its own directory)")

    data_dir = None
    if ns.data_dir is not None:
        data_dir = Path(ns.data_dir).expanduser().resolve()
        _need(data_dir.is_dir(), "--data_dir", f"{ns.data_dir!r} is not a directory")

    models_dir = None
    if ns.models_dir is not None:
        models_dir = Path(ns.models_dir).expanduser().resolve()
        _need(not models_dir.exists() or models_dir.is_dir(), "--models_dir",
              f"{ns.models_dir!r} exists and is not a directory")
        _need(models_dir.exists() or models_dir.parent.is_dir(), "--models_dir",
              f"parent directory of {ns.models_dir!r} does not exist")

    return ExperimentConfig(
        n_parties=ns.n_parties, ignore_parties=ns.ignore_parties, encryption_params=enc,
        start_batch=ns.start_batch, n_queries=ns.n_queries, batch_size=ns.batch_size,
        num_classes=ns.num_classes, hiding_bits=ns.hiding_bits, round_exp=ns.round_exp,
        max_logit=float(ns.max_logit), dp_noise_scale=float(ns.dp_noise_scale), seed=ns.seed,
        session=ns.session, start_port=ns.start_port, qp_id=ns.qp_id, checkpoint_dir=ckpt,
        dataset_name=ns.dataset_name, model_type=ns.model_type, log_timing_file=timing,
        debug=ns.debug, cpu=ns.cpu, sigma_threshold=float(ns.sigma_threshold),
        threshold=float(ns.threshold), vote_scale_exp=ns.vote_scale_exp,
        budget_eps=float(ns.budget_eps), delta=float(ns.delta), run_dir=run_dir, tmux=ns.tmux,
        host=ns.host, timeout=float(ns.timeout), models_dir=models_dir, retrain=bool(ns.retrain),
        data_dir=data_dir, packing=ns.packing,
    )


def parse_config(argv: Sequence[str] | None = None) -> ExperimentConfig:
    """Parse and validate ``argv`` (default ``sys.argv[1:]``).

    Bad values exit like argparse does (status 2, usage plus a message naming the flag).
    """
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        return validate(ns)
    except FlagError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def config_field_names() -> list[str]:
    """Names of all :class:`ExperimentConfig` fields (for params.json consumers and tests)."""
    return [f.name for f in fields(ExperimentConfig)]


def weak_settings(config: ExperimentConfig) -> list[str]:
    """Warnings about legal but weak settings, to print before a run."""
    notes = []
    if config.hiding_bits < 40:
        notes.append(f"--rstar_exp/--hiding_bits={config.hiding_bits} < 40: the logit masks hide "
                     f"only up to statistical distance 2^-{config.hiding_bits}")
    if config.cpu:
        notes.append("--cpu: PLAINTEXT SIMULATION, nothing is encrypted")
    if config.dp_noise_scale == 0 or (config.threshold > 0 and config.sigma_threshold == 0):
        notes.append("NO DIFFERENTIAL PRIVACY: a noise scale is 0, so every answered query costs "
                     "infinite epsilon (allowed only because --budget_eps is inf)")
    elif math.isinf(config.budget_eps):
        notes.append("--budget_eps inf: epsilon is recorded but no budget is enforced")
    return notes
